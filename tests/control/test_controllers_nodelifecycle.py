"""Node lifecycle: health arithmetic table-first, then NotReady marking and eviction over a
real Registry and SQLite store, with an injected clock (no waiting)."""

from __future__ import annotations

import time

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.nodelifecycle import (
    NodeLifecycleController, mark_unknown, node_health,
)
from meshnet.control.controllers.podutil import rfc3339

from controllers_helpers import PODS, create_namespace, eventually, get_or_none, make_registry

NODES = lookup("nodes")
LEASES = lookup("leases")
T0 = 1_700_000_000.0


def node(ready="True", transition=T0, heartbeat=T0, created=T0 - 1000):
    return {"metadata": {"name": "n1", "creationTimestamp": rfc3339(created)},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastHeartbeatTime": rfc3339(heartbeat),
                                       "lastTransitionTime": rfc3339(transition)}]}}


def lease(renewed):
    return {"spec": {"renewTime": rfc3339(renewed) if renewed else None,
                     "leaseDurationSeconds": 40}}


HEALTH_CASES = [
    ("fresh lease", node(heartbeat=T0 - 100), lease(T0 - 10), T0, (False, False, 30.05)),
    ("lease expired, node still says Ready: mark now, evict later",
     node(heartbeat=T0 - 100), lease(T0 - 41), T0, (True, False, 300.05)),
    ("NotReady long enough: evict", node("Unknown", transition=T0 - 301, heartbeat=T0 - 400),
     lease(T0 - 400), T0, (True, True, None)),
    ("no lease: the Ready heartbeat counts", node(heartbeat=T0 - 5), None, T0,
     (False, False, 35.05)),
    ("nothing ever reported: creation time counts", {"metadata": {
        "creationTimestamp": rfc3339(T0 - 50)}}, None, T0, (True, False, 300.05)),
]


@pytest.mark.parametrize("desc,n,l,now,expected", HEALTH_CASES, ids=[c[0] for c in HEALTH_CASES])
def test_node_health(desc, n, l, now, expected):
    h = node_health(n, l, now, 40.0, 300.0)
    assert (h.expired, h.evict, None if h.next_check_s is None else
            round(h.next_check_s, 2)) == expected


def test_mark_unknown_sets_every_kubelet_condition_once():
    n = node()
    n["status"]["conditions"].append({"type": "MemoryPressure", "status": "False"})
    marked = mark_unknown(n, T0 + 60)
    assert [(c["type"], c["status"], c["reason"]) for c in marked["status"]["conditions"]] == \
        [("Ready", "Unknown", "NodeStatusUnknown"),
         ("MemoryPressure", "Unknown", "NodeStatusUnknown")]
    assert marked["status"]["conditions"][0]["message"] == "Kubelet stopped posting node status."
    assert mark_unknown(marked, T0 + 120) is None


# -- the controller over a real registry ---------------------------------------------------------

class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        for ns in ("ns", "kube-node-lease", "default"):
            await create_namespace(registry, ns)
        clock = Clock(time.time())
        controller = NodeLifecycleController(
            registry, ControllerConfig(node_monitor_grace_period_s=40,
                                       pod_eviction_timeout_s=300), clock=clock)
        await controller.start()
        try:
            yield registry, controller, clock
        finally:
            await controller.stop()


async def add_node(registry, name, now):
    await registry.create(NODES, None, {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True",
                                   "lastHeartbeatTime": rfc3339(now),
                                   "lastTransitionTime": rfc3339(now)}]}})
    await registry.create(LEASES, "kube-node-lease", {
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))}})


async def add_pod(registry, name, node_name):
    await registry.create(PODS, "ns", {"metadata": {"name": name},
                                       "spec": {"nodeName": node_name, "containers": [
                                           {"name": "c", "image": "nginx"}]}})

    def ready(p):
        p["status"] = {"phase": "Running", "podIP": "10.244.0.3",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        return p
    await registry.guaranteed_update(PODS, "ns", name, ready, subresource="status")


async def renew(registry, name, now):
    def mutate(lease):
        lease["spec"]["renewTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))
        return lease
    await registry.guaranteed_update(LEASES, "kube-node-lease", name, mutate)


def ready_status(obj):
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or ()
                 if c["type"] == "Ready"), None)


