"""ClusterIP and NodePort allocation through the real Registry and SQLite store: the admission
hook, type changes, concurrency (one and two API servers), restarts, and the repair pass."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pytest

from meshnet.api.errors import StatusError
from meshnet.control.apiserver.registry import Registry
from meshnet.control.controllers import ControllerConfig, install_admission
from meshnet.control.controllers.serviceips import (
    NODE_PORTS_PREFIX, SERVICE_IPS_PREFIX, ServiceAllocators,
)

from controllers_helpers import EVENTS, SERVICES, create_namespace, open_store


def service(name: str, *, type_: str = "ClusterIP", cluster_ip: str | None = None,
            ports=None, **spec) -> dict:
    body = {"type": type_, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
            "selector": {"app": name}, **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    if type_ == "ExternalName":
        body = {"type": "ExternalName", "externalName": "db.example.com"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


async def range_keys(store, prefix: str) -> dict[str, dict]:
    kvs, _ = await store.list(prefix)
    return {kv.key[len(prefix):]: json.loads(kv.value) for kv in kvs}


@pytest.fixture
async def env(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        registry = Registry(store)
        config = ControllerConfig()
        allocators = install_admission(registry, config)
        await create_namespace(registry, "ns")
        yield registry, allocators


def in_range(ip: str, cidr: str = "10.96.0.0/12") -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


# -- ClusterIP -----------------------------------------------------------------------------------

async def test_cluster_ip_allocated_with_its_range_key(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service("web"))
    ip = svc["spec"]["clusterIP"]
    assert in_range(ip) and ip not in ("10.96.0.0", "10.96.0.1", "10.96.0.10")
    assert svc["spec"]["clusterIPs"] == [ip]
    keys = await range_keys(registry.store, SERVICE_IPS_PREFIX)
    assert keys == {ip: {"kind": "Service", "namespace": "ns", "name": "web",
                         "uid": svc["metadata"]["uid"]}}


async def test_requested_cluster_ip_is_honoured_then_refused_to_others(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service("a", cluster_ip="10.96.0.50"))
    assert svc["spec"]["clusterIP"] == "10.96.0.50"
    with pytest.raises(StatusError) as err:
        await registry.create(SERVICES, "ns", service("b", cluster_ip="10.96.0.50"))
    assert err.value.code == 422
    assert err.value.message == ('Service "b" is invalid: spec.clusterIP: Invalid value: '
                                 '"10.96.0.50": provided IP is already allocated')


REFUSED_IPS = [
    ("outside the range", "192.168.0.10"),
    ("the network address", "10.96.0.0"),
    ("the broadcast address", "10.111.255.255"),
]


@pytest.mark.parametrize("desc,ip", REFUSED_IPS, ids=[c[0] for c in REFUSED_IPS])
async def test_requested_cluster_ip_outside_the_range_is_invalid(env, desc, ip):
    registry, _ = env
    with pytest.raises(StatusError) as err:
        await registry.create(SERVICES, "ns", service("web", cluster_ip=ip))
    assert err.value.code == 422
    assert err.value.message == (f'Service "web" is invalid: spec.clusterIP: Invalid value: '
                                 f'"{ip}": provided IP is not in the valid range. The range of '
                                 f'valid IPs is 10.96.0.0/12')
    assert await range_keys(registry.store, SERVICE_IPS_PREFIX) == {}


async def test_headless_and_external_name_services_get_no_address(env):
    registry, _ = env
    headless = await registry.create(SERVICES, "ns", service("h", cluster_ip="None"))
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["clusterIPs"] == ["None"]
    ext = await registry.create(SERVICES, "ns", service("x", type_="ExternalName"))
    assert "clusterIP" not in ext["spec"]
    assert await range_keys(registry.store, SERVICE_IPS_PREFIX) == {}


async def test_delete_releases_the_address_for_reuse(env):
    registry, _ = env
    await registry.create(SERVICES, "ns", service("a", cluster_ip="10.96.0.50"))
    await registry.delete(SERVICES, "ns", "a")
    assert await range_keys(registry.store, SERVICE_IPS_PREFIX) == {}
    again = await registry.create(SERVICES, "ns", service("b", cluster_ip="10.96.0.50"))
    assert again["spec"]["clusterIP"] == "10.96.0.50"


async def test_failed_creates_do_not_leak_addresses(tmp_path):
    """A create refused after the hook ran (the name exists) must give its pick back: after the
    pending time-to-live, the store is asked and the value is free again."""
    now = [0.0]
    async with open_store(tmp_path / "store.db") as store:
        registry = Registry(store)
        config = ControllerConfig(service_cidr="10.0.0.0/28")  # 14 usable, 2 reserved
        allocators = ServiceAllocators(registry, config, clock=lambda: now[0])
        registry.add_admission("Service", allocators.admit)
        await create_namespace(registry, "ns")
        await registry.create(SERVICES, "ns", service("dup"))
        for _ in range(20):
            with pytest.raises(StatusError) as err:
                await registry.create(SERVICES, "ns", service("dup"))
            assert err.value.reason == "AlreadyExists"
            now[0] += 31  # past PENDING_TTL_S: the next admission settles the stale hold
        for i in range(11):  # 12 auto-assignable addresses, "dup" holds one
            await registry.create(SERVICES, "ns", service(f"s{i}"))
        with pytest.raises(StatusError) as err:
            await registry.create(SERVICES, "ns", service("one-too-many"))
        assert err.value.code == 500
        assert "range is full" in err.value.message
        ips = {s["spec"]["clusterIP"] for s in (await registry.list(SERVICES, "ns"))[0]}
        assert len(ips) == 12 and not ips & {"10.0.0.1", "10.0.0.10"}


# -- NodePort ------------------------------------------------------------------------------------

async def test_node_ports_allocated_and_requested_ones_honoured(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service("np", type_="NodePort", ports=[
        {"name": "http", "port": 80, "nodePort": 30080},
        {"name": "https", "port": 443}]))
    ports = [p["nodePort"] for p in svc["spec"]["ports"]]
    assert ports[0] == 30080 and 30000 <= ports[1] <= 32767 and ports[1] != 30080
    keys = await range_keys(registry.store, NODE_PORTS_PREFIX)
    assert set(keys) == {str(p) for p in ports}

    with pytest.raises(StatusError) as err:
        await registry.create(SERVICES, "ns", service("other", type_="NodePort", ports=[
            {"name": "http", "port": 80, "nodePort": 30080}]))
    assert err.value.message == ('Service "other" is invalid: spec.ports[0].nodePort: Invalid '
                                 'value: 30080: provided port is already allocated')
    with pytest.raises(StatusError) as err:
        await registry.create(SERVICES, "ns", service("far", type_="NodePort", ports=[
            {"name": "http", "port": 80, "nodePort": 8080}]))
    assert err.value.message == ('Service "far" is invalid: spec.ports[0].nodePort: Invalid '
                                 'value: 8080: provided port is not in the valid range. The range '
                                 'of valid ports is 30000-32767')


async def test_one_node_port_may_serve_tcp_and_udp(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service("dns", type_="NodePort", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]))
    assert [p["nodePort"] for p in svc["spec"]["ports"]] == [30053, 30053]
    assert list(await range_keys(registry.store, NODE_PORTS_PREFIX)) == ["30053"]
    await registry.delete(SERVICES, "ns", "dns")
    assert await range_keys(registry.store, NODE_PORTS_PREFIX) == {}


async def test_load_balancer_gets_node_ports_and_a_health_check_port_when_local(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service(
        "lb", type_="LoadBalancer", externalTrafficPolicy="Local"))
    spec = svc["spec"]
    held = {spec["ports"][0]["nodePort"], spec["healthCheckNodePort"]}
    assert len(held) == 2
    assert set(await range_keys(registry.store, NODE_PORTS_PREFIX)) == {str(p) for p in held}
    no_np = await registry.create(SERVICES, "ns", service(
        "lb2", type_="LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in no_np["spec"]["ports"][0]


# -- type changes --------------------------------------------------------------------------------

async def _update(registry, name, change):
    def mutate(current):
        change(current["spec"])
        return current
    return await registry.guaranteed_update(SERVICES, "ns", name, mutate)


async def test_type_changes_allocate_and_release(env):
    registry, _ = env
    store = registry.store
    svc = await registry.create(SERVICES, "ns", service("t"))
    ip = svc["spec"]["clusterIP"]

    svc = await _update(registry, "t", lambda s: s.update(type="NodePort"))
    port = svc["spec"]["ports"][0]["nodePort"]
    assert svc["spec"]["clusterIP"] == ip
    assert list(await range_keys(store, NODE_PORTS_PREFIX)) == [str(port)]

    # `kubectl replace` without the nodePort keeps it
    svc = await _update(registry, "t", lambda s: s["ports"][0].pop("nodePort"))
    assert svc["spec"]["ports"][0]["nodePort"] == port

    svc = await _update(registry, "t", lambda s: s.update(type="ClusterIP"))
    assert "nodePort" not in svc["spec"]["ports"][0]
    assert await range_keys(store, NODE_PORTS_PREFIX) == {}

    svc = await _update(registry, "t", lambda s: s.update(
        type="ExternalName", externalName="db.example.com", selector=None))
    assert not svc["spec"].get("clusterIP")
    assert await range_keys(store, SERVICE_IPS_PREFIX) == {}

    def back(spec):
        spec.update(type="ClusterIP", selector={"app": "t"})
        spec.pop("externalName", None)
    svc = await _update(registry, "t", back)
    new_ip = svc["spec"]["clusterIP"]
    assert in_range(new_ip)
    assert list(await range_keys(store, SERVICE_IPS_PREFIX)) == [new_ip]


async def test_load_balancer_to_cluster_ip_releases_every_port(env):
    registry, _ = env
    await registry.create(SERVICES, "ns", service("lb", type_="LoadBalancer",
                                                  externalTrafficPolicy="Local"))
    assert len(await range_keys(registry.store, NODE_PORTS_PREFIX)) == 2
    svc = await _update(registry, "lb", lambda s: s.update(type="ClusterIP"))
    assert "healthCheckNodePort" not in svc["spec"]
    assert "nodePort" not in svc["spec"]["ports"][0]
    assert await range_keys(registry.store, NODE_PORTS_PREFIX) == {}
    assert list(await range_keys(registry.store, SERVICE_IPS_PREFIX)) == [svc["spec"]["clusterIP"]]


async def test_status_updates_do_not_touch_allocations(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service("s", type_="NodePort"))
    before = (await range_keys(registry.store, SERVICE_IPS_PREFIX),
              await range_keys(registry.store, NODE_PORTS_PREFIX))
    await registry.update(SERVICES, "ns", "s", {**svc, "status": {"loadBalancer": {}}},
                          subresource="status")
    assert before == (await range_keys(registry.store, SERVICE_IPS_PREFIX),
                      await range_keys(registry.store, NODE_PORTS_PREFIX))


# -- concurrency ---------------------------------------------------------------------------------

async def test_64_concurrent_creates_get_64_distinct_addresses(env):
    registry, _ = env
    created = await asyncio.gather(*(
        registry.create(SERVICES, "ns", service(f"s{i}", type_="NodePort")) for i in range(64)))
    ips = {s["spec"]["clusterIP"] for s in created}
    ports = {s["spec"]["ports"][0]["nodePort"] for s in created}
    assert len(ips) == 64 and len(ports) == 64
    assert set(await range_keys(registry.store, SERVICE_IPS_PREFIX)) == ips
    assert set(await range_keys(registry.store, NODE_PORTS_PREFIX)) == {str(p) for p in ports}


async def test_two_api_servers_sharing_a_store_never_hand_out_an_address_twice(tmp_path):
    """Two registries with separate allocation memory over one store (two API servers over
    one etcd): a tight range makes their random picks collide, the store refuses the second
    range key, the hook picks again. Every address ends up with exactly one Service."""
    async with open_store(tmp_path / "store.db") as store:
        config = ControllerConfig(service_cidr="10.0.0.0/27", node_port_range="30000-30029")
        one, two = Registry(store), Registry(store)
        install_admission(one, config)
        install_admission(two, config)
        await create_namespace(one, "ns")
        created = await asyncio.gather(*(
            (one if i % 2 else two).create(SERVICES, "ns", service(f"s{i}", type_="NodePort"))
            for i in range(28)))  # 30 usable addresses, 2 reserved: the range fills up exactly
    ips = [s["spec"]["clusterIP"] for s in created]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in created]
    assert len(set(ips)) == 28 and len(set(ports)) == 28


# -- restart and repair --------------------------------------------------------------------------

async def test_restart_rebuilds_from_range_keys_and_never_duplicates(tmp_path):
    path = tmp_path / "store.db"
    config = ControllerConfig(service_cidr="10.0.0.0/27", node_port_range="30000-30019")
    async with open_store(path) as store:
        registry = Registry(store)
        install_admission(registry, config)
        await create_namespace(registry, "ns")
        first = [await registry.create(SERVICES, "ns", service(f"a{i}", type_="NodePort"))
                 for i in range(10)]
    async with open_store(path) as store:  # a new process: empty memory
        registry = Registry(store)
        install_admission(registry, config)
        second = await asyncio.gather(*(
            registry.create(SERVICES, "ns", service(f"b{i}", type_="NodePort"))
            for i in range(10)))
    ips = [s["spec"]["clusterIP"] for s in first + second]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in first + second]
    assert len(set(ips)) == 20 and len(set(ports)) == 20


async def test_repair_releases_orphans_and_restores_missing_keys(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        config = ControllerConfig()
        # A Service created without the hook (as before an upgrade): it holds an IP, no key.
        bare = Registry(store)
        await create_namespace(bare, "ns")
        await bare.create(SERVICES, "ns", service("legacy", cluster_ip="10.96.0.77",
                                                  type_="NodePort",
                                                  ports=[{"port": 80, "nodePort": 30077}]))
        # A key whose Service is long gone (a crash, a bug, a restore from backup).
        await store.create(SERVICE_IPS_PREFIX + "10.96.0.88", json.dumps(
            {"kind": "Service", "namespace": "ns", "name": "ghost", "uid": "dead"}).encode())
        # A Service created without the hook that collides with one created with it.
        registry = Registry(store)
        allocators = install_admission(registry, config)
        await registry.create(SERVICES, "ns", service("owner", cluster_ip="10.96.0.99"))
        await bare.create(SERVICES, "ns", service("clash", cluster_ip="10.96.0.99"))

        stats = await allocators.repair()
        assert stats == {"released": 1, "restored": 2, "conflicts": 1}
        ips = await range_keys(store, SERVICE_IPS_PREFIX)
        assert set(ips) == {"10.96.0.77", "10.96.0.99"}
        assert ips["10.96.0.99"]["name"] == "owner"
        assert list(await range_keys(store, NODE_PORTS_PREFIX)) == ["30077"]
        events, _ = await registry.list(EVENTS, "ns")
        assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == \
            [("ClusterIPAlreadyAllocated", "clash")]
        # The restored key now protects the legacy Service's address.
        with pytest.raises(StatusError, match="already allocated"):
            await registry.create(SERVICES, "ns", service("x", cluster_ip="10.96.0.77"))
        assert await allocators.repair() == {"released": 0, "restored": 0, "conflicts": 1}


async def test_health_check_port_without_node_ports_and_never_a_traffic_port(env):
    registry, _ = env
    svc = await registry.create(SERVICES, "ns", service(
        "local", type_="LoadBalancer", externalTrafficPolicy="Local",
        allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in svc["spec"]["ports"][0]
    assert list(await range_keys(registry.store, NODE_PORTS_PREFIX)) == \
        [str(svc["spec"]["healthCheckNodePort"])]
    with pytest.raises(StatusError) as err:
        await registry.create(SERVICES, "ns", service(
            "clash", type_="LoadBalancer", externalTrafficPolicy="Local",
            healthCheckNodePort=30500, ports=[{"name": "http", "port": 80, "nodePort": 30500}]))
    assert err.value.message == ('Service "clash" is invalid: spec.healthCheckNodePort: Invalid '
                                 'value: 30500: provided port is already allocated')
