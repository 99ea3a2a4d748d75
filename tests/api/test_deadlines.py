"""meshnet.deadlines: a coarse timer wheel, driven here by a loop whose clock the test moves
(no sleeps): items expire once their tick has passed, never before, and an item taken out of
its bucket never expires."""

from __future__ import annotations

import pytest

from meshnet.deadlines import Deadlines


class Clock:
    """The two loop methods Deadlines uses: time() and call_at(), fired by advance()."""

    def __init__(self):
        self.now = 1000.0
        self.timers: list[list] = []  # [when, callback, args, cancelled]

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, *args):
        timer = [when, callback, args, False]
        self.timers.append(timer)

        class Handle:
            def cancel(self):
                timer[3] = True
        return Handle()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [t for t in self.timers if t[0] <= self.now and not t[3]]
            if not due:
                return
            timer = min(due, key=lambda t: t[0])
            self.timers.remove(timer)
            timer[1](*timer[2])


class Item:
    def __init__(self, name: str, expired: list):
        self.name, self.expired = name, expired

    def expire(self):
        self.expired.append(self.name)


CASES = [
    # (description, [(item, after_s)], items taken out in time, seconds passed, expired)
    ("nothing is due before its time", [("a", 1.0)], [], 0.9, []),
    ("due once its tick has passed", [("a", 1.0)], [], 1.0 + Deadlines.TICK_S, ["a"]),
    ("taken out in time: never expires", [("a", 1.0)], ["a"], 5.0, []),
    ("each at its own time", [("a", 1.0), ("b", 3.0)], [], 2.0, ["a"]),
    ("an earlier deadline added later still comes first", [("late", 10.0), ("early", 0.5)], [],
     1.0, ["early"]),
    ("others in a bucket expire when one is taken out", [("a", 1.0), ("b", 1.0)], ["a"], 2.0,
     ["b"]),
]


@pytest.mark.parametrize("desc,items,taken,passed,expired", CASES, ids=[c[0] for c in CASES])
def test_deadlines(desc, items, taken, passed, expired):
    clock, out, deadlines = Clock(), [], Deadlines()
    buckets = {name: (Item(name, out), None) for name, _ in items}
    for name, after_s in items:
        item = buckets[name][0]
        buckets[name] = (item, deadlines.add(item, after_s, clock))
    for name in taken:
        item, bucket = buckets[name]
        bucket.discard(item)
    clock.advance(passed)
    assert out == expired, desc
    assert deadlines.pending() == len(items) - len(taken) - len(expired), desc


def test_one_timer_for_many_items_and_none_once_all_are_done():
    clock, out, deadlines = Clock(), [], Deadlines()
    for i in range(100):
        deadlines.add(Item(str(i), out), 1.0, clock)
    assert len([t for t in clock.timers if not t[3]]) == 1
    clock.advance(2.0)
    assert len(out) == 100 and deadlines.pending() == 0 and deadlines.timer is None
