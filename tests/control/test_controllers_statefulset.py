"""The StatefulSet controller: ordinals and the ordered plan table-first, then the controller
over a real Registry and SQLite store, pods made Running/Ready by the test."""

from __future__ import annotations

import time

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.statefulset import (
    POD_NAME_LABEL, REVISION_LABEL, StatefulSetController, ordinal_of, plan_stateful,
    update_revision,
)

from controllers_helpers import PODS, create_namespace, eventually, get_or_none, make_registry

STATEFULSETS = lookup("statefulsets")

ORDINAL_CASES = [
    ("plain", "db", "db-0", 0), ("two digits", "db", "db-12", 12),
    ("another set's pod", "db", "dbx-1", None), ("leading zero", "db", "db-01", None),
    ("a dashed set name", "my-db", "my-db-3", 3), ("not an ordinal", "db", "db-x", None),
]


@pytest.mark.parametrize("desc,set_name,pod_name,expected", ORDINAL_CASES,
                         ids=[c[0] for c in ORDINAL_CASES])
def test_ordinal_of(desc, set_name, pod_name, expected):
    assert ordinal_of(set_name, pod_name) == expected


def sts(replicas=3, policy="OrderedReady", strategy=None):
    return {"metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {"replicas": replicas, "podManagementPolicy": policy,
                     "updateStrategy": strategy or {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {}}}}


def p(i, state="ready", rev="r1"):
    phase = {"ready": "Running", "running": "Running", "pending": "Pending",
             "failed": "Failed", "deleting": "Running"}[state]
    meta = {"name": f"db-{i}", "labels": {REVISION_LABEL: rev}}
    if state == "deleting":
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if state == "ready" else "False"}]}}


def pods(*specs):
    return {i: p(i, *s) if isinstance(s, tuple) else p(i, s) for i, s in enumerate(specs)}


