"""Trimmed, frozen views of the objects the ingress controller watches.

The informers store these instead of whole objects (CoreDNS keeps "a stripped down
api.Service"): only the fields routing, TLS and status need, as tuples and frozen dataclasses,
so `==` compares whole views, an update that changes nothing the ingress reads is never
reported, and `compile_routes` gets plain immutable data to work on.

`view_*` are the informer transforms. They never raise on a malformed object: the API server
validated it, and whatever is still odd (a missing port, a path that is not a string) is kept
as an empty value for `compile_routes` to report as an Event.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

# Annotations the ingress reads; the rest of metadata.annotations is dropped from the view.
ANNOTATION_PREFIXES = ("meshnet.io/", "nginx.ingress.kubernetes.io/")
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class BackendRef:
    """An IngressBackend: a Service port by number or by name, or an (unsupported) resource."""
    service: str = ""
    port_number: int = 0
    port_name: str = ""
    resource: str = ""  # "Kind/name" of a spec.*.resource backend

    def __str__(self) -> str:
        if self.resource:
            return f"resource {self.resource}"
        return f"{self.service}:{self.port_name or self.port_number}"


@dataclass(frozen=True)
class PathView:
    path: str
    path_type: str
    backend: BackendRef


@dataclass(frozen=True)
class RuleView:
    host: str  # lowercased; "" for a rule without a host
    paths: tuple[PathView, ...]


@dataclass(frozen=True)
class TLSView:
    hosts: tuple[str, ...]
    secret_name: str


@dataclass(frozen=True)
class IngressView:
    namespace: str
    name: str
    uid: str
    created: str  # creationTimestamp (RFC 3339 sorts as text); the oldest wins duplicates
    class_name: str | None  # spec.ingressClassName
    class_annotation: str | None  # the legacy kubernetes.io/ingress.class annotation
    default_backend: BackendRef | None
    rules: tuple[RuleView, ...] = ()
    tls: tuple[TLSView, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    lb_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[*].ip as it is now

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def annotation(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.annotations:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class IngressClassView:
    name: str
    controller: str
    is_default: bool = False


@dataclass(frozen=True)
class ServicePortView:
    name: str
    port: int


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    type: str = "ClusterIP"
    ports: tuple[ServicePortView, ...] = ()


@dataclass(frozen=True)
class SubsetView:
    addresses: tuple[str, ...]  # ready addresses only; notReadyAddresses never get traffic
    ports: tuple[tuple[str, int], ...]  # (name, port)


@dataclass(frozen=True)
class EndpointsView:
    namespace: str
    name: str
    subsets: tuple[SubsetView, ...] = ()


@dataclass(frozen=True)
class SecretView:
    namespace: str
    name: str
    uid: str = ""
    type: str = ""
    cert: bytes = b""  # PEM, decoded from data["tls.crt"]
    key: bytes = b""  # PEM, decoded from data["tls.key"]
    problem: str = ""  # what was wrong with the data, for the Event


# --- transforms ------------------------------------------------------------------------------

def _meta(obj: dict) -> dict:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def view_backend(raw) -> BackendRef | None:
    if not isinstance(raw, dict):
        return None
    resource = raw.get("resource")
    if isinstance(resource, dict):
        return BackendRef(resource=f"{resource.get('kind', '')}/{resource.get('name', '')}")
    service = _dict(raw.get("service"))
    port = _dict(service.get("port"))
    number = port.get("number")
    return BackendRef(service=str(service.get("name") or ""),
                      port_number=number if isinstance(number, int) else 0,
                      port_name=str(port.get("name") or ""))


def view_ingress(obj: dict) -> IngressView:
    meta = _meta(obj)
    spec = _dict(obj.get("spec"))
    annotations = _dict(meta.get("annotations"))
    rules = []
    for rule in _list(spec.get("rules")):
        rule = _dict(rule)
        paths = []
        for p in _list(_dict(rule.get("http")).get("paths")):
            p = _dict(p)
            paths.append(PathView(str(p.get("path") or ""), str(p.get("pathType") or ""),
                                  view_backend(p.get("backend")) or BackendRef()))
        rules.append(RuleView(str(rule.get("host") or "").lower(), tuple(paths)))
    tls = tuple(TLSView(tuple(str(h).lower() for h in _list(_dict(t).get("hosts"))),
                        str(_dict(t).get("secretName") or "")) for t in _list(spec.get("tls")))
    lb = _list(_dict(_dict(obj.get("status")).get("loadBalancer")).get("ingress"))
    return IngressView(
        namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""), created=str(meta.get("creationTimestamp") or ""),
        class_name=spec.get("ingressClassName"),
        class_annotation=annotations.get(LEGACY_CLASS_ANNOTATION),
        default_backend=view_backend(spec.get("defaultBackend")),
        rules=tuple(rules), tls=tls,
        annotations=tuple(sorted((k, str(v)) for k, v in annotations.items()
                                 if k.startswith(ANNOTATION_PREFIXES))),
        lb_ips=tuple(str(_dict(i).get("ip") or _dict(i).get("hostname") or "") for i in lb))


def view_ingress_class(obj: dict) -> IngressClassView:
    meta = _meta(obj)
    default = _dict(meta.get("annotations")).get(DEFAULT_CLASS_ANNOTATION) == "true"
    return IngressClassView(str(meta.get("name") or ""),
                            str(_dict(obj.get("spec")).get("controller") or ""), default)


def view_service(obj: dict) -> ServiceView:
    meta = _meta(obj)
    spec = _dict(obj.get("spec"))
    ports = tuple(ServicePortView(str(_dict(p).get("name") or ""), int(_dict(p).get("port") or 0))
                  for p in _list(spec.get("ports")))
    return ServiceView(str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
                       str(spec.get("type") or "ClusterIP"), ports)


def view_endpoints(obj: dict) -> EndpointsView:
    meta = _meta(obj)
    subsets = []
    for s in _list(obj.get("subsets")):
        s = _dict(s)
        addresses = tuple(str(_dict(a).get("ip") or "") for a in _list(s.get("addresses")))
        ports = tuple((str(_dict(p).get("name") or ""), int(_dict(p).get("port") or 0))
                      for p in _list(s.get("ports")))
        subsets.append(SubsetView(tuple(a for a in addresses if a), ports))
    return EndpointsView(str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
                         tuple(subsets))


def view_secret(obj: dict) -> SecretView:
    """Only kubernetes.io/tls Secrets keep their data; the rest is an empty view, so a Secret
    that is not a certificate costs no memory and its updates never trigger a sync."""
    meta = _meta(obj)
    ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    type_ = str(obj.get("type") or "")
    if type_ != TLS_SECRET_TYPE:
        return SecretView(ns, name, type=type_)
    data = _dict(obj.get("data"))
    decoded = {}
    for field in ("tls.crt", "tls.key"):
        try:
            decoded[field] = base64.b64decode(str(data.get(field) or ""), validate=True)
        except (binascii.Error, ValueError):
            return SecretView(ns, name, str(meta.get("uid") or ""), type_,
                              problem=f"data[{field!r}] is not valid base64")
    return SecretView(ns, name, str(meta.get("uid") or ""), type_, decoded["tls.crt"],
                      decoded["tls.key"])
