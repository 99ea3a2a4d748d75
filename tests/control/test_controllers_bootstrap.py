"""The bootstrap Services (`kubernetes`, `kube-dns`) and the whole controller manager, over the
real Registry and SQLite store."""

from __future__ import annotations

import json

import pytest

from meshnet.control.apiserver.registry import Registry
from meshnet.control.controllers import (
    ControllerConfig, ControllerManager, install_admission, start_controllers,
)
from meshnet.control.controllers.serviceips import SERVICE_IPS_PREFIX

from controllers_helpers import (
    ENDPOINTS, NAMESPACES, PODS, SERVICES, eventually, get_or_none, open_store,
)

CONFIG = ControllerConfig(advertise_address="192.0.2.7", advertise_port=16443,
                          lb_pool="172.18.255.200/30")


@pytest.fixture
async def manager(tmp_path):
    async with open_store(tmp_path / "store.db") as store:
        registry = Registry(store)
        assert install_admission(registry, CONFIG) is install_admission(registry, CONFIG)
        mgr = start_controllers(registry, CONFIG)
        assert isinstance(mgr, ControllerManager)
        await mgr.start()
        try:
            yield mgr
        finally:
            await mgr.stop()


def ports(svc):
    return [(p.get("name"), p["port"], p["protocol"], p.get("targetPort"))
            for p in svc["spec"]["ports"]]


async def test_start_creates_namespaces_and_bootstrap_services(manager):
    reg = manager.registry
    names = sorted(n["metadata"]["name"] for n in (await reg.list(NAMESPACES))[0])
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]

    k8s = await eventually(reg, lambda: get_or_none(reg, SERVICES, "default", "kubernetes"),
                           bool, "the kubernetes Service")
    assert k8s["spec"]["clusterIP"] == "10.96.0.1"
    assert ports(k8s) == [("https", 443, "TCP", 16443)]
    assert "selector" not in k8s["spec"]
    ep = await eventually(reg, lambda: get_or_none(reg, ENDPOINTS, "default", "kubernetes"),
                          bool, "the kubernetes Endpoints")
    assert ep["subsets"] == [{"addresses": [{"ip": "192.0.2.7"}],
                              "ports": [{"name": "https", "port": 16443, "protocol": "TCP"}]}]

    dns = await eventually(reg, lambda: get_or_none(reg, SERVICES, "kube-system", "kube-dns"),
                           bool, "the kube-dns Service")
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    assert ports(dns) == [("dns", 53, "UDP", 53), ("dns-tcp", 53, "TCP", 53),
                          ("metrics", 9153, "TCP", 9153)]
    assert dns["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert dns["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert dns["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"
    kvs, _ = await reg.store.list(SERVICE_IPS_PREFIX)
    assert {kv.key.rsplit("/", 1)[1] for kv in kvs} == {"10.96.0.1", "10.96.0.10"}


async def test_bootstrap_services_and_endpoints_come_back(manager):
    reg = manager.registry
    await eventually(reg, lambda: get_or_none(reg, SERVICES, "kube-system", "kube-dns"), bool,
                     "kube-dns")
    await reg.delete(SERVICES, "kube-system", "kube-dns")
    dns = await eventually(reg, lambda: get_or_none(reg, SERVICES, "kube-system", "kube-dns"),
                           bool, "kube-dns recreated")
    assert dns["spec"]["clusterIP"] == "10.96.0.10"

    await reg.delete(SERVICES, "default", "kubernetes")
    await eventually(reg, lambda: get_or_none(reg, SERVICES, "default", "kubernetes"), bool,
                     "kubernetes recreated")

    ep = await reg.get(ENDPOINTS, "default", "kubernetes")
    await reg.update(ENDPOINTS, "default", "kubernetes",
                     {**ep, "subsets": [{"addresses": [{"ip": "198.51.100.1"}],
                                         "ports": [{"name": "https", "port": 1}]}]})
    ep = await eventually(reg, lambda: reg.get(ENDPOINTS, "default", "kubernetes"),
                          lambda ep: ep["subsets"][0]["addresses"] == [{"ip": "192.0.2.7"}],
                          "the kubernetes Endpoints restored")


async def test_manager_runs_every_controller_together(manager):
    """A Service with pods, as a user would create them: ClusterIP, NodePort, LoadBalancer
    address and Endpoints all appear."""
    reg = manager.registry
    svc = await reg.create(SERVICES, "default", {"metadata": {"name": "web"}, "spec": {
        "type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert svc["spec"]["clusterIP"].startswith("10.")
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    pod = await reg.create(PODS, "default", {"metadata": {"name": "web-1", "labels": {
        "app": "web"}}, "spec": {"containers": [{"name": "c", "image": "meshnet/echo"}]}})
    await reg.update(PODS, "default", "web-1", {**pod, "status": {
        "phase": "Running", "podIP": "10.244.0.9",
        "conditions": [{"type": "Ready", "status": "True"}]}}, subresource="status")
    svc = await eventually(reg, lambda: reg.get(SERVICES, "default", "web"),
                           lambda s: (s.get("status") or {}).get("loadBalancer", {})
                           .get("ingress"), "a LoadBalancer address")
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] in ("172.18.255.201",
                                                                 "172.18.255.202")
    ep = await eventually(reg, lambda: get_or_none(reg, ENDPOINTS, "default", "web"),
                          lambda ep: ep and ep.get("subsets"), "endpoints")
    assert ep["subsets"][0]["addresses"][0]["ip"] == "10.244.0.9"
    await manager.wait_idle()


async def test_manager_restart_on_the_same_store(tmp_path):
    path = tmp_path / "store.db"
    for _ in range(2):
        async with open_store(path) as store:
            registry = Registry(store)
            install_admission(registry, CONFIG)
            mgr = start_controllers(registry, CONFIG)
            await mgr.start()
            await mgr.wait_idle()
            await mgr.stop()
            services, _ = await registry.list(SERVICES)
            assert sorted(s["metadata"]["name"] for s in services) == ["kube-dns", "kubernetes"]
            kvs, _ = await store.list(SERVICE_IPS_PREFIX)
            owners = sorted(json.loads(kv.value)["name"] for kv in kvs)
            assert owners == ["kube-dns", "kubernetes"]