PLAN_CASES = [
    ("empty: create pod 0 only", sts(), {}, [0], []),
    ("0 not ready yet: wait", sts(), pods("running"), [], []),
    ("0 ready: create 1", sts(), pods("ready"), [1], []),
    ("a gap is filled first", sts(), {0: p(0), 2: p(2)}, [1], []),
    ("Parallel creates all", sts(policy="Parallel"), {}, [0, 1, 2], []),
    ("scale down: the highest first, one at a time", sts(replicas=1),
     pods("ready", "ready", "ready"), [], ["db-2"]),
    ("scale down waits for a terminating pod", sts(replicas=1),
     pods("ready", "ready", "deleting"), [], []),
    ("scale down waits for unready predecessors", sts(replicas=1),
     pods("ready", "running", "ready"), [], []),
    ("Parallel scale down removes all surplus", sts(replicas=1, policy="Parallel"),
     pods("ready", "running", "ready"), [], ["db-2", "db-1"]),
    ("a failed pod is deleted to be recreated", sts(), pods("ready", "failed"), [],
     ["db-1"]),
    ("rolling update: highest stale pod first", sts(),
     pods(("ready", "old"), ("ready", "old"), ("ready", "old")), [], ["db-2"]),
    ("rolling update honours the partition",
     sts(strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
     pods(("ready", "old"), ("ready", "old"), ("ready", "r1")), [], []),
    ("OnDelete never deletes stale pods", sts(strategy={"type": "OnDelete"}),
     pods(("ready", "old"), ("ready", "old"), ("ready", "old")), [], []),
]


@pytest.mark.parametrize("desc,s,existing,create,delete", PLAN_CASES,
                         ids=[c[0] for c in PLAN_CASES])
def test_plan_stateful(desc, s, existing, create, delete):
    plan = plan_stateful(s, existing, "r1")
    assert (plan.create, plan.delete) == (create, delete)


# -- the controller over a real registry ---------------------------------------------------------

@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        controller = StatefulSetController(registry)
        await controller.start()
        try:
            yield registry, controller
        finally:
            await controller.stop()


def api_sts(replicas=3, image="db:1"):
    return {"metadata": {"name": "db", "namespace": "ns"},
            "spec": {"replicas": replicas, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


async def pod_names(registry):
    items, _ = await registry.list(PODS, "ns")
    return sorted(i["metadata"]["name"] for i in items)


async def make_ready(registry, name):
    def mutate(pod):
        pod["status"] = {"phase": "Running", "podIP": "10.244.0.7", "conditions": [
            {"type": "Ready", "status": "True",
             "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
        return pod
    await registry.guaranteed_update(PODS, "ns", name, mutate, subresource="status")


async def get_sts(registry):
    return await registry.get(STATEFULSETS, "ns", "db")


async def test_pods_start_in_order_with_stable_names_and_dns_identity(env):
    registry, controller = env
    await registry.create(STATEFULSETS, "ns", api_sts(replicas=3))
    for i in range(3):
        names = await eventually(registry, lambda: pod_names(registry),
                                 lambda n, i=i: len(n) == i + 1, f"pod {i} created")
        await controller.wait_idle()
        assert await pod_names(registry) == [f"db-{j}" for j in range(i + 1)]  # not yet i+1
        await make_ready(registry, names[-1])
    pod = await registry.get(PODS, "ns", "db-1")
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"][POD_NAME_LABEL] == "db-1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    s = await eventually(registry, lambda: get_sts(registry),
                         lambda s: (s.get("status") or {}).get("readyReplicas") == 3, "3 ready")
    rev = update_revision(s)
    assert {k: s["status"][k] for k in ("replicas", "currentReplicas", "updatedReplicas",
                                        "currentRevision", "updateRevision")} == \
        {"replicas": 3, "currentReplicas": 3, "updatedReplicas": 3, "currentRevision": rev,
         "updateRevision": rev}

    # A deleted pod comes back under the same name.
    old_uid = pod["metadata"]["uid"]
    await registry.delete(PODS, "ns", "db-1")
    back = await eventually(registry, lambda: get_or_none(registry, PODS, "ns", "db-1"),
                            lambda p: p and p["metadata"]["uid"] != old_uid, "db-1 recreated")
    assert back["spec"]["hostname"] == "db-1"
    await make_ready(registry, "db-1")

    # Scale down removes the highest ordinal first.
    def scale(obj):
        obj["spec"]["replicas"] = 1
        return obj
    await registry.guaranteed_update(STATEFULSETS, "ns", "db", scale)
    await eventually(registry, lambda: pod_names(registry), lambda n: n == ["db-0", "db-1"],
                     "db-2 removed first")
    await eventually(registry, lambda: pod_names(registry), lambda n: n == ["db-0"],
                     "then db-1")


async def test_rolling_update_replaces_pods_from_the_highest_ordinal(env):
    registry, controller = env
    await registry.create(STATEFULSETS, "ns", api_sts(replicas=2))
    for i in range(2):
        await eventually(registry, lambda: pod_names(registry), lambda n, i=i: len(n) == i + 1,
                         f"pod {i}")
        await make_ready(registry, f"db-{i}")
    s = await eventually(registry, lambda: get_sts(registry),
                         lambda s: (s.get("status") or {}).get("readyReplicas") == 2, "ready")
    old_uids = {n: (await registry.get(PODS, "ns", n))["metadata"]["uid"]
                for n in ("db-0", "db-1")}

    def new_image(obj):
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = "db:2"
        return obj
    s = await registry.guaranteed_update(STATEFULSETS, "ns", "db", new_image)
    rev = update_revision(s)
    p1 = await eventually(registry, lambda: get_or_none(registry, PODS, "ns", "db-1"),
                          lambda p: p and p["metadata"]["labels"][REVISION_LABEL] == rev,
                          "db-1 replaced first")
    assert p1["spec"]["containers"][0]["image"] == "db:2"
    assert (await registry.get(PODS, "ns", "db-0"))["metadata"]["uid"] == old_uids["db-0"]
    await make_ready(registry, "db-1")
    await eventually(registry, lambda: get_or_none(registry, PODS, "ns", "db-0"),
                     lambda p: p and p["metadata"]["labels"][REVISION_LABEL] == rev, "then db-0")
    await make_ready(registry, "db-0")
    s = await eventually(registry, lambda: get_sts(registry),
                         lambda s: s["status"].get("currentRevision") == rev and
                         s["status"].get("readyReplicas") == 2, "rolled")
    assert s["status"]["updatedReplicas"] == 2
