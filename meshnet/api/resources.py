"""The kinds meshnet serves, and how clients may name them.

One `ResourceInfo` per kind: its group/version, plural/singular/short names, whether it is
namespaced, which subresources it has. The API server builds discovery, routes and storage keys
from this table; meshctl resolves `svc`, `deploy`, `ingresses.networking.k8s.io`, ... through it.
Adding a kind means adding a row here and its validation in `meshnet.api.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        """`services` for core, `deployments.apps` otherwise (kubectl's resource.group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def key_prefix(self, namespace: str | None = None) -> str:
        """Store key prefix for this resource, optionally narrowed to one namespace.

        Keys are `/registry/<group or core>/<plural>/<namespace>/<name>` for namespaced kinds and
        `/registry/<group or core>/<plural>/<name>` for cluster-scoped ones (etcd layout of
        kube-apiserver, with the group spelled out so that two groups never share a prefix).
        """
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix(namespace)}{name}"
        return f"{self.key_prefix()}{name}"

    def __repr__(self) -> str:
        return f"<ResourceInfo {self.qualified} {self.api_version} {self.kind}>"


_ALL = ("all",)
_STATUS = ("status",)

RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",), (),
                 ("status", "finalize"),
                 ("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceInfo("", "v1", "Node", "nodes", "node", False, ("no",), (), _STATUS),
    ResourceInfo("", "v1", "Pod", "pods", "pod", True, ("po",), _ALL, ("status", "log", "exec")),
    ResourceInfo("", "v1", "Service", "services", "service", True, ("svc",), _ALL, _STATUS,
                 ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    ResourceInfo("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    ResourceInfo("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceInfo("", "v1", "Secret", "secrets", "secret", True),
    ResourceInfo("", "v1", "Event", "events", "event", True, ("ev",)),
    ResourceInfo("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), _ALL,
                 ("status", "scale")),
    ResourceInfo("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), _ALL,
                 ("status", "scale")),
    ResourceInfo("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ("sts",), _ALL,
                 ("status", "scale")),
    ResourceInfo("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ("ing",), (),
                 _STATUS),
    ResourceInfo("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    ResourceInfo("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
)

# Groups in discovery order (kube-apiserver lists core first, then named groups).
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(r.group for r in RESOURCES if r.group))


class UnknownResource(LookupError):
    """A name that matches no kind; the message lists what is supported."""

    def __init__(self, name: str):
        self.name = name
        kinds = ", ".join(sorted(r.kind for r in RESOURCES))
        super().__init__(
            f'the server doesn\'t have a resource type "{name}" (supported kinds: {kinds})'
        )


def _index() -> dict[str, ResourceInfo]:
    idx: dict[str, ResourceInfo] = {}
    for r in RESOURCES:
        names = {r.plural, r.singular, r.kind.lower(), *r.short_names}
        for n in names:
            idx[n] = r
            idx[f"{n}.{r.group}" if r.group else n] = r
            idx[f"{n}.{r.version}.{r.group}" if r.group else f"{n}.{r.version}"] = r
    return idx


_BY_NAME = _index()
_BY_GVK = {(r.group, r.version, r.kind): r for r in RESOURCES}
_BY_GVR = {(r.group, r.version, r.plural): r for r in RESOURCES}


def lookup(name: str) -> ResourceInfo:
    """Resolve what a user typed (`svc`, `Deployment`, `ingresses.networking.k8s.io`)."""
    r = _BY_NAME.get(name.lower())
    if r is None:
        raise UnknownResource(name)
    return r


def by_kind(api_version: str, kind: str) -> ResourceInfo:
    """Resolve an object's `apiVersion`/`kind` pair; raises UnknownResource."""
    group, _, version = api_version.rpartition("/")
    r = _BY_GVK.get((group, version, kind))
    if r is None:
        raise UnknownResource(f"{kind} in {api_version}" if api_version else kind)
    return r


def by_path(group: str, version: str, plural: str) -> ResourceInfo | None:
    return _BY_GVR.get((group, version, plural))


def in_group_version(group: str, version: str) -> list[ResourceInfo]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def in_category(category: str) -> list[ResourceInfo]:
    return [r for r in RESOURCES if category in r.categories]
