"""compile_zone(), the incremental ZoneIndex, and the views they compile from: pure,
table-driven."""

from __future__ import annotations

import pytest
from dnslib import QTYPE

from meshnet.dns.views import (AddressView, PortView, ServiceView, view_endpoints, view_pod,
                               view_service)
from meshnet.dns.zone import (STATIC, ZoneConfig, ZoneIndex, compile_zone, dashed,
                              pod_fragment, pod_source, reverse_name, reverse_zones,
                              service_fragment, service_source, static_fragment, undashed)

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
    mname, rname, times = table.records["corp.example."][QTYPE.SOA][0]
    assert (mname, rname, times[4]) == ("ns.dns.corp.example.", "hostmaster.corp.example.", 30)


# -- incremental compile: ZoneIndex --------------------------------------------------------------

def _state(extra_services=0):
    """The sample cluster as mutable dicts of views, plus `extra_services` untouched ones."""
    services, eps, pods = sample_objects()
    for i in range(extra_services):
        services.append(service(f"bulk{i}", ns=f"bulk{i % 7}",
                                cluster_ip=f"10.97.{i >> 8}.{i & 255}"))
        services.append(service(f"hbulk{i}", ns=f"bulk{i % 7}", cluster_ip="None"))
        eps.append(endpoints(f"hbulk{i}", ns=f"bulk{i % 7}",
                             ready=[f"10.245.{i >> 8}.{i & 255}"]))
    return ({(s.namespace, s.name): s for s in map(view_service, services)},
            {(e.namespace, e.name): e for e in map(view_endpoints, eps)},
            {(p.namespace, p.name): p for p in map(view_pod, pods)})


def _put(state, kind, obj):
    view = {"svc": view_service, "eps": view_endpoints, "pod": view_pod}[kind](obj)
    state[("svc", "eps", "pod").index(kind)][(view.namespace, view.name)] = view
    return kind, view.namespace, view.name


def _drop(state, kind, ns, name):
    del state[("svc", "eps", "pod").index(kind)][(ns, name)]
    return kind, ns, name


# Each change returns (kind, namespace, name) of the object it touched.
CHANGES = [
    ("a ClusterIP changes", lambda st: _put(st, "svc", service("web", cluster_ip="10.96.0.99"))),
    ("a headless service gains an endpoint", lambda st: _put(st, "eps", endpoints(
        "db", ready=[("10.244.0.5", "db-0"), "10.244.0.6", "10.244.0.50"],
        ports=(("pg", 5432, "TCP"),)))),
    ("a headless service loses its last endpoint (its name and ENTs go)",
     lambda st: _put(st, "eps", endpoints("db", ports=(("pg", 5432, "TCP"),)))),
    ("a service is deleted", lambda st: _drop(st, "svc", "default", "web")),
    ("a service in a new namespace (new ENT)",
     lambda st: _put(st, "svc", service("x", ns="fresh", cluster_ip="10.96.5.5"))),
    ("the only pod of a namespace is deleted (its ENT goes)",
     lambda st: _drop(st, "pod", "v6", "six")),
    ("two headless services share an endpoint IP (PTRs merge)", lambda st: (
        _put(st, "svc", service("db2", cluster_ip="None", ports=(("pg", 5432, "TCP"),))),
        _put(st, "eps", endpoints("db2", ready=["10.244.0.6"], ports=(("pg", 5432, "TCP"),))))[1]),
    ("the DNS service changes address (NS glue)", lambda st: _put(st, "svc", service(
        "kube-dns", ns="kube-system", cluster_ip="10.96.0.11", ports=(("dns", 53, "UDP"),)))),
    ("a pod is deleted", lambda st: _drop(st, "pod", "default", "db-0")),
    ("an ExternalName becomes a ClusterIP service",
     lambda st: _put(st, "svc", service("ext", cluster_ip="10.96.0.77"))),
]


def _apply(index, state, touched):
    services, eps, pods = state
    config = index.config
    for kind, ns, name in touched:
        if kind == "pod":
            pod_view = pods.get((ns, name))
            index.set(pod_source(ns, name), pod_fragment(pod_view, config) if pod_view else None)
        else:
            svc = services.get((ns, name))
            index.set(service_source(ns, name),
                      service_fragment(svc, eps.get((ns, name)), config) if svc else None)


def _index(state, config=ZoneConfig()):
    index = ZoneIndex(config)
    index.set(STATIC, static_fragment(config, 1))
    _apply(index, state, [("svc", ns, n) for ns, n in state[0]] +
           [("pod", ns, n) for ns, n in state[2]])
    return index


def _full(state, config=ZoneConfig()):
    return compile_zone(state[0].values(), state[1], state[2].values(), config, 1)


@pytest.mark.parametrize("desc,change", CHANGES, ids=[c[0] for c in CHANGES])
def test_incremental_change_equals_full_compile(desc, change):
    state = _state()
    index = _index(state)
    assert index.table() == _full(state)
    _apply(index, state, [change(state)])
    assert index.table() == _full(state)


def test_every_change_in_sequence_equals_full_compile():
    state = _state()
    index = _index(state)
    for desc, change in CHANGES:
        _apply(index, state, [change(state)])
        assert index.table() == _full(state), desc


@pytest.mark.parametrize("desc,change", CHANGES, ids=[c[0] for c in CHANGES])
def test_work_for_one_change_does_not_grow_with_untouched_services(desc, change):
    work = []
    for extra in (0, 300):
        state = _state(extra)
        index = _index(state)
        index.merged = 0
        _apply(index, state, [change(state)])
        work.append(index.merged)
    assert work[0] == work[1] > 0, work


def test_unchanged_fragment_is_no_work():
    state = _state(50)
    index = _index(state)
    index.merged = 0
    _apply(index, state, [("svc", "default", "web"), ("svc", "bulk3", "hbulk3")])
    assert index.merged == 0
