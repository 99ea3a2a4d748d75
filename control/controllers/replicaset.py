"""The ReplicaSet controller: keep `spec.replicas` pods from the template, and report status.

Theory of operation
-------------------
Reconciling a ReplicaSet key, from the caches (kube's syncReplicaSet):

1. Claim pods (kube's PodControllerRefManager): a pod whose controller reference is this RS
   but whose labels no longer match the selector is released (the reference removed); a pod
   with no controller reference whose labels match is adopted — unless the RS is being
   deleted. Pods controlled by anything else are never touched.
2. Count the active ones (not Succeeded/Failed, not terminating). Too few: create pods from
   the template with `generateName: <rs>-` and a controller reference. Too many: delete the
   ones `pods_to_delete` ranks first (unscheduled, pending, not ready, newest).
3. Write `status` — replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready
   for `minReadySeconds`), observedGeneration — when it changed. A pod that will become
   available later requeues the key for that moment.

Invariant: a reconcile never acts on a cache that misses its own earlier writes. After creating
pods it waits until the pod cache holds them (`wait_for` of the last create's
resourceVersion); after deleting, until the cache no longer does (`wait_gone`). Without this a
fast second reconcile would count stale state and create or delete twice.

Deleting a ReplicaSet does not delete its pods here: the garbage collector does, by owner
reference (background propagation), as in kube.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, Requeue, object_key, split_key
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.podutil import (
    enqueue_pod_owners,
    CACHE_CATCH_UP_S, available_in, controller_ref, labels_of, owned_by, pod_active,
    pod_available, pod_from_template, pod_ready, pods_to_delete, terminating, wait_gone,
    wait_seen, with_owner, without_owner, workload_selector,
)

log = logging.getLogger("meshnet.controllers.replicaset")

REPLICASETS = lookup("replicasets")
PODS = lookup("pods")
COMPONENT = "replicaset-controller"
# kube's replicaset controller creates at most 500 pods per sync (burstReplicas).
BURST_REPLICAS = 500


# -- the pure part ------------------------------------------------------------------------------


def replica_set_status(rs: dict, pods: list[dict], now: float) -> dict:
    """The status fields this controller owns, from the active pods it controls."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully = [p for p in pods if all(labels_of(p).get(k) == v for k, v in template_labels.items())]
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(fully),
        "readyReplicas": sum(1 for p in pods if pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if pod_available(p, min_ready, now)),
        "observedGeneration": (rs.get("metadata") or {}).get("generation", 0),
    }
    return status


def next_available_check(rs: dict, pods: list[dict], now: float) -> float | None:
    """Seconds until the earliest ready-but-not-yet-available pod becomes available."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
    return min(waits) if waits else None


def status_changed(current: dict | None, wanted: dict) -> bool:
    current = current or {}
    return any(current.get(k, 0) != v for k, v in wanted.items())


def claim_plan(owner: dict, pods: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(owned, to_adopt, to_release) among pods of owner's namespace; pure."""
    selector = workload_selector(owner)
    deleting = terminating(owner)
    owned, adopt, release = [], [], []
    for pod in pods:
        matches = selector.matches(labels_of(pod))
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("uid") != owner["metadata"]["uid"]:
                continue
            if matches:
                owned.append(pod)
            elif not terminating(pod):
                release.append(pod)
        elif matches and not deleting and not terminating(pod):
            adopt.append(pod)
    return owned, adopt, release


# -- the controller ----------------------------------------------------------------------------


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4

    def __init__(self, registry, *, clock: Callable[[], float] = time.time):
        super().__init__(registry)
        self.clock = clock
        self.replicasets = self.informer(REPLICASETS)
        self.pods = self.informer(PODS)
        self.replicasets.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                      on_update=lambda old, new: self.enqueue(new))
        self.pods.add_handlers(on_add=lambda p: self._pod_changed(None, p),
                               on_update=self._pod_changed,
                               on_delete=lambda p: self._pod_changed(p, None))

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        enqueue_pod_owners(self.queue.add, self.enqueue, self.replicasets, "ReplicaSet", old, new)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.replicasets.get(key)
        if rs is None:
            return  # its pods go with the garbage collector
        pods = self.pods.list(ns)
        owned, adopt, release = claim_plan(rs, pods)
        for pod in adopt:
            adopted = await self._set_owner(pod, lambda p: with_owner(p, rs))
            if adopted is not None:
                owned.append(adopted)
        for pod in release:
            await self._set_owner(pod, lambda p: without_owner(p, rs["metadata"]["uid"]))
        active = [p for p in owned if pod_active(p)]
        if not terminating(rs):
            await self._manage(rs, active)
            active = [p for p in self.pods.list(ns) if owned_by(p, rs) and pod_active(p)
                      and workload_selector(rs).matches(labels_of(p))]
        now = self.clock()
        wanted = replica_set_status(rs, active, now)
        if status_changed(rs.get("status"), wanted):
            def mutate(current):
                current.setdefault("status", {}).update(wanted)
                return current
            try:
                await self.registry.guaranteed_update(REPLICASETS, ns, name, mutate,
                                                      subresource="status")
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
        wait = next_available_check(rs, active, now)
        if wait is not None:
            raise Requeue("waiting for minReadySeconds", after_s=wait + 0.05)

    async def _set_owner(self, pod: dict, change) -> dict | None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        uid = pod["metadata"]["uid"]

        def mutate(current):
            if current["metadata"].get("uid") != uid:
                return None
            return change(current)
        try:
            return await self.registry.guaranteed_update(PODS, ns, name, mutate)
        except errors.StatusError as exc:
            if exc.code in (404, 422):
                return None
            raise

    async def _manage(self, rs: dict, active: list[dict]) -> None:
        ns = rs["metadata"]["namespace"]
        wanted = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        diff = len(active) - wanted
        if diff < 0:
            await self._create(rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            victims = pods_to_delete(active, min(diff, BURST_REPLICAS))
            deleted = []
            for pod in victims:
                pname = pod["metadata"]["name"]
                try:
                    await self.registry.delete(PODS, ns, pname,
                                               precondition_uid=pod["metadata"]["uid"])
                except errors.StatusError as exc:
                    if exc.code not in (404, 409):
                        raise
                deleted.append(object_key(pod))
                await record_event(self.registry, rs, "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {pname}", COMPONENT)
            if not await wait_gone(self.pods, deleted, CACHE_CATCH_UP_S):
                raise Requeue("pod cache has not seen the deletes yet")

    async def _create(self, rs: dict, count: int) -> None:
        ns = rs["metadata"]["namespace"]
        template = (rs.get("spec") or {}).get("template") or {}
        last_rv = None
        for _ in range(count):
            pod = pod_from_template(template, rs, generate_name=f"{rs['metadata']['name']}-")
            try:
                created = await self.registry.create(PODS, ns, pod)
            except errors.StatusError as exc:
                if exc.code in (403, 404):
                    return  # namespace terminating or gone: nothing to keep up
                if exc.reason == "AlreadyExists":
                    continue  # a generated name collided; the next sync makes up for it
                await record_event(self.registry, rs, "Warning", "FailedCreate",
                                   f"Error creating: {exc.message}", COMPONENT)
                raise
            last_rv = created["metadata"]["resourceVersion"]
            await record_event(self.registry, rs, "Normal", "SuccessfulCreate",
                               f"Created pod: {created['metadata']['name']}", COMPONENT)
        if last_rv is not None and not await wait_seen(self.pods, last_rv):
            raise Requeue("pod cache has not seen the creates yet")
