"""compile_routes: the watched objects -> a RouteTable and the problems found on the way.

Theory of operation
-------------------
Pure: no I/O, no clock. Input is the informers' caches of frozen views and a `RoutingConfig`;
output is `(RouteTable, problems)`. A bad object never raises: it becomes a `Problem` (the
controller records it as an Event on the object) and the rest of the table still builds.

1. Class filtering picks the Ingresses this controller serves (`serves_ingress`).
2. They are walked oldest first (creationTimestamp, then namespace/name), so when two Ingresses
   define the same host, path type and path, the older one wins, deterministically; the newer
   one gets a `Conflict` problem.
3. Each backend is resolved to the Service port (by number or by name), then to the
   Endpoints port of the same name, then to the ready addresses: `(ip, port)` pairs. Proxying
   goes to pod endpoints directly, never through the ClusterIP.
4. Defaults: an Ingress's `spec.defaultBackend` is the default of each host it has rules for;
   a rule-less Ingress's one is the catch-all; then the cluster default backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from meshnet.ingress.match import HostRoutes, Route, RouteTable, prefix_key
from meshnet.ingress.views import BackendRef, EndpointsView, IngressClassView, IngressView, \
    ServiceView
from meshnet.ingress.annotations import RouteOptions, parse_route_options

CONTROLLER_NAME = "meshnet.io/ingress-controller"
DEFAULT_CLASS_NAME = "meshnet"
DEFAULT_BACKEND_SERVICE = "default-http-backend"


@dataclass(frozen=True)
class RoutingConfig:
    controller_namespace: str = "default"
    ingress_class: str = DEFAULT_CLASS_NAME
    class_flag_given: bool = False  # --ingress-class: serve that class only
    watch_without_class: bool = False
    default_backend_service: str = ""  # "ns/name" from --default-backend-service


@dataclass(frozen=True)
class Problem:
    """Something wrong with an object, to be recorded as an Event on it."""
    kind: str  # "Ingress" or "Secret"
    namespace: str
    name: str
    uid: str
    reason: str
    message: str
    type: str = "Warning"

    def involved(self) -> dict:
        """The object as build_event wants it (an involvedObject in the making)."""
        api_version = "networking.k8s.io/v1" if self.kind == "Ingress" else "v1"
        return {"apiVersion": api_version, "kind": self.kind,
                "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}


def served_classes(classes: Iterable[IngressClassView], config: RoutingConfig) -> frozenset[str]:
    names = {c.name for c in classes if c.controller == CONTROLLER_NAME}
    if config.class_flag_given:
        names &= {config.ingress_class}
    return frozenset(names)


def serves_ingress(ing: IngressView, classes: Iterable[IngressClassView],
                   config: RoutingConfig) -> bool:
    """ingressClassName first; else the legacy annotation (compared with our class name, as
    ingress-nginx does); else a default IngressClass of ours; else --watch-ingress-without-class."""
    classes = tuple(classes)
    ours = served_classes(classes, config)
    if ing.class_name:
        return ing.class_name in ours
    if ing.class_annotation is not None:
        return ing.class_annotation == config.ingress_class
    if any(c.is_default and c.name in ours for c in classes):
        return True
    return config.watch_without_class


def _age_key(ing: IngressView) -> tuple:
    return (ing.created, ing.namespace, ing.name)


class _Compiler:
    def __init__(self, services: Mapping[str, ServiceView], endpoints: Mapping[str, EndpointsView]):
        self.services = services
        self.endpoints = endpoints
        self.problems: list[Problem] = []

    def problem(self, ing: IngressView, reason: str, message: str) -> None:
        self.problems.append(Problem("Ingress", ing.namespace, ing.name, ing.uid, reason, message))

    def resolve(self, ns: str, ref: BackendRef) -> tuple[str, tuple[tuple[str, int], ...], str]:
        """(service label, endpoints, problem message or "")."""
        label = f"{ns}/{ref}"
        if ref.resource:
            return label, (), f"backend {ref}: resource backends are not supported by meshnet"
        svc = self.services.get(f"{ns}/{ref.service}")
        if svc is None:
            return label, (), f'service "{ns}/{ref.service}" not found'
        if svc.type == "ExternalName":
            return label, (), f'service "{ns}/{ref.service}" is ExternalName: not supported'
        port = next((p for p in svc.ports if (p.name == ref.port_name if ref.port_name
                                               else p.port == ref.port_number)), None)
        if port is None:
            return label, (), (f'service "{ns}/{ref.service}" has no port '
                               f'{ref.port_name or ref.port_number}')
        eps = self.endpoints.get(f"{ns}/{ref.service}")
        pairs = []
        for subset in (eps.subsets if eps else ()):
            target = next((n for name, n in subset.ports if name == port.name), None)
            if target is None and len(subset.ports) == 1 and len(svc.ports) == 1:
                target = subset.ports[0][1]
            if target:
                pairs.extend((ip, target) for ip in subset.addresses)
        return label, tuple(sorted(set(pairs))), ""

    def route(self, ing: IngressView, ref: BackendRef, host: str, path: str, path_type: str,
              options: RouteOptions, ssl_redirect: bool) -> Route:
        label, eps, message = self.resolve(ing.namespace, ref)
        if message:
            self.problem(ing, "BackendNotFound" if "not found" in message else "InvalidBackend",
                         f"{host or '*'}{path}: {message}; answering 503")
        return Route(ing.key, host, path, path_type, label, eps, ssl_redirect,
                     options.connect_timeout_s, options.read_timeout_s, options.send_timeout_s,
                     options.max_body_bytes)


def _tls_hosts(ing: IngressView) -> frozenset[str]:
    return frozenset(h for t in ing.tls for h in t.hosts)


def compile_routes(ingresses: Iterable[IngressView], classes: Iterable[IngressClassView],
                   services: Mapping[str, ServiceView], endpoints: Mapping[str, EndpointsView],
                   config: RoutingConfig = RoutingConfig()) -> tuple[RouteTable, tuple[Problem, ...]]:
    classes = tuple(classes)
    served = sorted((i for i in ingresses if serves_ingress(i, classes, config)), key=_age_key)
    c = _Compiler(services, endpoints)
    # host -> {"exact": {path: Route}, "prefix": {key: Route}, "default": Route|None}
    merged: dict[str, dict] = {}
    catch_all: Route | None = None
    for ing in served:
        options, messages = parse_route_options(ing)
        for message in messages:
            c.problem(ing, "InvalidAnnotation", message)
        tls_hosts = _tls_hosts(ing)
        hosts_of_ing: list[str] = []
        for rule in ing.rules:
            host = rule.host
            redirect = options.ssl_redirect and host in tls_hosts
            slot = merged.setdefault(host, {"exact": {}, "prefix": {}, "default": None})
            hosts_of_ing.append(host)
            for p in rule.paths:
                if not p.path.startswith("/"):
                    c.problem(ing, "InvalidPath",
                              f"host {host or '*'}: path {p.path!r} must start with '/'; ignored")
                    continue
                if p.path_type == "Exact":
                    table, key = slot["exact"], p.path
                elif p.path_type in ("Prefix", "ImplementationSpecific"):
                    table, key = slot["prefix"], prefix_key(p.path)
                else:
                    c.problem(ing, "InvalidPath", f"host {host or '*'}: path {p.path}: pathType "
                              f"{p.path_type!r} is not Exact, Prefix or ImplementationSpecific")
                    continue
                if key in table:
                    winner = table[key].ingress
                    if winner != ing.key:
                        c.problem(ing, "Conflict", f"host {host or '*'}: {p.path_type} path "
                                  f"{p.path} is already defined by older Ingress {winner}; "
                                  f"ignored here")
                    continue
                table[key] = c.route(ing, p.backend, host, p.path, p.path_type, options,
                                     redirect)
        if ing.default_backend is not None:
            if not ing.rules and catch_all is None:
                catch_all = c.route(ing, ing.default_backend, "", "", "", options, False)
            for host in dict.fromkeys(hosts_of_ing):
                slot = merged[host]
                if slot["default"] is None:
                    slot["default"] = c.route(ing, ing.default_backend, host, "", "", options,
                                              options.ssl_redirect and host in tls_hosts)
    hosts, wildcards, no_host = [], [], None
    for host, slot in sorted(merged.items()):
        routes = HostRoutes(tuple(sorted(slot["exact"].items())),
                            tuple(sorted(slot["prefix"].items())), slot["default"])
        if host == "":
            no_host = routes
        elif host.startswith("*."):
            wildcards.append((host[1:], routes))
        else:
            hosts.append((host, routes))
    table = RouteTable(tuple(hosts), tuple(wildcards), no_host, catch_all,
                       _cluster_default(c, config), tuple(i.key for i in served))
    return table, tuple(dict.fromkeys(c.problems))


def _cluster_default(c: _Compiler, config: RoutingConfig) -> Route | None:
    """--default-backend-service, else `default-http-backend` in the controller's namespace if
    it exists, else None (404). A flag naming a missing Service answers 503: it was asked for."""
    if config.default_backend_service:
        ns, _, name = config.default_backend_service.partition("/")
    else:
        ns, name = config.controller_namespace, DEFAULT_BACKEND_SERVICE
        if f"{ns}/{name}" not in c.services:
            return None
    svc = c.services.get(f"{ns}/{name}")
    if svc is None or not svc.ports:
        return Route("", "", "", "", f"{ns}/{name}", ())
    ref = BackendRef(service=name, port_name=svc.ports[0].name,
                     port_number=svc.ports[0].port)
    label, eps, _ = c.resolve(ns, ref)
    return Route("", "", "", "", label, eps)
