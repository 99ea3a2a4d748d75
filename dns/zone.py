"""The cluster zone as one immutable table, compiled from the informers' views.

Theory of operation
-------------------
`compile_zone(services, endpoints, pods, config, serial)` is pure: it turns the cached views
into a `ZoneTable` — every owner name (lowercase, absolute, with the trailing dot) mapped to its
records by type — following the Kubernetes DNS-Based Service Discovery specification 1.1.0
(kubernetes/dns docs/specification.md) and, where the spec is silent, CoreDNS's `kubernetes`
plugin:

- ClusterIP services: A/AAAA at `<svc>.<ns>.svc.<zone>`, SRV at `_<port>._<proto>.<svc>...`
  for each named port and (CoreDNS) at the service name for every port, PTR for each ClusterIP.
- Headless services: A/AAAA per ready endpoint (plus not-ready ones with
  publishNotReadyAddresses), `<hostname>.<svc>...` per endpoint (the Endpoints hostname, else
  the dashed IP), SRV per endpoint and port pointing at those names, PTR per endpoint.
  With no endpoint to publish the service name does not exist (NXDOMAIN, spec 2.4.1).
- ExternalName: a CNAME to the external name.
- Pods (verified mode): `<a-b-c-d>.<ns>.pod.<zone>` for each IP of each existing pod.
- `dns-version.<zone>` TXT "1.1.0"; SOA and NS at the apex (NS `ns.dns.<zone>`, whose A/AAAA
  are the ClusterIPs of the DNS service itself, kube-system/kube-dns by default).

Every ancestor of an owner name, up to its zone apex, exists (an empty non-terminal, RFC 8020):
a query for it is NOERROR with no data, never NXDOMAIN. Names are the table keys; answers echo
the query's case, so the table never stores presentation case.

Records are sorted so that two compilations of the same views compare equal (`==`), which is
how tests assert on them.

Memory: the table holds no dnslib objects, only compact record data (`RDATA` below): strings
and small tuples, and the same string objects wherever a name recurs — the owner name of an
endpoint is also its PTR target and its SRV target, an address is the view's own string — so
10,000 Services with 100,000 endpoints fit in tens of MiB. `answer.py` turns the few records
an answer needs into dnslib records; answers are memoised per table by the server.

Incremental compile: each source (a Service with its Endpoints, a Pod, the static apex
records) compiles to a `Fragment` (name -> records) on its own; `ZoneIndex` keeps the fragments
and merges them by name, so a changed Service costs its own names, not the zone's (10,000
Services with 100,000 endpoints take seconds to compile in full). `compile_zone` is an index
built from scratch, so the full and incremental paths cannot disagree; tests check that any
sequence of changes gives the table a fresh compile gives.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from dnslib import QTYPE

from meshnet.dns.views import EndpointsView, PodView, ServiceView

SPEC_VERSION = "1.1.0"  # kubernetes/dns docs/specification.md schema version
# SOA timers as CoreDNS's kubernetes plugin sets them (refresh, retry, expire); minimum = TTL.
SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S = 7200, 1800, 86400
DEFAULT_TTL_S = 5
PODS_MODES = ("verified", "insecure", "disabled")

# Record data by type, compact:
#   A, AAAA             the address text ("10.96.0.5", "fd00::5")
#   PTR, CNAME, NS      the target name, absolute ("web.default.svc.cluster.local.")
#   SRV                 (priority, weight, port, target)
#   TXT                 the text
#   SOA                 (mname, rname, (serial, refresh, retry, expire, minimum))
RDATA_TYPES = (QTYPE.A, QTYPE.AAAA, QTYPE.PTR, QTYPE.CNAME, QTYPE.NS, QTYPE.SRV, QTYPE.TXT,
               QTYPE.SOA)
Node = Mapping[int, tuple]      # qtype -> record data
Fragment = dict[str, Node]      # owner name -> node: what one source contributes
EMPTY_NODE: Node = MappingProxyType({})  # every empty non-terminal shares it


@dataclass(frozen=True)
class ZoneConfig:
    origin: str = "cluster.local."          # absolute, lowercase
    ttl: int = DEFAULT_TTL_S
    reverse_cidrs: tuple[str, ...] = ("10.96.0.0/12", "10.244.0.0/16")
    pods: str = "verified"
    dns_service: str = "kube-system/kube-dns"

    @classmethod
    def make(cls, domain: str = "cluster.local", **kwargs) -> "ZoneConfig":
        return cls(origin=domain.strip(".").lower() + ".", **kwargs)


@dataclass(frozen=True)
class ZoneTable:
    origin: str
    ttl: int
    synced: bool
    reverse_zones: frozenset[str]
    pods: str
    records: Mapping[str, Node] = field(default_factory=dict)

    def __repr__(self) -> str:
        state = "synced" if self.synced else "unsynced"
        return f"<ZoneTable {self.origin} {state} names={len(self.records)}>"

    @classmethod
    def unsynced(cls, config: ZoneConfig) -> "ZoneTable":
        """What is published before the first full list: every zone name gets SERVFAIL."""
        return cls(config.origin, config.ttl, False, reverse_zones(config.reverse_cidrs),
                   config.pods)

    def apex_of(self, name: str) -> str | None:
        """The zone this table is authoritative for that contains `name`, if any."""
        return apex_of(name, self.origin, self.reverse_zones)

    def soa(self, apex: str) -> tuple:
        """The SOA record data at `apex` (mname, rname, timers)."""
        node = self.records.get(apex)
        if node and QTYPE.SOA in node:
            return node[QTYPE.SOA][0]
        return soa_data(self.origin, 0, self.ttl)


def apex_of(name: str, origin: str, zones: frozenset[str]) -> str | None:
    if name == origin or name.endswith("." + origin):
        return origin
    if name.endswith(".arpa.") and zones:
        rest = name
        while rest:
            if rest in zones:
                return rest
            _, _, rest = rest.partition(".")
    return None


def dashed(ip: str) -> str:
    """10.0.0.1 -> 10-0-0-1; fd00::1 -> fd00--1 (CoreDNS's endpoint and pod names)."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """The canonical IP a dashed label names, or None (accepts any IPv6 spelling)."""
    text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label \
        else label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def reverse_zones(cidrs: Iterable[str]) -> frozenset[str]:
    """The octet (IPv4) or nibble (IPv6) aligned reverse zones exactly covering each CIDR.

    A /12 is not octet aligned, so it becomes the sixteen /16 zones it spans, as CoreDNS does;
    claiming 10.in-addr.arpa would answer NXDOMAIN for addresses outside the service range.
    """
    zones = set()
    for text in cidrs:
        net = ipaddress.ip_network(text, strict=False)
        step = 8 if net.version == 4 else 4
        prefix = -(-net.prefixlen // step) * step
        for sub in net.subnets(new_prefix=prefix):
            if net.version == 4:
                parts = str(sub.network_address).split(".")[: prefix // 8]
                zones.add(".".join(reversed(parts)) + (".in-addr.arpa." if parts else
                                                       "in-addr.arpa."))
            else:
                nibbles = sub.network_address.exploded.replace(":", "")[: prefix // 4]
                zones.add(".".join(reversed(nibbles)) + (".ip6.arpa." if nibbles else
                                                         "ip6.arpa."))
    return frozenset(zones)


def soa_data(origin: str, serial: int, ttl: int) -> tuple:
    return (f"ns.dns.{origin}", f"hostmaster.{origin}",
            (serial, SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S, ttl))


def _order(value) -> str:
    """Records of one type are sorted by their text (dnslib's presentation form)."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else value


def _sorted(values: Iterable) -> tuple:
    return tuple(sorted(values, key=_order))


class _Builder:
    """Collects records by name and type; `freeze()` sorts them."""

    def __init__(self):
        self.rrs: dict[str, dict[int, dict]] = defaultdict(lambda: defaultdict(dict))
        self.srv: dict[str, dict[tuple[int, str], None]] = defaultdict(dict)

    def add(self, name: str, qtype: int, value) -> None:
        self.rrs[name][qtype][value] = None  # an ordered set: duplicates collapse

    def add_address(self, name: str, ip: str) -> None:
        self.add(name, QTYPE.A if ":" not in ip else QTYPE.AAAA, ip)

    def add_srv(self, name: str, port: int, target: str) -> None:
        self.srv[name].setdefault((port, target), None)

    def freeze(self) -> dict[str, dict[int, tuple]]:
        for name, entries in self.srv.items():
            # CoreDNS spreads weight evenly over the records at one name (priority 0 for all).
            weight = max(1, 100 // len(entries))
            for port, target in entries:
                self.add(name, QTYPE.SRV, (0, weight, port, target))
        return {name: {qtype: _sorted(values) for qtype, values in types.items()}
                for name, types in self.rrs.items()}


def _port_name(port) -> str:
    return f"_{port.name.lower()}._{port.protocol.lower()}."


def service_fragment(svc: ServiceView, eps: EndpointsView | None,
                     config: ZoneConfig) -> Fragment:
    """Every record one Service (with its Endpoints) contributes to the zone."""
    b = _Builder()
    origin = config.origin
    fqdn = f"{svc.name}.{svc.namespace}.svc.{origin}"
    if f"{svc.namespace}/{svc.name}" == config.dns_service:
        for ip in svc.cluster_ips:
            b.add_address(f"ns.dns.{origin}", ip)
    if svc.type == "ExternalName":
        if svc.external_name:
            b.add(fqdn, QTYPE.CNAME, svc.external_name + ".")
        return b.freeze()
    if not svc.headless:
        for ip in svc.cluster_ips:
            b.add_address(fqdn, ip)
            b.add(reverse_name(ip), QTYPE.PTR, fqdn)
        if svc.cluster_ips:
            for port in svc.ports:
                if port.name:
                    b.add_srv(_port_name(port) + fqdn, port.port, fqdn)
                b.add_srv(fqdn, port.port, fqdn)
        return b.freeze()
    for subset in eps.subsets if eps else ():
        for addr in subset.addresses:
            if not (addr.ready or svc.publish_not_ready):
                continue
            host = f"{(addr.hostname or dashed(addr.ip)).lower()}.{fqdn}"
            b.add_address(fqdn, addr.ip)
            b.add_address(host, addr.ip)
            b.add(reverse_name(addr.ip), QTYPE.PTR, host)
            for port in subset.ports:
                if port.name:
                    b.add_srv(_port_name(port) + fqdn, port.port, host)
                b.add_srv(fqdn, port.port, host)
    return b.freeze()


def pod_fragment(pod: PodView, config: ZoneConfig) -> Fragment:
    b = _Builder()
    for ip in pod.ips:
        b.add_address(f"{dashed(ip)}.{pod.namespace}.pod.{config.origin}", ip)
    return b.freeze()


def static_fragment(config: ZoneConfig, serial: int) -> Fragment:
    """The records that do not come from any object: SOA and NS at every apex, the NS name
    (which exists even before the DNS service has an address), dns-version."""
    origin = config.origin
    b = _Builder()
    soa = soa_data(origin, serial, config.ttl)
    for apex in (origin, *reverse_zones(config.reverse_cidrs)):
        b.add(apex, QTYPE.SOA, soa)
        b.add(apex, QTYPE.NS, soa[0])
    b.rrs[soa[0]]
    b.add(f"dns-version.{origin}", QTYPE.TXT, SPEC_VERSION)
    return b.freeze()


STATIC = ("static",)


def service_source(namespace: str, name: str) -> tuple:
    return ("service", namespace, name)


def pod_source(namespace: str, name: str) -> tuple:
    return ("pod", namespace, name)


def _merge(nodes: Iterable[Node]) -> dict[int, tuple]:
    """Records two sources give one name (a PTR for an IP two headless services share):
    deduplicated and sorted as `_Builder.freeze` does, so the result does not depend on order."""
    out: dict[int, dict] = {}
    for node in nodes:
        for qtype, values in node.items():
            out.setdefault(qtype, {}).update(dict.fromkeys(values))
    return {qtype: _sorted(values) for qtype, values in out.items()}


class ZoneIndex:
    """The zone kept up to date per source (a Service, a Pod, the static apex records).

    `set(source, fragment)` replaces what one source contributes and re-merges only the names
    it touches (plus ancestors whose empty-non-terminal status flips), so the work for one
    changed Service does not depend on how many others there are; `merged` counts the names
    re-merged, which tests assert on. `table()` publishes an immutable `ZoneTable` (a shallow
    copy of the name map: C speed, about a millisecond per 100,000 names).

    Invariants: `records[name]` exists iff some source owns `name` or some owned name lies
    below it within the same zone (`below[name] > 0`, an empty non-terminal, RFC 8020); an
    owned name's node is its owners' records merged (the owner's own node, shared, when there
    is one owner, as for nearly every name). `owners[name]` is that one source, or a list of
    them when several sources give the same name: no per-name map for the common case.
    `compile_zone` is this, from scratch.
    """

    def __init__(self, config: ZoneConfig):
        self.config = config
        self.zones = reverse_zones(config.reverse_cidrs)
        self.fragments: dict[tuple, Fragment] = {}
        self.owners: dict[str, tuple | list[tuple]] = {}
        self.below: dict[str, int] = {}
        self.records: dict[str, Node] = {}
        self.merged = 0

    def __repr__(self) -> str:
        return f"<ZoneIndex {self.config.origin} sources={len(self.fragments)} " \
               f"names={len(self.records)}>"

    def set(self, source: tuple, fragment: Fragment | None) -> bool:
        """Replace `source`'s records (None or empty: remove them); True if anything changed."""
        old = self.fragments.pop(source, None) or {}
        if fragment:
            self.fragments[source] = fragment
        else:
            fragment = {}
        if old == fragment:
            return False
        owners = self.owners
        for name in old:
            if name not in fragment:
                owned = owners[name]
                if isinstance(owned, list):
                    owned.remove(source)
                    if len(owned) == 1:
                        owners[name] = owned[0]
                else:
                    del owners[name]
                    self._ancestors(name, -1)
                self._refresh(name)
        for name, node in fragment.items():
            if name in old and old[name] == node:
                continue
            owned = owners.get(name)
            if owned is None:
                owners[name] = source
                self._ancestors(name, +1)
            elif isinstance(owned, list):
                if source not in owned:
                    owned.append(source)
            elif owned != source:
                owners[name] = [owned, source]
            self._refresh(name)
        return True

    def table(self) -> ZoneTable:
        c = self.config
        return ZoneTable(c.origin, c.ttl, True, self.zones, c.pods, dict(self.records))

    def _refresh(self, name: str) -> None:
        self.merged += 1
        owned = self.owners.get(name)
        if owned is None:
            if self.below.get(name):
                self.records[name] = EMPTY_NODE
            else:
                self.records.pop(name, None)
        elif isinstance(owned, list):
            self.records[name] = _merge(self.fragments[s][name] for s in owned)
        else:
            self.records[name] = self.fragments[owned][name]

    def _ancestors(self, name: str, delta: int) -> None:
        apex = apex_of(name, self.config.origin, self.zones)
        if apex is None:
            return  # a PTR outside the configured reverse zones: no parents to invent
        rest = name
        while rest != apex:
            _, _, rest = rest.partition(".")
            count = self.below.get(rest, 0) + delta
            if count:
                self.below[rest] = count
            else:
                del self.below[rest]
            if count == 0 or count == delta:  # became or stopped being a parent
                self._refresh(rest)


def compile_zone(services: Iterable[ServiceView],
                 endpoints: Mapping[tuple[str, str], EndpointsView],
                 pods: Iterable[PodView], config: ZoneConfig, serial: int = 1) -> ZoneTable:
    """The whole zone from the views (pure): what `ZoneIndex` holds after adding them all."""
    index = ZoneIndex(config)
    index.set(STATIC, static_fragment(config, serial))
    for svc in services:
        index.set(service_source(svc.namespace, svc.name),
                  service_fragment(svc, endpoints.get((svc.namespace, svc.name)), config))
    if config.pods == "verified":
        for pod in pods:
            index.set(pod_source(pod.namespace, pod.name), pod_fragment(pod, config))
    return index.table()
