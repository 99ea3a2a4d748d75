"""The Deployment controller: Deployment -> ReplicaSets, rolled over by strategy.

Theory of operation
-------------------
A Deployment owns one ReplicaSet per distinct pod template it has had. The "new" one is the
ReplicaSet whose template equals the Deployment's, ignoring the `pod-template-hash` label; all
others are "old". The new one is named `<deployment>-<pod-template-hash>`, where the hash is
a stable digest of the Deployment's template (FNV-32a of its canonical JSON plus
`status.collisionCount`, spelled in kube's safe alphabet). That label is added to the
ReplicaSet's selector, its template and so its pods, so two ReplicaSets never fight over a pod.

Each reconcile (kube's syncDeployment), from the caches:

1. claim ReplicaSets (adopt matching orphans, release ones that stopped matching);
2. paused -> only status; otherwise roll by strategy, making at most one kind of move per pass:
   - RollingUpdate (`plan_rolling`, kube's rolling.go): scale the new ReplicaSet up while the
     total stays within replicas + maxSurge; else scale old ones down, first their unavailable
     pods, then available ones while availability stays at replicas - maxUnavailable or more;
   - Recreate: scale every old ReplicaSet to 0, wait until their pods are gone, then create
     (or scale) the new one to `replicas`;
3. revisions: the new ReplicaSet carries `deployment.kubernetes.io/revision` = highest + 1
   (also when an old one becomes new again: that is a rollback), and so does the Deployment;
4. when the rollout is complete, delete the oldest empty ReplicaSets beyond
   `revisionHistoryLimit`;
5. status: replicas/updated/ready/available/unavailable and the Available and Progressing
   conditions (with ProgressDeadlineExceeded after `progressDeadlineSeconds` without progress,
   judged by the injected clock).

Rollback is not special here: `meshctl rollout undo` sets the Deployment's template back to an
old ReplicaSet's template, which then matches that ReplicaSet again (as kubectl does).
Scaling writes wait until the ReplicaSet cache holds them, so a following pass never plans from
a state older than its own last move.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, Requeue, split_key
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.podutil import (
    condition, controller_ref, labels_of, owner_reference, parse_time, rfc3339, terminating,
    wait_seen, with_owner, without_owner, workload_selector,
)

log = logging.getLogger("meshnet.controllers.deployment")

DEPLOYMENTS = lookup("deployments")
REPLICASETS = lookup("replicasets")
COMPONENT = "deployment-controller"
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# k8s.io/apimachinery/pkg/util/rand: the alphabet of generated names and hashes (no vowels, no
# look-alike digits, so hashes never spell words or confuse readers).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LENGTH = 10
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


# -- the pure part: hashing and templates -------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    """The `pod-template-hash` of a Deployment's template: stable across processes and
    releases (canonical JSON, no Python hash()), 10 characters of SAFE_ALPHABET."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    value = fnv32a(canonical.encode() + (str(collision_count).encode() if collision_count else b""))
    # kube's rand.SafeEncodeString of the decimal digits, padded to a fixed width.
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in f"{value:010d}")


def template_without_hash(template: dict) -> dict:
    out = copy.deepcopy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return out


def templates_equal(a: dict, b: dict) -> bool:
    """kube's EqualIgnoreHash."""
    return template_without_hash(a) == template_without_hash(b)


def revision_of(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
                   or 0)
    except ValueError:
        return 0


