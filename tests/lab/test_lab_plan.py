"""The lab's layout as data: flags, addresses, etcd placement, processes, kubeconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshnet.client.failover import SERVERS_EXTENSION
from meshnet.cluster.plan import PlanError
from meshnet.lab.plan import make_plan, merge_flags, split_flags

BASE = dict(name="lab", data_dir=Path("/tmp/lab"), control_planes=1, workers=2, etcd=1,
            store="etcd", underlay="172.29.0.0/24")

# (description, overrides, a piece of the error)
BAD = [
    ("a name too long for an interface", {"name": "a-very-long-name"}, "1-12 lower-case"),
    ("four control planes", {"control_planes": 4}, "between 1 and 3"),
    ("no workers", {"workers": 0}, "between 1 and 40"),
    ("two etcd members", {"etcd": 2}, "1 or 3 members"),
    ("sqlite with two API servers", {"store": "sqlite", "control_planes": 2},
     "one API server only"),
    ("an unknown store", {"store": "consul"}, "etcd or sqlite"),
    ("an underlay smaller than a /24", {"underlay": "172.29.0.0/25"}, "/24 or larger"),
    ("a public underlay", {"underlay": "8.8.8.0/24"}, "private range"),
    ("an underlay inside the pod range", {"underlay": "10.244.9.0/24"},
     "overlaps the cluster range 10.244.0.0/16"),
    ("host bits set", {"underlay": "172.29.0.1/24"}, "has host bits set"),
]


@pytest.mark.parametrize("desc,overrides,error", BAD, ids=[b[0] for b in BAD])
def test_bad_flags(desc, overrides, error):
    with pytest.raises(PlanError, match=error):
        make_plan(**{**BASE, **overrides})


def test_members_and_addresses():
    plan = make_plan(**{**BASE, "control_planes": 3, "workers": 3, "etcd": 3})
    got = [(m.name, m.role, m.ip, m.netns) for m in plan.members()]
    assert got == [
        ("cp1", "control-plane", "172.29.0.11", "lab-cp1"),
        ("cp2", "control-plane", "172.29.0.12", "lab-cp2"),
        ("cp3", "control-plane", "172.29.0.13", "lab-cp3"),
        ("w1", "worker", "172.29.0.21", "lab-w1"),
        ("w2", "worker", "172.29.0.22", "lab-w2"),
        ("w3", "worker", "172.29.0.23", "lab-w3"),
        ("out", "outside", "172.29.0.250", "lab-out")]
    assert (plan.host_ip, plan.host_veth, plan.switch_netns) == ("172.29.0.1", "lab-h", "lab-sw")
    assert plan.lb_pool_range() == "172.29.0.200-172.29.0.239"
    assert plan.store == "etcd://172.29.0.11:2379,172.29.0.12:2379,172.29.0.13:2379"
    assert plan.member("lab-w2") == plan.member("w2")
    with pytest.raises(PlanError, match='no lab member "w9"'):
        plan.member("w9")


def test_three_etcd_members_on_one_control_plane_take_distinct_ports():
    plan = make_plan(**{**BASE, "etcd": 3})
    assert [(e.name, e.host.name, e.client_url, e.peer_url) for e in plan.etcd_members()] == [
        ("e1", "cp1", "http://172.29.0.11:2379", "http://172.29.0.11:2380"),
        ("e2", "cp1", "http://172.29.0.11:2381", "http://172.29.0.11:2382"),
        ("e3", "cp1", "http://172.29.0.11:2383", "http://172.29.0.11:2384")]


def test_processes_in_start_order_inside_their_namespaces():
    plan = make_plan(**{**BASE, "control_planes": 2, "etcd": 1,
                        "apiserver_args": ("--leader-lease-duration", "3s")})
    specs = plan.processes()
    assert [s.name for _, s in specs] == [
        "cp1-e1", "cp1-apiserver", "cp2-apiserver",
        "w1-agent", "w1-proxy", "w1-dns", "w1-ingress",
        "w2-agent", "w2-proxy", "w2-dns", "w2-ingress"]
    for member, spec in specs:
        assert spec.argv[:4] == ("ip", "netns", "exec", member.netns)
    api = specs[2][1].argv
    assert api[api.index("--listen") + 1] == "172.29.0.12:6443"
    assert api[api.index("--store") + 1] == "etcd://172.29.0.11:2379"
    # A flag given wins over the lab default; the other defaults stay.
    assert api.count("--leader-lease-duration") == 1
    assert api[api.index("--leader-lease-duration") + 1] == "3s"
    assert api[api.index("--pod-eviction-timeout") + 1] == "30s"
    dns = specs[5][1].argv
    assert dns[dns.index("--upstream") + 1] == "127.0.0.1:53"  # nothing outside the lab


def test_sqlite_lab_has_no_etcd():
    plan = make_plan(**{**BASE, "store": "sqlite", "etcd": 3})
    assert plan.etcd_members() == () and plan.store == ""
    assert "--store" not in plan.processes()[0][1].argv


def test_lab_kubeconfig_names_every_api_server():
    plan = make_plan(**{**BASE, "control_planes": 3})
    admin = {"clusters": [{"name": "meshnet", "cluster": {
        "server": "https://172.29.0.11:6443", "certificate-authority-data": "X",
        "extensions": [{"name": "cluster_info", "extension": {"a": 1}}]}}]}
    cluster = plan.lab_kubeconfig(admin)["clusters"][0]["cluster"]
    assert cluster["server"] == "https://172.29.0.11:6443"
    assert cluster["extensions"] == [
        {"name": "cluster_info", "extension": {"a": 1}},
        {"name": SERVERS_EXTENSION,
         "extension": {"servers": ["https://172.29.0.12:6443", "https://172.29.0.13:6443"]}}]
    assert admin["clusters"][0]["cluster"]["extensions"] == [
        {"name": "cluster_info", "extension": {"a": 1}}]  # the input is not changed
    one = make_plan(**BASE).lab_kubeconfig({"clusters": [{"name": "m", "cluster": {}}]})
    assert "extensions" not in one["clusters"][0]["cluster"]


def test_kube_dns_endpoints_list_every_worker_with_its_node():
    plan = make_plan(**{**BASE, "workers": 3})
    subset = plan.kube_dns_endpoints()["subsets"][0]
    assert subset["addresses"] == [{"ip": f"172.29.0.2{i}", "nodeName": f"w{i}"}
                                   for i in (1, 2, 3)]
    assert {p["name"] for p in subset["ports"]} == {"dns", "dns-tcp", "metrics"}


# (description, --apiserver-arg items, argv)
SPLIT = [
    ("flag=value", ["--pod-eviction-timeout=5s"], ("--pod-eviction-timeout", "5s")),
    ("a value holding '='", ["--label=a=b"], ("--label", "a=b")),
    ("a bare flag", ["--verbose"], ("--verbose",)),
    ("several", ["--a=1", "--b"], ("--a", "1", "--b")),
]


@pytest.mark.parametrize("desc,items,argv", SPLIT, ids=[s[0] for s in SPLIT])
def test_split_flags(desc, items, argv):
    assert split_flags(items) == argv


# (description, base, extra, merged)
MERGE = [
    ("a new flag is added", ("--a", "1"), ("--b", "2"), ("--a", "1", "--b", "2")),
    ("a flag's value is replaced in place", ("--a", "1", "--b", "2"), ("--a", "9"),
     ("--a", "9", "--b", "2")),
    ("a bare flag already there stays once", ("--v", "--a", "1"), ("--v",),
     ("--v", "--a", "1")),
    ("a value given to a bare flag is inserted", ("--v", "--a", "1"), ("--v", "x"),
     ("--v", "x", "--a", "1")),
    ("several at once", ("--grace", "15s", "--evict", "2s"), ("--grace", "40s", "--new"),
     ("--grace", "40s", "--evict", "2s", "--new")),
]


@pytest.mark.parametrize("desc,base,extra,merged", MERGE, ids=[m[0] for m in MERGE])
def test_merge_flags(desc, base, extra, merged):
    assert merge_flags(base, extra) == merged


def test_restored_api_servers_take_the_changed_flags():
    plan = make_plan(**{**BASE, "apiserver_args": ("--node-monitor-grace-period", "15s")})
    argv = [s.argv for _, s in plan.processes() if s.name == "cp1-apiserver"][0]
    assert argv[argv.index("--node-monitor-grace-period") + 1] == "15s"
    changed = make_plan(**{**BASE, "apiserver_args": merge_flags(
        plan.apiserver_args, ("--node-monitor-grace-period", "40s"))})
    argv = [s.argv for _, s in changed.processes() if s.name == "cp1-apiserver"][0]
    assert argv.count("--node-monitor-grace-period") == 1
    assert argv[argv.index("--node-monitor-grace-period") + 1] == "40s"
