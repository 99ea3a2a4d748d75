"""How old each revision is, for time-based compaction (shared by every store backend).

Revisions are recorded in coarse marks — (newest revision, time), at most one per
MARK_INTERVAL_S — so memory stays bounded however fast writes come; a mark's time is an upper
bound for every revision it covers, so history is never dropped early, only up to one mark
interval late.
"""

from __future__ import annotations

import collections
from typing import Callable

MARK_INTERVAL_S = 1.0


class RevisionAges:
    def __init__(self, clock: Callable[[], float], interval_s: float = MARK_INTERVAL_S):
        self._clock = clock
        self._interval_s = interval_s
        self._marks: collections.deque[tuple[int, float]] = collections.deque()
        self._mark_started = 0.0
        self.expired_revision = 0  # newest revision known to be older than the last cutoff

    def __repr__(self) -> str:
        return f"<RevisionAges marks={len(self._marks)} expired={self.expired_revision}>"

    def mark(self, revision: int) -> None:
        """`revision` was written (or first seen) now."""
        now = self._clock()
        if self._marks and now - self._mark_started < self._interval_s:
            self._marks[-1] = (revision, now)  # widen the current mark
        else:
            self._marks.append((revision, now))
            self._mark_started = now

    def expire(self, max_age_s: float) -> int:
        """The newest revision written at least max_age_s ago (0 if none)."""
        cutoff = self._clock() - max_age_s
        while self._marks and self._marks[0][1] <= cutoff:
            self.expired_revision = self._marks.popleft()[0]
        return self.expired_revision
