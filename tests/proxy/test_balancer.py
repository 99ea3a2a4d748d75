"""Balancer: round robin, least connections, ClientIP affinity, passive-health backoff.

Time is a number passed in; randomness is a seeded Random whose shuffle is replaced by the
identity where a case needs a known order.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from meshnet.proxy.balancer import Balancer
from meshnet.proxy.views import LEAST_CONN, ROUND_ROBIN, EndpointView

A, B, C = (EndpointView("", "TCP", f"10.244.0.{i}", 80) for i in (1, 2, 3))
ABC = (A, B, C)


class NoShuffle(random.Random):
    def shuffle(self, x):
        return None


def fresh() -> Balancer:
    return Balancer(NoShuffle())


def pick(bal, eps=ABC, *, policy=ROUND_ROBIN, affinity=0, client="10.0.0.1", now=0.0,
         connect=True):
    order = bal.candidates(eps, policy=policy, affinity_timeout_s=affinity, client_ip=client,
                           now=now)
    if connect and order:
        bal.connected(order[0], client_ip=client, now=now, affinity_timeout_s=affinity)
    return order


def firsts(bal, n, **kw):
    return [pick(bal, **kw)[0] for _ in range(n)]


def test_round_robin_cycles():
    assert firsts(fresh(), 6) == [A, B, C, A, B, C]


def test_round_robin_order_lists_every_endpoint_once():
    assert pick(fresh()) == [A, B, C]


def test_shuffle_spreads_start_but_visits_all():
    starts = Counter(Balancer(random.Random(seed)).candidates(
        ABC, policy=ROUND_ROBIN, affinity_timeout_s=0, client_ip="c", now=0)[0]
        for seed in range(60))
    assert set(starts) == {A, B, C}
    assert sorted(firsts(Balancer(random.Random(1)), 3)) == sorted(ABC)


def test_no_endpoints():
    assert pick(fresh(), ()) == []


def test_least_conn_prefers_idle():
    bal = fresh()
    for ep, n in ((A, 3), (B, 0), (C, 1)):
        for _ in range(n):
            bal.connected(ep, client_ip="x", now=0, affinity_timeout_s=0)
    bal._refresh(ABC)
    assert pick(bal, policy=LEAST_CONN, connect=False) == [B, C, A]


def test_least_conn_release_returns_to_idle():
    bal = fresh()
    got = firsts(bal, 3, policy=LEAST_CONN)
    assert got == [A, B, C]
    bal.released(B)
    assert pick(bal, policy=LEAST_CONN)[0] == B


def test_least_conn_ties_follow_rotation():
    assert firsts(fresh(), 6, policy=LEAST_CONN) == [A, B, C, A, B, C]


AFFINITY_CASES = [
    ("pinned within the timeout", 10, 5.0, "10.0.0.1", A),
    ("expired after the timeout", 10, 10.0, "10.0.0.1", B),
    ("another client is not pinned", 10, 1.0, "10.0.0.2", B),
    ("no affinity configured", 0, 1.0, "10.0.0.1", B),
]


@pytest.mark.parametrize("timeout,later,client,expected", [c[1:] for c in AFFINITY_CASES],
                         ids=[c[0] for c in AFFINITY_CASES])
def test_affinity(timeout, later, client, expected):
    bal = fresh()
    assert pick(bal, affinity=timeout, now=0.0)[0] == A
    assert pick(bal, affinity=timeout, client=client, now=later)[0] == expected


def test_affinity_refreshed_by_use():
    bal = fresh()
    for t in (0, 8, 16, 24):
        assert pick(bal, affinity=10, now=t)[0] == A


def test_affinity_dropped_when_endpoint_goes_away():
    bal = fresh()
    pick(bal, affinity=10)
    assert pick(bal, (B, C), affinity=10, now=1)[0] in (B, C)
    assert bal.affinity["10.0.0.1"][0] != A


def test_failed_endpoint_backs_off_then_returns():
    bal = fresh()
    bal.failed(A, now=0.0)
    assert pick(bal, connect=False, now=0.5) == [B, C, A], "A last while in backoff"
    bal.candidates(ABC, policy=ROUND_ROBIN, affinity_timeout_s=0, client_ip="c", now=0)
    bal.next = 0
    assert pick(bal, connect=False, now=1.0)[0] == A, "backoff over after 1 s"


def test_backoff_doubles_and_success_clears():
    bal = fresh()
    for _ in range(3):
        bal.failed(A, now=0.0)
    assert bal.failures[A] == (3, 4.0)
    for _ in range(10):
        bal.failed(A, now=0.0)
    assert bal.failures[A][1] == 30.0, "capped"
    bal.connected(A, client_ip="c", now=0, affinity_timeout_s=0)
    assert A not in bal.failures


def test_failure_unpins_affinity():
    bal = fresh()
    pick(bal, affinity=100)
    bal.failed(A, now=1)
    assert pick(bal, affinity=100, now=2)[0] != A


def test_rotation_survives_identical_endpoints():
    bal = fresh()
    pick(bal)
    assert pick(bal, tuple(ABC))[0] == B, "an equal tuple from a new table keeps the rotation"


def test_all_backing_off_still_tried_soonest_first():
    bal = fresh()
    bal.failed(A, now=0)
    bal.failed(A, now=0)  # until 2.0
    bal.failed(B, now=0)  # until 1.0
    bal.failed(C, now=0.5)  # until 1.5
    assert pick(bal, connect=False, now=0.9) == [B, C, A]
