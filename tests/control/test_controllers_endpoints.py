"""The endpoints controller: `compute_endpoints` table-first, then the controller over a real
Registry and SQLite store."""

from __future__ import annotations

import asyncio

import pytest

from meshnet.control.controllers.endpoints import (
    MANAGED_BY_LABEL, EndpointsController, canonical_subsets, compute_endpoints,
    unresolved_named_ports,
)

from controllers_helpers import (  # tests/control is on sys.path (pytest rootdir-less import)
    ENDPOINTS, EVENTS, PODS, SERVICES, caught_up, create_namespace, eventually, get_or_none,
    make_registry, rv_of,
)


# -- the pure part -------------------------------------------------------------------------------

def pod(name, ip="10.244.0.1", *, ready=True, labels=None, node="node-a", ports=(("http", 8080),),
        hostname=None, subdomain=None, phase="Running", deleting=False, protocol="TCP"):
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "7",
            "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec = {"containers": [{"name": "c", "image": "meshnet/echo", "ports": [
        {"name": n, "containerPort": p, "protocol": protocol} for n, p in ports]}]}
    if node:
        spec["nodeName"] = node
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status = {"phase": phase, "conditions": [{"type": "Ready",
                                               "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def svc(ports=({"name": "http", "port": 80, "targetPort": 8080},), *, publish=False,
        headless=False, name="web"):
    spec = {"selector": {"app": "web"}, "ports": [dict(p) for p in ports]}
    for p in spec["ports"]:
        p.setdefault("protocol", "TCP")
    if publish:
        spec["publishNotReadyAddresses"] = True
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "uid": "uid-svc"}, "spec": spec}


def addr(name, ip, node="node-a", hostname=None):
    a = {"ip": ip}
    if hostname:
        a["hostname"] = hostname
    if node:
        a["nodeName"] = node
    a["targetRef"] = {"kind": "Pod", "namespace": "ns", "name": name, "uid": f"uid-{name}",
                      "resourceVersion": "7"}
    return a


HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}

