"""A coarse timer wheel: one event-loop timer for many deadlines that are mostly cancelled.

A timer per item (`loop.call_later` and its `cancel`) costs several thousand instructions
under uvloop -- as much as the rest of a short connection's Python work. `Deadlines` buckets
items by deadline tick (`TICK_S`) and keeps one loop timer, for the earliest tick; an item
done in time takes itself out of its bucket with `bucket.discard(item)` (a C call, no Python
frame), and whatever is still in a bucket when its tick passes gets `expire()` called. Buckets
left empty are dropped when their tick passes. Deadlines are rounded up to a tick, so they
fire up to `TICK_S` late (and at most 2 ms early: libuv counts whole milliseconds).

Used for the proxy's connect budgets and the ingress's request-head timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import math


class Deadlines:
    """Items with an `expire()` method, bucketed by deadline tick (TICK_S granularity).

    `add` returns the item's bucket, a set: taking the item out when it is done is
    `bucket.discard(item)`, no Python call on every connection's path. Buckets left empty
    that way are dropped when their tick passes."""

    TICK_S = 0.05

    def __init__(self):
        self.buckets: dict[int, set] = {}
        self._ticks: list[int] = []  # the buckets' ticks, a heap: a sweep looks at due ones only
        self.timer: asyncio.TimerHandle | None = None
        self.timer_tick = 0

    def __repr__(self) -> str:
        return f"<Deadlines pending={self.pending()}>"

    def pending(self) -> int:
        """Items still waiting for their deadline."""
        return sum(len(b) for b in self.buckets.values())

    def add(self, item, after_s: float, loop: asyncio.AbstractEventLoop) -> set:
        """Expire `item` once `after_s` seconds have passed (rounded up to a tick); returns
        the bucket to discard it from."""
        tick = math.ceil((loop.time() + after_s) / self.TICK_S)
        bucket = self.buckets.get(tick)
        if bucket is None:
            bucket = self.buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            if self.timer is None or tick < self.timer_tick:
                if self.timer is not None:
                    self.timer.cancel()
                self.timer_tick = tick
                self.timer = loop.call_at(tick * self.TICK_S, self._sweep, loop)
        bucket.add(item)
        return bucket

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        # Timers may fire a little early (libuv counts milliseconds): allow 2 ms.
        now = (loop.time() + 0.002) / self.TICK_S
        ticks = self._ticks
        while ticks and ticks[0] <= now:
            for item in list(self.buckets.pop(heapq.heappop(ticks))):  # expire() discards
                item.expire()
        if ticks:
            self.timer_tick = ticks[0]
            self.timer = loop.call_at(self.timer_tick * self.TICK_S, self._sweep, loop)
