"""LoadBalancer announcement, the pure part: views, lease freshness, owner choice, GARP frames."""

from __future__ import annotations

import itertools

import pytest

from meshnet.proxy.announce import (EXCLUDE_LABEL, LeaseView, NodeView, Observed, announced,
                                    candidates, garp_frames, lease_view, live_nodes,
                                    next_expiry, node_view, observe, owner, pick_interface)


def node(name, ready="True", labels=None, conditions=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"conditions": conditions if conditions is not None
                       else [{"type": "MemoryPressure", "status": "False"},
                             {"type": "Ready", "status": ready}]}}


NODE_CASES = [
    ("Ready=True is ready", node("a"), NodeView("a", True)),
    ("Ready=False is not", node("a", "False"), NodeView("a", False)),
    ("Ready=Unknown is not", node("a", "Unknown"), NodeView("a", False)),
    ("no conditions at all is not", node("a", conditions=[]), NodeView("a", False)),
    ("conditions of the wrong shape are ignored", node("a", conditions=["Ready"]),
     NodeView("a", False)),
    ("the exclude label takes a node out", node("a", labels={EXCLUDE_LABEL: ""}),
     NodeView("a", True, excluded=True)),
]


@pytest.mark.parametrize("desc,obj,want", NODE_CASES, ids=[c[0] for c in NODE_CASES])
def test_node_view(desc, obj, want):
    assert node_view(obj) == want


LEASE_CASES = [
    ("holder names the node",
     {"metadata": {"name": "meshnet-proxy-a"},
      "spec": {"holderIdentity": "a", "renewTime": "T1", "leaseDurationSeconds": 4}},
     LeaseView("a", "T1", 4.0)),
    ("no holder: the name does",
     {"metadata": {"name": "meshnet-proxy-b"}, "spec": {"leaseDurationSeconds": 4}},
     LeaseView("b", "", 4.0)),
    ("a bad duration makes a lease that is never fresh",
     {"metadata": {"name": "meshnet-proxy-c"},
      "spec": {"holderIdentity": "c", "leaseDurationSeconds": "4"}},
     LeaseView("c", "", 0.0)),
]


@pytest.mark.parametrize("desc,obj,want", LEASE_CASES, ids=[c[0] for c in LEASE_CASES])
def test_lease_view(desc, obj, want):
    assert lease_view(obj) == want


OBSERVE_CASES = [
    ("first sight starts the clock", None, LeaseView("a", "T1", 4), 10.0,
     Observed("T1", 10.0, 4)),
    ("the same renewal again (a relist) keeps the old time", Observed("T1", 10.0, 4),
     LeaseView("a", "T1", 4), 13.0, Observed("T1", 10.0, 4)),
    ("a new renewal restarts it", Observed("T1", 10.0, 4), LeaseView("a", "T2", 4), 11.0,
     Observed("T2", 11.0, 4)),
]


@pytest.mark.parametrize("desc,prev,lease,now,want", OBSERVE_CASES,
                         ids=[c[0] for c in OBSERVE_CASES])
def test_observe(desc, prev, lease, now, want):
    assert observe(prev, lease, now) == want


def test_live_nodes_and_next_expiry():
    seen = {"a": Observed("T", 10.0, 4), "b": Observed("T", 12.0, 4),
            "c": Observed("T", 1.0, 4), "d": Observed("T", 12.0, 0)}
    assert live_nodes(seen, 13.0) == {"a", "b"}
    assert next_expiry(seen, 13.0) == 14.0
    assert live_nodes(seen, 14.0) == {"b"}
    assert next_expiry(seen, 16.0) is None


CANDIDATE_CASES = [
    ("ready with a live proxy", [NodeView("a", True)], {"a"}, {"a"}),
    ("ready, but its proxy is not live", [NodeView("a", True)], set(), set()),
    ("live proxy on a NotReady node", [NodeView("a", False)], {"a"}, set()),
    ("excluded from load balancers", [NodeView("a", True, True)], {"a"}, set()),
    ("a lease without a Node", [], {"ghost"}, set()),
]


@pytest.mark.parametrize("desc,nodes,live,want", CANDIDATE_CASES,
                         ids=[c[0] for c in CANDIDATE_CASES])
def test_candidates(desc, nodes, live, want):
    assert candidates(nodes, frozenset(live)) == want


IPS = [f"192.168.50.{i}" for i in range(200, 230)]
ABC = frozenset({"node-a", "node-b", "node-c"})

OWNER_CASES = [
    ("nobody ready: nobody announces", "192.168.50.200", frozenset(), None),
    ("one node owns everything", "192.168.50.200", frozenset({"node-b"}), "node-b"),
]


@pytest.mark.parametrize("desc,ip,nodes,want", OWNER_CASES, ids=[c[0] for c in OWNER_CASES])
def test_owner(desc, ip, nodes, want):
    assert owner(ip, nodes) == want


