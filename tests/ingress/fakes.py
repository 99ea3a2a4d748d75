"""Builders for the ingress tests: API objects as dicts (as the wire would carry them) and
their views, so pure tests and end-to-end tests describe objects the same way."""

from __future__ import annotations

from meshnet.ingress.views import view_endpoints, view_ingress, view_ingress_class, \
    view_service


def backend(service: str, port: int | str) -> dict:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(p: str, service: str, port: int | str = 80, path_type: str = "Prefix") -> dict:
    return {"path": p, "pathType": path_type, "backend": backend(service, port)}


def ingress(name: str, rules: dict | None = None, *, ns: str = "default",
            class_name: str | None = "meshnet", default: tuple | None = None,
            tls: list | None = None, annotations: dict | None = None,
            created: str = "2024-01-01T00:00:00Z") -> dict:
    """rules: {host: [path(...), ...]} ("" for a rule without a host)."""
    spec: dict = {}
    if class_name:
        spec["ingressClassName"] = class_name
    if rules:
        spec["rules"] = [({"host": h} if h else {}) | {"http": {"paths": ps}}
                         for h, ps in rules.items()]
    if default:
        spec["defaultBackend"] = backend(*default)
    if tls:
        spec["tls"] = [{"hosts": hosts, "secretName": secret} for hosts, secret in tls]
    meta = {"name": name, "namespace": ns, "uid": f"uid-{name}", "creationTimestamp": created}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": spec}


def service(name: str, ports: dict[str, int] | None = None, *, ns: str = "default") -> dict:
    ports = ports if ports is not None else {"http": 80}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": n, "port": p, "protocol": "TCP"} if n else
                               {"port": p, "protocol": "TCP"} for n, p in ports.items()]}}


def endpoints(name: str, ips: list[str], ports: dict[str, int] | None = None, *,
              ns: str = "default", not_ready: list[str] = ()) -> dict:
    ports = ports if ports is not None else {"http": 8080}
    subset: dict = {"ports": [{"name": n, "port": p, "protocol": "TCP"} if n else
                              {"port": p, "protocol": "TCP"} for n, p in ports.items()]}
    if ips:
        subset["addresses"] = [{"ip": ip} for ip in ips]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
            "subsets": [subset] if ips or not_ready else []}


def ingress_class(name: str, controller: str = "meshnet.io/ingress-controller",
                  default: bool = False) -> dict:
    meta: dict = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def views(ingresses=(), services=(), endpoints_=(), classes=None):
    """(ingress views, class views, services map, endpoints map) for compile_routes."""
    classes = [ingress_class("meshnet")] if classes is None else classes
    svc = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": view_service(s)
           for s in services}
    eps = {f"{e['metadata']['namespace']}/{e['metadata']['name']}": view_endpoints(e)
           for e in endpoints_}
    return ([view_ingress(i) for i in ingresses], [view_ingress_class(c) for c in classes],
            svc, eps)
