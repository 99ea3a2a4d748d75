"""API discovery and the REST mapper: from what a user types to a `ResourceInfo`.

The static table in `meshnet.api.resources` answers for every kind meshnet serves, without a
round trip. Anything it does not know (a real cluster's DaemonSets, CRDs) is looked up in the
server's discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`), read
once, lazily, only when needed. Discovery reports preferred versions only, as
`kubectl api-resources` does.
"""

from __future__ import annotations

from meshnet.api import resources as table
from meshnet.api.resources import ResourceInfo, UnknownResource

from .errors import ApiError, ConfigError
from .rest import RestClient


def parse_resource_list(group_version: str, doc: dict) -> list[ResourceInfo]:
    """APIResourceList -> ResourceInfo rows (subresources folded into their parent)."""
    group, _, version = group_version.rpartition("/")
    subresources: dict[str, list[str]] = {}
    tops: list[dict] = []
    for r in doc.get("resources") or []:
        name = r.get("name") or ""
        if "/" in name:
            parent, sub = name.split("/", 1)
            subresources.setdefault(parent, []).append(sub)
        else:
            tops.append(r)
    out = []
    for r in tops:
        name = r["name"]
        out.append(ResourceInfo(
            group=r.get("group") or group,
            version=r.get("version") or version,
            kind=r.get("kind") or "",
            plural=name,
            singular=r.get("singularName") or (r.get("kind") or "").lower(),
            namespaced=bool(r.get("namespaced")),
            short_names=tuple(r.get("shortNames") or ()),
            categories=tuple(r.get("categories") or ()),
            subresources=tuple(subresources.get(name, ())),
            verbs=tuple(r.get("verbs") or ()),
        ))
    return out


class Discovery:
    """The server's resources, fetched once."""

    def __init__(self, client: RestClient):
        self.client = client
        self._resources: list[ResourceInfo] | None = None
        self.failed_groups: dict[str, str] = {}

    def resources(self) -> list[ResourceInfo]:
        if self._resources is None:
            self._resources = self._fetch()
        return self._resources

    def _fetch(self) -> list[ResourceInfo]:
        out: list[ResourceInfo] = []
        core = self.client.get_json("/api")
        for version in core.get("versions") or ["v1"]:
            out.extend(parse_resource_list(version, self.client.get_json(f"/api/{version}")))
            break  # the core group has one preferred version
        groups = self.client.get_json("/apis")
        for g in groups.get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("groupVersion")
            if not preferred and g.get("versions"):
                preferred = g["versions"][0].get("groupVersion")
            if not preferred:
                continue
            try:
                doc = self.client.get_json(f"/apis/{preferred}")
            except ApiError as e:
                # One broken aggregated group must not hide the others (kubectl warns too).
                self.failed_groups[preferred] = e.message
                continue
            out.extend(parse_resource_list(preferred, doc))
        return out


class RestMapper:
    """Resolves resource names and kinds; static table first, then discovery."""

    def __init__(self, discovery: Discovery | None = None):
        self.discovery = discovery

    def _discovered(self) -> list[ResourceInfo]:
        if self.discovery is None:
            return []
        try:
            return self.discovery.resources()
        except ConfigError:
            # No kubeconfig: there is no server to ask, so the static table is all we know and
            # "no such kind" is the useful answer. Unreachable servers still fail loudly.
            return []

    def lookup(self, name: str) -> ResourceInfo:
        """`svc`, `services`, `Deployment`, `deployments.apps`, `ingresses.v1.networking.k8s.io`."""
        try:
            return table.lookup(name)
        except UnknownResource:
            pass
        wanted = name.lower()
        for r in self._discovered():
            names = {r.plural, r.singular, r.kind.lower(), *r.short_names}
            for n in names:
                candidates = {n, f"{n}.{r.group}" if r.group else n,
                              f"{n}.{r.version}.{r.group}" if r.group else f"{n}.{r.version}"}
                if wanted in candidates:
                    return r
        raise UnknownResource(name)

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo:
        try:
            return table.by_kind(api_version, kind)
        except UnknownResource:
            pass
        group, _, version = api_version.rpartition("/")
        for r in self._discovered():
            if r.group == group and r.version == version and r.kind == kind:
                return r
        raise UnknownResource(f"{kind} in {api_version}" if api_version else kind)

    def category(self, name: str) -> list[ResourceInfo]:
        found = table.in_category(name)
        if found:
            return found
        return [r for r in self._discovered() if name in r.categories]

    def known_kinds(self) -> list[str]:
        kinds = {r.kind for r in table.RESOURCES}
        return sorted(kinds)
