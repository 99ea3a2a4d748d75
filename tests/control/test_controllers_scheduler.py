"""The scheduler: quantities, requests, fit, scoring and FitError wording table-first; then
binding and FailedScheduling over a real Registry and SQLite store."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from meshnet.control.controllers.scheduler import (
    NodeUsage, Scheduler, choose_node, fit_error, node_fit, node_usage, parse_quantity,
    pod_requests, score_node,
)

from controllers_helpers import EVENTS, PODS, create_namespace, eventually, make_registry
from meshnet.api.resources import lookup

NODES = lookup("nodes")


QUANTITY_CASES = [
    ("plain cores", "2", Decimal(2)),
    ("millicores", "250m", Decimal("0.25")),
    ("fractional cores", "1.5", Decimal("1.5")),
    ("binary suffix", "128Mi", Decimal(128 * 2 ** 20)),
    ("decimal suffix", "1G", Decimal(10 ** 9)),
    ("exponent", "2e3", Decimal(2000)),
    ("a JSON number", 3, Decimal(3)),
]


@pytest.mark.parametrize("desc,text,expected", QUANTITY_CASES, ids=[c[0] for c in QUANTITY_CASES])
def test_parse_quantity(desc, text, expected):
    assert parse_quantity(text) == expected


def test_parse_quantity_rejects_garbage_with_a_hint():
    with pytest.raises(ValueError, match="optional suffix"):
        parse_quantity("12 apples")


def pod(name="p", cpu=None, mem=None, *, node=None, selector=None, tolerations=None,
        init=None, phase="Pending"):
    req = {}
    if cpu:
        req["cpu"] = cpu
    if mem:
        req["memory"] = mem
    spec = {"containers": [{"name": "c", "image": "x", "resources": {"requests": req}}]}
    if init:
        spec["initContainers"] = [{"name": "i", "image": "x",
                                   "resources": {"requests": init}}]
    if node:
        spec["nodeName"] = node
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"}, "spec": spec,
            "status": {"phase": phase}}


def node(name, cpu="2", mem="4Gi", pods="110", *, ready=True, unschedulable=False, taints=None,
         labels=None):
    spec = {}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods},
                       "conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}


MI = 2 ** 20
REQUEST_CASES = [
    ("no requests", pod(), (0, 0), (100, 200 * MI)),
    ("one container", pod(cpu="500m", mem="64Mi"), (500, 64 * MI), (500, 64 * MI)),
    ("cpu only: memory takes the scoring default", pod(cpu="250m"), (250, 0), (250, 200 * MI)),
    ("a bigger init container wins", pod(cpu="100m", init={"cpu": "1"}), (1000, 0),
     (1000, 200 * MI)),
]


@pytest.mark.parametrize("desc,p,expected,nonzero", REQUEST_CASES,
                         ids=[c[0] for c in REQUEST_CASES])
def test_pod_requests(desc, p, expected, nonzero):
    assert pod_requests(p) == expected
    assert pod_requests(p, nonzero=True) == nonzero


NOSCHED = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
FIT_CASES = [
    ("fits an empty ready node", pod(cpu="1"), node("a"), (0, 0, 0), []),
    ("not ready", pod(), node("a", ready=False), (0, 0, 0), ["node(s) were not ready"]),
    ("cordoned", pod(), node("a", unschedulable=True), (0, 0, 0),
     ["node(s) were unschedulable"]),
    ("untolerated taint", pod(), node("a", taints=[NOSCHED]), (0, 0, 0),
     ["node(s) had untolerated taint {dedicated: db}"]),
    ("tolerated taint", pod(tolerations=[{"key": "dedicated", "operator": "Equal",
                                          "value": "db", "effect": "NoSchedule"}]),
     node("a", taints=[NOSCHED]), (0, 0, 0), []),
    ("PreferNoSchedule does not filter", pod(),
     node("a", taints=[{**NOSCHED, "effect": "PreferNoSchedule"}]), (0, 0, 0), []),
    ("nodeSelector mismatch", pod(selector={"disk": "ssd"}), node("a"), (0, 0, 0),
     ["node(s) didn't match Pod's node affinity/selector"]),
    ("nodeSelector match", pod(selector={"disk": "ssd"}), node("a", labels={"disk": "ssd"}),
     (0, 0, 0), []),
    ("cpu exceeded counting pods already there", pod(cpu="1"), node("a"), (1500, 0, 1),
     ["Insufficient cpu"]),
    ("memory exceeded", pod(mem="5Gi"), node("a"), (0, 0, 0), ["Insufficient memory"]),
    ("pod count exceeded", pod(), node("a", pods="1"), (0, 0, 1), ["Too many pods"]),
]


@pytest.mark.parametrize("desc,p,n,used,expected", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_node_fit(desc, p, n, used, expected):
    assert node_fit(p, n, used) == expected


SCORE_CASES = [
    # 2 CPUs and 4 GiB; no request scores as 100m and 200 MiB
    ("empty node, no requests", pod(), node("a"), NodeUsage(), (95.0 + 95.1171875) / 2),
    ("half the cpu and the memory", pod(cpu="1", mem="2Gi"), node("a"), NodeUsage(), 50.0),
    ("existing usage counts with its scoring defaults", pod(cpu="1", mem="1Gi"), node("a"),
     NodeUsage(1000, 0, 1, 1000, 2 * 2 ** 30), (0.0 + 25.0) / 2),
    ("a node reporting nothing is all free", pod(), {"metadata": {"name": "x"}, "status": {}},
     NodeUsage(), 100.0),
]


@pytest.mark.parametrize("desc,p,n,used,expected", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_score_node(desc, p, n, used, expected):
    assert score_node(p, n, used) == pytest.approx(expected)


CHOOSE_CASES = [
    ("least busy by requests wins", pod(cpu="500m"), [node("a"), node("b")],
     [pod("x", cpu="1", node="a")], ("b", "")),
    ("ties go to the first name", pod(), [node("b"), node("a")], [], ("a", "")),
    ("pods without requests spread: the emptier node wins", pod(), [node("a"), node("b")],
     [pod("x", node="a")], ("b", "")),
    ("but real requests still weigh more", pod(), [node("a"), node("b")],
     [pod("x", node="a"), pod("y", cpu="1", node="b")], ("a", "")),
    ("finished pods do not count", pod(cpu="500m"), [node("a"), node("b")],
     [pod("x", cpu="1", node="a", phase="Succeeded"), pod("y", cpu="100m", node="b")],
     ("a", "")),
    ("nothing fits: kube's wording", pod(cpu="3"), [node("a"), node("b", ready=False)], [],
     (None, "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were not ready.")),
    ("no nodes", pod(), [], [], (None, "no nodes available to schedule pods")),
]


@pytest.mark.parametrize("desc,p,nodes,pods,expected", CHOOSE_CASES,
                         ids=[c[0] for c in CHOOSE_CASES])
def test_choose_node(desc, p, nodes, pods, expected):
    assert choose_node(p, nodes, node_usage(pods)) == expected


def test_fit_error_counts_each_reason():
    assert fit_error(3, Counter({"node(s) were not ready": 2, "Insufficient memory": 1})) == \
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) were not ready."


# -- the controller over a real registry ---------------------------------------------------------

@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        scheduler = Scheduler(registry)
        await scheduler.start()
        try:
            yield registry, scheduler
        finally:
            await scheduler.stop()


async def add_node(registry, n):
    return await registry.create(NODES, None, n)


def api_pod(name, cpu=None, mem=None, **kw):
    p = pod(name, cpu, mem, **kw)
    p["metadata"] = {"name": name}
    p.pop("status")
    return p


async def get_pod(registry, name):
    return await registry.get(PODS, "ns", name)


async def events_for(registry, reason):
    events, _ = await registry.list(EVENTS, "ns")
    return [e for e in events if e["reason"] == reason]


def scheduled_cond(p):
    return next((c for c in (p.get("status") or {}).get("conditions") or ()
                 if c["type"] == "PodScheduled"), None)


async def test_binds_pods_to_the_least_busy_ready_node(env):
    registry, scheduler = env
    await add_node(registry, node("node-a"))
    await add_node(registry, node("node-b"))
    await add_node(registry, node("node-c", ready=False))
    for i in range(4):
        await registry.create(PODS, "ns", api_pod(f"p{i}", cpu="500m"))
    placed = {}
    for i in range(4):
        p = await eventually(registry, lambda i=i: get_pod(registry, f"p{i}"),
                             lambda p: p["spec"].get("nodeName") and
                             (scheduled_cond(p) or {}).get("status") == "True", f"p{i} bound")
        placed[p["metadata"]["name"]] = p["spec"]["nodeName"]
    assert sorted(Counter(placed.values()).items()) == [("node-a", 2), ("node-b", 2)]
    events = await eventually(registry, lambda: events_for(registry, "Scheduled"),
                              lambda evs: len(evs) == 4, "4 Scheduled events")
    assert sorted(e["message"] for e in events) == \
        sorted(f"Successfully assigned ns/{n} to {placed[n]}" for n in placed)


async def test_pod_that_fits_nowhere_stays_pending_until_a_node_can_take_it(env):
    registry, scheduler = env
    await add_node(registry, node("node-a", cpu="1"))
    await add_node(registry, node("node-b", ready=False))
    await registry.create(PODS, "ns", api_pod("big", cpu="2"))
    message = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were not ready."
    p = await eventually(registry, lambda: get_pod(registry, "big"),
                         lambda p: scheduled_cond(p) is not None, "PodScheduled condition")
    assert {k: scheduled_cond(p)[k] for k in ("status", "reason", "message")} == \
        {"status": "False", "reason": "Unschedulable", "message": message}
    assert not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending"
    [ev] = await eventually(registry, lambda: events_for(registry, "FailedScheduling"),
                            lambda evs: len(evs) == 1, "FailedScheduling event")
    assert ev["type"] == "Warning" and ev["message"] == message

    def make_ready(n):
        n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        return n
    await registry.guaranteed_update(NODES, None, "node-b", make_ready, subresource="status")
    p = await eventually(registry, lambda: get_pod(registry, "big"),
                         lambda p: p["spec"].get("nodeName") == "node-b" and
                         scheduled_cond(p)["status"] == "True", "bound once ready")
    assert "reason" not in scheduled_cond(p)


async def test_node_selector_and_other_schedulers_are_respected(env):
    registry, scheduler = env
    await add_node(registry, node("plain"))
    await add_node(registry, node("fast", labels={"disk": "ssd"}))
    await registry.create(PODS, "ns", api_pod("wants-ssd", selector={"disk": "ssd"}))
    other = api_pod("not-mine")
    other["spec"]["schedulerName"] = "my-scheduler"
    await registry.create(PODS, "ns", other)
    p = await eventually(registry, lambda: get_pod(registry, "wants-ssd"),
                         lambda p: p["spec"].get("nodeName"), "bound")
    assert p["spec"]["nodeName"] == "fast"
    await scheduler.wait_idle()
    assert not (await get_pod(registry, "not-mine"))["spec"].get("nodeName")


async def test_an_unschedulable_pod_is_not_retried_on_its_own_status_writes(env):
    registry, scheduler = env
    await add_node(registry, node("node-a", ready=False))
    await registry.create(PODS, "ns", api_pod("waiting"))
    [ev] = await eventually(registry, lambda: events_for(registry, "FailedScheduling"),
                            lambda evs: len(evs) == 1, "FailedScheduling event")
    await scheduler.wait_idle()
    [ev] = await events_for(registry, "FailedScheduling")
    assert ev["count"] == 1  # the PodScheduled=False write did not trigger another attempt
