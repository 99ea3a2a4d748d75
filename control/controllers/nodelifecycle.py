"""Node lifecycle: a node that stops renewing its Lease goes NotReady, then loses its pods.

Theory of operation
-------------------
The agent on each node renews `Lease kube-node-lease/<node>` every few seconds. A node's last
heartbeat is the newest of the Lease's `renewTime`, its Ready condition's `lastHeartbeatTime`
and (for a node that never reported) its `creationTimestamp`. As kube's controller does with
its probeTimestamp, the grace period runs on this controller's own clock from the moment it saw
the current heartbeat appear, never from the timestamp written in it: after a control-plane
outage, a restore from backup or a leader change, every node gets a full grace period to check
in before anything is marked. `node_health` (pure) decides with the injected clock:

- heartbeat older than `--node-monitor-grace-period` (40 s): the node's conditions become
  Unknown with reason `NodeStatusUnknown` ("Kubelet stopped posting node status."), as kube's
  node lifecycle controller does, and every pod bound to it gets Ready=False — so Endpoints
  stop sending traffic there;
- NotReady/Unknown for longer than `--pod-eviction-timeout` (5 min), counted from the Ready
  condition's lastTransitionTime: its pods are deleted, so their controllers recreate them and
  the scheduler places them on nodes that are alive.

Nothing here marks a node Ready again: that is the agent's word when it comes back. Each
reconcile requeues the node for the moment its next deadline passes; tests move the clock and
enqueue instead of waiting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, Requeue
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.podutil import condition, parse_time, rfc3339, terminating

log = logging.getLogger("meshnet.controllers.nodelifecycle")

NODES = lookup("nodes")
PODS = lookup("pods")
LEASES = lookup("leases")
LEASE_NAMESPACE = "kube-node-lease"
COMPONENT = "node-controller"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
# The conditions kubelet reports; all become Unknown when it goes silent (kube does the same).
NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass(frozen=True)
class NodeHealth:
    heartbeat: float  # epoch seconds of the last sign of life
    expired: bool  # no heartbeat within the grace period
    evict: bool  # not ready for longer than the eviction timeout
    next_check_s: float | None  # when something could change next, from now


def last_heartbeat(node: dict, lease: dict | None) -> float:
    times = [parse_time(node["metadata"].get("creationTimestamp"))]
    if lease is not None:
        times.append(parse_time((lease.get("spec") or {}).get("renewTime")))
    ready = condition(node, "Ready")
    if ready is not None:
        times.append(parse_time(ready.get("lastHeartbeatTime")))
    return max((t for t in times if t is not None), default=0.0)


def node_health(node: dict, lease: dict | None, now: float, grace_s: float,
                eviction_s: float, *, seen_at: float | None = None,
                watched_since: float | None = None) -> NodeHealth:
    """`seen_at`: when this controller saw the current heartbeat appear (kube's
    probeTimestamp); the grace period counts from it rather than from the heartbeat's own
    timestamp, so a controller that has just started (after an outage, a restore, a leader
    change) gives every node a full grace period. `watched_since`: when this controller started
    watching the node; a NotReady condition older than that counts from then."""
    heartbeat = last_heartbeat(node, lease)
    since = heartbeat if seen_at is None else seen_at
    expired = now > since + grace_s
    ready = condition(node, "Ready") or {}
    not_ready_since = None
    if ready.get("status") != "True":
        not_ready_since = parse_time(ready.get("lastTransitionTime"))
        if not_ready_since is None and expired:
            not_ready_since = now  # never reported: marked Unknown now, the clock starts
        elif not_ready_since is not None and watched_since is not None:
            not_ready_since = max(not_ready_since, watched_since)
    elif expired:
        not_ready_since = now  # about to be marked Unknown now
    evict = not_ready_since is not None and now >= not_ready_since + eviction_s
    if not expired:
        next_check = since + grace_s - now
    elif not evict and not_ready_since is not None:
        next_check = not_ready_since + eviction_s - now
    else:
        next_check = None
    return NodeHealth(heartbeat, expired, evict,
                      max(next_check, 0.0) + 0.05 if next_check is not None else None)


def mark_unknown(node: dict, now: float) -> dict | None:
    """node (a copy) with kubelet's conditions Unknown; None when already so."""
    stamp = rfc3339(now)
    conds = list((node.get("status") or {}).get("conditions") or ())
    by_type = {c.get("type"): c for c in conds}
    changed = False
    for type_ in NODE_CONDITIONS:
        old = by_type.get(type_)
        if old is None and type_ != "Ready":
            continue
        if old is not None and old.get("status") == "Unknown":
            continue
        new = dict(old or {"type": type_, "lastHeartbeatTime": stamp})
        new.update(status="Unknown", reason=UNKNOWN_REASON, message=UNKNOWN_MESSAGE,
                   lastTransitionTime=stamp)
        by_type[type_] = new
        changed = True
    if not changed:
        return None
    order = [c.get("type") for c in conds] + [t for t in by_type if t not in
                                              {c.get("type") for c in conds}]
    node.setdefault("status", {})["conditions"] = [by_type[t] for t in order]
    return node


