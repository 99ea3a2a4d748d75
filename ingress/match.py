"""The routing table and the request matcher: `match_route(table, host, path) -> Route | None`.

Theory of operation
-------------------
`compile_routes` (routes.py) builds a `RouteTable` once per sync; every request then does a
handful of dict lookups here, no scanning:

1. the Host header is normalised (lowercase, port and trailing dot stripped);
2. the host's rules are found by exact name, then by a wildcard covering exactly one label
   (`*.foo.com` covers `bar.foo.com`, not `foo.com` nor `baz.bar.foo.com`), then the rules
   without a host (Kubernetes Ingress v1 `IngressRule.host`);
3. within those, an `Exact` path is one dict lookup; `Prefix` is matched element-wise by
   looking up the request path cut back at each `/` (longest first), so `/foo` matches
   `/foo`, `/foo/` and `/foo/bar` and never `/foobar`. A request path's exact match is at
   least as long as any prefix of it, which is why trying Exact first gives the spec's
   "longest wins, Exact beats Prefix on a tie" order;
4. nothing matched: the host's default backend (an Ingress `spec.defaultBackend`), else, for a
   request that matched no host at all, the catch-all (a rule-less Ingress's defaultBackend),
   else the cluster default backend, else None: the caller answers 404.

A `Route` with no endpoints is a Service without ready endpoints: the caller answers 503.
Tables are immutable; publishing a new one is one attribute assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CONNECT_TIMEOUT_S = 5.0  # ingress-nginx proxy-connect-timeout
DEFAULT_READ_TIMEOUT_S = 60.0  # ingress-nginx proxy-read-timeout
DEFAULT_SEND_TIMEOUT_S = 60.0  # ingress-nginx proxy-send-timeout


@dataclass(frozen=True)
class Route:
    """Where one matched request goes, and how."""
    ingress: str  # "ns/name" of the Ingress that defined it; "" for the cluster default
    host: str  # the rule's host ("" none, "*.foo.com" a wildcard), for metrics and logs
    path: str  # the rule's path; "" for a default backend
    path_type: str  # "Exact", "Prefix", "ImplementationSpecific" or "" for a default backend
    service: str  # "ns/name:port" for logs
    endpoints: tuple[tuple[str, int], ...]  # ready (ip, port) pairs; empty -> 503
    ssl_redirect: bool = False
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    max_body_bytes: int = 0  # 0: unlimited

    def __repr__(self) -> str:
        return (f"<Route {self.ingress or '-'} {self.host or '*'}{self.path} "
                f"({self.path_type or 'default'}) -> {self.service} "
                f"endpoints={len(self.endpoints)}>")


@dataclass(frozen=True)
class HostRoutes:
    """The merged path rules of one host (across Ingresses) and its default backend."""
    exact: tuple[tuple[str, Route], ...] = ()
    prefix: tuple[tuple[str, Route], ...] = ()  # keys without a trailing slash; "/" is ""
    default: Route | None = None
    _exact: dict = field(default_factory=dict, compare=False, repr=False)
    _prefix: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._exact.update(self.exact)
        self._prefix.update(self.prefix)


@dataclass(frozen=True)
class RouteTable:
    hosts: tuple[tuple[str, HostRoutes], ...] = ()  # exact host names
    wildcards: tuple[tuple[str, HostRoutes], ...] = ()  # keyed by suffix: "*.foo.com" -> ".foo.com"
    no_host: HostRoutes | None = None
    catch_all: Route | None = None  # defaultBackend of an Ingress without rules
    cluster_default: Route | None = None  # default-http-backend / --default-backend-service
    served: tuple[str, ...] = ()  # "ns/name" of every Ingress of our class
    _hosts: dict = field(default_factory=dict, compare=False, repr=False)
    _wildcards: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._hosts.update(self.hosts)
        self._wildcards.update(self.wildcards)

    def __repr__(self) -> str:
        return (f"<RouteTable hosts={len(self.hosts)} wildcards={len(self.wildcards)} "
                f"served={len(self.served)}>")


def normalize_host(host: str) -> str:
    """A Host header as a rule host: lowercase, without port or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else host
    colon = host.rfind(":")
    if colon >= 0 and host.count(":") == 1:
        host = host[:colon]
    return host.rstrip(".")


def prefix_key(path: str) -> str:
    """A Prefix rule's lookup key: the trailing slash is ignored, so `/` is ""."""
    return path.rstrip("/")


def find_host(table: RouteTable, host: str) -> HostRoutes | None:
    routes = table._hosts.get(host)
    if routes is not None:
        return routes
    dot = host.find(".")
    if dot > 0:
        routes = table._wildcards.get(host[dot:])
        if routes is not None:
            return routes
    return None


def match_path(routes: HostRoutes, path: str) -> Route | None:
    route = routes._exact.get(path)
    if route is not None:
        return route
    prefixes = routes._prefix
    if not prefixes:
        return None
    candidate = path.rstrip("/")
    while True:
        route = prefixes.get(candidate)
        if route is not None:
            return route
        if not candidate:
            return None
        candidate = candidate[:candidate.rfind("/")]


def match_route(table: RouteTable, host: str, path: str) -> Route | None:
    """The route for a request, or None for 404. `host` is the raw Host header; `path` the
    request target without its query string."""
    return match_normalized(table, normalize_host(host), path)


def match_normalized(table: RouteTable, host: str, path: str) -> Route | None:
    """match_route for a host already normalized (the proxy caches normalized hosts)."""
    routes = find_host(table, host) if host else None
    if routes is not None:
        route = match_path(routes, path)
        if route is not None:
            return route
        # A known host whose paths do not match keeps to that host's defaults (as
        # ingress-nginx's per-host server block): the rules without a host are not tried.
        return routes.default or table.cluster_default
    if table.no_host is not None:
        route = match_path(table.no_host, path)
        if route is not None:
            return route
        if table.no_host.default is not None:
            return table.no_host.default
    return table.catch_all or table.cluster_default


def split_target(target: str) -> tuple[str, str]:
    """A request target as (path, query-with-?); an absolute-form target loses its origin."""
    if not target.startswith("/"):
        if "://" in target:
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
        elif target == "*":
            return "*", ""
    q = target.find("?")
    if q < 0:
        return target, ""
    return target[:q], target[q:]
