"""LoadBalancer announcement: which one node answers ARP for each LoadBalancer IP. Pure.

Theory of operation
-------------------
Every proxy puts every LoadBalancer IP on its VIP interface, where `arp_ignore=1` keeps it off
the wire: that gives local delivery to the listener and nothing else. Exactly one node, the
*owner*, also puts the IP on its uplink interface, so its kernel answers ARP for it there, and
sends a gratuitous ARP when it takes the address over (MetalLB's layer-2 mode).

The owner needs no coordination: each proxy computes `owner(ip, candidates)` from the same
inputs with rendezvous (highest random weight) hashing, so all proxies agree as soon as their
caches agree, IPs spread evenly over the nodes, and when a node leaves only its own IPs move.

Candidates are nodes that
- have a Node whose `Ready` condition is `True` (False, Unknown or missing: not a candidate),
- are not labelled `node.kubernetes.io/exclude-from-external-load-balancers` (kube's label for
  nodes that must not carry load-balancer traffic), and
- run a live proxy: its Lease `kube-node-lease/meshnet-proxy-<node>` was renewed within the
  lease duration. A Ready node whose proxy is stopped or hung must not be chosen, because
  nobody would answer there; a proxy deletes its lease when it stops, so a planned stop moves
  the IPs at once, a crash after one lease duration.

Freshness is judged by when *this* proxy saw the renewal (`Observed.seen_at`, on its own
monotonic clock), not by the renewTime stamp, as client-go's leader election does with its
observedTime: node clocks need not agree. A proxy that cannot renew its own lease (API server
unreachable) withdraws its announcements once its lease would have expired, because by then
the others have taken over; that bounds the time two nodes answer ARP for one IP.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

LEASE_NAMESPACE = "kube-node-lease"
LEASE_PREFIX = "meshnet-proxy-"
LEASE_LABEL = ("meshnet.io/component", "meshnet-proxy")
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# Renew every second, expire after four: a crashed announcer is replaced within ~5 s
# ("within a few seconds"), while two missed renewals in a row are still tolerated.
LEASE_DURATION_S = 4
RENEW_INTERVAL_S = 1.0


@dataclass(frozen=True)
class NodeView:
    name: str
    ready: bool
    excluded: bool = False


def node_view(obj: dict) -> NodeView:
    meta = obj.get("metadata") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (obj.get("status") or {}).get("conditions") or ()
                if isinstance(c, dict))
    return NodeView(name=meta.get("name") or "", ready=ready,
                    excluded=EXCLUDE_LABEL in (meta.get("labels") or {}))


@dataclass(frozen=True)
class LeaseView:
    node: str  # spec.holderIdentity
    renew_time: str
    duration_s: float


def lease_name(node: str) -> str:
    return f"{LEASE_PREFIX}{node}"


def lease_view(obj: dict) -> LeaseView:
    spec = obj.get("spec") or {}
    name = (obj.get("metadata") or {}).get("name") or ""
    duration = spec.get("leaseDurationSeconds")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0:
        duration = 0  # an unusable lease is never fresh
    return LeaseView(node=spec.get("holderIdentity") or name.removeprefix(LEASE_PREFIX),
                     renew_time=str(spec.get("renewTime") or ""), duration_s=float(duration))


def lease_body(node: str, renew_time: str, duration_s: int = LEASE_DURATION_S) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(node), "namespace": LEASE_NAMESPACE,
                         "labels": dict([LEASE_LABEL])},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_s,
                     "renewTime": renew_time}}


@dataclass(frozen=True)
class Observed:
    renew_time: str
    seen_at: float  # this proxy's monotonic clock when the renewal was first seen
    duration_s: float

    @property
    def expires(self) -> float:
        return self.seen_at + self.duration_s


def observe(prev: Observed | None, lease: LeaseView, now: float) -> Observed:
    """Record a lease as seen at `now`, unless it is the same renewal seen again (a relist)."""
    if prev is not None and prev.renew_time == lease.renew_time \
            and prev.duration_s == lease.duration_s:
        return prev
    return Observed(lease.renew_time, now, lease.duration_s)


def live_nodes(observed: Mapping[str, Observed], now: float) -> frozenset[str]:
    return frozenset(n for n, o in observed.items() if o.expires > now)


def next_expiry(observed: Mapping[str, Observed], now: float) -> float | None:
    """When the next live lease expires (the announcer must look again then)."""
    times = [o.expires for o in observed.values() if o.expires > now]
    return min(times) if times else None


def candidates(nodes: Iterable[NodeView], live: frozenset[str]) -> frozenset[str]:
    return frozenset(n.name for n in nodes if n.ready and not n.excluded and n.name in live)


def _weight(ip: str, node: str) -> int:
    digest = hashlib.blake2b(f"{ip}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(ip: str, nodes: Iterable[str]) -> str | None:
    """The node that announces `ip`: highest rendezvous weight, ties by name. None: nobody."""
    best = None
    for node in nodes:
        score = (_weight(ip, node), node)
        if best is None or score > best:
            best = score
    return best[1] if best is not None else None


def announced(lb_ips: Iterable[str], nodes: frozenset[str], me: str) -> frozenset[str]:
    """The LoadBalancer IPs this node must announce."""
    if me not in nodes:
        return frozenset()
    return frozenset(ip for ip in lb_ips if owner(ip, nodes) == me)


def pick_interface(ip: str, connected: Iterable[tuple[str, str]], default: str) -> str:
    """Where to announce `ip`: the interface of the most specific connected (on-link) route
    that contains it, else the default route's interface ("" when there is none).
    `connected` holds (network CIDR, interface name) pairs."""
    addr = ipaddress.ip_address(ip)
    best: tuple[int, str] | None = None
    for cidr, ifname in connected:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == addr.version and addr in net and net.prefixlen < net.max_prefixlen:
            if best is None or net.prefixlen > best[0]:
                best = (net.prefixlen, ifname)
    return best[1] if best is not None else default


def garp_frames(mac: bytes, ip: str) -> tuple[bytes, bytes]:
    """Gratuitous ARP for `ip` from `mac`: a request and a reply, both broadcast, sender and
    target IP equal (RFC 5227 §3 "ARP Announcement"; some hosts only update on replies, so
    MetalLB sends both)."""
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
    packed = ipaddress.IPv4Address(ip).packed
    broadcast = b"\xff" * 6
    eth = broadcast + mac + b"\x08\x06"
    header = b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, hlen 6, plen 4
    request = eth + header + b"\x00\x01" + mac + packed + b"\x00" * 6 + packed
    reply = eth + header + b"\x00\x02" + mac + packed + broadcast + packed
    return request, reply