def pod_marked_not_ready(pod: dict, now: float) -> dict | None:
    """pod (a copy) with Ready=False; None when it is not Ready=True now."""
    conds = list((pod.get("status") or {}).get("conditions") or ())
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        return None
    ready.update(status="False", reason="NodeNotReady", lastTransitionTime=rfc3339(now))
    pod["status"]["conditions"] = conds
    return pod


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    workers = 2

    def __init__(self, registry, config, *, clock: Callable[[], float] = time.time):
        super().__init__(registry)
        self.clock = clock
        self.grace_s = float(config.node_monitor_grace_period_s)
        self.eviction_s = float(config.pod_eviction_timeout_s)
        self.nodes = self.informer(NODES)
        self.leases = self.informer(LEASES, LEASE_NAMESPACE)
        self.pods = self.informer(PODS)
        self.nodes.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                on_update=lambda old, new: self.enqueue(new))
        self.leases.add_handlers(on_add=self._lease_changed,
                                 on_update=lambda old, new: self._lease_changed(new))
        # node -> (heartbeat last seen, when it was first seen, when the node was first seen)
        self.probes: dict[str, tuple[float, float, float]] = {}

    def _lease_changed(self, lease: dict) -> None:
        self.queue.add(lease["metadata"]["name"])

    def resync(self) -> None:
        """Queue every node (after moving an injected clock, or periodically)."""
        for node in self.nodes.list():
            self.enqueue(node)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self.probes.pop(key, None)
            return
        now = self.clock()
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{key}")
        heartbeat = last_heartbeat(node, lease)
        probe = self.probes.get(key)
        if probe is None:
            probe = self.probes[key] = (heartbeat, now, now)
        elif probe[0] != heartbeat:
            probe = self.probes[key] = (heartbeat, now, probe[2])
        health = node_health(node, lease, now, self.grace_s, self.eviction_s,
                             seen_at=probe[1], watched_since=probe[2])
        pods = [p for p in self.pods.list()
                if (p.get("spec") or {}).get("nodeName") == key and not terminating(p)]
        if health.expired:
            await self._mark_unknown(node, now)
            for pod in pods:
                await self._pod_not_ready(pod, now)
        if health.evict:
            for pod in pods:
                await self._evict(node, pod)
        if health.next_check_s is not None:
            raise Requeue("next node health deadline", after_s=health.next_check_s)

    async def _mark_unknown(self, node: dict, now: float) -> None:
        uid = node["metadata"]["uid"]

        def mutate(current):
            if current["metadata"].get("uid") != uid:
                return None
            return mark_unknown(current, now)
        try:
            updated = await self.registry.guaranteed_update(NODES, None, node["metadata"]["name"],
                                                            mutate, subresource="status")
        except errors.StatusError as exc:
            if exc.code == 404:
                return
            raise
        if (condition(node, "Ready") or {}).get("status") != "Unknown" and \
                (condition(updated, "Ready") or {}).get("status") == "Unknown":
            log.warning("node %s: no heartbeat for %.0fs; marked NotReady",
                        node["metadata"]["name"], self.grace_s)
            await record_event(self.registry, updated, "Normal", "NodeNotReady",
                               f"Node {node['metadata']['name']} status is now: NodeNotReady",
                               COMPONENT)

    async def _pod_not_ready(self, pod: dict, now: float) -> None:
        uid = pod["metadata"]["uid"]

        def mutate(current):
            if current["metadata"].get("uid") != uid:
                return None
            return pod_marked_not_ready(current, now)
        try:
            await self.registry.guaranteed_update(PODS, pod["metadata"]["namespace"],
                                                  pod["metadata"]["name"], mutate,
                                                  subresource="status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    async def _evict(self, node: dict, pod: dict) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        try:
            await self.registry.delete(PODS, ns, name, precondition_uid=pod["metadata"]["uid"])
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                return
            raise
        log.warning("evicted pod %s/%s from unreachable node %s", ns, name,
                    node["metadata"]["name"])
        await record_event(self.registry, pod, "Normal", "NodeControllerEviction",
                           f"Marking for deletion Pod {name} from Node "
                           f"{node['metadata']['name']}", COMPONENT)