def test_owner_pinned_values():
    """Rendezvous weights are blake2b of "ip\\0node": pinned so that proxies of different
    versions agree on owners."""
    got = {ip: owner(ip, ABC) for ip in IPS[:4]}
    assert got == {"192.168.50.200": "node-a", "192.168.50.201": "node-b",
                   "192.168.50.202": "node-c", "192.168.50.203": "node-c"}, got


def test_owner_ignores_order():
    for ip in IPS:
        answers = {owner(ip, perm) for perm in itertools.permutations(sorted(ABC))}
        assert len(answers) == 1, ip


def test_a_leaving_node_moves_only_its_own_ips():
    before = {ip: owner(ip, ABC) for ip in IPS}
    after = {ip: owner(ip, ABC - {"node-b"}) for ip in IPS}
    for ip in IPS:
        if before[ip] != "node-b":
            assert after[ip] == before[ip], ip
        else:
            assert after[ip] in {"node-a", "node-c"}
    moved_back = {ip: owner(ip, ABC) for ip in IPS}
    assert moved_back == before, "returning node takes its IPs back"


def test_ips_spread_over_nodes():
    ips = [f"10.{i // 256}.{i % 256}.1" for i in range(600)]
    counts = {n: sum(owner(ip, ABC) == n for ip in ips) for n in ABC}
    assert all(140 < c < 260 for c in counts.values()), counts


def test_every_ip_announced_by_exactly_one_candidate():
    shares = {n: announced(IPS, ABC, n) for n in ABC}
    assert sorted(ip for s in shares.values() for ip in s) == sorted(IPS)
    assert announced(IPS, ABC, "node-d") == frozenset(), "not a candidate: announces nothing"


ROUTES = [("192.168.50.0/24", "eth0"), ("192.168.0.0/16", "eth1"), ("10.244.1.0/24", "br0"),
          ("192.168.50.7/32", "tun0")]
IFACE_CASES = [
    ("most specific on-link network wins", "192.168.50.200", "eth9", "eth0"),
    ("a wider network", "192.168.60.1", "eth9", "eth1"),
    ("host routes do not count", "192.168.50.7", "eth9", "eth0"),
    ("nothing on-link: the default route's interface", "172.16.0.1", "eth9", "eth9"),
    ("nothing at all", "172.16.0.1", "", ""),
]


@pytest.mark.parametrize("desc,ip,default,want", IFACE_CASES, ids=[c[0] for c in IFACE_CASES])
def test_pick_interface(desc, ip, default, want):
    assert pick_interface(ip, ROUTES, default) == want


def test_garp_frames():
    mac = bytes.fromhex("020000000001")
    request, reply = garp_frames(mac, "192.168.50.200")
    ip = bytes([192, 168, 50, 200])
    assert request == (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04"
                       + b"\x00\x01" + mac + ip + b"\x00" * 6 + ip)
    assert reply[:12] == b"\xff" * 6 + mac and reply[20:22] == b"\x00\x02"
    assert reply[22:28] == mac and reply[28:32] == ip == reply[38:42]
    assert len(request) == len(reply) == 42
    with pytest.raises(ValueError, match="6 bytes"):
        garp_frames(b"\x00", "192.168.50.200")


# -- the announcer's decision, from its caches (no I/O) ---------------------------------------

from meshnet.proxy.announcer import Announcer, micro_time  # noqa: E402
from meshnet.proxy.views import service_view  # noqa: E402
from proxy_fakes import service  # noqa: E402

LB = service("lb", type="LoadBalancer", lb_ips=IPS[:6])


def announcer(now: float, *, renewed_at: float, ready=("node-a", "node-b"),
              leases=("node-a", "node-b")) -> Announcer:
    a = Announcer(None, "node-a", clock=lambda: now)
    a.nodes.cache = {n: NodeView(n, True) for n in ready}
    for n in leases:
        a.on_lease_add(n, LeaseView(n, "T", 4.0))
    a.last_renewed = renewed_at
    a.services_changed(None, {"default/lb": service_view(LB)})
    return a


def test_announcer_takes_its_rendezvous_share():
    a = announcer(10.0, renewed_at=9.5)
    assert a.desired(10.0) == announced(IPS[:6], frozenset({"node-a", "node-b"}), "node-a")
    assert a.desired(10.0), "with six IPs and two nodes, node-a owns some (pinned hash)"


def test_announcer_takes_everything_when_alone():
    a = announcer(10.0, renewed_at=9.5, leases=("node-a",))
    assert a.desired(10.0) == frozenset(IPS[:6])


def test_announcer_stands_down_when_it_cannot_renew():
    a = announcer(10.0, renewed_at=5.9)  # more than a lease duration (4 s) ago
    assert a.desired(10.0) == frozenset()


def test_announcer_follows_service_changes_incrementally():
    a = announcer(10.0, renewed_at=9.5, leases=("node-a",))
    a.services_changed(["default/lb"], {})  # the service is gone
    assert a.lb_ips == {} and a.desired(10.0) == frozenset()


def test_micro_time():
    assert micro_time(0.25) == "1970-01-01T00:00:00.250000Z"
