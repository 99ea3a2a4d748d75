"""Controller machinery: backoff, keys, the work queue, informers over a real registry, and the
worker loop."""

from __future__ import annotations

import asyncio

import pytest

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.apiserver.registry import Registry
from meshnet.control.controllers.base import (
    Controller, Informer, Requeue, WorkQueue, backoff_delay, object_key, split_key,
)

from controllers_helpers import (
    CONVERGE_S, caught_up, create_namespace, make_registry, open_store, rv_of,
)

CONFIGMAPS = lookup("configmaps")

BACKOFF_CASES = [
    ("first retry waits the base", 0, 0.005, 60.0, 0.005),
    ("doubles per failure", 3, 0.005, 60.0, 0.04),
    ("capped at the maximum", 30, 0.005, 60.0, 60.0),
    ("huge failure counts do not overflow", 10_000, 0.005, 60.0, 60.0),
]


@pytest.mark.parametrize("desc,failures,base,cap,expected", BACKOFF_CASES,
                         ids=[c[0] for c in BACKOFF_CASES])
def test_backoff_delay(desc, failures, base, cap, expected):
    assert backoff_delay(failures, base, cap) == pytest.approx(expected)


KEY_CASES = [
    ("namespaced object", {"metadata": {"namespace": "ns", "name": "web"}}, "ns/web",
     ("ns", "web")),
    ("cluster-scoped object", {"metadata": {"name": "kube-system"}}, "kube-system",
     (None, "kube-system")),
]


@pytest.mark.parametrize("desc,obj,key,parts", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_object_key_and_split_key(desc, obj, key, parts):
    assert object_key(obj) == key
    assert split_key(key) == parts


# -- work queue ----------------------------------------------------------------------------------

async def test_queue_deduplicates_and_keeps_order():
    q = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_queue_key_added_while_processing_comes_back_after_done_only():
    q = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # changed again while a worker has it
    assert len(q) == 0, "never handed to a second worker at the same time"
    q.done("a")
    assert await q.get() == "a"
    q.done("a")
    await asyncio.wait_for(q.join(), 1)


async def test_queue_rate_limited_requeue_backs_off_per_key_until_forgotten():
    q = WorkQueue(base_s=0.01, max_s=1.0)
    loop = asyncio.get_running_loop()
    q.add_rate_limited("a")
    q.add_rate_limited("a")  # an earlier retry is already scheduled: keeps that one
    assert q.num_requeues("a") == 2
    start = loop.time()
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert loop.time() - start >= 0.009
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_queue_add_after_keeps_the_earliest_and_shutdown_wakes_getters():
    q = WorkQueue()
    q.add_after("late", 30)
    q.add_after("late", 0.01)
    assert await asyncio.wait_for(q.get(), 1) == "late"
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.wait_for(waiter, 1) is None
    q.add("after-shutdown")
    assert len(q) == 0


# -- informer ------------------------------------------------------------------------------------

def configmap(name: str, value: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"v": value}}


class Recorder:
    def __init__(self, inf: Informer):
        self.seen: list[tuple[str, str]] = []
        inf.add_handlers(on_add=lambda o: self.seen.append(("add", object_key(o))),
                         on_update=lambda old, new: self.seen.append(("update", object_key(new))),
                         on_delete=lambda o: self.seen.append(("delete", object_key(o))))


