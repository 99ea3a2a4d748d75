"""The StatefulSet controller: pods with stable names `<set>-0..N-1`, created and removed in
order.

Theory of operation
-------------------
Pod `<set>-<i>` is the set's i-th replica for its whole life: deleted, it comes back under the
same name (and so the same DNS name). Each pod gets `hostname` = its name and `subdomain` =
`spec.serviceName`, so a headless Service of that name gives it `<pod>.<service>.<ns>.svc...`,
plus the labels `statefulset.kubernetes.io/pod-name` and `controller-revision-hash`
(`<set>-<hash of the template>`).

`plan_stateful` (pure) decides one reconcile's moves from the pods that exist:

- OrderedReady (the default): walk ordinals upward; create the first missing pod and stop; stop
  at the first pod that is not Running and Ready. Scale-down removes the highest ordinal first,
  one at a time, and only when every other pod is Running and Ready.
- Parallel: create every missing pod and delete every surplus one at once.
- A Failed pod is deleted so that the next pass recreates it.
- RollingUpdate: when all pods are Running and Ready, delete the highest-ordinal pod whose
  revision is stale (at or above `partition`); it comes back from the new template.
  OnDelete: stale pods are only replaced when someone deletes them.

Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
currentRevision/updateRevision, observedGeneration. Pods go with the garbage collector when the
set is deleted.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, Requeue, split_key
from meshnet.control.controllers.deployment import pod_template_hash
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.podutil import (
    enqueue_pod_owners,
    controller_ref, labels_of, owned_by, pod_available, pod_from_template, pod_ready,
    pod_running_and_ready, terminating, wait_gone, wait_seen, with_owner, workload_selector,
)

log = logging.getLogger("meshnet.controllers.statefulset")

STATEFULSETS = lookup("statefulsets")
PODS = lookup("pods")
COMPONENT = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
REVISION_LABEL = "controller-revision-hash"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


# -- the pure part ------------------------------------------------------------------------------


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    match = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(match.group(1)) if match else None


def update_revision(sts: dict) -> str:
    return f"{sts['metadata']['name']}-{pod_template_hash(sts['spec']['template'])}"


@dataclass
class StatefulPlan:
    create: list[int] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # pod names


def plan_stateful(sts: dict, pods: dict[int, dict], revision: str) -> StatefulPlan:
    """The moves of one pass; pods maps ordinal -> the set's pod (terminating ones included)."""
    spec = sts.get("spec") or {}
    replicas = int(spec.get("replicas", 1) or 0)
    parallel = spec.get("podManagementPolicy") == "Parallel"
    plan = StatefulPlan()
    # Failed pods are replaced (kube deletes and recreates them whatever the policy).
    for i, pod in sorted(pods.items()):
        if (pod.get("status") or {}).get("phase") == "Failed" and not terminating(pod):
            plan.delete.append(pod["metadata"]["name"])
    if plan.delete:
        return plan
    for i in range(replicas):
        pod = pods.get(i)
        if pod is None:
            plan.create.append(i)
            if not parallel:
                return plan
            continue
        if not parallel and (terminating(pod) or not pod_running_and_ready(pod)):
            return plan  # wait for this one before touching the next
    surplus = sorted((i for i in pods if i >= replicas), reverse=True)
    if surplus:
        if parallel:
            plan.delete = [pods[i]["metadata"]["name"] for i in surplus
                           if not terminating(pods[i])]
            return plan
        if any(terminating(p) for p in pods.values()):
            return plan
        if all(pod_running_and_ready(pods[i]) for i in pods if i < surplus[0]):
            plan.delete = [pods[surplus[0]]["metadata"]["name"]]
        return plan
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return plan
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if any(terminating(p) or not pod_running_and_ready(p) for p in pods.values()):
        return plan
    for i in sorted(pods, reverse=True):
        if i >= partition and labels_of(pods[i]).get(REVISION_LABEL) != revision:
            plan.delete = [pods[i]["metadata"]["name"]]
            break
    return plan


def stateful_pod(sts: dict, ordinal: int, revision: str) -> dict:
    name = f"{sts['metadata']['name']}-{ordinal}"
    pod = pod_from_template(sts["spec"]["template"], sts, name=name, extra_labels={
        POD_NAME_LABEL: name, REVISION_LABEL: revision, POD_INDEX_LABEL: str(ordinal)})
    pod["spec"]["hostname"] = name
    if sts["spec"].get("serviceName"):
        pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
    return pod


