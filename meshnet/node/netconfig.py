"""Pure pieces of the pod network: names, resolv.conf text, host-gw routes.

Names are derived from the pod's UID so a pod re-created under the same name never collides
with its predecessor's leftovers, and stay within IFNAMSIZ (15 bytes) for interfaces.
Routes follow flannel's host-gw backend: every other node's podCIDR via that node's
InternalIP, which must be on a directly connected network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "mn-br0"
NETNS_PREFIX = "mnpod-"
VETH_PREFIX = "mnv"
DEFAULT_CLUSTER_DNS = "10.96.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
NETNS_RUN_DIR = Path("/run/netns")  # named network namespaces, as `ip netns` keeps them
ETC_NETNS = Path("/etc/netns")      # per-namespace /etc files (resolv.conf), as `ip netns exec`


def pod_netns_name(uid: str) -> str:
    return NETNS_PREFIX + uid.replace("-", "")[:16]


def host_veth_name(uid: str) -> str:
    return VETH_PREFIX + uid.replace("-", "")[:12]  # 15 bytes: the kernel's IFNAMSIZ - 1


def resolv_conf(namespace: str, nameservers: tuple[str, ...] = (DEFAULT_CLUSTER_DNS,),
                domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """kubelet's ClusterFirst resolv.conf: the namespace's services first, then the cluster."""
    lines = [f"nameserver {ns}" for ns in nameservers]
    lines.append(f"search {namespace}.svc.{domain} svc.{domain} {domain}")
    lines.append("options ndots:5")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, order=True)
class Route:
    dst: str  # a podCIDR
    gateway: str  # the owning node's InternalIP
    node: str = field(default="", compare=False)  # for messages only

    def __repr__(self) -> str:
        return f"<Route {self.dst} via {self.gateway} ({self.node})>"


@dataclass(frozen=True)
class NodeView:
    """The trimmed Node the agent keeps for routing (and, for its own Node, whether the API
    still says Ready)."""
    name: str
    pod_cidr: str
    internal_ip: str
    ready: bool = True


def node_view(obj: dict) -> NodeView:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    internal = next((a.get("address", "") for a in status.get("addresses") or []
                     if a.get("type") == "InternalIP"), "")
    ready = next((c.get("status") == "True" for c in status.get("conditions") or ()
                  if c.get("type") == "Ready"), False)
    return NodeView(obj["metadata"]["name"], spec.get("podCIDR") or "", internal, ready)


def compile_routes(nodes: list[NodeView], self_name: str, own_cidr: str = "") -> frozenset[Route]:
    """One route per other node with both a podCIDR and an InternalIP. A CIDR that is not a
    valid network, or that overlaps our own, is skipped (it would hijack local pods)."""
    own = ipaddress.ip_network(own_cidr, strict=False) if own_cidr else None
    routes = set()
    for node in nodes:
        if node.name == self_name or not node.pod_cidr or not node.internal_ip:
            continue
        try:
            net = ipaddress.ip_network(node.pod_cidr, strict=False)
            ipaddress.ip_address(node.internal_ip)
        except ValueError:
            continue
        if own is not None and net.overlaps(own):
            continue
        routes.add(Route(str(net), node.internal_ip, node.name))
    return frozenset(routes)


def diff_routes(current: frozenset[Route], desired: frozenset[Route]
                ) -> tuple[list[Route], list[Route]]:
    """(to delete, to add); a route whose gateway changed is deleted and added again."""
    return sorted(current - desired), sorted(desired - current)