def resolve_fenceposts(max_surge, max_unavailable, replicas: int) -> tuple[int, int]:
    """(surge, unavailable) as pod counts: percentages of replicas, surge rounded up and
    unavailable rounded down; both 0 becomes unavailable 1 (kube's ResolveFenceposts)."""
    surge = _scaled(max_surge, replicas, round_up=True)
    unavailable = _scaled(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _scaled(value, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


# -- the pure part: rolling ---------------------------------------------------------------------


@dataclass(frozen=True)
class RSState:
    """What the rollout decisions need of one ReplicaSet."""
    name: str
    replicas: int  # spec.replicas
    available: int = 0  # status.availableReplicas
    created: float = 0.0  # for oldest-first ordering


def plan_rolling(replicas: int, surge: int, unavailable: int, new: RSState | None,
                 olds: list[RSState]) -> dict[str, int]:
    """The next move of a rolling update: {ReplicaSet name: new spec.replicas}, empty when
    nothing should change now. `new` is None when the new ReplicaSet does not exist yet; its
    entry is then keyed "" (the caller creates it with that many replicas)."""
    new = new or RSState("", 0)
    total = new.replicas + sum(o.replicas for o in olds)
    # 1. scale the new ReplicaSet up (or down, if the Deployment shrank).
    if new.replicas > replicas:
        return {new.name: replicas}
    if new.replicas < replicas:
        room = replicas + surge - total
        if room > 0:
            return {new.name: new.replicas + min(room, replicas - new.replicas)}
    # 2. scale old ReplicaSets down.
    old_total = sum(o.replicas for o in olds)
    if old_total == 0:
        return {}
    min_available = replicas - unavailable
    new_unavailable = new.replicas - new.available
    max_scaled_down = total - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    plan: dict[str, int] = {}
    ordered = sorted(olds, key=lambda o: (o.created, o.name))
    counts = {o.name: o.replicas for o in ordered}
    # 2a. their unavailable pods first: removing those costs no availability.
    cleaned = 0
    for o in ordered:
        if cleaned >= max_scaled_down:
            break
        unhealthy = counts[o.name] - min(o.available, counts[o.name])
        if counts[o.name] == 0 or unhealthy <= 0:
            continue
        step = min(max_scaled_down - cleaned, unhealthy)
        counts[o.name] -= step
        cleaned += step
        plan[o.name] = counts[o.name]
    # 2b. then available ones, while availability stays at min_available.
    available = new.available + sum(min(o.available, counts[o.name]) for o in ordered)
    budget = available - min_available
    for o in ordered:
        if budget <= 0:
            break
        if counts[o.name] == 0:
            continue
        step = min(counts[o.name], budget)
        counts[o.name] -= step
        budget -= step
        plan[o.name] = counts[o.name]
    return {name: n for name, n in plan.items()
            if n != next(o.replicas for o in olds if o.name == name)}


def rollout_complete(replicas: int, status: dict) -> bool:
    """kube's DeploymentComplete."""
    return (status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas)


# -- the pure part: status ----------------------------------------------------------------------


def _set_condition(conditions: list[dict], type_: str, status: str, reason: str, message: str,
                   now: str, *, progress: bool = False) -> list[dict]:
    """conditions with type_ set; lastTransitionTime moves only when status flips,
    lastUpdateTime when anything about it changes (or progress was made)."""
    out = [c for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    cond = {"type": type_, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}
    if old is not None:
        if old.get("status") == status:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", now)
        if old.get("status") == status and old.get("reason") == reason and \
                old.get("message") == message and not progress:
            cond["lastUpdateTime"] = old.get("lastUpdateTime", now)
    out.append(cond)
    order = {"Available": 0, "Progressing": 1, "ReplicaFailure": 2}
    return sorted(out, key=lambda c: order.get(c.get("type"), 9))


def deployment_status(deploy: dict, new: dict | None, rss: list[dict], now: float,
                      created_new: bool = False) -> dict:
    """The whole status of deploy from its ReplicaSets' statuses (kube's calculateStatus plus
    the condition updates of syncRolloutStatus)."""
    spec, meta = deploy.get("spec") or {}, deploy.get("metadata") or {}
    current = deploy.get("status") or {}
    replicas = int(spec.get("replicas", 1) or 0)

    def total(field: str) -> int:
        return sum(int((rs.get("status") or {}).get(field) or 0) for rs in rss)

    status: dict = {
        "observedGeneration": meta.get("generation", 0),
        "replicas": total("replicas"),
        "updatedReplicas": int(((new or {}).get("status") or {}).get("replicas") or 0),
        "readyReplicas": total("readyReplicas"),
        "availableReplicas": total("availableReplicas"),
    }
    status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
    if current.get("collisionCount"):
        status["collisionCount"] = current["collisionCount"]
    stamp = rfc3339(now)
    conditions = list(current.get("conditions") or ())
    strategy = spec.get("strategy") or {}
    _, unavailable = resolve_fenceposts(
        (strategy.get("rollingUpdate") or {}).get("maxSurge"),
        (strategy.get("rollingUpdate") or {}).get("maxUnavailable"), replicas) \
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" else (0, 0)
    if status["availableReplicas"] >= replicas - unavailable:
        conditions = _set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                    "Deployment has minimum availability.", stamp)
    else:
        conditions = _set_condition(conditions, "Available", "False",
                                    "MinimumReplicasUnavailable",
                                    "Deployment does not have minimum availability.", stamp)
    rs_name = ((new or {}).get("metadata") or {}).get("name", "")
    old_status = {k: current.get(k, 0) for k in ("replicas", "updatedReplicas", "readyReplicas",
                                                 "availableReplicas")}
    progressed = any(status[k] != v for k, v in old_status.items())
    progressing = condition(deploy, "Progressing") or {}
    if spec.get("paused"):
        conditions = _set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                                    "Deployment is paused", stamp)
    elif new is not None and rollout_complete(replicas, status):
        conditions = _set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                                    stamp)
    elif created_new:
        conditions = _set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                                    f'Created new replica set "{rs_name}"', stamp, progress=True)
    elif new is not None:
        deadline = spec.get("progressDeadlineSeconds")
        last = parse_time(progressing.get("lastUpdateTime"))
        timed_out = (deadline is not None and last is not None and not progressed
                     and progressing.get("reason") != "NewReplicaSetAvailable"
                     and now > last + int(deadline))
        if timed_out or progressing.get("reason") == "ProgressDeadlineExceeded" and not progressed:
            conditions = _set_condition(conditions, "Progressing", "False",
                                        "ProgressDeadlineExceeded",
                                        f'ReplicaSet "{rs_name}" has timed out progressing.',
                                        stamp)
        else:
            conditions = _set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                        f'ReplicaSet "{rs_name}" is progressing.', stamp,
                                        progress=progressed)
    status["conditions"] = conditions
    return status


