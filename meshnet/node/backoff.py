"""Exponential back-off for restarting containers and pulling images (kubelet's flowcontrol).

As in kubelet, the first failure of a key is retried at once and arms the back-off; each later
failure waits INITIAL_S, then double the previous wait, up to MAX_S (10 s, 20 s, ... 5 min).
A container that ran for at least RESET_AFTER_S since its last start earns a fresh start
(kubelet resets the back-off after the container ran "long enough"). The clock is injected.
"""

from __future__ import annotations

import time
from typing import Callable

INITIAL_S = 10.0
MAX_S = 300.0
RESET_AFTER_S = 600.0


class Backoff:
    def __init__(self, initial_s: float = INITIAL_S, max_s: float = MAX_S,
                 reset_after_s: float = RESET_AFTER_S, clock: Callable[[], float] = time.monotonic):
        self.initial_s = initial_s
        self.max_s = max_s
        self.reset_after_s = reset_after_s
        self.clock = clock
        self._delay: dict[str, float] = {}
        self._until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<Backoff {len(self._delay)} keys>"

    def next(self, key: str, ran_s: float = 0.0) -> float:
        """Record a failure of `key` (after running `ran_s`) and return how long to wait."""
        if ran_s >= self.reset_after_s:
            self._delay.pop(key, None)
        armed = self._delay.get(key)
        delay = 0.0 if armed is None else armed
        self._delay[key] = self.initial_s if armed is None else min(armed * 2, self.max_s)
        self._until[key] = self.clock() + delay
        return delay

    def remaining(self, key: str) -> float:
        """Seconds left before `key` may be tried again (0 when it may)."""
        return max(0.0, self._until.get(key, 0.0) - self.clock())

    def in_backoff(self, key: str) -> bool:
        return self.remaining(key) > 0

    def reset(self, key: str) -> None:
        self._delay.pop(key, None)
        self._until.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._delay if k.startswith(prefix)]:
            self.reset(key)
