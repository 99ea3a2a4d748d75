"""Pools, ranges and picking (meshnet.control.controllers.allocator): pure, table-driven."""

from __future__ import annotations

import ipaddress
import random

import pytest

from meshnet.control.controllers.allocator import (
    Pool, PoolError, RangeState, parse_lb_pool, parse_port_range, parse_service_cidr, pick,
)
from meshnet.control.controllers.config import ControllerConfig


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


# -- parsing -------------------------------------------------------------------------------------

SERVICE_CIDR_CASES = [
    # (description, text, first, last, size)
    ("kubeadm default /12", "10.96.0.0/12", "10.96.0.1", "10.111.255.254", 2**20 - 2),
    ("host bits are ignored, like kube", "10.96.3.4/12", "10.96.0.1", "10.111.255.254", 2**20 - 2),
    ("smallest allowed IPv4 range", "192.168.5.0/28", "192.168.5.1", "192.168.5.14", 14),
    ("IPv6 range", "fd00:10:96::/112", "fd00:10:96::1", "fd00:10:96::fffe", 2**16 - 2),
]


@pytest.mark.parametrize("desc,text,first,last,size", SERVICE_CIDR_CASES,
                         ids=[c[0] for c in SERVICE_CIDR_CASES])
def test_parse_service_cidr(desc, text, first, last, size):
    net, pool = parse_service_cidr(text)
    assert pool.nth(0) == ip(first)
    assert pool.nth(pool.size - 1) == ip(last)
    assert pool.size == size
    assert int(net.network_address) not in pool
    assert int(net.broadcast_address) not in pool


SERVICE_CIDR_ERRORS = [
    ("not a CIDR", "10.96.0.0/33", "not a CIDR"),
    ("garbage", "service-range", "not a CIDR"),
    ("too small for kube-dns at .10", "10.0.0.0/29", "too small"),
]


@pytest.mark.parametrize("desc,text,message", SERVICE_CIDR_ERRORS,
                         ids=[c[0] for c in SERVICE_CIDR_ERRORS])
def test_parse_service_cidr_errors(desc, text, message):
    with pytest.raises(PoolError, match=message):
        parse_service_cidr(text)


PORT_RANGE_CASES = [
    ("default range", "30000-32767", 30000, 32767, 2768),
    ("single port", "30080", 30080, 30080, 1),
    ("whitespace tolerated", " 1000-1001 ", 1000, 1001, 2),
]


@pytest.mark.parametrize("desc,text,lo,hi,size", PORT_RANGE_CASES,
                         ids=[c[0] for c in PORT_RANGE_CASES])
def test_parse_port_range(desc, text, lo, hi, size):
    pool = parse_port_range(text)
    assert (pool.nth(0), pool.nth(pool.size - 1), pool.size) == (lo, hi, size)
    assert pool.describe() == (f"{lo}-{hi}" if lo != hi else str(lo))


PORT_RANGE_ERRORS = [
    ("port zero", "0-100", "between 1 and 65535"),
    ("above 65535", "30000-70000", "between 1 and 65535"),
    ("reversed", "32767-30000", "above the last"),
    ("not numbers", "low-high", "expected FIRST-LAST"),
]


@pytest.mark.parametrize("desc,text,message", PORT_RANGE_ERRORS,
                         ids=[c[0] for c in PORT_RANGE_ERRORS])
def test_parse_port_range_errors(desc, text, message):
    with pytest.raises(PoolError, match=message):
        parse_port_range(text)


LB_POOL_CASES = [
    # (description, input, members as text, version)
    ("empty: no pool", "", [], 0),
    ("one address", "172.18.255.200", ["172.18.255.200"], 4),
    ("CIDR without network and broadcast", "172.18.255.0/30",
     ["172.18.255.1", "172.18.255.2"], 4),
    ("a /31 keeps both addresses", "172.18.255.0/31", ["172.18.255.0", "172.18.255.1"], 4),
    ("a /32 is one address", "172.18.255.9/32", ["172.18.255.9"], 4),
    ("inclusive range", "172.18.255.200-172.18.255.202",
     ["172.18.255.200", "172.18.255.201", "172.18.255.202"], 4),
    ("overlapping entries merge, commas and spaces mix",
     "10.0.0.1-10.0.0.3, 10.0.0.2 10.0.0.4", ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], 4),
    ("a list of entries", ["10.0.0.7", "10.0.0.5"], ["10.0.0.5", "10.0.0.7"], 4),
    ("IPv6 range", "fd00::10-fd00::11", ["fd00::10", "fd00::11"], 6),
]


@pytest.mark.parametrize("desc,entries,members,version", LB_POOL_CASES,
                         ids=[c[0] for c in LB_POOL_CASES])
def test_parse_lb_pool(desc, entries, members, version):
    pool = parse_lb_pool(entries)
    assert [pool.format(pool.nth(i)) for i in range(pool.size)] == members
    assert pool.version == version


LB_POOL_ERRORS = [
    ("mixed families", "10.0.0.1, fd00::1", "one pool holds one address family"),
    ("reversed range", "10.0.0.9-10.0.0.1", "first address is above the last"),
    ("range across families", "10.0.0.1-fd00::1", "same family"),
    ("not an address", "lb.example.com", "is not an IP, a CIDR or a FIRST-LAST range"),
]


