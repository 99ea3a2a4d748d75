"""Pod network plans: names, resolv.conf, host-gw routes."""

import pytest

from meshnet.node.netconfig import (NodeView, Route, compile_routes, diff_routes,
                                    host_veth_name, node_view, pod_netns_name, resolv_conf)


def test_names_fit_the_kernel_limits():
    uid = "1ba7618d-9ffd-4c13-91b6-80e138207e2c"
    assert pod_netns_name(uid) == "mnpod-1ba7618d9ffd4c13"
    assert host_veth_name(uid) == "mnv1ba7618d9ffd" and len(host_veth_name(uid)) <= 15


RESOLV = [
    ("defaults", ("web",), {},
     "nameserver 10.96.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local\n"
     "options ndots:5\n"),
    ("another DNS address and domain", ("default",),
     {"nameservers": ("10.100.0.10",), "domain": "corp.internal"},
     "nameserver 10.100.0.10\nsearch default.svc.corp.internal svc.corp.internal "
     "corp.internal\noptions ndots:5\n"),
]


@pytest.mark.parametrize("desc,args,kwargs,expected", RESOLV, ids=[c[0] for c in RESOLV])
def test_resolv_conf(desc, args, kwargs, expected):
    assert resolv_conf(*args, **kwargs) == expected


A = NodeView("a", "10.244.1.0/24", "192.168.1.1")
B = NodeView("b", "10.244.2.0/24", "192.168.1.2")
ROUTES = [
    ("no other nodes", [A], set()),
    ("one route per other node", [A, B, NodeView("c", "10.244.3.0/24", "192.168.1.3")],
     {Route("10.244.2.0/24", "192.168.1.2"), Route("10.244.3.0/24", "192.168.1.3")}),
    ("a node without podCIDR or InternalIP is skipped",
     [A, NodeView("c", "", "192.168.1.3"), NodeView("d", "10.244.4.0/24", "")], set()),
    ("garbage is skipped, not raised", [A, NodeView("c", "nope", "192.168.1.3"),
                                         NodeView("d", "10.244.4.0/24", "x.y")], set()),
    ("a CIDR overlapping ours would hijack local pods: skipped",
     [A, NodeView("c", "10.244.0.0/16", "192.168.1.3")], set()),
]


@pytest.mark.parametrize("desc,nodes,expected", ROUTES, ids=[c[0] for c in ROUTES])
def test_compile_routes(desc, nodes, expected):
    assert compile_routes(nodes, "a", "10.244.1.0/24") == frozenset(expected)


def test_diff_routes_replaces_a_moved_gateway():
    old = frozenset({Route("10.244.2.0/24", "192.168.1.2"), Route("10.244.3.0/24", "192.168.1.3")})
    new = frozenset({Route("10.244.2.0/24", "192.168.1.9"), Route("10.244.3.0/24", "192.168.1.3")})
    assert diff_routes(old, new) == ([Route("10.244.2.0/24", "192.168.1.2")],
                                     [Route("10.244.2.0/24", "192.168.1.9")])
    assert diff_routes(new, new) == ([], [])


def test_route_identity_ignores_the_node_name():
    assert Route("10.244.2.0/24", "192.168.1.2", "b") == Route("10.244.2.0/24", "192.168.1.2")


def test_node_view():
    obj = {"metadata": {"name": "b"}, "spec": {"podCIDR": "10.244.2.0/24"},
           "status": {"addresses": [{"type": "Hostname", "address": "b"},
                                    {"type": "InternalIP", "address": "192.168.1.2"}]}}
    assert node_view(obj) == NodeView("b", "10.244.2.0/24", "192.168.1.2", ready=False)
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert node_view(obj) == B
