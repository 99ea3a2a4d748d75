"""compile_service / update_table: views -> listeners and routes."""

from __future__ import annotations

import pytest

from proxy_fakes import endpoints, service
from meshnet.proxy.table import (EXTERNAL, INTERNAL, ListenerKey, NodeInfo, ProxyTable,
                                 ServicePortName, compile_service, compile_table, update_table)
from meshnet.proxy.views import EndpointView, endpoints_view, service_view

NODE = NodeInfo("node-a", ("192.168.50.2", "127.0.0.1"))
A = EndpointView("http", "TCP", "10.244.1.5", 8080, "node-a")
B = EndpointView("http", "TCP", "10.244.2.5", 8080, "node-b")
TWO = endpoints(ready=(("10.244.1.5", "node-a"), ("10.244.2.5", "node-b")))
SPN = ServicePortName("default", "web", "http", "TCP")


def listeners(svc, eps=TWO):
    compiled = compile_service(service_view(svc), endpoints_view(eps) if eps else None, NODE)
    return {str(k): (r.scope, r.endpoints) for k, r in compiled.listeners}, compiled


CASES = [
    ("ClusterIP: one listener, all ready endpoints", service(), TWO,
     {"10.96.0.10:80/TCP": (INTERNAL, (A, B))}),
    ("no Endpoints object: listener with no endpoints (refuses)", service(), None,
     {"10.96.0.10:80/TCP": (INTERNAL, ())}),
    ("headless: nothing", service(cluster_ip="None"), TWO, {}),
    ("ExternalName: nothing", service(type="ExternalName", cluster_ip=""), TWO, {}),
    ("internalTrafficPolicy Local: only this node's endpoints on the ClusterIP",
     service(internalTrafficPolicy="Local"), TWO, {"10.96.0.10:80/TCP": (INTERNAL, (A,))}),
    ("NodePort on every node address, ClusterIP too",
     service(type="NodePort", ports=(("http", 80, "TCP", 30080),)), TWO,
     {"10.96.0.10:80/TCP": (INTERNAL, (A, B)), "192.168.50.2:30080/TCP": (EXTERNAL, (A, B)),
      "127.0.0.1:30080/TCP": (EXTERNAL, (A, B))}),
    ("externalTrafficPolicy Local: NodePort local, ClusterIP all",
     service(type="NodePort", ports=(("http", 80, "TCP", 30080),),
             externalTrafficPolicy="Local"), TWO,
     {"10.96.0.10:80/TCP": (INTERNAL, (A, B)), "192.168.50.2:30080/TCP": (EXTERNAL, (A,)),
      "127.0.0.1:30080/TCP": (EXTERNAL, (A,))}),
    ("LoadBalancer IPs and externalIPs are external frontends",
     service(type="LoadBalancer", ports=(("http", 80, "TCP", 0),), lb_ips=("192.0.2.10",),
             externalIPs=["198.51.100.7"]), TWO,
     {"10.96.0.10:80/TCP": (INTERNAL, (A, B)), "198.51.100.7:80/TCP": (EXTERNAL, (A, B)),
      "192.0.2.10:80/TCP": (EXTERNAL, (A, B))}),
    ("endpoints match by port name and protocol",
     service(ports=(("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0))),
     endpoints(ready=(("10.244.1.9", ""),), ports=(("dns", 5353, "UDP"), ("dns-tcp", 53, "TCP"))),
     {"10.96.0.10:53/UDP": (INTERNAL, (EndpointView("dns", "UDP", "10.244.1.9", 5353),)),
      "10.96.0.10:53/TCP": (INTERNAL, (EndpointView("dns-tcp", "TCP", "10.244.1.9", 53),))}),
    ("SCTP is skipped", service(ports=(("s", 9, "SCTP", 0),)), TWO, {}),
]


@pytest.mark.parametrize("svc,eps,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compile_service(svc, eps, expected):
    got, _ = listeners(svc, eps)
    assert got == expected


def test_compile_records_errors_and_vips():
    _, compiled = listeners(service(ports=(("s", 9, "SCTP", 0),), externalIPs=["198.51.100.7"]))
    assert compiled.vips == frozenset({"10.96.0.10", "198.51.100.7"})
    assert compiled.errors == ("port s: protocol SCTP is not supported by meshnet-proxy "
                               "(TCP and UDP are)",)


def test_route_carries_policy_and_affinity():
    svc = service(sessionAffinity="ClientIP",
                  annotations={"meshnet.io/lb-policy": "least-conn"})
    _, compiled = listeners(svc)
    (_, route), = compiled.listeners
    assert (route.spn, route.policy, route.affinity_timeout_s) == (SPN, "least-conn", 10800)


def test_update_table_replaces_and_removes():
    web = compile_service(service_view(service()), endpoints_view(TWO), NODE)
    db = compile_service(service_view(service("db", cluster_ip="10.96.0.11")), None, NODE)
    table = update_table(ProxyTable(), [web, db])
    assert set(table.listeners) == {ListenerKey("TCP", "10.96.0.10", 80),
                                    ListenerKey("TCP", "10.96.0.11", 80)}
    assert dict(table.addresses) == {"10.96.0.10": 1, "10.96.0.11": 1}
    gone = compile_service(None, None, NODE, key="default/web")
    after = update_table(table, [gone])
    assert set(after.listeners) == {ListenerKey("TCP", "10.96.0.11", 80)}
    assert dict(after.addresses) == {"10.96.0.11": 1}
    assert len(table.listeners) == 2, "the old table is never mutated"


def test_conflicting_listener_keeps_first_owner():
    a = compile_service(service_view(service("a", externalIPs=["198.51.100.7"])), None, NODE)
    b = compile_service(service_view(service("b", cluster_ip="10.96.0.11",
                                             externalIPs=["198.51.100.7"])), None, NODE)
    table = update_table(ProxyTable(), [a, b])
    assert table.owners[ListenerKey("TCP", "198.51.100.7", 80)] == "default/a"
    assert dict(table.errors) == {"default/b": ("198.51.100.7:80/TCP is already used by service "
                                          "default/a; not proxied",)}
    assert table.addresses["198.51.100.7"] == 2


def test_compile_table_equals_incremental():
    views = [service_view(service(f"s{i}", cluster_ip=f"10.96.1.{i}")) for i in range(5)]
    eps = {"default/s1": endpoints_view(endpoints("s1"))}
    full = compile_table(views, eps, NODE)
    incremental = ProxyTable()
    for v in views:
        incremental = update_table(incremental, [compile_service(v, eps.get(v.key), NODE)])
    assert full == incremental
