"""IPAM: allocation order, no reuse right after release, persistence, exhaustion."""

import json

import pytest

from meshnet.node.errors import PoolExhausted
from meshnet.node.ipam import Ipam

# (description, cidr, steps, expected results) — steps are ("a", key) allocate / ("r", key)
CASES = [
    ("first pod gets .2: .0 is the network, .1 the bridge",
     "10.244.1.0/24", [("a", "p1")], ["10.244.1.2"]),
    ("addresses are handed out in order",
     "10.244.1.0/24", [("a", "p1"), ("a", "p2"), ("a", "p3")],
     ["10.244.1.2", "10.244.1.3", "10.244.1.4"]),
    ("the same key gets the same address again",
     "10.244.1.0/24", [("a", "p1"), ("a", "p1")], ["10.244.1.2", "10.244.1.2"]),
    ("a released address is not reused at once",
     "10.244.1.0/24", [("a", "p1"), ("r", "p1"), ("a", "p2")],
     ["10.244.1.2", "10.244.1.2", "10.244.1.3"]),
    ("allocation wraps around to free addresses",
     "10.0.0.0/29", [("a", "a"), ("a", "b"), ("a", "c"), ("a", "d"), ("a", "e"), ("r", "b"),
                     ("a", "f")],
     ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.3", "10.0.0.3"]),
    ("a host-bit CIDR is taken as its network",
     "10.244.7.9/24", [("a", "p")], ["10.244.7.2"]),
]


@pytest.mark.parametrize("desc,cidr,steps,expected", CASES, ids=[c[0] for c in CASES])
def test_allocation(desc, cidr, steps, expected):
    ipam = Ipam(cidr)
    got = [ipam.allocate(k) if op == "a" else ipam.release(k) for op, k in steps]
    assert got == expected


def test_exhaustion_says_what_to_do():
    ipam = Ipam("10.0.0.0/30")  # .1 is the bridge: one address for pods
    ipam.allocate("a")
    with pytest.raises(PoolExhausted, match="no free address in podCIDR 10.0.0.0/30"):
        ipam.allocate("b")


def test_state_survives_a_restart_and_never_double_assigns(tmp_path):
    path = tmp_path / "ipam.json"
    first = Ipam.load(path, "10.244.1.0/24")
    a = first.allocate("ns/a/uid-a")
    b = first.allocate("ns/b/uid-b")
    first.release("ns/a/uid-a")
    again = Ipam.load(path, "10.244.1.0/24")
    assert again.allocations == {"ns/b/uid-b": b}
    c = again.allocate("ns/c/uid-c")
    assert c not in (a, b), "neither the live address nor the just-freed one"
    assert json.loads(path.read_text())["allocations"]["ns/c/uid-c"] == c


def test_state_for_another_cidr_starts_over(tmp_path):
    path = tmp_path / "ipam.json"
    Ipam.load(path, "10.244.1.0/24").allocate("x")
    moved = Ipam.load(path, "10.244.2.0/24")
    assert moved.allocations == {} and moved.allocate("x") == "10.244.2.2"


def test_rejects_tiny_or_ipv6_cidrs():
    for cidr in ("10.0.0.0/31", "fd00::/64"):
        with pytest.raises(ValueError, match="IPv4 network of /30 or larger"):
            Ipam(cidr)


def test_deferred_save_writes_every_address_before_use_and_only_once(tmp_path, monkeypatch):
    """The agent allocates with save=False on its event loop and saves on the network thread
    before the address is used: one write covers every allocation made since the last."""
    path = tmp_path / "ipam.json"
    ipam = Ipam.load(path, "10.244.1.0/24")
    got = [ipam.allocate(f"ns/p{i}/u{i}", save=False) for i in range(3)]
    assert not path.exists()
    writes = []
    real_replace = __import__("os").replace
    monkeypatch.setattr("meshnet.node.ipam.os.replace",
                        lambda a, b: (writes.append(b), real_replace(a, b)))
    ipam.save()
    ipam.save()  # nothing changed since: no write
    assert writes == [path]
    assert Ipam.load(path, "10.244.1.0/24").allocations == {
        f"ns/p{i}/u{i}": ip for i, ip in enumerate(got)}
    ipam.release("ns/p0/u0")  # a release is saved at once
    assert len(writes) == 2 and "ns/p0/u0" not in json.loads(path.read_text())["allocations"]
