"""The ReplicaSet controller: claim/status/deletion ranking table-first, then the controller
over a real Registry and SQLite store."""

from __future__ import annotations

import re

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.podutil import pods_to_delete
from meshnet.control.controllers.replicaset import (
    ReplicaSetController, claim_plan, next_available_check, replica_set_status,
)

from controllers_helpers import (
    EVENTS, PODS, create_namespace, eventually, get_or_none, make_registry,
)

REPLICASETS = lookup("replicasets")
T0 = 1_700_000_000.0


def ts(epoch: float) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def rs(name="web", replicas=3, labels=None, uid="uid-rs", min_ready=0, deleting=False):
    labels = labels or {"app": "web"}
    meta = {"name": name, "namespace": "ns", "uid": uid, "generation": 2}
    if deleting:
        meta["deletionTimestamp"] = ts(T0)
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def pod(name, *, owner="uid-rs", labels=None, ready=False, ready_at=T0, node=None,
        phase="Pending", created=T0, deleting=False):
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
            "labels": labels if labels is not None else {"app": "web"},
            "creationTimestamp": ts(created)}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": "web", "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = ts(T0)
    spec = {"nodeName": node} if node else {}
    status = {"phase": phase, "conditions": [{"type": "Ready",
                                               "status": "True" if ready else "False",
                                               "lastTransitionTime": ts(ready_at)}]}
    return {"metadata": meta, "spec": spec, "status": status}


def names(pods):
    return [p["metadata"]["name"] for p in pods]


CLAIM_CASES = [
    ("owned and matching pods are owned", rs(), [pod("a"), pod("b")], (["a", "b"], [], [])),
    ("an orphan that matches is adopted", rs(), [pod("a", owner=None)], ([], ["a"], [])),
    ("an orphan that does not match is ignored", rs(),
     [pod("a", owner=None, labels={"app": "db"})], ([], [], [])),
    ("an owned pod that no longer matches is released", rs(),
     [pod("a", labels={"app": "db"})], ([], [], ["a"])),
    ("a pod of another controller is never touched", rs(), [pod("a", owner="uid-other")],
     ([], [], [])),
    ("a ReplicaSet being deleted adopts nothing", rs(deleting=True), [pod("a", owner=None)],
     ([], [], [])),
    ("a terminating orphan is not adopted", rs(), [pod("a", owner=None, deleting=True)],
     ([], [], [])),
]


@pytest.mark.parametrize("desc,owner,pods,expected", CLAIM_CASES, ids=[c[0] for c in CLAIM_CASES])
def test_claim_plan(desc, owner, pods, expected):
    owned, adopt, release = claim_plan(owner, pods)
    assert (names(owned), names(adopt), names(release)) == expected


