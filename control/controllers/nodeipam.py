"""Node IPAM: give every Node a pod CIDR (`spec.podCIDR`/`podCIDRs`) from `--cluster-cidr`.

Theory of operation
-------------------
kube-controller-manager's range allocator, reduced to one address family. The cluster CIDR
(10.244.0.0/16 by default) is cut into node-sized subnets (/24 by default: 254 pod addresses,
the `.0` network and `.1` gateway of the node bridge excluded by the agent, not here).

- `prepare()` rebuilds the allocation map from the Nodes that already carry a podCIDR — the
  store is the record; nothing else is persisted, so a restart never hands a subnet out twice;
- a Node without one gets the lowest free subnet (`next_free_subnet`, pure) in one
  compare-and-swap update that also refuses if someone set it meanwhile;
- a Node that is deleted frees its subnet (this controller's map is keyed by node name);
- a Node with a podCIDR set by hand keeps it; if it collides with another node's, or lies
  outside the cluster CIDR, a Warning Event says so and the map is left alone.

One worker, so two Nodes can never be given the same subnet by a race inside this process.
"""

from __future__ import annotations

import ipaddress
import logging

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller
from meshnet.control.controllers.events import record_event

log = logging.getLogger("meshnet.controllers.nodeipam")

NODES = lookup("nodes")
COMPONENT = "node-ipam-controller"


def next_free_subnet(cluster: ipaddress.IPv4Network | ipaddress.IPv6Network, prefix: int,
                     used: set) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The lowest /prefix subnet of cluster that is not in used; None when all are taken."""
    size = 1 << (cluster.max_prefixlen - prefix)
    count = 1 << (prefix - cluster.prefixlen)
    base = int(cluster.network_address)
    for i in range(count):
        subnet = ipaddress.ip_network((base + i * size, prefix))
        if subnet not in used:
            return subnet
    return None


def node_cidr(node: dict):
    """The node's pod CIDR as a network, or None (absent or malformed)."""
    spec = node.get("spec") or {}
    text = spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or ()), None)
    if not text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


class NodeIpamController(Controller):
    name = "nodeipam"
    workers = 1

    def __init__(self, registry, config):
        super().__init__(registry)
        self.cluster = config.cluster_network
        self.prefix = int(config.node_cidr_mask_size)
        self.nodes = self.informer(NODES)
        self.allocated: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
        self.nodes.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                on_update=lambda old, new: self.enqueue(new))

    def __repr__(self) -> str:
        return f"<NodeIpamController {self.cluster}/{self.prefix} allocated={len(self.allocated)}>"

    async def prepare(self) -> None:
        for node in sorted(self.nodes.list(), key=lambda n: n["metadata"]["name"]):
            self._record(node)

    def _record(self, node: dict) -> str | None:
        """Mark node's own CIDR as used; the problem, if any, in words."""
        name = node["metadata"]["name"]
        cidr = node_cidr(node)
        if cidr is None:
            return None
        if cidr.version != self.cluster.version or not cidr.subnet_of(self.cluster):
            return f"podCIDR {cidr} is outside the cluster CIDR {self.cluster}"
        holder = next((n for n, c in self.allocated.items() if c == cidr and n != name), None)
        if holder is not None:
            return f"podCIDR {cidr} is already assigned to node {holder}"
        self.allocated[name] = cidr
        return None

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            freed = self.allocated.pop(key, None)
            if freed is not None:
                log.info("node %s gone: released %s", key, freed)
            return
        if node_cidr(node) is not None:
            problem = self._record(node)
            if problem:
                await record_event(self.registry, node, "Warning", "CIDRNotAvailable",
                                   f"{problem}; pods on this node may clash with others. Remove "
                                   f"spec.podCIDR to have one assigned.", COMPONENT)
            return
        subnet = self.allocated.get(key) or next_free_subnet(self.cluster, self.prefix,
                                                             set(self.allocated.values()))
        if subnet is None:
            await record_event(self.registry, node, "Warning", "CIDRNotAvailable",
                               f"no /{self.prefix} left in the cluster CIDR {self.cluster} for "
                               f"node {key}: enlarge --cluster-cidr or delete unused nodes",
                               COMPONENT)
            return
        self.allocated[key] = subnet
        uid = node["metadata"]["uid"]

        def assign(current):
            if current["metadata"].get("uid") != uid or node_cidr(current) is not None:
                return None
            spec = current.setdefault("spec", {})
            spec["podCIDR"] = str(subnet)
            spec["podCIDRs"] = [str(subnet)]
            return current
        try:
            updated = await self.registry.guaranteed_update(NODES, None, key, assign)
        except errors.StatusError as exc:
            if exc.code == 404:
                self.allocated.pop(key, None)
                return
            raise
        if node_cidr(updated) != subnet:
            self.allocated.pop(key, None)
            self._record(updated)  # someone else set one meanwhile; theirs stands
            return
        log.info("node %s: podCIDR %s", key, subnet)
        await record_event(self.registry, updated, "Normal", "CIDRAssignmentSucceeded",
                           f"Assigned podCIDR {subnet} to node {key}", COMPONENT)
