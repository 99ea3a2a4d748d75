"""Restart back-off: kubelet's sequence (at once, 10 s, 20 s, ... 5 min), reset after a long run."""

import pytest

from meshnet.node.backoff import Backoff


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


CASES = [
    ("first failure restarts at once, then 10 s doubling",
     [0] * 5, [0, 10, 20, 40, 80]),
    ("capped at five minutes",
     [0] * 9, [0, 10, 20, 40, 80, 160, 300, 300, 300]),
    ("a container that ran ten minutes starts over",
     [0, 0, 0, 600, 0], [0, 10, 20, 0, 10]),
    ("a short run does not reset",
     [0, 599, 0], [0, 10, 20]),
]


@pytest.mark.parametrize("desc,runs,expected", CASES, ids=[c[0] for c in CASES])
def test_sequence(desc, runs, expected):
    backoff = Backoff(clock=Clock())
    assert [backoff.next("pod/c", ran_s=r) for r in runs] == expected


def test_remaining_follows_the_injected_clock():
    clock = Clock()
    backoff = Backoff(clock=clock)
    backoff.next("k")
    assert not backoff.in_backoff("k")
    backoff.next("k")
    assert backoff.remaining("k") == 10
    clock.now += 4
    assert backoff.remaining("k") == 6 and backoff.in_backoff("k")
    clock.now += 6
    assert not backoff.in_backoff("k")


def test_keys_are_independent_and_resettable():
    backoff = Backoff(clock=Clock())
    backoff.next("a"), backoff.next("a")
    assert backoff.next("b") == 0
    backoff.reset("a")
    assert backoff.next("a") == 0
    backoff.next("uid1/x"), backoff.next("uid1/y")
    backoff.forget_prefix("uid1/")
    assert backoff.next("uid1/x") == 0 and backoff.next("uid1/y") == 0
