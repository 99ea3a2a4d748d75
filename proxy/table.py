"""The desired forwarding table, compiled from views. Pure: no I/O, no clock.

Theory of operation
-------------------
`compile_service(service, endpoints, node)` turns one Service and its Endpoints into the
listeners it needs — `ListenerKey(protocol, ip, port)` — each mapped to a `Route`: the
ServicePortName, the ready endpoints that frontend may use (traffic policies applied), the
balancing policy and the affinity timeout. Frontends are the ClusterIPs, externalIPs and
LoadBalancer IPs (on the VIP interface) and the NodePorts on every node address.

`ProxyTable` is the whole table: compiled services by key plus the merged listener map that
connections read. `update_table(table, compiled)` replaces some services' entries and returns
a new table; the old one is never mutated (connections that read it keep it). The maps are
persistent hash array mapped tries (`immutables.Map`, the structure behind contextvars), so a
new table shares all untouched entries with the old one and an update costs O(log n) per
changed entry: the work for a change does not grow with the number of Services. (Copying
plain dicts instead cost 11 ms per change at 10,000 Services.)

Two services can claim the same listener (the same externalIP and port): the service that
held it keeps it, the newcomer gets an error and no listener until the next full resync.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from immutables import Map

from meshnet.proxy.views import EndpointsView, EndpointView, ServiceView

INTERNAL = "internal"  # ClusterIP frontends: internalTrafficPolicy applies
EXTERNAL = "external"  # NodePort, externalIP and LoadBalancer: externalTrafficPolicy applies


class ServicePortName(NamedTuple):
    namespace: str
    name: str
    port: str  # the service port's name ("" when unnamed)
    protocol: str

    def __str__(self) -> str:
        suffix = f":{self.port}" if self.port else ""
        return f"{self.namespace}/{self.name}{suffix}/{self.protocol}"


class ListenerKey(NamedTuple):
    protocol: str
    ip: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Route:
    """Where one listener sends new connections."""
    spn: ServicePortName
    scope: str  # INTERNAL | EXTERNAL
    endpoints: tuple[EndpointView, ...]
    policy: str
    affinity_timeout_s: int

    @functools.cached_property
    def balancer_key(self) -> tuple[ServicePortName, str]:
        return self.spn, self.scope

    @functools.cached_property
    def service(self) -> str:
        """The metrics label, formatted once per route rather than once per connection."""
        return str(self.spn)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    addresses: tuple[str, ...]  # where NodePorts listen


@dataclass(frozen=True)
class CompiledService:
    key: str
    listeners: tuple[tuple[ListenerKey, Route], ...]
    vips: frozenset[str]  # addresses the VIP interface must carry for this service
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyTable:
    """Persistent maps (immutables.Map); plain dicts given to the constructor are converted."""
    services: Mapping[str, CompiledService] = field(default_factory=Map)
    listeners: Mapping[ListenerKey, Route] = field(default_factory=Map)
    owners: Mapping[ListenerKey, str] = field(default_factory=Map)
    errors: Mapping[str, tuple[str, ...]] = field(default_factory=Map)
    addresses: Mapping[str, int] = field(default_factory=Map)  # VIP -> services using it

    def __post_init__(self):
        for name in ("services", "listeners", "owners", "errors", "addresses"):
            value = getattr(self, name)
            if not isinstance(value, Map):
                object.__setattr__(self, name, Map(value))

    def __repr__(self) -> str:
        return f"<ProxyTable services={len(self.services)} listeners={len(self.listeners)}>"


def _local(endpoints: tuple[EndpointView, ...], node: str) -> tuple[EndpointView, ...]:
    return tuple(e for e in endpoints if e.node_name == node)


def compile_service(service: ServiceView | None, endpoints: EndpointsView | None,
                    node: NodeInfo, key: str = "") -> CompiledService:
    """One service's listeners and routes. Absent or not proxied: no listeners."""
    key = service.key if service is not None else key
    if service is None or not service.proxied:
        return CompiledService(key=key, listeners=(), vips=frozenset())
    ready = endpoints.endpoints if endpoints is not None else ()
    listeners: list[tuple[ListenerKey, Route]] = []
    errors = list(service.errors)
    for port in service.ports:
        if port.protocol not in ("TCP", "UDP"):
            errors.append(f"port {port.name or port.port}: protocol {port.protocol} is not "
                          f"supported by meshnet-proxy (TCP and UDP are)")
            continue
        spn = ServicePortName(service.namespace, service.name, port.name, port.protocol)
        mine = tuple(e for e in ready
                     if e.port_name == port.name and e.protocol == port.protocol)
        internal = Route(spn, INTERNAL, _local(mine, node.name) if service.internal_local
                         else mine, service.lb_policy, service.affinity_timeout_s)
        external = Route(spn, EXTERNAL, _local(mine, node.name) if service.external_local
                         else mine, service.lb_policy, service.affinity_timeout_s)
        for ip in service.cluster_ips:
            listeners.append((ListenerKey(port.protocol, ip, port.port), internal))
        for ip in service.external_ips + service.lb_ips:
            listeners.append((ListenerKey(port.protocol, ip, port.port), external))
        if port.node_port and service.type in ("NodePort", "LoadBalancer"):
            for ip in node.addresses:
                listeners.append((ListenerKey(port.protocol, ip, port.node_port), external))
    # Duplicates (an externalIP equal to the ClusterIP): the first frontend wins.
    unique = dict(reversed(listeners))
    ordered = tuple((k, unique[k]) for k in dict.fromkeys(k for k, _ in listeners))
    vips = frozenset(service.cluster_ips + service.external_ips + service.lb_ips)
    return CompiledService(key=key, listeners=ordered, vips=vips, errors=tuple(errors))


def update_table(table: ProxyTable, compiled: Iterable[CompiledService]) -> ProxyTable:
    """A new table with these services' entries replaced (no listeners: removed)."""
    services = table.services.mutate()
    listeners = table.listeners.mutate()
    owners = table.owners.mutate()
    errors = table.errors.mutate()
    addresses = table.addresses.mutate()
    for entry in compiled:
        old = services.pop(entry.key, None)
        if old is not None:
            for ip in old.vips:
                addresses[ip] -= 1
                if not addresses[ip]:
                    del addresses[ip]
            for lk, _ in old.listeners:
                if owners.get(lk) == entry.key:
                    del owners[lk]
                    del listeners[lk]
        problems = list(entry.errors)
        for lk, route in entry.listeners:
            owner = owners.get(lk)
            if owner is not None and owner != entry.key:
                problems.append(f"{lk} is already used by service {owner}; not proxied")
                continue
            owners[lk] = entry.key
            listeners[lk] = route
        if entry.listeners or entry.vips:
            services[entry.key] = entry
            for ip in entry.vips:
                addresses[ip] = addresses.get(ip, 0) + 1
        errors.pop(entry.key, None)
        if problems:
            errors[entry.key] = tuple(problems)
    return ProxyTable(services=services.finish(), listeners=listeners.finish(),
                      owners=owners.finish(), errors=errors.finish(),
                      addresses=addresses.finish())


def compile_table(services: Iterable[ServiceView], endpoints: dict[str, EndpointsView],
                  node: NodeInfo) -> ProxyTable:
    """The whole table from scratch (first sync and periodic full resyncs)."""
    return update_table(ProxyTable(), (compile_service(s, endpoints.get(s.key), node)
                                       for s in sorted(services, key=lambda s: s.key)))