def stateful_status(sts: dict, pods: list[dict], revision: str, now: float) -> dict:
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    live = [p for p in pods if not terminating(p)]
    updated = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == revision)
    current_revision = (sts.get("status") or {}).get("currentRevision") or revision
    if updated == len(live) == int(spec.get("replicas", 1) or 0):
        current_revision = revision
    current = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == current_revision)
    return {
        "observedGeneration": sts["metadata"].get("generation", 0),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if pod_ready(p)),
        "availableReplicas": sum(1 for p in live if pod_available(p, min_ready, now)),
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revision,
    }


# -- the controller ----------------------------------------------------------------------------


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def __init__(self, registry, *, clock: Callable[[], float] = time.time):
        super().__init__(registry)
        self.clock = clock
        self.sets = self.informer(STATEFULSETS)
        self.pods = self.informer(PODS)
        self.sets.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                               on_update=lambda old, new: self.enqueue(new))
        self.pods.add_handlers(on_add=lambda p: self._pod_changed(None, p),
                               on_update=self._pod_changed,
                               on_delete=lambda p: self._pod_changed(p, None))

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        enqueue_pod_owners(self.queue.add, self.enqueue, self.sets, "StatefulSet", old, new)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        sts = self.sets.get(key)
        if sts is None or terminating(sts):
            return
        selector = workload_selector(sts)
        pods: dict[int, dict] = {}
        for pod in self.pods.list(ns):
            ordinal = ordinal_of(name, pod["metadata"]["name"])
            if ordinal is None or not selector.matches(labels_of(pod)):
                continue
            if controller_ref(pod) is None and not terminating(pod):
                pod = await self._adopt(sts, pod)
                if pod is None:
                    continue
            if owned_by(pod, sts):
                pods[ordinal] = pod
        revision = update_revision(sts)
        plan = plan_stateful(sts, pods, revision)
        for ordinal in plan.create:
            await self._create(sts, ordinal, revision)
        if plan.delete:
            for pod_name in plan.delete:
                try:
                    await self.registry.delete(PODS, ns, pod_name)
                except errors.StatusError as exc:
                    if exc.code != 404:
                        raise
                await record_event(self.registry, sts, "Normal", "SuccessfulDelete",
                                   f"delete Pod {pod_name} in StatefulSet {name} successful",
                                   COMPONENT)
            if not await wait_gone(self.pods, [f"{ns}/{p}" for p in plan.delete]):
                raise Requeue("pod cache has not seen the deletes yet")
        owned = [p for p in self.pods.list(ns) if owned_by(p, sts)
                 and ordinal_of(name, p["metadata"]["name"]) is not None]
        status = stateful_status(sts, owned, revision, self.clock())
        current = sts.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            def mutate(obj):
                if obj["metadata"].get("uid") != sts["metadata"]["uid"]:
                    return None
                obj.setdefault("status", {}).update(status)
                return obj
            try:
                await self.registry.guaranteed_update(STATEFULSETS, ns, name, mutate,
                                                      subresource="status")
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise

    async def _adopt(self, sts: dict, pod: dict) -> dict | None:
        uid = pod["metadata"]["uid"]

        def mutate(current):
            if current["metadata"].get("uid") != uid or controller_ref(current) is not None:
                return None
            return with_owner(current, sts)
        try:
            return await self.registry.guaranteed_update(PODS, pod["metadata"]["namespace"],
                                                         pod["metadata"]["name"], mutate)
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise

    async def _create(self, sts: dict, ordinal: int, revision: str) -> None:
        ns = sts["metadata"]["namespace"]
        pod = stateful_pod(sts, ordinal, revision)
        try:
            created = await self.registry.create(PODS, ns, pod)
        except errors.StatusError as exc:
            if exc.code in (403, 404):
                return
            if exc.reason == "AlreadyExists":
                raise Requeue(f"pod {pod['metadata']['name']} still exists (being replaced)") \
                    from None
            await record_event(self.registry, sts, "Warning", "FailedCreate",
                               f"create Pod {pod['metadata']['name']} in StatefulSet "
                               f"{sts['metadata']['name']} failed error: {exc.message}",
                               COMPONENT)
            raise
        await record_event(self.registry, sts, "Normal", "SuccessfulCreate",
                           f"create Pod {created['metadata']['name']} in StatefulSet "
                           f"{sts['metadata']['name']} successful", COMPONENT)
        if not await wait_seen(self.pods, created["metadata"]["resourceVersion"]):
            raise Requeue("pod cache has not seen the create yet")