@pytest.mark.parametrize("desc,entries,message", LB_POOL_ERRORS, ids=[c[0] for c in LB_POOL_ERRORS])
def test_parse_lb_pool_errors(desc, entries, message):
    with pytest.raises(PoolError, match=message):
        parse_lb_pool(entries)


CONFIG_ERRORS = [
    ("bad service CIDR names the flag", {"service_cidr": "10.96.0.0/40"}, "--service-cidr"),
    ("bad port range names the flag", {"node_port_range": "3-1"}, "--node-port-range"),
    ("bad pool names the flag", {"lb_pool": "10.0.0.1-x"}, "--lb-pool"),
    ("advertise address must be an IP", {"advertise_address": "apiserver.local"},
     "must be an IP address"),
]


@pytest.mark.parametrize("desc,kwargs,message", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors(desc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ControllerConfig(**kwargs)


def test_config_defaults_and_bootstrap_addresses():
    config = ControllerConfig(lb_pool="10.0.0.1,10.0.0.2")
    assert config.lb_pool == ("10.0.0.1", "10.0.0.2")
    assert config.kubernetes_service_ip == "10.96.0.1"
    assert config.dns_service_ip == "10.96.0.10"
    assert config.reserved_service_ips == {ip("10.96.0.1"), ip("10.96.0.10")}
    assert ControllerConfig(service_cidr="172.20.0.0/16").dns_service_ip == "172.20.0.10"


# -- Pool ----------------------------------------------------------------------------------------

def test_pool_nth_index_contains_across_intervals():
    pool = Pool.of([(10, 12), (20, 21), (11, 13)])  # overlapping input merges
    assert pool.intervals == ((10, 13), (20, 21))
    assert [pool.nth(i) for i in range(pool.size)] == [10, 11, 12, 13, 20, 21]
    assert [pool.index(v) for v in (10, 13, 20, 21)] == [0, 3, 4, 5]
    assert [v in pool for v in (9, 10, 14, 19, 21, 22, "10")] == \
        [False, True, False, False, True, False, False]
    with pytest.raises(IndexError):
        pool.nth(6)


# -- pick ----------------------------------------------------------------------------------------

PICK_CASES = [
    # (description, pool, taken, allowed results)
    ("empty pool has nothing", Pool.of([]), set(), {None}),
    ("full pool has nothing", Pool.of([(1, 5)]), {1, 2, 3, 4, 5}, {None}),
    ("the only free member is found", Pool.of([(1, 1000)]), set(range(1, 1001)) - {777}, {777}),
    ("last free member across intervals", Pool.of([(1, 3), (100, 102)]),
     {1, 2, 3, 100, 102}, {101}),
    ("taken values outside the pool do not matter", Pool.of([(1, 2)]), {2, 50, 60, 70}, {1}),
]


@pytest.mark.parametrize("desc,pool,taken,allowed", PICK_CASES, ids=[c[0] for c in PICK_CASES])
def test_pick(desc, pool, taken, allowed):
    for seed in range(20):
        assert pick(pool, taken, random.Random(seed)) in allowed


def test_pick_spreads_over_a_mostly_free_pool():
    pool = parse_service_cidr("10.96.0.0/12")[1]
    rng = random.Random(1)
    taken: set[int] = set()
    for _ in range(2000):
        value = pick(pool, taken, rng)
        assert value in pool and value not in taken
        taken.add(value)
    # Random probing: 2000 picks land all over a million addresses, not at the start.
    assert max(taken) - min(taken) > pool.size // 2


def test_pick_fills_a_small_pool_completely_without_duplicates():
    pool = parse_port_range("30000-30099")
    rng = random.Random(7)
    taken: set[int] = set()
    while (value := pick(pool, taken, rng)) is not None:
        assert value not in taken
        taken.add(value)
    assert taken == set(range(30000, 30100))


# -- RangeState ----------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_range_state_holds_until_settled_and_never_picks_reserved():
    clock = Clock()
    state = RangeState("t", Pool.of([(1, 4)]), reserved={1}, clock=clock, pending_ttl_s=30,
                       rng=random.Random(3))
    state.load({2: "uid-a"})
    picked = state.take_next("uid-b")
    assert picked in (3, 4)
    other = state.take_next("uid-c")
    assert {picked, other} == {3, 4}
    assert state.take_next("uid-d") is None, "1 is reserved, 2 used, 3 and 4 pending"
    assert sorted(state.held_by("uid-b")) == [picked]
    assert state.expired() == []
    clock.now += 31
    assert sorted(state.expired()) == [3, 4]
    state.settle(picked, "uid-b")  # the store has it: committed
    state.settle(other, None)  # the store does not: that transaction failed
    assert state.take_next("uid-e") == other
    state.release(2)
    assert state.is_taken(2), "a release is only believed once the store confirms it"
    clock.now += 31
    assert 2 in state.expired()
    state.settle(2, None)
    assert not state.is_taken(2)


def test_range_state_reload_keeps_in_flight_holds():
    clock = Clock()
    state = RangeState("t", Pool.of([(1, 10)]), clock=clock)
    state.hold(5, "uid-a")
    state.load({1: "uid-x", 99: "uid-outside-pool"})
    assert state.is_taken(5) and state.is_taken(1)
    assert 99 not in state.used
