"""Endpoints follow pods, through the official client: readiness set via the status
subresource moves addresses between `addresses` and `notReadyAddresses`; named target ports
resolve per pod; deleted pods leave; namespaces delete their contents."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

NS = "ep"
CONVERGE_S = 15.0


def eventually(fn, what: str):
    """Poll fn() until it returns a truthy value; controllers converge asynchronously."""
    deadline = time.monotonic() + CONVERGE_S
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="module")
def core(k8s):
    api = client.CoreV1Api(k8s)
    api.create_namespace({"metadata": {"name": NS}})
    return api


def _pod(core, name: str, ip: str, port: int, ready: bool, labels=None, node="node-a"):
    core.create_namespaced_pod(NS, {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"nodeName": node, "containers": [
            {"name": "c", "image": "meshnet/echo",
             "ports": [{"name": "http", "containerPort": port}]}]}})
    _set_ready(core, name, ip, ready)


def _set_ready(core, name: str, ip: str, ready: bool):
    core.patch_namespaced_pod_status(name, NS, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def _endpoints(core, name: str):
    try:
        ep = core.read_namespaced_endpoints(name, NS)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    ready, not_ready = set(), set()
    for subset in ep.subsets or []:
        port_set = tuple(sorted((p.name, p.port) for p in subset.ports or []))
        for a in subset.addresses or []:
            ready.add((a.ip, port_set))
        for a in subset.not_ready_addresses or []:
            not_ready.add((a.ip, port_set))
    return ready, not_ready


def test_endpoints_follow_pod_readiness(core):
    core.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    _pod(core, "web-1", "10.244.0.11", 8080, ready=True)
    _pod(core, "web-2", "10.244.0.12", 9090, ready=False)
    _pod(core, "other", "10.244.0.13", 8080, ready=True, labels={"app": "other"})

    want = ({("10.244.0.11", (("http", 8080),))}, {("10.244.0.12", (("http", 9090),))})
    eventually(lambda: _endpoints(core, "web") == want, "ready/not-ready split")

    ep = core.read_namespaced_endpoints("web", NS)
    addr = next(a for s in ep.subsets for a in s.addresses or [])
    assert addr.node_name == "node-a" and addr.target_ref.kind == "Pod"
    assert addr.target_ref.name == "web-1"

    _set_ready(core, "web-2", "10.244.0.12", True)
    want = ({("10.244.0.11", (("http", 8080),)), ("10.244.0.12", (("http", 9090),))}, set())
    eventually(lambda: _endpoints(core, "web") == want, "web-2 becoming ready")

    core.delete_namespaced_pod("web-1", NS)
    want = ({("10.244.0.12", (("http", 9090),))}, set())
    eventually(lambda: _endpoints(core, "web") == want, "web-1 leaving")


def test_publish_not_ready_and_hostname(core):
    core.create_namespaced_service(NS, {"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "db"},
        "ports": [{"port": 5432}]}})
    core.create_namespaced_pod(NS, {
        "metadata": {"name": "db-0", "labels": {"app": "db"}},
        "spec": {"hostname": "db-0", "subdomain": "db",
                 "containers": [{"name": "c", "image": "x"}]}})
    _set_ready(core, "db-0", "10.244.1.5", False)

    def hostname():
        ep = _endpoints(core, "db")
        if not ep or not ep[0]:
            return None
        live = core.read_namespaced_endpoints("db", NS)
        return [a.hostname for s in live.subsets for a in s.addresses]

    assert eventually(hostname, "db-0 published while not ready") == ["db-0"]


def test_selectorless_service_keeps_user_endpoints(core):
    core.create_namespaced_service(NS, {"metadata": {"name": "external"}, "spec": {
        "ports": [{"port": 443}]}})
    core.create_namespaced_endpoints(NS, {"metadata": {"name": "external"}, "subsets": [
        {"addresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 443}]}]})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "tick"}})  # let controllers run
    time.sleep(0.5)
    ep = core.read_namespaced_endpoints("external", NS)
    assert ep.subsets[0].addresses[0].ip == "10.244.9.9"


def test_namespace_deletion_removes_contents(core):
    # A finalizer of our own holds the namespace in Terminating until the test releases it.
    core.create_namespace({"metadata": {"name": "doomed", "finalizers": ["example.com/hold"]}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "cm"}})
    core.create_namespaced_service("doomed", {"metadata": {"name": "svc"}, "spec": {
        "ports": [{"port": 80}]}})
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert exc.value.status == 403

    eventually(lambda: not core.list_namespaced_config_map("doomed").items
               and not core.list_namespaced_service("doomed").items, "contents deleted")
    core.patch_namespace("doomed", {"metadata": {"finalizers": None}})

    def gone():
        try:
            core.read_namespace("doomed")
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, "namespace doomed to be deleted")
