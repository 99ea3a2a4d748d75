"""The change tracker and the bounded-frequency sync schedule.

Informer callbacks (`on_service_add` …) only record which service keys changed and when the
proxy first heard of each change; Services and Endpoints share a key (namespace/name), so
either kind marks the same entry. The sync loop takes the whole set at once, which coalesces
any burst of changes into one sync.

`sync_delay()` is the schedule, pure: sync as soon as something is pending but not sooner
than `min_interval_s` after the previous sync (kube-proxy's minSyncPeriod), and do a full
resync every `full_interval_s` even when nothing changed (repairs drift and retries failed
binds). The clock is injected.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


def sync_delay(*, now: float, last_sync: float, last_full: float, pending: bool,
               min_interval_s: float, full_interval_s: float) -> float:
    """Seconds to wait before the next sync (0: now)."""
    full_due = last_full + full_interval_s
    if not pending:
        return max(0.0, full_due - now)
    return max(0.0, min(last_sync + min_interval_s, full_due) - now)


class ChangeTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.pending: dict[str, float] = {}  # key -> when the first unsynced change arrived
        self.wakeup = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ChangeTracker pending={len(self.pending)}>"

    def mark(self, key: str) -> None:
        if key not in self.pending:
            self.pending[key] = self.clock()
        self.wakeup.set()

    def take(self) -> dict[str, float]:
        taken, self.pending = self.pending, {}
        self.wakeup.clear()
        return taken

    # Informer handlers: record, nothing else (STYLE.md).
    def on_service_add(self, key, view) -> None:
        self.mark(key)

    def on_service_update(self, key, old, new) -> None:
        self.mark(key)

    def on_service_delete(self, key, old) -> None:
        self.mark(key)

    on_endpoints_add = on_service_add
    on_endpoints_update = on_service_update
    on_endpoints_delete = on_service_delete
