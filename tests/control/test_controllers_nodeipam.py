"""Node IPAM: subnet choice table-first, then assignment/release over a real Registry."""

from __future__ import annotations

import ipaddress

import pytest

from meshnet.api.resources import lookup
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.nodeipam import NodeIpamController, next_free_subnet

from controllers_helpers import EVENTS, create_namespace, eventually, make_registry

NODES = lookup("nodes")
N = ipaddress.ip_network

SUBNET_CASES = [
    ("first of an empty range", "10.244.0.0/16", 24, set(), "10.244.0.0/24"),
    ("skips used ones", "10.244.0.0/16", 24, {N("10.244.0.0/24"), N("10.244.1.0/24")},
     "10.244.2.0/24"),
    ("fills a hole first", "10.244.0.0/16", 24, {N("10.244.0.0/24"), N("10.244.2.0/24")},
     "10.244.1.0/24"),
    ("full range", "10.0.0.0/23", 24, {N("10.0.0.0/24"), N("10.0.1.0/24")}, None),
    ("IPv6", "fd00:10:244::/56", 64, set(), "fd00:10:244::/64"),
]


@pytest.mark.parametrize("desc,cluster,prefix,used,expected", SUBNET_CASES,
                         ids=[c[0] for c in SUBNET_CASES])
def test_next_free_subnet(desc, cluster, prefix, used, expected):
    got = next_free_subnet(N(cluster), prefix, used)
    assert (str(got) if got else None) == expected


CONFIG_CASES = [
    ("not a network", {"cluster_cidr": "banana"}, "--cluster-cidr 'banana'"),
    ("host bits set", {"cluster_cidr": "10.244.0.1/16"}, "has host bits set"),
    ("mask smaller than the range", {"cluster_cidr": "10.244.0.0/16", "node_cidr_mask_size": 8},
     "must be between /16 and /32"),
    ("overlaps the services", {"cluster_cidr": "10.96.0.0/16"}, "overlaps --service-cidr"),
]


@pytest.mark.parametrize("desc,kwargs,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_cluster_cidr_is_refused_at_start(desc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ControllerConfig(**kwargs)


def node(name, cidr=None):
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"metadata": {"name": name}, "spec": spec}


async def get_node(registry, name):
    return await registry.get(NODES, None, name)


def cidr_of(n):
    return (n.get("spec") or {}).get("podCIDR")


@pytest.fixture
async def registry(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "default")  # where Events about Nodes go
        yield registry


async def start(registry, **config):
    controller = NodeIpamController(registry, ControllerConfig(**config))
    await controller.start()
    return controller


async def test_each_node_gets_its_own_subnet_and_deleted_nodes_free_theirs(registry):
    await registry.create(NODES, None, node("preset", "10.244.0.0/24"))
    controller = await start(registry, cluster_cidr="10.244.0.0/22")
    try:
        for name in ("a", "b"):
            await registry.create(NODES, None, node(name))
        a = await eventually(registry, lambda: get_node(registry, "a"), cidr_of, "a assigned")
        b = await eventually(registry, lambda: get_node(registry, "b"), cidr_of, "b assigned")
        assert {cidr_of(a), cidr_of(b)} == {"10.244.1.0/24", "10.244.2.0/24"}
        assert a["spec"]["podCIDRs"] == [cidr_of(a)]
        await registry.delete(NODES, None, "a")
        await eventually(registry, lambda: registry.list(NODES), lambda r: len(r[0]) == 2,
                         "a deleted")
        await controller.wait_idle()
        await registry.create(NODES, None, node("c"))
        c = await eventually(registry, lambda: get_node(registry, "c"), cidr_of, "c assigned")
        assert cidr_of(c) == cidr_of(a)  # the freed subnet is reused
        await registry.create(NODES, None, node("d"))
        d = await eventually(registry, lambda: get_node(registry, "d"), cidr_of, "d assigned")
        assert cidr_of(d) == "10.244.3.0/24"
        await registry.create(NODES, None, node("e"))
        events = await eventually(
            registry, lambda: registry.list(EVENTS, "default"),
            lambda r: any(e["reason"] == "CIDRNotAvailable" for e in r[0]), "exhausted event")
        [ev] = [e for e in events[0] if e["reason"] == "CIDRNotAvailable"]
        assert "no /24 left in the cluster CIDR 10.244.0.0/22" in ev["message"]
        assert not cidr_of(await get_node(registry, "e"))
    finally:
        await controller.stop()


async def test_a_restart_never_assigns_a_subnet_twice(registry):
    controller = await start(registry)
    try:
        await registry.create(NODES, None, node("a"))
        a = await eventually(registry, lambda: get_node(registry, "a"), cidr_of, "a assigned")
    finally:
        await controller.stop()
    controller = await start(registry)
    try:
        await registry.create(NODES, None, node("b"))
        b = await eventually(registry, lambda: get_node(registry, "b"), cidr_of, "b assigned")
        assert cidr_of(a) == "10.244.0.0/24" and cidr_of(b) == "10.244.1.0/24"
    finally:
        await controller.stop()


async def test_a_hand_set_clashing_cidr_is_reported(registry):
    controller = await start(registry)
    try:
        await registry.create(NODES, None, node("a"))
        await eventually(registry, lambda: get_node(registry, "a"), cidr_of, "a assigned")
        await registry.create(NODES, None, node("b", "10.244.0.0/24"))
        events = await eventually(
            registry, lambda: registry.list(EVENTS, "default"),
            lambda r: any(e["reason"] == "CIDRNotAvailable" for e in r[0]), "clash event")
        [ev] = [e for e in events[0] if e["reason"] == "CIDRNotAvailable"]
        assert ev["involvedObject"]["name"] == "b"
        assert "already assigned to node a" in ev["message"]
    finally:
        await controller.stop()
