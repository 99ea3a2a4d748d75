"""Trimmed, frozen views of the API objects cluster DNS needs.

The informers apply `view_service`, `view_endpoints` and `view_pod` to every object before
caching it (CoreDNS keeps "a stripped down api.Service" for the same reason): only the fields
that change DNS answers survive, so status churn or label edits never trigger a rebuild, and
views compare with `==`.

A transform never raises: an object with an unusable field (an IP that does not parse, a port
out of range) yields a view without that field, and the problem is logged once here. A bad
object must not stop the zone from building.

Views are slotted, and port lists — the same few in thousands of Endpoints — are shared
(`_shared`): at 100,000 endpoint addresses the views are most of the daemon's memory.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("meshnet.dns.views")

HEADLESS = "None"  # spec.clusterIP of a headless Service
SHARED_MAX = 10000  # distinct port lists shared; past that, new ones are simply not shared

T = TypeVar("T")
_SHARED: dict = {}


def _shared(value: T) -> T:
    """One object for equal immutable values (a port list repeated in every Endpoints)."""
    found = _SHARED.get(value)
    if found is not None:
        return found
    if len(_SHARED) < SHARED_MAX:
        _SHARED[value] = value
    return value


@dataclass(frozen=True, slots=True)
class PortView:
    name: str
    port: int
    protocol: str  # "TCP", "UDP" or "SCTP"


@dataclass(frozen=True, slots=True)
class ServiceView:
    namespace: str
    name: str
    type: str                       # ClusterIP, NodePort, LoadBalancer, ExternalName
    headless: bool
    cluster_ips: tuple[str, ...]    # normalised IPv4/IPv6 text, primary first
    external_name: str              # ExternalName only, without a trailing dot
    ports: tuple[PortView, ...]
    publish_not_ready: bool

    def __repr__(self) -> str:
        what = ("headless" if self.headless else self.external_name
                if self.type == "ExternalName" else ",".join(self.cluster_ips))
        return f"<ServiceView {self.namespace}/{self.name} {what}>"


@dataclass(frozen=True, slots=True)
class AddressView:
    ip: str
    hostname: str   # EndpointAddress.hostname ("" when absent)
    ready: bool


@dataclass(frozen=True, slots=True)
class SubsetView:
    addresses: tuple[AddressView, ...]
    ports: tuple[PortView, ...]


@dataclass(frozen=True, slots=True)
class EndpointsView:
    namespace: str
    name: str
    subsets: tuple[SubsetView, ...]

    def __repr__(self) -> str:
        n = sum(len(s.addresses) for s in self.subsets)
        return f"<EndpointsView {self.namespace}/{self.name} addresses={n}>"


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    ips: tuple[str, ...]

    def __repr__(self) -> str:
        return f"<PodView {self.namespace}/{self.name} {','.join(self.ips) or '-'}>"


def _ip(text, where: str) -> str | None:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        log.warning("%s: ignoring invalid IP address %r", where, text)
        return None


def _ports(items, where: str) -> tuple[PortView, ...]:
    out = []
    for i, p in enumerate(items or ()):
        try:
            number = int(p.get("port"))
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= 65535:
            log.warning("%s.ports[%d]: ignoring invalid port %r", where, i, p.get("port"))
            continue
        out.append(_shared(PortView(str(p.get("name") or ""), number,
                                    str(p.get("protocol") or "TCP"))))
    return _shared(tuple(out))


def _meta(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def view_service(obj: dict) -> ServiceView:
    ns, name = _meta(obj)
    where = f"service {ns}/{name}: spec"
    spec = obj.get("spec") or {}
    kind = str(spec.get("type") or "ClusterIP")
    primary = spec.get("clusterIP") or ""
    headless = primary == HEADLESS and kind != "ExternalName"
    ips: list[str] = []
    if kind != "ExternalName" and not headless:
        for text in spec.get("clusterIPs") or ([primary] if primary else []):
            if text and text != HEADLESS and (ip := _ip(text, where + ".clusterIPs")):
                ips.append(ip)
    external = str(spec.get("externalName") or "").rstrip(".") if kind == "ExternalName" else ""
    return ServiceView(ns, name, kind, headless, tuple(ips), external,
                       _ports(spec.get("ports"), where),
                       bool(spec.get("publishNotReadyAddresses")))


def view_endpoints(obj: dict) -> EndpointsView:
    ns, name = _meta(obj)
    subsets = []
    for i, subset in enumerate(obj.get("subsets") or ()):
        where = f"endpoints {ns}/{name}: subsets[{i}]"
        addresses = []
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(field) or ():
                if ip := _ip(a.get("ip"), f"{where}.{field}"):
                    addresses.append(AddressView(ip, str(a.get("hostname") or ""), ready))
        subsets.append(SubsetView(tuple(addresses), _ports(subset.get("ports"), where)))
    return EndpointsView(ns, name, tuple(subsets))


def view_pod(obj: dict) -> PodView:
    ns, name = _meta(obj)
    status = obj.get("status") or {}
    texts = [p.get("ip") for p in status.get("podIPs") or ()] or (
        [status["podIP"]] if status.get("podIP") else [])
    ips = tuple(ip for t in texts if (ip := _ip(t, f"pod {ns}/{name}: status.podIPs")))
    return PodView(ns, name, ips)