STATUS_CASES = [
    ("nothing", rs(), [], T0,
     {"replicas": 0, "fullyLabeledReplicas": 0, "readyReplicas": 0, "availableReplicas": 0,
      "observedGeneration": 2}),
    ("ready pods are available without minReadySeconds", rs(),
     [pod("a", ready=True), pod("b")], T0,
     {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
      "observedGeneration": 2}),
    ("minReadySeconds holds back recently ready pods", rs(min_ready=10),
     [pod("a", ready=True, ready_at=T0 - 20), pod("b", ready=True, ready_at=T0 - 5)], T0,
     {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1,
      "observedGeneration": 2}),
    ("fully labeled counts pods carrying every template label",
     rs(labels={"app": "web"}) | {"spec": {**rs()["spec"], "template": {
         "metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {}}}},
     [pod("a", labels={"app": "web", "tier": "fe"}), pod("b")], T0,
     {"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 0, "availableReplicas": 0,
      "observedGeneration": 2}),
]


@pytest.mark.parametrize("desc,owner,pods,now,expected", STATUS_CASES,
                         ids=[c[0] for c in STATUS_CASES])
def test_replica_set_status(desc, owner, pods, now, expected):
    assert replica_set_status(owner, pods, now) == expected


def test_next_available_check_is_the_earliest_pending_pod():
    pods = [pod("a", ready=True, ready_at=T0 - 5), pod("b", ready=True, ready_at=T0 - 8),
            pod("c"), pod("d", ready=True, ready_at=T0 - 50)]
    assert next_available_check(rs(min_ready=10), pods, T0) == pytest.approx(2.0)
    assert next_available_check(rs(min_ready=0), pods, T0) is None


DELETE_CASES = [
    ("unscheduled before scheduled",
     [pod("sched", node="n1", phase="Running"), pod("unsched")], 1, ["unsched"]),
    ("pending before running",
     [pod("run", node="n1", phase="Running"), pod("pend", node="n1")], 1, ["pend"]),
    ("not ready before ready",
     [pod("ready", node="n1", phase="Running", ready=True),
      pod("notready", node="n1", phase="Running")], 1, ["notready"]),
    ("among ready pods, the most recently ready first",
     [pod("old", node="n1", phase="Running", ready=True, ready_at=T0 - 100),
      pod("new", node="n1", phase="Running", ready=True, ready_at=T0 - 1)], 1, ["new"]),
    ("otherwise the newest first",
     [pod("older", node="n1", created=T0 - 10), pod("newer", node="n1", created=T0)], 1,
     ["newer"]),
    ("zero deletes nothing", [pod("a")], 0, []),
]


@pytest.mark.parametrize("desc,pods,count,expected", DELETE_CASES, ids=[c[0] for c in DELETE_CASES])
def test_pods_to_delete(desc, pods, count, expected):
    assert names(pods_to_delete(pods, count)) == expected


# -- the controller over a real registry ---------------------------------------------------------

class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def env(tmp_path):
    import time
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        clock = Clock(time.time())
        controller = ReplicaSetController(registry, clock=clock)
        await controller.start()
        try:
            yield registry, controller, clock
        finally:
            await controller.stop()


def api_rs(name="web", replicas=3, labels=None, min_ready=0) -> dict:
    obj = rs(name, replicas, labels, min_ready=min_ready)
    obj["metadata"] = {"name": name, "namespace": "ns"}
    return obj


async def owned_pods(registry, owner_name="web"):
    items, _ = await registry.list(PODS, "ns")
    return sorted((p for p in items if any(r.get("name") == owner_name and r.get("controller")
                                           for r in p["metadata"].get("ownerReferences") or ())),
                  key=lambda p: p["metadata"]["name"])


async def set_ready(registry, name, ready=True, node="node-a", when=None):
    import time

    async def bind():
        def mutate(p):
            p["spec"]["nodeName"] = node
            return p
        await registry.guaranteed_update(PODS, "ns", name, mutate)

    current = await registry.get(PODS, "ns", name)
    if not current["spec"].get("nodeName"):
        await bind()

    def status(p):
        p["status"] = {"phase": "Running", "podIP": "10.244.0.9", "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": ts(when or time.time())}]}
        return p
    return await registry.guaranteed_update(PODS, "ns", name, status, subresource="status")


def count(n):
    return lambda pods: len(pods) == n


async def rs_status(registry, name="web"):
    return ((await get_or_none(registry, REPLICASETS, "ns", name)) or {}).get("status") or {}


async def test_creates_pods_from_the_template_with_owner_references(env):
    registry, controller, _ = env
    created = await registry.create(REPLICASETS, "ns", api_rs(replicas=3))
    pods = await eventually(registry, lambda: owned_pods(registry), count(3), "3 pods")
    for p in pods:
        assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", p["metadata"]["name"])
        assert p["metadata"]["labels"] == {"app": "web"}
        ref = p["metadata"]["ownerReferences"][0]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                       "uid": created["metadata"]["uid"], "controller": True,
                       "blockOwnerDeletion": True}
    st = await eventually(registry, lambda: rs_status(registry),
                          lambda s: s.get("replicas") == 3, "status.replicas")
    assert st == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 0,
                  "availableReplicas": 0, "observedGeneration": 1}
    await controller.wait_idle()
    assert len(await owned_pods(registry)) == 3  # no extra creates from a lagging cache
    events, _ = await registry.list(EVENTS, "ns")
    assert sum(e["reason"] == "SuccessfulCreate" for e in events) == 3


