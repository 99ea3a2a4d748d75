"""compile_zone() and the views it compiles from: pure, table-driven."""

from __future__ import annotations

import pytest
from dnslib import QTYPE

from meshnet.dns.views import (AddressView, PortView, ServiceView, view_endpoints, view_pod,
                               view_service)
from meshnet.dns.zone import (ZoneConfig, compile_zone, dashed, reverse_name, reverse_zones,
                              undashed)

from fakes import endpoints, pod, sample_objects, sample_table, service

VIEW_CASES = [
    ("ClusterIP service", service("a", cluster_ip="10.96.0.5"),
     ServiceView("default", "a", "ClusterIP", False, ("10.96.0.5",), "",
                 (PortView("http", 80, "TCP"),), False)),
    ("headless service", service("h", cluster_ip="None", ports=()),
     ServiceView("default", "h", "ClusterIP", True, (), "", (), False)),
    ("ExternalName keeps the name without the trailing dot",
     service("e", cluster_ip=None, type="ExternalName", external_name="Example.org.", ports=()),
     ServiceView("default", "e", "ExternalName", False, (), "Example.org", (), False)),
    ("an invalid ClusterIP and an invalid port are dropped, not fatal",
     service("bad", cluster_ip="10.96.0.999", ports=(("x", 70000, "TCP"), ("y", 53, "UDP"))),
     ServiceView("default", "bad", "ClusterIP", False, (), "", (PortView("y", 53, "UDP"),),
                 False)),
    ("dual stack, IPv6 normalised",
     service("d", cluster_ip="10.96.0.6", cluster_ips=("10.96.0.6", "FD00:0::6"), ports=()),
     ServiceView("default", "d", "ClusterIP", False, ("10.96.0.6", "fd00::6"), "", (), False)),
]


@pytest.mark.parametrize("desc,obj,want", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_view_service(desc, obj, want):
    assert view_service(obj) == want


def test_view_endpoints_keeps_readiness_and_hostnames():
    view = view_endpoints(endpoints("s", ready=[("10.0.0.1", "web-0")], not_ready=["10.0.0.2",
                                                                                   "garbage"]))
    assert view.subsets[0].addresses == (AddressView("10.0.0.1", "web-0", True),
                                         AddressView("10.0.0.2", "", False))


def test_view_pod_without_ip():
    assert view_pod({"metadata": {"name": "p", "namespace": "n"}, "status": {}}).ips == ()
    assert view_pod(pod("p", "10.244.0.1")).ips == ("10.244.0.1",)


DASH_CASES = [
    ("IPv4", "10.244.0.5", "10-244-0-5"),
    ("IPv6 compressed", "fd00::5", "fd00--5"),
]


@pytest.mark.parametrize("desc,ip,label", DASH_CASES, ids=[c[0] for c in DASH_CASES])
def test_dashed_round_trip(desc, ip, label):
    assert dashed(ip) == label
    assert undashed(label) == ip


@pytest.mark.parametrize("label", ["web", "1-2-3", "1-2-3-999", "", "a--b-"])
def test_undashed_rejects_non_ips(label):
    assert undashed(label) is None


REVERSE_CASES = [
    ("octet aligned /16", ["10.244.0.0/16"], {"244.10.in-addr.arpa."}),
    ("a /12 spans sixteen /16 zones", ["10.96.0.0/12"],
     {f"{n}.10.in-addr.arpa." for n in range(96, 112)}),
    ("a /24", ["192.168.5.0/24"], {"5.168.192.in-addr.arpa."}),
    ("IPv6 /64 is nibble aligned", ["fd00::/64"],
     {"0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."}),
]


@pytest.mark.parametrize("desc,cidrs,want", REVERSE_CASES, ids=[c[0] for c in REVERSE_CASES])
def test_reverse_zones(desc, cidrs, want):
    assert reverse_zones(cidrs) == want


def test_reverse_name():
    assert reverse_name("10.96.0.1") == "1.0.96.10.in-addr.arpa."


def test_compile_is_deterministic_whatever_the_input_order():
    services, eps, pods = sample_objects()
    views = [view_service(s) for s in services]
    eps_views = {(e.namespace, e.name): e for e in map(view_endpoints, eps)}
    pod_views = [view_pod(p) for p in pods]
    a = compile_zone(views, eps_views, pod_views, ZoneConfig())
    b = compile_zone(list(reversed(views)), dict(reversed(list(eps_views.items()))),
                     list(reversed(pod_views)), ZoneConfig())
    assert a == b
    assert a != compile_zone(views[1:], eps_views, pod_views, ZoneConfig())


def test_empty_non_terminals_exist_without_data():
    table = sample_table()
    for name in ("svc.cluster.local.", "default.svc.cluster.local.", "pod.cluster.local.",
                 "default.pod.cluster.local.", "_tcp.web.default.svc.cluster.local.",
                 "0.96.10.in-addr.arpa."):
        assert table.records[name] == {}, name
    assert "empty.default.svc.cluster.local." not in table.records


def test_cluster_domain_and_ttl_are_configurable():
    table = compile_zone([view_service(service("a"))], {}, [],
                         ZoneConfig.make("Corp.Example.", ttl=30))
    assert table.origin == "corp.example."
    assert "a.default.svc.corp.example." in table.records
    soa = table.records["corp.example."][QTYPE.SOA][0]
    assert soa.times[4] == 30