async def test_expired_lease_marks_node_and_pods_then_evicts(env):
    registry, controller, clock = env
    start = clock.now
    await add_node(registry, "alive", start)
    await add_node(registry, "dead", start)
    await add_pod(registry, "on-alive", "alive")
    await add_pod(registry, "on-dead", "dead")
    await controller.wait_idle()

    clock.now = start + 41
    await renew(registry, "alive", clock.now)
    controller.resync()
    dead = await eventually(registry, lambda: registry.get(NODES, None, "dead"),
                            lambda n: ready_status(n) == "Unknown", "dead node Unknown")
    ready = next(c for c in dead["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NodeStatusUnknown"
    await eventually(registry, lambda: registry.get(PODS, "ns", "on-dead"),
                     lambda p: ready_status(p) == "False", "its pod not ready")
    await controller.wait_idle()
    assert ready_status(await registry.get(NODES, None, "alive")) == "True"
    assert ready_status(await registry.get(PODS, "ns", "on-alive")) == "True"

    clock.now = start + 41 + 299  # not yet the eviction timeout
    await renew(registry, "alive", clock.now)
    controller.resync()
    await controller.wait_idle()
    assert await get_or_none(registry, PODS, "ns", "on-dead") is not None

    clock.now = start + 41 + 301
    await renew(registry, "alive", clock.now)
    controller.resync()
    await eventually(registry, lambda: get_or_none(registry, PODS, "ns", "on-dead"),
                     lambda p: p is None, "pod on the dead node evicted")
    assert await get_or_none(registry, PODS, "ns", "on-alive") is not None


async def test_stale_heartbeat_at_start_gets_a_full_grace_period(env):
    """A node whose Lease is already old when this controller first sees it (restored from a
    backup, or a new leader after an outage) is not marked at once: as kube's probeTimestamp,
    the grace period counts on the controller's clock from when it saw the heartbeat."""
    registry, controller, clock = env
    written = clock.now
    start = clock.now = written + 3600  # every timestamp in the objects is an hour old
    await add_node(registry, "restored", written)
    await add_pod(registry, "on-restored", "restored")
    await controller.wait_idle()
    assert ready_status(await registry.get(NODES, None, "restored")) == "True"
    assert ready_status(await registry.get(PODS, "ns", "on-restored")) == "True"

    clock.now = start + 30  # the agent renews within the grace period: nothing happens
    await renew(registry, "restored", clock.now)
    controller.resync()
    await controller.wait_idle()
    assert ready_status(await registry.get(NODES, None, "restored")) == "True"

    clock.now = start + 30 + 41  # and then goes silent: marked after the grace period
    controller.resync()
    await eventually(registry, lambda: registry.get(NODES, None, "restored"),
                     lambda n: ready_status(n) == "Unknown", "restored node Unknown")


HEALTH_SEEN_CASES = [
    ("old heartbeat, just seen: not expired", T0 - 3600, T0, T0 + 10, (False, False, 30.05)),
    ("old heartbeat, seen a grace period ago: expired", T0 - 3600, T0, T0 + 41,
     (True, False, 300.05)),
]


@pytest.mark.parametrize("desc,heartbeat,seen,now,expected", HEALTH_SEEN_CASES,
                         ids=[c[0] for c in HEALTH_SEEN_CASES])
def test_node_health_counts_from_when_the_heartbeat_was_seen(desc, heartbeat, seen, now,
                                                             expected):
    h = node_health(node(heartbeat=heartbeat), lease(heartbeat), now, 40.0, 300.0,
                    seen_at=seen, watched_since=seen)
    assert (h.expired, h.evict, None if h.next_check_s is None else
            round(h.next_check_s, 2)) == expected
