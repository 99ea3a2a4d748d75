"""The Deployment controller: hashing, fenceposts, rolling plans, history and status
table-first; then Deployment + ReplicaSet controllers over a real Registry and SQLite store,
with a stand-in kubelet marking pods Running/Ready (there is no node agent in these tests)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.deployment import (
    HASH_LABEL, REVISION_ANNOTATION, SAFE_ALPHABET, DeploymentController, RSState,
    deployment_status, history_to_delete, plan_rolling, pod_template_hash, resolve_fenceposts,
    templates_equal,
)
from meshnet.control.controllers.replicaset import ReplicaSetController

from controllers_helpers import PODS, create_namespace, eventually, make_registry

DEPLOYMENTS = lookup("deployments")
REPLICASETS = lookup("replicasets")
T0 = 1_700_000_000.0
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


# -- hashing -----------------------------------------------------------------------------------

def test_pod_template_hash_is_stable_and_well_formed():
    h = pod_template_hash(TEMPLATE)
    assert h == pod_template_hash({"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]})
    assert len(h) == 10 and set(h) <= set(SAFE_ALPHABET)
    # A fixed value: the hash must not change between releases (RS names would change).
    assert h == "79bfd649dc"

    assert pod_template_hash({**TEMPLATE, "spec": {"containers": [
        {"name": "c", "image": "nginx:2"}]}}) != h
    assert pod_template_hash(TEMPLATE, collision_count=1) != h


def test_fnv32a_matches_the_reference_vectors():
    from meshnet.control.controllers.deployment import fnv32a
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_templates_equal_ignores_the_hash_label():
    with_hash = {"metadata": {"labels": {"app": "web", HASH_LABEL: "x"}}, "spec": TEMPLATE["spec"]}
    assert templates_equal(with_hash, TEMPLATE)
    assert not templates_equal(with_hash, {**TEMPLATE, "spec": {}})


FENCEPOST_CASES = [
    ("defaults on 4 replicas", "25%", "25%", 4, (1, 1)),
    ("surge rounds up, unavailable rounds down", "25%", "25%", 3, (1, 0)),
    ("absolute numbers", 2, 1, 10, (2, 1)),
    ("both zero becomes one unavailable", 0, "10%", 3, (0, 1)),
    ("100% surge", "100%", 0, 5, (5, 0)),
]


@pytest.mark.parametrize("desc,surge,unavail,replicas,expected", FENCEPOST_CASES,
                         ids=[c[0] for c in FENCEPOST_CASES])
def test_resolve_fenceposts(desc, surge, unavail, replicas, expected):
    assert resolve_fenceposts(surge, unavail, replicas) == expected


def S(name, replicas, available=None, created=0.0):
    return RSState(name, replicas, replicas if available is None else available, created)


ROLLING_CASES = [
    ("new ReplicaSet not there yet: as many as the surge allows",
     3, 1, 0, None, [S("old", 3)], {"": 1}),
    ("first rollout: all at once", 3, 1, 0, None, [], {"": 3}),
    ("scale the new one up within surge", 3, 1, 0, S("new", 0), [S("old", 3)], {"new": 1}),
    ("at the surge limit, scale old down while availability holds",
     3, 1, 0, S("new", 1, available=1), [S("old", 3)], {"old": 2}),
    ("new pods not available yet: nothing may go",
     3, 1, 0, S("new", 1, available=0), [S("old", 3)], {}),
    ("unavailable old pods go first, even without spare availability",
     4, 2, 0, S("new", 2, available=2), [S("old", 4, available=2)], {"old": 2}),
    ("no old pod goes while new pods are unavailable and nothing is spare",
     3, 1, 0, S("new", 1, available=0), [S("old", 3, available=1)], {}),
    ("maxUnavailable lets old pods go before new ones are up",
     4, 0, 1, S("new", 0), [S("old", 4)], {"old": 3}),
    ("oldest old ReplicaSet is scaled down first",
     2, 0, 1, S("new", 2, available=2), [S("b", 1, created=2), S("a", 1, created=1)],
     {"a": 0, "b": 0}),
    ("the Deployment shrank: the new one follows down",
     2, 1, 0, S("new", 5), [], {"new": 2}),
    ("done: nothing to do", 3, 1, 0, S("new", 3), [S("old", 0)], {}),
]


@pytest.mark.parametrize("desc,replicas,surge,unavail,new,olds,expected", ROLLING_CASES,
                         ids=[c[0] for c in ROLLING_CASES])
def test_plan_rolling(desc, replicas, surge, unavail, new, olds, expected):
    assert plan_rolling(replicas, surge, unavail, new, olds) == expected


def rs_obj(name, revision, replicas=0, pods=0):
    return {"metadata": {"name": name, "annotations": {REVISION_ANNOTATION: str(revision)}},
            "spec": {"replicas": replicas}, "status": {"replicas": pods}}


HISTORY_CASES = [
    ("within the limit nothing goes", [rs_obj("a", 1), rs_obj("b", 2)], 2, []),
    ("the lowest revisions go first", [rs_obj("c", 3), rs_obj("a", 1), rs_obj("b", 2)], 1,
     ["a", "b"]),
    ("ReplicaSets with replicas or pods are kept",
     [rs_obj("a", 1, replicas=1), rs_obj("b", 2, pods=1), rs_obj("c", 3)], 0, ["c"]),
]


@pytest.mark.parametrize("desc,olds,limit,expected", HISTORY_CASES,
                         ids=[c[0] for c in HISTORY_CASES])
def test_history_to_delete(desc, olds, limit, expected):
    assert [r["metadata"]["name"] for r in history_to_delete(olds, limit)] == expected


def deploy_obj(replicas=3, status=None, deadline=600):
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 4},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": deadline,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": TEMPLATE},
            "status": status or {}}


def rs_status(name, replicas, ready, available):
    return {"metadata": {"name": name}, "status": {"replicas": replicas, "readyReplicas": ready,
                                                   "availableReplicas": available}}


def cond(status, t):
    return next(c for c in status["conditions"] if c["type"] == t)


def test_deployment_status_complete():
    new = rs_status("web-n", 3, 3, 3)
    st = deployment_status(deploy_obj(), new, [new, rs_status("web-o", 0, 0, 0)], T0)
    assert {k: v for k, v in st.items() if k != "conditions"} == {
        "observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3, "unavailableReplicas": 0}
    assert cond(st, "Available")["status"] == "True"
    assert cond(st, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert cond(st, "Progressing")["message"] == 'ReplicaSet "web-n" has successfully progressed.'


def test_deployment_status_in_progress_then_past_its_deadline():
    new, old = rs_status("web-n", 1, 0, 0), rs_status("web-o", 3, 3, 3)
    st = deployment_status(deploy_obj(), new, [new, old], T0)
    assert st["unavailableReplicas"] == 0 and st["updatedReplicas"] == 1
    assert cond(st, "Progressing")["reason"] == "ReplicaSetUpdated"
    later = deployment_status(deploy_obj(status=st, deadline=60), new, [new, old], T0 + 30)
    assert cond(later, "Progressing")["reason"] == "ReplicaSetUpdated"
    late = deployment_status(deploy_obj(status=later, deadline=60), new, [new, old], T0 + 61)
    assert cond(late, "Progressing")["status"] == "False"
    assert cond(late, "Progressing")["reason"] == "ProgressDeadlineExceeded"


def test_deployment_status_unavailable():
    new = rs_status("web-n", 3, 1, 1)
    st = deployment_status(deploy_obj(), new, [new], T0)
    assert st["unavailableReplicas"] == 2
    assert cond(st, "Available")["reason"] == "MinimumReplicasUnavailable"


# -- the controllers over a real registry --------------------------------------------------------

class Kubelet:
    """Marks every scheduled-or-not pod Running and Ready as it appears (when `ready`), and
    records the largest number of pods and the smallest number of ready pods seen at once."""

    def __init__(self, registry):
        self.registry = registry
        self.ready = True
        self.max_pods = 0
        self.snapshots: list[dict[str, bool]] = []
        self._task: asyncio.Task | None = None

    async def run(self):
        watch = self.registry.watch(PODS, "ns")
        try:
            async for ev in watch:
                pods, _ = await self.registry.list(PODS, "ns")
                self.max_pods = max(self.max_pods, len(pods))
                self.snapshots.append({p["metadata"]["name"]: _is_ready(p) for p in pods})
                if ev.type == "ADDED" and self.ready:
                    await self.make_ready(ev.object["metadata"]["name"])
        finally:
            watch.close()

    async def make_ready(self, name):
        def mutate(p):
            p["status"] = {"phase": "Running", "podIP": "10.244.0.5", "conditions": [
                {"type": "Ready", "status": "True",
                 "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
            return p
        try:
            await self.registry.guaranteed_update(PODS, "ns", name, mutate, subresource="status")
        except Exception:
            pass  # deleted meanwhile

    def start(self):
        self._task = asyncio.create_task(self.run())

    async def stop(self):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _is_ready(p):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or ())


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        clock = Clock()
        controllers = [ReplicaSetController(registry), DeploymentController(registry, clock=clock)]
        kubelet = Kubelet(registry)
        kubelet.start()
        for c in controllers:
            await c.start()
        try:
            yield registry, controllers[1], kubelet, clock
        finally:
            for c in controllers:
                await c.stop()
            await kubelet.stop()


def api_deploy(replicas=3, image="nginx:1", strategy=None, history=10, deadline=600):
    return {"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": replicas, "revisionHistoryLimit": history,
                     "progressDeadlineSeconds": deadline,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": strategy or {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


async def get_deploy(registry):
    return await registry.get(DEPLOYMENTS, "ns", "web")


async def replica_sets(registry):
    items, _ = await registry.list(REPLICASETS, "ns")
    return sorted(items, key=lambda r: r["metadata"]["name"])


async def set_image(registry, image):
    def mutate(d):
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        return d
    return await registry.guaranteed_update(DEPLOYMENTS, "ns", "web", mutate)


def rolled_out(d):
    st = d.get("status") or {}
    want = d["spec"]["replicas"]
    return (st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == want and st.get("replicas") == want
            and st.get("availableReplicas") == want)


async def test_deployment_creates_a_hashed_replica_set_and_pods(env):
    registry, controller, kubelet, _ = env
    await registry.create(DEPLOYMENTS, "ns", api_deploy(replicas=3))
    d = await eventually(registry, lambda: get_deploy(registry), rolled_out, "rolled out")
    [rs] = await replica_sets(registry)
    h = rs["metadata"]["labels"][HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}" and len(h) == 10
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    pods, _ = await registry.list(PODS, "ns")
    assert len(pods) == 3
    for p in pods:
        assert re.fullmatch(rf"web-{h}-[{SAFE_ALPHABET}]{{5}}", p["metadata"]["name"])
        assert p["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    d = await eventually(registry, lambda: get_deploy(registry),
                         lambda d: (d["metadata"].get("annotations") or {}).get(
                             REVISION_ANNOTATION) == "1", "revision annotation")
    st = d["status"]
    assert st["unavailableReplicas"] == 0 and st["readyReplicas"] == 3
    assert cond(st, "Available")["status"] == "True"
    assert cond(st, "Progressing")["reason"] == "NewReplicaSetAvailable"


async def test_rolling_update_respects_surge_and_unavailability_then_rolls_back(env):
    registry, controller, kubelet, _ = env
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    await registry.create(DEPLOYMENTS, "ns", api_deploy(replicas=4, strategy=strategy))
    await eventually(registry, lambda: get_deploy(registry), rolled_out, "first rollout")
    [first] = await replica_sets(registry)
    kubelet.max_pods = 0
    kubelet.snapshots.clear()
    await set_image(registry, "nginx:2")
    await eventually(registry, lambda: get_deploy(registry), rolled_out, "second rollout")
    assert kubelet.max_pods <= 5  # replicas + maxSurge
    # maxUnavailable 0 keeps four available; a snapshot may fall between a new pod's
    # creation and its readiness, never below the four old ready ones.
    ready_counts = [sum(s.values()) for s in kubelet.snapshots]
    assert min(ready_counts) >= 4
    rss = await replica_sets(registry)
    assert len(rss) == 2
    new = next(r for r in rss if r["metadata"]["name"] != first["metadata"]["name"])
    old = next(r for r in rss if r["metadata"]["name"] == first["metadata"]["name"])
    assert new["spec"]["replicas"] == 4 and old["spec"]["replicas"] == 0
    assert new["metadata"]["annotations"][REVISION_ANNOTATION] == "2"
    pods, _ = await registry.list(PODS, "ns")
    assert {p["metadata"]["labels"][HASH_LABEL] for p in pods} == \
        {new["metadata"]["labels"][HASH_LABEL]}

    # Rollback = the old template again: the first ReplicaSet is reused as revision 3.
    def undo(d):
        tmpl = {**old["spec"]["template"]}
        tmpl["metadata"] = {**tmpl["metadata"], "labels": {
            k: v for k, v in tmpl["metadata"]["labels"].items() if k != HASH_LABEL}}
        d["spec"]["template"] = tmpl
        return d
    await registry.guaranteed_update(DEPLOYMENTS, "ns", "web", undo)
    d = await eventually(registry, lambda: get_deploy(registry),
                         lambda d: rolled_out(d) and d["metadata"].get("annotations", {}).get(
                             REVISION_ANNOTATION) == "3", "rolled back")
    rss = await replica_sets(registry)
    assert len(rss) == 2
    back = next(r for r in rss if r["metadata"]["name"] == first["metadata"]["name"])
    assert back["spec"]["replicas"] == 4
    assert back["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    assert d["status"]["updatedReplicas"] == 4


async def test_recreate_removes_old_pods_before_new_ones_start(env):
    registry, controller, kubelet, _ = env
    await registry.create(DEPLOYMENTS, "ns", api_deploy(replicas=2,
                                                        strategy={"type": "Recreate"}))
    await eventually(registry, lambda: get_deploy(registry), rolled_out, "first rollout")
    first_hash = (await replica_sets(registry))[0]["metadata"]["labels"][HASH_LABEL]
    kubelet.snapshots.clear()
    await set_image(registry, "nginx:2")
    await eventually(registry, lambda: get_deploy(registry), rolled_out, "recreated")
    pods, _ = await registry.list(PODS, "ns")
    new_hash = pods[0]["metadata"]["labels"][HASH_LABEL]
    assert new_hash != first_hash
    for snap in kubelet.snapshots:
        hashes = {name.split("-")[1] for name in snap}
        assert len(hashes) <= 1, f"old and new pods at the same time: {sorted(snap)}"


async def test_scaling_and_revision_history_limit(env):
    registry, controller, kubelet, _ = env
    await registry.create(DEPLOYMENTS, "ns", api_deploy(replicas=2, history=1))
    await eventually(registry, lambda: get_deploy(registry), rolled_out, "rollout 1")
    for image in ("nginx:2", "nginx:3", "nginx:4"):
        await set_image(registry, image)
        await eventually(registry, lambda: get_deploy(registry), rolled_out, f"rollout {image}")
    rss = await eventually(registry, lambda: replica_sets(registry), lambda r: len(r) == 2,
                           "history trimmed to 1 old ReplicaSet")
    assert sorted(r["metadata"]["annotations"][REVISION_ANNOTATION] for r in rss) == ["3", "4"]

    def scale(d):
        d["spec"]["replicas"] = 5
        return d
    await registry.guaranteed_update(DEPLOYMENTS, "ns", "web", scale)
    d = await eventually(registry, lambda: get_deploy(registry), rolled_out, "scaled to 5")
    assert d["status"]["availableReplicas"] == 5


async def test_progress_deadline_uses_the_injected_clock(env):
    registry, controller, kubelet, clock = env
    kubelet.ready = False
    await registry.create(DEPLOYMENTS, "ns", api_deploy(replicas=1, deadline=30))
    await eventually(registry, lambda: get_deploy(registry),
                     lambda d: (d.get("status") or {}).get("replicas") == 1, "pod created")
    await controller.wait_idle()
    d = await get_deploy(registry)
    assert cond(d["status"], "Progressing")["status"] == "True"
    clock.now += 31
    controller.queue.add("ns/web")
    d = await eventually(registry, lambda: get_deploy(registry),
                         lambda d: cond(d["status"], "Progressing")["reason"] ==
                         "ProgressDeadlineExceeded", "deadline exceeded")
    assert cond(d["status"], "Progressing")["status"] == "False"
    assert cond(d["status"], "Available")["status"] == "False"