def comparable_status(status: dict | None) -> dict:
    """A status without timestamps that only reflect when it was computed."""
    out = dict(status or {})
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastUpdateTime"}
                         for c in out.get("conditions") or ()]
    return out


def history_to_delete(olds: list[dict], limit: int) -> list[dict]:
    """The oldest (by revision) empty old ReplicaSets beyond revisionHistoryLimit."""
    empty = [rs for rs in olds
             if int((rs.get("spec") or {}).get("replicas") or 0) == 0
             and int((rs.get("status") or {}).get("replicas") or 0) == 0
             and not terminating(rs)]
    excess = len(empty) - max(limit, 0)
    if excess <= 0:
        return []
    return sorted(empty, key=lambda rs: (revision_of(rs), rs["metadata"]["name"]))[:excess]


def new_replica_set(deploy: dict, template_hash: str, replicas: int, revision: int) -> dict:
    spec, meta = deploy["spec"], deploy["metadata"]
    template = copy.deepcopy(spec["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
    selector = copy.deepcopy(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
    annotations = {REVISION_ANNOTATION: str(revision),
                   DESIRED_REPLICAS_ANNOTATION: str(spec.get("replicas", 1))}
    cause = (meta.get("annotations") or {}).get(CHANGE_CAUSE_ANNOTATION)
    if cause:
        annotations[CHANGE_CAUSE_ANNOTATION] = cause
    rs_spec = {"replicas": replicas, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{template_hash}", "namespace": meta["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": annotations,
                         "ownerReferences": [owner_reference(deploy)]},
            "spec": rs_spec}


def _state(rs: dict) -> RSState:
    return RSState(rs["metadata"]["name"], int((rs.get("spec") or {}).get("replicas") or 0),
                   int((rs.get("status") or {}).get("availableReplicas") or 0),
                   parse_time(rs["metadata"].get("creationTimestamp")) or 0.0)


# -- the controller ----------------------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, registry, *, clock: Callable[[], float] = time.time):
        super().__init__(registry)
        self.clock = clock
        self.deployments = self.informer(DEPLOYMENTS)
        self.replicasets = self.informer(REPLICASETS)
        self.deployments.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                      on_update=lambda old, new: self.enqueue(new))
        self.replicasets.add_handlers(on_add=lambda rs: self._rs_changed(None, rs),
                                      on_update=self._rs_changed,
                                      on_delete=lambda rs: self._rs_changed(rs, None))

    def _rs_changed(self, old: dict | None, new: dict | None) -> None:
        for rs in (old, new):
            if rs is None:
                continue
            ns = rs["metadata"].get("namespace")
            ref = controller_ref(rs)
            if ref is not None:
                if ref.get("kind") == "Deployment":
                    self.queue.add(f"{ns}/{ref.get('name')}")
                continue
            for d in self.deployments.list(ns):
                if workload_selector(d).matches(labels_of(rs)):
                    self.enqueue(d)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        deploy = self.deployments.get(key)
        if deploy is None or terminating(deploy):
            return  # the garbage collector takes its ReplicaSets
        rss = await self._claim(deploy)
        template = deploy["spec"]["template"]
        new = min((rs for rs in rss if templates_equal(rs["spec"].get("template"), template)),
                  key=lambda rs: (parse_time(rs["metadata"].get("creationTimestamp")) or 0,
                                  rs["metadata"]["name"]), default=None)
        olds = [rs for rs in rss if rs is not new]
        created_new = False
        if not deploy["spec"].get("paused"):
            new, created_new, moved = await self._rollout(deploy, new, olds)
            if moved:
                rss = [rs for rs in self._owned(deploy)]
                new = next((rs for rs in rss if new is not None and
                            rs["metadata"]["name"] == new["metadata"]["name"]), new)
                olds = [rs for rs in rss if new is None or
                        rs["metadata"]["name"] != new["metadata"]["name"]]
        status = deployment_status(deploy, new, rss, self.clock(), created_new)
        if new is not None and rollout_complete(int(deploy["spec"].get("replicas", 1) or 0),
                                                status):
            await self._cleanup(deploy, olds)
        await self._write_status(deploy, status)
        if new is not None and revision_of(deploy) != revision_of(new):
            await self._annotate(deploy, revision_of(new))
        if not rollout_complete(int(deploy["spec"].get("replicas", 1) or 0), status) and \
                deploy["spec"].get("progressDeadlineSeconds") and \
                not deploy["spec"].get("paused"):
            # Come back when the deadline could have passed without any event to wake us.
            raise Requeue("rollout in progress", after_s=float(
                deploy["spec"]["progressDeadlineSeconds"]) + 1.0)

    # -- claim -------------------------------------------------------------------------------

    def _owned(self, deploy: dict) -> list[dict]:
        uid = deploy["metadata"]["uid"]
        selector = workload_selector(deploy)
        return [rs for rs in self.replicasets.list(deploy["metadata"]["namespace"])
                if (controller_ref(rs) or {}).get("uid") == uid
                and selector.matches(labels_of(rs))]

    async def _claim(self, deploy: dict) -> list[dict]:
        uid = deploy["metadata"]["uid"]
        selector = workload_selector(deploy)
        owned = []
        for rs in self.replicasets.list(deploy["metadata"]["namespace"]):
            ref = controller_ref(rs)
            matches = selector.matches(labels_of(rs))
            if ref is None and matches and not terminating(rs):
                adopted = await self._update_rs(rs, lambda r: with_owner(r, deploy))
                if adopted is not None:
                    owned.append(adopted)
            elif ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(rs)
                elif not terminating(rs):
                    await self._update_rs(rs, lambda r: without_owner(r, uid))
        return owned

    # -- rollout -----------------------------------------------------------------------------

    async def _rollout(self, deploy: dict, new: dict | None,
                       olds: list[dict]) -> tuple[dict | None, bool, bool]:
        """(new ReplicaSet, whether it was created now, whether anything was written)."""
        spec = deploy["spec"]
        replicas = int(spec.get("replicas", 1) or 0)
        strategy = spec.get("strategy") or {}
        max_old_rev = max((revision_of(rs) for rs in olds), default=0)
        if new is not None and revision_of(new) <= max_old_rev:
            # An old template came back (a rollback): it becomes the newest revision.
            new = await self._update_rs(new, lambda r: _annotated(r, max_old_rev + 1))
            if new is None:
                raise Requeue("new ReplicaSet vanished")
        if strategy.get("type") == "Recreate":
            return await self._recreate(deploy, new, olds, replicas, max_old_rev)
        rolling = strategy.get("rollingUpdate") or {}
        surge, unavailable = resolve_fenceposts(rolling.get("maxSurge"),
                                                rolling.get("maxUnavailable"), replicas)
        plan = plan_rolling(replicas, surge, unavailable, _state(new) if new else None,
                            [_state(rs) for rs in olds])
        if new is None:
            # Created first, with as many replicas as the surge allows now (maybe 0); old
            # ReplicaSets are scaled down in the following passes.
            created = await self._create_rs(deploy, plan.get("", 0), max_old_rev + 1)
            return created, True, True
        if not plan:
            return new, False, False
        for rs_name, count in plan.items():
            rs = new if rs_name == new["metadata"]["name"] else \
                next(o for o in olds if o["metadata"]["name"] == rs_name)
            await self._scale(deploy, rs, count)
        return new, False, True

    async def _recreate(self, deploy, new, olds, replicas, max_old_rev):
        moved = False
        for rs in olds:
            if int(rs["spec"].get("replicas") or 0) > 0:
                await self._scale(deploy, rs, 0)
                moved = True
        if moved:
            return new, False, True
        if any(int((rs.get("status") or {}).get("replicas") or 0) > 0 or
               (rs.get("status") or {}).get("observedGeneration", 0) <
               rs["metadata"].get("generation", 0) for rs in olds):
            return new, False, False  # old pods still going away; their RS updates wake us
        if new is None:
            return await self._create_rs(deploy, replicas, max_old_rev + 1), True, True
        if int(new["spec"].get("replicas") or 0) != replicas:
            await self._scale(deploy, new, replicas)
            return new, False, True
        return new, False, False

    # -- writes ------------------------------------------------------------------------------

    async def _create_rs(self, deploy: dict, replicas: int, revision: int) -> dict | None:
        ns = deploy["metadata"]["namespace"]
        collisions = int((deploy.get("status") or {}).get("collisionCount") or 0)
        template_hash = pod_template_hash(deploy["spec"]["template"], collisions)
        rs = new_replica_set(deploy, template_hash, replicas, revision)
        try:
            created = await self.registry.create(REPLICASETS, ns, rs)
        except errors.StatusError as exc:
            if exc.code in (403, 404):
                return None
            if exc.reason != "AlreadyExists":
                raise
            existing = await self.registry.get(REPLICASETS, ns, rs["metadata"]["name"])
            if (controller_ref(existing) or {}).get("uid") == deploy["metadata"]["uid"] and \
                    templates_equal(existing["spec"].get("template"), deploy["spec"]["template"]):
                await wait_seen(self.replicasets, existing["metadata"]["resourceVersion"])
                raise Requeue("new ReplicaSet already exists; cache was behind") from None
            # A different ReplicaSet holds the name: hash again with the next collision count.
            def bump(current):
                st = current.setdefault("status", {})
                st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
                return current
            await self.registry.guaranteed_update(DEPLOYMENTS, ns, deploy["metadata"]["name"],
                                                  bump, subresource="status")
            raise Requeue("pod-template-hash collision") from None
        await record_event(self.registry, deploy, "Normal", "ScalingReplicaSet",
                           f"Scaled up replica set {created['metadata']['name']} to {replicas}",
                           COMPONENT)
        await wait_seen(self.replicasets, created["metadata"]["resourceVersion"])
        return created

    async def _scale(self, deploy: dict, rs: dict, replicas: int) -> None:
        before = int(rs["spec"].get("replicas") or 0)
        desired = str(deploy["spec"].get("replicas", 1))

        def mutate(current):
            if current["spec"].get("replicas") == replicas and \
                    (current["metadata"].get("annotations") or {}).get(
                        DESIRED_REPLICAS_ANNOTATION) == desired:
                return None
            current["spec"]["replicas"] = replicas
            current["metadata"].setdefault("annotations", {})[DESIRED_REPLICAS_ANNOTATION] = \
                desired
            return current
        updated = await self._update_rs(rs, mutate)
        if updated is None:
            return
        if before != replicas:
            verb = "up" if replicas > before else "down"
            await record_event(self.registry, deploy, "Normal", "ScalingReplicaSet",
                               f"Scaled {verb} replica set {rs['metadata']['name']} to "
                               f"{replicas} from {before}", COMPONENT)

    async def _update_rs(self, rs: dict, change) -> dict | None:
        ns, name, uid = rs["metadata"]["namespace"], rs["metadata"]["name"], rs["metadata"]["uid"]

        def mutate(current):
            if current["metadata"].get("uid") != uid:
                return None
            return change(current)
        try:
            updated = await self.registry.guaranteed_update(REPLICASETS, ns, name, mutate)
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise
        await wait_seen(self.replicasets, updated["metadata"]["resourceVersion"])
        return updated

    async def _cleanup(self, deploy: dict, olds: list[dict]) -> None:
        limit = deploy["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        for rs in history_to_delete(olds, int(limit)):
            try:
                await self.registry.delete(REPLICASETS, rs["metadata"]["namespace"],
                                           rs["metadata"]["name"],
                                           precondition_uid=rs["metadata"]["uid"])
            except errors.StatusError as exc:
                if exc.code not in (404, 409):
                    raise

    async def _write_status(self, deploy: dict, status: dict) -> None:
        if comparable_status(deploy.get("status")) == comparable_status(status):
            return
        ns, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]

        def mutate(current):
            if current["metadata"].get("uid") != deploy["metadata"]["uid"]:
                return None
            st = dict(status)
            if (current.get("status") or {}).get("collisionCount"):
                st["collisionCount"] = current["status"]["collisionCount"]
            current["status"] = st
            return current
        try:
            await self.registry.guaranteed_update(DEPLOYMENTS, ns, name, mutate,
                                                  subresource="status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    async def _annotate(self, deploy: dict, revision: int) -> None:
        ns, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]

        def mutate(current):
            if current["metadata"].get("uid") != deploy["metadata"]["uid"]:
                return None
            return _annotated(current, revision)
        try:
            await self.registry.guaranteed_update(DEPLOYMENTS, ns, name, mutate)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise


def _annotated(obj: dict, revision: int) -> dict | None:
    annotations = obj["metadata"].setdefault("annotations", {})
    if annotations.get(REVISION_ANNOTATION) == str(revision):
        return None
    annotations[REVISION_ANNOTATION] = str(revision)
    return obj