async def test_status_follows_readiness_and_scale_down_removes_not_ready_first(env):
    registry, controller, _ = env
    await registry.create(REPLICASETS, "ns", api_rs(replicas=3))
    pods = await eventually(registry, lambda: owned_pods(registry), count(3), "3 pods")
    for p in pods[:2]:
        await set_ready(registry, p["metadata"]["name"])
    await eventually(registry, lambda: rs_status(registry),
                     lambda s: s.get("readyReplicas") == 2 and s.get("availableReplicas") == 2,
                     "2 ready")

    def scale(n):
        def mutate(obj):
            obj["spec"]["replicas"] = n
            return obj
        return mutate
    await registry.guaranteed_update(REPLICASETS, "ns", "web", scale(2))
    left = await eventually(registry, lambda: owned_pods(registry), count(2), "scaled to 2")
    assert sorted(names(left)) == sorted(names(pods[:2]))  # the not-ready one went
    await eventually(registry, lambda: rs_status(registry),
                     lambda s: s.get("replicas") == 2 and s.get("observedGeneration") == 2,
                     "status after scale down")

    await registry.guaranteed_update(REPLICASETS, "ns", "web", scale(5))
    await eventually(registry, lambda: owned_pods(registry), count(5), "scaled to 5")
    await registry.guaranteed_update(REPLICASETS, "ns", "web", scale(0))
    await eventually(registry, lambda: owned_pods(registry), count(0), "scaled to 0")


async def test_deleted_pod_is_replaced(env):
    registry, controller, _ = env
    await registry.create(REPLICASETS, "ns", api_rs(replicas=2))
    pods = await eventually(registry, lambda: owned_pods(registry), count(2), "2 pods")
    await registry.delete(PODS, "ns", pods[0]["metadata"]["name"])
    now = await eventually(registry, lambda: owned_pods(registry),
                           lambda ps: len(ps) == 2 and pods[0]["metadata"]["name"] not in names(ps),
                           "replacement")
    assert pods[1]["metadata"]["name"] in names(now)


async def test_adopts_matching_orphans_and_releases_relabelled_pods(env):
    registry, controller, _ = env
    for n in ("orphan-1", "orphan-2"):
        await registry.create(PODS, "ns", {"metadata": {"name": n, "labels": {"app": "web"}},
                                           "spec": {"containers": [{"name": "c",
                                                                    "image": "nginx"}]}})
    await registry.create(REPLICASETS, "ns", api_rs(replicas=2))
    pods = await eventually(registry, lambda: owned_pods(registry), count(2), "adopted")
    assert names(pods) == ["orphan-1", "orphan-2"]  # adopted instead of creating new ones
    await controller.wait_idle()
    assert len((await registry.list(PODS, "ns"))[0]) == 2

    def relabel(p):
        p["metadata"]["labels"] = {"app": "debug"}
        return p
    await registry.guaranteed_update(PODS, "ns", "orphan-1", relabel)
    pods = await eventually(registry, lambda: owned_pods(registry),
                            lambda ps: len(ps) == 2 and "orphan-1" not in names(ps), "released")
    released = await registry.get(PODS, "ns", "orphan-1")
    assert "ownerReferences" not in released["metadata"]


async def test_min_ready_seconds_uses_the_injected_clock(env):
    import time
    registry, controller, clock = env
    await registry.create(REPLICASETS, "ns", api_rs(replicas=1, min_ready=30))
    [p] = await eventually(registry, lambda: owned_pods(registry), count(1), "1 pod")
    await set_ready(registry, p["metadata"]["name"], when=clock.now)
    await eventually(registry, lambda: rs_status(registry),
                     lambda s: s.get("readyReplicas") == 1, "ready")
    assert (await rs_status(registry))["availableReplicas"] == 0
    clock.now += 31
    controller.queue.add("ns/web")
    await eventually(registry, lambda: rs_status(registry),
                     lambda s: s.get("availableReplicas") == 1, "available after 30s")
    assert time.time() < clock.now  # the wait was the fake clock's, not a real one
