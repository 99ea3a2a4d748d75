"""Resource paths to request info (kube-apiserver's RequestInfoFactory, trimmed).

    /api/v1/namespaces/{ns}/{resource}/{name}/{subresource}
    /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{subresource}
    /api/v1/{resource}/{name}/{subresource}            (cluster-scoped, or all namespaces)

`/api/v1/namespaces/{name}` is the Namespace object itself, and `/api/v1/namespaces/{name}/status`
(or `/finalize`) its subresource, which is why parsing needs the resource table: a segment after
`namespaces/{ns}/` is a resource when it names one, otherwise a namespace subresource.
Pure: no I/O, table-tested in tests/control/test_paths.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshnet.api import errors
from meshnet.api.resources import ResourceInfo, by_path

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestInfo:
    info: ResourceInfo
    namespace: str | None  # None: cluster-scoped, or a list/watch across all namespaces
    name: str | None
    subresource: str | None

    def __repr__(self) -> str:
        where = f"ns={self.namespace}" if self.namespace else "cluster"
        return (f"<RequestInfo {self.info.qualified} {where} name={self.name} "
                f"sub={self.subresource}>")


def parse_resource_path(path: str) -> RequestInfo:
    """Parse a resource URL path; raise a 404 StatusError when it names nothing we serve."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _no_route(path)
    if not rest:
        raise _no_route(path)

    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = rest[2]
        if group == "" and len(rest) == 3 and candidate in NAMESPACE_SUBRESOURCES \
                and by_path(group, version, candidate) is None:
            rest = ["namespaces", rest[1], candidate]  # /api/v1/namespaces/{name}/status
        else:
            namespace, rest = rest[1], rest[2:]

    resource, name, sub = rest[0], None, None
    if len(rest) >= 2:
        name = rest[1]
    if len(rest) >= 3:
        sub = rest[2]
    if len(rest) > 3:
        raise _no_route(path)
    info = by_path(group, version, resource)
    if info is None:
        raise _no_route(path)
    if namespace is not None and not info.namespaced:
        raise _no_route(path)
    if sub is not None and sub not in info.subresources:
        raise _no_route(path)
    return RequestInfo(info, namespace, name, sub)


def _no_route(path: str) -> errors.StatusError:
    return errors.StatusError(404, "NotFound", f"the server could not find the requested "
                                               f"resource ({path})")
