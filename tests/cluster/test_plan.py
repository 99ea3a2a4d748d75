"""meshnet.cluster.plan: flag validation and the derived names/addresses, table-first."""

from pathlib import Path

import pytest

from meshnet.cluster.plan import PlanError, make_plan, parse_upstreams, upstreams_from_resolv_conf

GOOD = dict(name="meshnet", data_dir=Path("/d"), api_port=6443, http_port=80, https_port=443,
            link_cidr="172.31.255.252/30", dns_upstream="127.0.0.53")

BAD_CASES = [
    ("name too long for IFNAMSIZ", {"name": "averyverylongname"}, "--name"),
    ("upper case name", {"name": "Mesh"}, "--name"),
    ("port out of range", {"api_port": 70000}, "--api-port 70000"),
    ("not a /30", {"link_cidr": "172.31.255.0/24"}, "must be an IPv4 /30"),
    ("host bits set", {"link_cidr": "172.31.255.253/30"}, "has host bits set"),
    ("link-local refused by Endpoints", {"link_cidr": "169.254.1.0/30"}, "link-local"),
    ("inside the pod range", {"link_cidr": "10.244.9.0/30"}, "overlaps the cluster range"),
    ("upstream not an address", {"dns_upstream": "dns.example"}, "not an IP address"),
]


@pytest.mark.parametrize("desc,change,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_flags_say_which_and_what_to_do(desc, change, message):
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        make_plan(**{**GOOD, **change})


def test_names_addresses_and_processes():
    plan = make_plan(**GOOD)
    assert (plan.netns, plan.node_name, plan.host_veth) == \
        ("meshnet-node-1", "meshnet-node-1", "meshnet-h")
    assert (plan.host_ip, plan.node_ip, plan.prefixlen) == ("172.31.255.253", "172.31.255.254", 30)
    assert plan.api_url == "https://127.0.0.1:6443"
    assert plan.node_api_url == "https://172.31.255.253:6443"
    procs = {p.name: p for p in plan.processes()}
    assert list(procs) == ["apiserver", "relay", "agent", "proxy", "dns", "ingress"]
    assert [n for n, p in procs.items() if p.in_node] == ["agent", "proxy", "dns", "ingress"]
    api = procs["apiserver"].argv
    assert api[api.index("--listen") + 1] == "127.0.0.1:6443", "loopback only"
    relay = " ".join(procs["relay"].argv)
    assert "--tcp 172.31.255.253:6443=127.0.0.1:6443" in relay
    assert "--tcp 127.0.0.1:80=172.31.255.254:80" in relay
    assert "--udp 172.31.255.253:1053=127.0.0.53:53" in relay
    ep = plan.kube_dns_endpoints()["subsets"][0]
    assert ep["addresses"][0]["ip"] == "172.31.255.254"
    assert plan.unreachable_ranges() == ("10.96.0.0/12", "10.244.0.0/16")


UPSTREAM_CASES = [
    ("plain address, default port", "10.0.0.1", (("10.0.0.1", 53),)),
    ("address and port", "127.0.0.1:5300", (("127.0.0.1", 5300),)),
    ("ipv6 in brackets", "[::1]:5300", (("::1", 5300),)),
    ("several, empty items ignored", "1.1.1.1, ,8.8.8.8", (("1.1.1.1", 53), ("8.8.8.8", 53))),
    ("none", "", ()),
]


@pytest.mark.parametrize("desc,text,want", UPSTREAM_CASES, ids=[c[0] for c in UPSTREAM_CASES])
def test_parse_upstreams(desc, text, want):
    assert parse_upstreams(text) == want


def test_upstreams_from_resolv_conf():
    text = "# x\nnameserver 127.0.0.53\nsearch lan\nnameserver fd00::1\n"
    assert upstreams_from_resolv_conf(text) == "127.0.0.53,[fd00::1]"