async def test_informer_relist_replays_the_difference(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        for name in ("a", "b", "c"):
            await registry.create(CONFIGMAPS, "ns", configmap(name))
        inf = Informer(registry, CONFIGMAPS, "ns")
        rec = Recorder(inf)
        await inf.list_once()
        assert sorted(rec.seen) == [("add", "ns/a"), ("add", "ns/b"), ("add", "ns/c")]
        rec.seen.clear()
        # What a watch that was cut off would have missed:
        await registry.delete(CONFIGMAPS, "ns", "a")
        b = await registry.get(CONFIGMAPS, "ns", "b")
        await registry.update(CONFIGMAPS, "ns", "b", {**b, "data": {"v": "2"}})
        await registry.create(CONFIGMAPS, "ns", configmap("d"))
        await inf.list_once()
        assert sorted(rec.seen) == [("add", "ns/d"), ("delete", "ns/a"), ("update", "ns/b")]
        assert sorted(inf.cache) == ["ns/b", "ns/c", "ns/d"]
        assert [o["metadata"]["name"] for o in inf.list("ns")] and inf.list("other") == []


class CompactingRegistry(Registry):
    """A real registry whose first list is followed by a write and a compaction, so the
    informer's watch from the listed resourceVersion gets 410 Gone — as after a long outage."""

    compacted = False

    async def list(self, info, namespace=None, **kw):
        items, rv = await super().list(info, namespace, **kw)
        if not self.compacted and info is CONFIGMAPS:
            self.compacted = True
            await super().create(CONFIGMAPS, "ns", configmap("written-during-outage"))
            await self.store.compact(self.store.revision)
        return items, rv


async def test_informer_relists_after_410_and_misses_nothing(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        registry = CompactingRegistry(store)
        await create_namespace(registry, "ns")
        await registry.create(CONFIGMAPS, "ns", configmap("before"))
        inf = Informer(registry, CONFIGMAPS, "ns")
        task = asyncio.create_task(inf.run())
        try:
            created = await registry.create(CONFIGMAPS, "ns", configmap("after"))
            await caught_up(inf, rv_of(created))
            assert sorted(inf.cache) == ["ns/after", "ns/before", "ns/written-during-outage"]
            assert inf.relists >= 1
            # A watch that simply ends (closed) is followed by a relist too.
            inf.close()
            again = await registry.create(CONFIGMAPS, "ns", configmap("later"))
            await caught_up(inf, rv_of(again))
            assert "ns/later" in inf.cache
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# -- controller ----------------------------------------------------------------------------------

class Counting(Controller):
    name = "counting"
    workers = 2

    def __init__(self, registry):
        super().__init__(registry)
        self.maps = self.informer(CONFIGMAPS)
        self.maps.add_handlers(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                               on_delete=self.enqueue)
        self.calls: list[str] = []
        self.fail_first: set[str] = set()
        self.requeue_once: set[str] = set()
        self.running: set[str] = set()
        self.overlaps = 0
        self.called = asyncio.Event()
        self.gate = asyncio.Event()  # holds the first reconcile of ns/burst
        self.burst_started = asyncio.Event()

    async def reconcile(self, key: str) -> None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            if key == "ns/burst":
                self.burst_started.set()
                await self.gate.wait()
            await asyncio.sleep(0)
            self.calls.append(key)
            self.called.set()
            if key in self.fail_first:
                self.fail_first.discard(key)
                raise errors.internal("temporary failure")
            if key in self.requeue_once:
                self.requeue_once.discard(key)
                raise Requeue("later", after_s=0.01)
        finally:
            self.running.discard(key)


async def test_controller_reconciles_retries_and_stops(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        await registry.create(CONFIGMAPS, "ns", configmap("existing"))
        ctrl = Counting(registry)
        ctrl.fail_first.add("ns/flaky")
        ctrl.requeue_once.add("ns/later")
        await ctrl.start()
        try:
            assert ctrl.maps.synced.is_set()
            for name in ("flaky", "later"):
                await registry.create(CONFIGMAPS, "ns", configmap(name))
            await registry.create(CONFIGMAPS, "ns", configmap("burst"))
            await asyncio.wait_for(ctrl.burst_started.wait(), CONVERGE_S)
            # 20 changes while the first reconcile of the key is still running: they coalesce
            # into one more reconcile, and never run concurrently with the first.
            for i in range(20):
                done = await registry.guaranteed_update(
                    CONFIGMAPS, "ns", "burst", lambda cm, i=i: {**cm, "data": {"v": str(i)}})
            await caught_up(ctrl.maps, rv_of(done))
            ctrl.gate.set()
            async with asyncio.timeout(CONVERGE_S):
                while ctrl.calls.count("ns/flaky") < 2 or ctrl.calls.count("ns/later") < 2:
                    ctrl.called.clear()
                    await ctrl.called.wait()  # the retries come from backoff timers
            await ctrl.wait_idle()
            assert "ns/existing" in ctrl.calls and "ns/burst" in ctrl.calls
            assert ctrl.calls.count("ns/burst") == 2
            assert ctrl.overlaps == 0
            assert ctrl.queue.num_requeues("ns/flaky") == 0, "forgotten after success"
        finally:
            await ctrl.stop()
        assert not ctrl.started
        assert ctrl.maps._watch is None, "the watch was closed"
