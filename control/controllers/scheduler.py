"""The scheduler: bind each unscheduled pod to the least busy node it fits on.

Theory of operation
-------------------
A pod is ours when it has no `spec.nodeName`, its `schedulerName` is `default-scheduler` and it
is not being deleted. Scheduling one pod (kube-scheduler's cycle, reduced):

- filter (`node_fit`): the node must be Ready, not `spec.unschedulable`, carry no
  NoSchedule/NoExecute taint the pod does not tolerate, match the pod's `nodeSelector`, and have
  room for the pod's requests (CPU, memory, pod count) next to the requests of the pods already
  bound to it (`status.allocatable`, falling back to `capacity`);
- score (`score_node`): kube's LeastAllocated — the mean over CPU and memory of the free
  fraction after placing the pod; highest wins, ties go to the node name. As in kube, the
  score counts a container that requests no CPU or no memory as 100m / 200 MiB (the filter
  uses the real requests), so pods without requests spread over the nodes instead of piling
  onto the first;
- bind: one update setting `spec.nodeName` (validation allows setting it once), the
  PodScheduled condition True, and a `Scheduled` Event;
- no node fits: the pod stays Pending with PodScheduled=False/Unschedulable and a Warning
  `FailedScheduling` Event in kube's words (`0/2 nodes are available: 1 Insufficient cpu,
  1 node(s) were not ready.`). It is tried again when a node changes or a bound pod goes.

One worker: pods are placed one at a time, and after each bind the worker waits until its pod
cache holds the binding, so the next pod's arithmetic counts it (kube's "assumed pods").
Requests are summed the way kube does (containers summed, each init container alone, the max).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, split_key
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.podutil import (
    condition, pod_active, rfc3339, terminating, wait_seen,
)

log = logging.getLogger("meshnet.controllers.scheduler")

PODS = lookup("pods")
NODES = lookup("nodes")
SCHEDULER_NAME = "default-scheduler"
COMPONENT = "default-scheduler"
# kubelet's default --max-pods, used when a node reports no pod capacity.
DEFAULT_MAX_PODS = 110
# kube-scheduler's scoring defaults for a container without a request (pkg/scheduler/util:
# DefaultMilliCPURequest, DefaultMemoryRequest).
NONZERO_CPU_M = 100
NONZERO_MEMORY_BYTES = 200 * 2 ** 20
# kube-scheduler's reason strings (FitError histogram entries).
NOT_READY = "node(s) were not ready"
UNSCHEDULABLE = "node(s) were unschedulable"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"

_SUFFIXES = {
    "": 1, "m": Decimal("0.001"), "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
    "P": 10 ** 15, "E": 10 ** 18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40,
    "Pi": 2 ** 50, "Ei": 2 ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


# -- the pure part ------------------------------------------------------------------------------


def parse_quantity(value) -> Decimal:
    """A resource.Quantity (`500m`, `1.5`, `128Mi`, `1G`, `2e3`) as a Decimal; ValueError if
    malformed."""
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"quantity {value!r}: expected a number with an optional suffix "
                         f"(m, k, M, G, Ki, Mi, Gi, ...)")
    try:
        return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2) or ""])
    except InvalidOperation:
        raise ValueError(f"quantity {value!r}: not a number") from None


def _requests(container: dict, nonzero: bool) -> tuple[int, int]:
    req = ((container.get("resources") or {}).get("requests")) or {}
    cpu, mem = (NONZERO_CPU_M, NONZERO_MEMORY_BYTES) if nonzero else (0, 0)
    try:
        if "cpu" in req:
            cpu = int(parse_quantity(req["cpu"]) * 1000)
        if "memory" in req:
            mem = int(parse_quantity(req["memory"]))
    except ValueError:
        pass  # validation's business; an unparsable request counts as none here
    return cpu, mem


def pod_requests(pod: dict, *, nonzero: bool = False) -> tuple[int, int]:
    """(milli-CPU, memory bytes) the pod asks for: containers summed, each init container on
    its own, the larger of the two (kube's resource.PodRequests). With `nonzero`, a container
    without a CPU or memory request counts the scoring defaults instead of nothing."""
    spec = pod.get("spec") or {}
    cpu = mem = 0
    for c in spec.get("containers") or ():
        c_cpu, c_mem = _requests(c, nonzero)
        cpu, mem = cpu + c_cpu, mem + c_mem
    for c in spec.get("initContainers") or ():
        c_cpu, c_mem = _requests(c, nonzero)
        cpu, mem = max(cpu, c_cpu), max(mem, c_mem)
    return cpu, mem


class NodeUsage(NamedTuple):
    """What the active pods bound to a node request: the real sums (the filter's) and the sums
    with the scoring defaults (the score's)."""
    cpu: int = 0
    memory: int = 0
    pods: int = 0
    score_cpu: int = 0
    score_memory: int = 0


def node_allocatable(node: dict) -> tuple[int | None, int | None, int]:
    """(milli-CPU, memory bytes, pods) the node offers; None where it reports nothing (then
    that resource is not limited)."""
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    cpu = mem = None
    pods = DEFAULT_MAX_PODS
    try:
        if "cpu" in alloc:
            cpu = int(parse_quantity(alloc["cpu"]) * 1000)
        if "memory" in alloc:
            mem = int(parse_quantity(alloc["memory"]))
        if "pods" in alloc:
            pods = int(parse_quantity(alloc["pods"]))
    except ValueError:
        pass
    return cpu, mem, pods


def node_ready(node: dict) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for tol in tolerations or ():
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if not tol.get("key"):
            if tol.get("operator") == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_fit(pod: dict, node: dict, used: tuple[int, int, int]) -> list[str]:
    """Why pod cannot go on node ([] when it can). used = (milli-CPU, memory, pods) already
    requested on the node."""
    spec = pod.get("spec") or {}
    node_spec = node.get("spec") or {}
    if not node_ready(node):
        return [NOT_READY]
    if node_spec.get("unschedulable"):
        return [UNSCHEDULABLE]
    for taint in node_spec.get("taints") or ():
        if taint.get("effect") in ("NoSchedule", "NoExecute") and \
                not tolerates(spec.get("tolerations") or [], taint):
            return [f"node(s) had untolerated taint {{{taint.get('key', '')}: "
                    f"{taint.get('value', '')}}}"]
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return [SELECTOR_MISMATCH]
    cpu, mem = pod_requests(pod)
    alloc_cpu, alloc_mem, alloc_pods = node_allocatable(node)
    reasons = []
    if used[2] + 1 > alloc_pods:
        reasons.append(TOO_MANY_PODS)
    if alloc_cpu is not None and cpu and used[0] + cpu > alloc_cpu:
        reasons.append("Insufficient cpu")
    if alloc_mem is not None and mem and used[1] + mem > alloc_mem:
        reasons.append("Insufficient memory")
    return reasons


def score_node(pod: dict, node: dict, used: NodeUsage) -> float:
    """kube's LeastAllocated score (0-100): the mean free fraction of CPU and memory after
    placing the pod, counting requests with the scoring defaults. A resource the node does not
    report counts as fully free."""
    cpu, mem = pod_requests(pod, nonzero=True)
    alloc_cpu, alloc_mem, _ = node_allocatable(node)
    scores = []
    for alloc, requested in ((alloc_cpu, used.score_cpu + cpu),
                             (alloc_mem, used.score_memory + mem)):
        if not alloc:
            scores.append(100.0)
        else:
            scores.append(max(alloc - requested, 0) * 100.0 / alloc)
    return sum(scores) / len(scores)


def node_usage(pods: list[dict]) -> dict[str, NodeUsage]:
    """node name -> what the active pods bound to it request."""
    usage: dict[str, NodeUsage] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or not pod_active(pod):
            continue
        cpu, mem = pod_requests(pod)
        score_cpu, score_mem = pod_requests(pod, nonzero=True)
        u = usage.get(node, NodeUsage())
        usage[node] = NodeUsage(u.cpu + cpu, u.memory + mem, u.pods + 1,
                                u.score_cpu + score_cpu, u.score_memory + score_mem)
    return usage


def choose_node(pod: dict, nodes: list[dict],
                usage: dict[str, NodeUsage]) -> tuple[str | None, str]:
    """(node name, "") for the best node, or (None, kube's FitError message)."""
    best: tuple[float, str] | None = None
    reasons: Counter[str] = Counter()
    for node in nodes:
        name = node["metadata"]["name"]
        used = usage.get(name, NodeUsage())
        why = node_fit(pod, node, used)
        if why:
            reasons.update(why)
            continue
        score = score_node(pod, node, used)
        # Highest score; among equals, the first name in order (deterministic for tests).
        if best is None or score > best[0] or (score == best[0] and name < best[1]):
            best = (score, name)
    if best is not None:
        return best[1], ""
    return None, fit_error(len(nodes), reasons)


def fit_error(total: int, reasons: Counter) -> str:
    """kube-scheduler's FitError.Error(): reasons sorted as strings."""
    if total == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


def wants_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and pod_active(pod))


# -- the controller ----------------------------------------------------------------------------


class Scheduler(Controller):
    name = "scheduler"
    workers = 1  # one pod at a time: each placement sees the previous ones

    def __init__(self, registry, *, clock=None):
        super().__init__(registry)
        import time
        self.clock = clock or time.time
        self.pods = self.informer(PODS)
        self.nodes = self.informer(NODES)
        self.pods.add_handlers(on_add=self._pod_added, on_update=self._pod_updated,
                               on_delete=self._pod_deleted)
        self.nodes.add_handlers(on_add=lambda n: self._requeue_pending(),
                                on_update=self._node_updated,
                                on_delete=lambda n: self._requeue_pending())

    def _pod_added(self, pod: dict) -> None:
        if wants_scheduling(pod):
            self.enqueue(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if wants_scheduling(new):
            # Not on its own status writes (our PodScheduled condition among them): an
            # unschedulable pod is retried when the cluster changes, not when it is looked at.
            if not wants_scheduling(old) or old.get("spec") != new.get("spec") or \
                    (old.get("metadata") or {}).get("labels") != \
                    (new.get("metadata") or {}).get("labels"):
                self.enqueue(new)
        elif (old.get("spec") or {}).get("nodeName") and not pod_active(new) and pod_active(old):
            self._requeue_pending()  # a bound pod finished: its resources are free

    def _pod_deleted(self, pod: dict) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self._requeue_pending()

    def _node_updated(self, old: dict, new: dict) -> None:
        if (node_ready(old), old.get("spec"), (old.get("status") or {}).get("allocatable"),
                (old.get("metadata") or {}).get("labels")) != \
                (node_ready(new), new.get("spec"), (new.get("status") or {}).get("allocatable"),
                 (new.get("metadata") or {}).get("labels")):
            self._requeue_pending()

    def _requeue_pending(self) -> None:
        for pod in self.pods.list():
            if wants_scheduling(pod):
                self.enqueue(pod)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(key)
        if pod is None or not wants_scheduling(pod):
            return
        usage = node_usage(self.pods.list())
        nodes = sorted(self.nodes.list(), key=lambda n: n["metadata"]["name"])
        node, why = choose_node(pod, nodes, usage)
        if node is None:
            await self._unschedulable(pod, why)
            return
        await self._bind(pod, node)

    async def _bind(self, pod: dict, node: str) -> None:
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], \
            pod["metadata"]["uid"]

        def bind(current):
            if current["metadata"].get("uid") != uid or current["spec"].get("nodeName") or \
                    terminating(current):
                return None
            current["spec"]["nodeName"] = node
            return current
        try:
            bound = await self.registry.guaranteed_update(PODS, ns, name, bind)
        except errors.StatusError as exc:
            if exc.code in (404, 422):
                return
            raise
        if bound["spec"].get("nodeName") != node:
            return
        await self._set_condition(bound, "True", None, None)
        await record_event(self.registry, bound, "Normal", "Scheduled",
                           f"Successfully assigned {ns}/{name} to {node}", COMPONENT)
        log.info("scheduled %s/%s to %s", ns, name, node)
        await wait_seen(self.pods, bound["metadata"]["resourceVersion"])

    async def _unschedulable(self, pod: dict, why: str) -> None:
        await self._set_condition(pod, "False", "Unschedulable", why)
        await record_event(self.registry, pod, "Warning", "FailedScheduling", why, COMPONENT)

    async def _set_condition(self, pod: dict, status: str, reason: str | None,
                             message: str | None) -> None:
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], \
            pod["metadata"]["uid"]
        stamp = rfc3339(self.clock())

        def mutate(current):
            if current["metadata"].get("uid") != uid:
                return None
            st = current.setdefault("status", {})
            conds = list(st.get("conditions") or ())
            old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
            cond = {"type": "PodScheduled", "status": status}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            if old is not None and {k: v for k, v in old.items() if k not in (
                    "lastTransitionTime", "lastProbeTime")} == cond:
                return None
            cond["lastTransitionTime"] = (old.get("lastTransitionTime") if old is not None and
                                          old.get("status") == status else stamp)
            st["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [cond]
            st.setdefault("phase", "Pending")
            return current
        try:
            await self.registry.guaranteed_update(PODS, ns, name, mutate, subresource="status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
