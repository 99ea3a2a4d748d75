"""LoadBalancer addresses from the pool, through the real Registry and SQLite store."""

from __future__ import annotations

import json

import pytest

from meshnet.control.apiserver.registry import Registry
from meshnet.control.controllers import ControllerConfig, install_admission
from meshnet.control.controllers.loadbalancer import LB_IPS_PREFIX, LoadBalancerController

from controllers_helpers import (
    EVENTS, SERVICES, caught_up, create_namespace, eventually, open_store, rv_of,
)


def lb_service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80}], **spec}}


def ingress(svc) -> list[str]:
    lb = ((svc or {}).get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or ()]


async def lb_keys(store) -> dict[str, str]:
    kvs, _ = await store.list(LB_IPS_PREFIX)
    return {kv.key[len(LB_IPS_PREFIX):]: json.loads(kv.value)["name"] for kv in kvs}


class Env:
    def __init__(self, registry, controller):
        self.registry = registry
        self.controller = controller

    def get(self, name):
        return lambda: self.registry.get(SERVICES, "ns", name)

    async def settled(self, svc: dict):
        """The controller has seen svc as it is now and has nothing left to do."""
        await caught_up(self.controller.services, rv_of(svc))
        await self.controller.wait_idle()

    async def warnings(self, name):
        items, _ = await self.registry.list(EVENTS, "ns")
        return [e["message"] for e in items
                if e["involvedObject"]["name"] == name and e["type"] == "Warning"]


async def start_env(store, pool: str) -> Env:
    registry = Registry(store)
    config = ControllerConfig(lb_pool=pool)
    install_admission(registry, config)
    controller = LoadBalancerController(registry, config)
    await controller.start()
    return Env(registry, controller)


@pytest.fixture
async def pool_of_two(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        env = await start_env(store, "172.18.255.200-172.18.255.201")
        await create_namespace(env.registry, "ns")
        try:
            yield env
        finally:
            await env.controller.stop()


async def test_addresses_from_the_pool_then_pending_then_freed(pool_of_two):
    env = pool_of_two
    reg = env.registry
    await reg.create(SERVICES, "ns", lb_service("a"))
    await reg.create(SERVICES, "ns", lb_service("b"))
    a = await eventually(reg, env.get("a"), ingress, "a's address")
    b = await eventually(reg, env.get("b"), ingress, "b's address")
    assert sorted(ingress(a) + ingress(b)) == ["172.18.255.200", "172.18.255.201"]
    assert await lb_keys(reg.store) == {ingress(a)[0]: "a", ingress(b)[0]: "b"}

    await reg.create(SERVICES, "ns", lb_service("c"))
    messages = await eventually(reg, lambda: env.warnings("c"), bool, "an exhausted-pool Event")
    assert "pool is exhausted" in messages[0]
    assert ingress(await reg.get(SERVICES, "ns", "c")) == []

    await reg.delete(SERVICES, "ns", "a")
    c = await eventually(reg, env.get("c"), ingress, "c gets a's address")
    assert ingress(c) == ingress(a)
    assert await lb_keys(reg.store) == {ingress(c)[0]: "c", ingress(b)[0]: "b"}


async def test_requested_address_and_type_change_release(pool_of_two):
    env = pool_of_two
    reg = env.registry
    await reg.create(SERVICES, "ns", lb_service("want", loadBalancerIP="172.18.255.201"))
    svc = await eventually(reg, env.get("want"), ingress, "the requested address")
    assert ingress(svc) == ["172.18.255.201"]

    await reg.create(SERVICES, "ns", lb_service("outside", loadBalancerIP="192.0.2.1"))
    messages = await eventually(reg, lambda: env.warnings("outside"), bool, "an Event")
    assert "not in the LoadBalancer pool" in messages[0]

    def to_cluster_ip(current):
        current["spec"]["type"] = "ClusterIP"
        current["spec"].pop("loadBalancerIP")
        return current
    await reg.guaranteed_update(SERVICES, "ns", "want", to_cluster_ip)
    svc = await eventually(reg, env.get("want"), lambda s: not ingress(s), "status cleared")
    await env.settled(svc)
    assert await lb_keys(reg.store) == {}


async def test_empty_pool_leaves_services_pending_with_an_event(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        env = await start_env(store, "")
        try:
            await create_namespace(env.registry, "ns")
            await env.registry.create(SERVICES, "ns", lb_service("lonely"))
            messages = await eventually(env.registry, lambda: env.warnings("lonely"), bool,
                                        "an Event")
            assert "--lb-pool is empty" in messages[0]
            assert ingress(await env.registry.get(SERVICES, "ns", "lonely")) == []
        finally:
            await env.controller.stop()


async def test_restart_keeps_addresses_and_releases_orphans(tmp_path):
    path = tmp_path / "store.db"
    pool = "10.5.0.1-10.5.0.3"
    async with open_store(path) as store:
        env = await start_env(store, pool)
        await create_namespace(env.registry, "ns")
        await env.registry.create(SERVICES, "ns", lb_service("keep"))
        kept = ingress(await eventually(env.registry, env.get("keep"), ingress, "address"))
        await env.controller.stop()
        # While the controller is down: its Service goes, and a stray key appears.
        await env.registry.create(SERVICES, "ns", lb_service("gone"))
        stray = next(ip for ip in ("10.5.0.1", "10.5.0.2") if ip not in kept)
        await store.create(LB_IPS_PREFIX + stray, json.dumps(
            {"kind": "Service", "namespace": "ns", "name": "ghost", "uid": "x"}).encode())
    async with open_store(path) as store:
        env = await start_env(store, pool)
        try:
            gone = await eventually(env.registry, env.get("gone"), ingress, "address for gone")
            await env.settled(gone)
            assert ingress(await env.registry.get(SERVICES, "ns", "keep")) == kept
            assert await lb_keys(store) == {kept[0]: "keep", ingress(gone)[0]: "gone"}
        finally:
            await env.controller.stop()
