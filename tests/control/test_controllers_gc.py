"""The garbage collector over a real Registry and SQLite store: dependents of a deleted owner
go (through chains of owners), dependents with a live owner stay, and orphans left while the
collector was down are collected when it starts."""

from __future__ import annotations

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.gc import GarbageCollector, owner_refs

from controllers_helpers import PODS, create_namespace, eventually, make_registry

REPLICASETS = lookup("replicasets")
DEPLOYMENTS = lookup("deployments")
CONFIGMAPS = lookup("configmaps")
NODES = lookup("nodes")
LEASES = lookup("leases")

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}

OWNER_REF_CASES = [
    ("no metadata", {}, []),
    ("references without a uid are ignored", {"metadata": {"ownerReferences": [
        {"kind": "ReplicaSet", "name": "x"}]}}, []),
    ("kept in order", {"metadata": {"ownerReferences": [{"uid": "a"}, {"uid": "b"}]}},
     [{"uid": "a"}, {"uid": "b"}]),
]


@pytest.mark.parametrize("desc,obj,expected", OWNER_REF_CASES, ids=[c[0] for c in OWNER_REF_CASES])
def test_owner_refs(desc, obj, expected):
    assert owner_refs(obj) == expected


def ref(owner, controller=True):
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": controller}


def deploy():
    return {"metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": TEMPLATE}}


def rs(owner=None, name="web-1"):
    meta = {"name": name}
    if owner:
        meta["ownerReferences"] = [ref(owner)]
    return {"metadata": meta, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                                       "template": TEMPLATE}}


def pod(name, *owners):
    meta = {"name": name, "labels": {"app": "web"}}
    if owners:
        meta["ownerReferences"] = [ref(o, controller=i == 0) for i, o in enumerate(owners)]
    return {"metadata": meta, "spec": TEMPLATE["spec"]}


async def names(registry, info, ns="ns"):
    items, _ = await registry.list(info, ns)
    return sorted(i["metadata"]["name"] for i in items)


@pytest.fixture
async def registry(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        await create_namespace(registry, "kube-node-lease")
        yield registry


async def test_deleting_an_owner_collects_its_dependents_down_the_chain(registry):
    gc = GarbageCollector(registry)
    await gc.start()
    try:
        d = await registry.create(DEPLOYMENTS, "ns", deploy())
        r = await registry.create(REPLICASETS, "ns", rs(d))
        other = await registry.create(CONFIGMAPS, "ns", {"metadata": {"name": "other"}})
        await registry.create(PODS, "ns", pod("p1", r))
        await registry.create(PODS, "ns", pod("p2", r))
        await registry.create(PODS, "ns", pod("shared", r, other))  # a second owner stays
        await registry.create(PODS, "ns", pod("free"))
        await gc.wait_idle()
        assert await names(registry, PODS) == ["free", "p1", "p2", "shared"]

        await registry.delete(DEPLOYMENTS, "ns", "web")
        await eventually(registry, lambda: names(registry, REPLICASETS), lambda n: n == [],
                         "ReplicaSet collected")
        await eventually(registry, lambda: names(registry, PODS),
                         lambda n: n == ["free", "shared"], "its pods collected")
        await registry.delete(CONFIGMAPS, "ns", "other")
        await eventually(registry, lambda: names(registry, PODS), lambda n: n == ["free"],
                         "the last owner gone: collected too")
    finally:
        await gc.stop()


async def test_cluster_scoped_owner_and_a_reused_name_with_a_new_uid(registry):
    gc = GarbageCollector(registry)
    await gc.start()
    try:
        node = await registry.create(NODES, None, {"metadata": {"name": "n1"}})
        await registry.create(LEASES, "kube-node-lease", {
            "metadata": {"name": "n1", "ownerReferences": [ref(node)]},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})
        await registry.delete(NODES, None, "n1")
        await registry.create(NODES, None, {"metadata": {"name": "n1"}})  # same name, new uid
        await eventually(registry, lambda: names(registry, LEASES, "kube-node-lease"),
                         lambda n: n == [], "lease of the deleted node collected")
    finally:
        await gc.stop()


async def test_orphans_left_while_stopped_are_collected_at_start(registry):
    r = await registry.create(REPLICASETS, "ns", rs())
    await registry.create(PODS, "ns", pod("p1", r))
    await registry.delete(REPLICASETS, "ns", "web-1")
    gc = GarbageCollector(registry)
    await gc.start()
    try:
        await eventually(registry, lambda: names(registry, PODS), lambda n: n == [],
                         "orphan collected")
    finally:
        await gc.stop()


async def test_a_dependent_of_an_owner_not_yet_in_the_cache_is_kept(registry):
    gc = GarbageCollector(registry)
    await gc.start()
    try:
        # The owner is checked in the registry, not only in the collector's caches.
        r = await registry.create(REPLICASETS, "ns", rs())
        await registry.create(PODS, "ns", pod("p1", r))
        await gc.wait_idle()
        gc.by_plural["replicasets"].cache.pop("ns/web-1")  # as if that watch lagged behind
        gc.uids.pop(r["metadata"]["uid"], None)
        gc.queue.add("pods|ns/p1")
        await gc.wait_idle()
        assert await names(registry, PODS) == ["p1"]
    finally:
        await gc.stop()