COMPUTE_CASES = [
    ("no pods, no subsets", svc(), [], []),
    ("one ready pod on a numeric targetPort", svc(), [pod("a", "10.244.0.5")],
     [{"addresses": [addr("a", "10.244.0.5")], "ports": [HTTP]}]),
    ("ready and not-ready pods share the subset of their port set", svc(),
     [pod("a", "10.244.0.5"), pod("b", "10.244.0.6", ready=False)],
     [{"addresses": [addr("a", "10.244.0.5")], "notReadyAddresses": [addr("b", "10.244.0.6")],
       "ports": [HTTP]}]),
    ("a pod without an IP yet is left out", svc(), [pod("a", ip=None)], []),
    ("a terminating pod is left out", svc(), [pod("a", deleting=True)], []),
    ("finished pods are left out", svc(),
     [pod("a", "10.244.0.5", phase="Succeeded"), pod("b", "10.244.0.6", phase="Failed")], []),
    ("publishNotReadyAddresses: not-ready and terminating pods are addresses", svc(publish=True),
     [pod("a", "10.244.0.5", ready=False), pod("b", "10.244.0.6", deleting=True)],
     [{"addresses": [addr("a", "10.244.0.5"), addr("b", "10.244.0.6")], "ports": [HTTP]}]),
    ("a pod without a Ready condition is not ready", svc(),
     [{**pod("a", "10.244.0.5"), "status": {"phase": "Pending", "podIP": "10.244.0.5"}}],
     [{"notReadyAddresses": [addr("a", "10.244.0.5")], "ports": [HTTP]}]),
    ("a named targetPort resolves per pod: different numbers, different subsets",
     svc([{"name": "web", "port": 80, "targetPort": "http"}]),
     [pod("a", "10.244.0.5", ports=[("http", 8080)]), pod("b", "10.244.0.6", ports=[("http", 9090)])],
     [{"addresses": [addr("a", "10.244.0.5")],
       "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]},
      {"addresses": [addr("b", "10.244.0.6")],
       "ports": [{"name": "web", "port": 9090, "protocol": "TCP"}]}]),
    ("a pod lacking a named port is left out of that port only (subsets by port set)",
     svc([{"name": "web", "port": 80, "targetPort": "http"},
          {"name": "admin", "port": 81, "targetPort": "admin"}]),
     [pod("a", "10.244.0.5", ports=[("http", 8080), ("admin", 9000)]),
      pod("b", "10.244.0.6", ports=[("http", 8080)])],
     [{"addresses": [addr("a", "10.244.0.5")],
       "ports": [{"name": "admin", "port": 9000, "protocol": "TCP"},
                 {"name": "web", "port": 8080, "protocol": "TCP"}]},
      {"addresses": [addr("b", "10.244.0.6")],
       "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}]),
    ("a pod with no port of the service at all is left out",
     svc([{"name": "web", "port": 80, "targetPort": "http"}]),
     [pod("a", "10.244.0.5", ports=[("metrics", 9100)])], []),
    ("a named port matches only with the same protocol",
     svc([{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]),
     [pod("a", "10.244.0.5", ports=[("dns", 5353)], protocol="TCP")], []),
    ("hostname is set when the pod's subdomain is the service",
     svc(headless=True),
     [pod("a", "10.244.0.5", hostname="a-0", subdomain="web"),
      pod("b", "10.244.0.6", hostname="b-0", subdomain="other")],
     [{"addresses": [addr("a", "10.244.0.5", hostname="a-0"), addr("b", "10.244.0.6")],
       "ports": [HTTP]}]),
    ("a headless service without ports lists addresses without ports",
     svc([], headless=True), [pod("a", "10.244.0.5")],
     [{"addresses": [addr("a", "10.244.0.5")]}]),
    ("a non-headless service without ports gets nothing", svc([]), [pod("a", "10.244.0.5")], []),
    ("addresses sort numerically (.9 before .10), pods without a node have no nodeName", svc(),
     [pod("b", "10.244.0.10"), pod("a", "10.244.0.9", node=None)],
     [{"addresses": [addr("a", "10.244.0.9", node=None), addr("b", "10.244.0.10")],
       "ports": [HTTP]}]),
    ("an unnamed port has no name; appProtocol and UDP are carried; no targetPort means port",
     svc([{"port": 53, "protocol": "UDP"},
          {"name": "h2", "port": 443, "targetPort": 8443, "appProtocol": "kubernetes.io/h2c"}]),
     [pod("a", "10.244.0.5")],
     [{"addresses": [addr("a", "10.244.0.5")],
       "ports": [{"port": 53, "protocol": "UDP"},
                 {"name": "h2", "port": 8443, "protocol": "TCP",
                  "appProtocol": "kubernetes.io/h2c"}]}]),
]


@pytest.mark.parametrize("desc,service,pods,expected", COMPUTE_CASES,
                         ids=[c[0] for c in COMPUTE_CASES])
def test_compute_endpoints(desc, service, pods, expected):
    assert compute_endpoints(service, pods) == expected


def test_compute_endpoints_is_order_independent():
    pods = [pod("a", "10.244.0.5"), pod("b", "10.244.0.6", ready=False), pod("c", "10.244.0.7")]
    assert compute_endpoints(svc(), pods) == compute_endpoints(svc(), list(reversed(pods)))


UNRESOLVED_CASES = [
    ("every pod has the named port", svc([{"name": "web", "port": 80, "targetPort": "http"}]),
     [pod("a")], []),
    ("no pod has it", svc([{"name": "web", "port": 80, "targetPort": "grpc"}]), [pod("a")],
     ["grpc"]),
    ("no candidate pods: nothing to say yet",
     svc([{"name": "web", "port": 80, "targetPort": "grpc"}]), [pod("a", ip=None)], []),
    ("numeric target ports never count", svc(), [pod("a", ports=())], []),
]


@pytest.mark.parametrize("desc,service,pods,expected", UNRESOLVED_CASES,
                         ids=[c[0] for c in UNRESOLVED_CASES])
def test_unresolved_named_ports(desc, service, pods, expected):
    assert unresolved_named_ports(service, pods) == expected


def test_canonical_subsets_ignore_order_and_pod_resource_versions():
    one = compute_endpoints(svc(), [pod("a", "10.244.0.5"), pod("b", "10.244.0.6")])
    two = compute_endpoints(svc(), [pod("b", "10.244.0.6"), pod("a", "10.244.0.5")])
    two[0]["addresses"].reverse()
    two[0]["addresses"][0]["targetRef"]["resourceVersion"] = "99"
    assert canonical_subsets(one) == canonical_subsets(two)
    three = compute_endpoints(svc(), [pod("a", "10.244.0.5"), pod("b", "10.244.0.6", ready=False)])
    assert canonical_subsets(one) != canonical_subsets(three)


# -- the controller over a real registry ---------------------------------------------------------

@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        controller = EndpointsController(registry)
        await controller.start()
        try:
            yield registry, controller
        finally:
            await controller.stop()


def api_object(obj: dict) -> dict:
    """A test object as a client would send it: no uid, resourceVersion or status."""
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: v for k, v in obj["metadata"].items()
                       if k not in ("uid", "resourceVersion")}
    return out


async def create_pod(registry, p: dict) -> dict:
    created = await registry.create(PODS, "ns", api_object(p))
    return await registry.update(PODS, "ns", p["metadata"]["name"],
                                 {**created, "status": p["status"]}, subresource="status")


async def set_pod(registry, name: str, change) -> dict:
    def mutate(current):
        change(current)
        return current
    return await registry.guaranteed_update(PODS, "ns", name, mutate)


async def set_pod_status(registry, name: str, change) -> dict:
    def mutate(current):
        change(current["status"])
        return current
    return await registry.guaranteed_update(PODS, "ns", name, mutate, subresource="status")


def ips(ep, field="addresses"):
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or () for a in s.get(field) or ())


def endpoints_of(registry, name="web"):
    return lambda: get_or_none(registry, ENDPOINTS, "ns", name)


async def test_endpoints_follow_pods_and_readiness(env):
    registry, controller = env
    await registry.create(SERVICES, "ns", api_object(svc()))
    await create_pod(registry, pod("a", "10.244.0.5"))
    await create_pod(registry, pod("b", "10.244.0.6", ready=False))
    await create_pod(registry, pod("other", "10.244.0.7", labels={"app": "db"}))
    ep = await eventually(registry, endpoints_of(registry),
                          lambda ep: ips(ep) == ["10.244.0.5"]
                          and ips(ep, "notReadyAddresses") == ["10.244.0.6"], "endpoints")
    assert ep["metadata"]["labels"][MANAGED_BY_LABEL] == "endpoints-controller"
    assert ep["subsets"][0]["ports"] == [HTTP]
    ref = ep["subsets"][0]["addresses"][0]["targetRef"]
    a = await registry.get(PODS, "ns", "a")
    assert ref == {"kind": "Pod", "namespace": "ns", "name": "a", "uid": a["metadata"]["uid"],
                   "resourceVersion": a["metadata"]["resourceVersion"]}

    await set_pod_status(registry, "b", lambda st: st.update(
        conditions=[{"type": "Ready", "status": "True"}]))
    await eventually(registry, endpoints_of(registry),
                     lambda ep: ips(ep) == ["10.244.0.5", "10.244.0.6"], "b ready")

    # A change endpoints do not depend on causes no write.
    rv = (await registry.get(ENDPOINTS, "ns", "web"))["metadata"]["resourceVersion"]
    changed = await set_pod(registry, "a", lambda p: p["metadata"].update(
        annotations={"note": "irrelevant"}))
    await caught_up(controller.pods, rv_of(changed))
    await controller.wait_idle()
    assert (await registry.get(ENDPOINTS, "ns", "web"))["metadata"]["resourceVersion"] == rv

    # A deleted pod leaves; a pod relabelled out of the selector leaves too.
    await registry.delete(PODS, "ns", "a")
    await set_pod(registry, "b", lambda p: p["metadata"].update(labels={"app": "gone"}))
    ep = await eventually(registry, endpoints_of(registry), lambda ep: not ep.get("subsets"),
                          "no pods left")
    assert ep["metadata"]["labels"][MANAGED_BY_LABEL]


async def test_endpoints_deleted_with_service_and_recreated_when_deleted_by_hand(env):
    registry, controller = env
    await registry.create(SERVICES, "ns", api_object(svc()))
    await create_pod(registry, pod("a", "10.244.0.5"))
    await eventually(registry, endpoints_of(registry), lambda ep: ips(ep) == ["10.244.0.5"],
                     "endpoints")
    await registry.delete(ENDPOINTS, "ns", "web")
    await eventually(registry, endpoints_of(registry), lambda ep: ips(ep) == ["10.244.0.5"],
                     "endpoints written again")
    await registry.delete(SERVICES, "ns", "web")
    await eventually(registry, endpoints_of(registry), lambda ep: ep is None, "endpoints gone")


async def test_selectorless_service_endpoints_are_never_touched(env):
    registry, controller = env
    await registry.create(ENDPOINTS, "ns", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]})
    external = api_object(svc(name="ext"))
    del external["spec"]["selector"]
    created = await registry.create(SERVICES, "ns", external)
    await create_pod(registry, pod("a", "10.244.0.5"))
    await caught_up(controller.services, rv_of(created))
    await controller.wait_idle()
    assert ips(await registry.get(ENDPOINTS, "ns", "ext")) == ["192.0.2.10"]
    await registry.delete(SERVICES, "ns", "ext")
    await caught_up(controller.services, registry.store.revision)  # the deletion's revision
    await controller.wait_idle()
    assert ips(await registry.get(ENDPOINTS, "ns", "ext")) == ["192.0.2.10"], \
        "user-written Endpoints outlive their Service"


async def test_named_port_missing_on_every_pod_records_an_event(env):
    registry, controller = env
    await registry.create(SERVICES, "ns", api_object(
        svc([{"name": "web", "port": 80, "targetPort": "grpc"}])))
    await create_pod(registry, pod("a", "10.244.0.5"))

    async def events():
        items, _ = await registry.list(EVENTS, "ns")
        return [e for e in items if e["reason"] == "FailedToResolveNamedPort"]

    found = await eventually(registry, events, bool, "a FailedToResolveNamedPort event")
    assert "'grpc'" in found[0]["message"]
    assert found[0]["involvedObject"]["kind"] == "Service"
    assert found[0]["involvedObject"]["name"] == "web"


async def test_fifty_concurrent_pods_converge(env):
    registry, controller = env
    await registry.create(SERVICES, "ns", api_object(svc()))
    await asyncio.gather(*(create_pod(registry, pod(f"p{i}", f"10.244.1.{i}"))
                           for i in range(1, 51)))
    ep = await eventually(registry, endpoints_of(registry), lambda ep: len(ips(ep)) == 50,
                          "50 addresses")
    assert len(ep["subsets"]) == 1
