"""The embedded default store: etcd semantics on one SQLite file.

Theory of operation
-------------------
Two halves, joined by a queue:

- The writer thread (`sqlite_writer.py`) owns SQLite. It orders txns, checks their
  preconditions, assigns revisions and group-commits them (WAL, synchronous=FULL). Only after
  COMMIT returned does it post the batch back to the event loop.
- The event loop owns the in-memory view served to readers: `_kv` (key -> KeyValue), `_keys`
  (the same keys sorted, so a prefix is a `bisect` range) and `_history` (every Event after
  `compact_revision`, in revision order). A posted batch is applied to all three and fanned out
  to watchers in one callback, then the txns' futures are resolved. So an acknowledged write is
  durable AND visible to the next `get`, and reads never wait for I/O.

Invariants (loop side):
- `_history` holds exactly the events with compact_revision < revision <= self.revision.
- Everything a reader sees (`get`, `list`, `revision`) is one committed state: batches are
  applied whole, in the order the writer committed them.
- A watcher is created synchronously: its replay is copied from `_history` and it is
  registered for live events in the same loop step, so it sees no gap and no duplicate.

History: on start the log after compact_revision is loaded, so watches resume across a
restart. `compact_expired()` (run every COMPACT_INTERVAL_S) drops events older than
`history_seconds` but always keeps `history_min_events`. Event ages come from `clock`
(injected for tests) sampled per applied batch into coarse marks; events loaded at start count
as written at start, which can only keep them longer.

Restore (from a backup, into an empty store only): one writer transaction writes every key at
one revision above the backup's and marks it compacted; the loop then swaps in the new state
and cuts off any watcher (it watched the empty store).

Watchers: one bounded queue each; fan-out looks up the prefixes of each key by the lengths
registered watchers use, so it costs O(distinct prefix lengths + matching watchers). A watcher
more than MAX_WATCH_BACKLOG events behind is cut off (its iterator raises WatchClosed; the
client relists), so one stuck client cannot grow memory without bound.

Do not: touch `_kv`/`_keys`/`_history` outside the loop thread; await between copying a
watcher's replay and registering it; resolve a txn future before its batch is applied.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import time
from operator import attrgetter
from typing import Callable

from .ages import RevisionAges
from .base import Compacted, Event, KeyValue, Op, Store, StoreError, Watcher, WatchClosed
from .sqlite_writer import CompactRequest, RestoreRequest, SQLiteWriter, TxnRequest, _settle

log = logging.getLogger(__name__)

# A watcher further behind than this is cut off; 10k events is seconds of a busy cluster,
# far more than a healthy consumer ever lags (the Kubernetes watch cache uses 100s-1000s).
MAX_WATCH_BACKLOG = 10_000
COMPACT_INTERVAL_S = 30.0
OP_KINDS = ("create", "update", "delete")

_revision_of = attrgetter("revision")


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with prefix (None: no bound)."""
    prefix = prefix.rstrip("\U0010ffff")
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _check_ops(ops: list[Op]) -> None:
    if not ops:
        raise ValueError("txn needs at least one op")
    seen: set[str] = set()
    for i, op in enumerate(ops):
        if op.kind not in OP_KINDS:
            raise ValueError(f"txn op {i}: kind {op.kind!r} is not one of {', '.join(OP_KINDS)}")
        if not isinstance(op.key, str) or not op.key:
            raise ValueError(f"txn op {i}: key must be a non-empty str, got {op.key!r}")
        if not isinstance(op.value, bytes):
            raise ValueError(f"txn op {i} on {op.key!r}: value must be bytes, "
                             f"got {type(op.value).__name__}")
        if op.key in seen:  # as etcd: "duplicate key given in txn request"
            raise ValueError(f"txn op {i}: key {op.key!r} appears twice in one txn")
        seen.add(op.key)


class SQLiteWatcher(Watcher):
    """Replays a snapshot of history, then live events pushed by the store."""

    def __init__(self, store: SQLiteStore, prefix: str, since: int, replay: list[Event]):
        self._store = store
        self.prefix = prefix
        self._since = since
        self._replay = replay
        self._replay_pos = 0
        self._live: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._error: str | None = None  # why it was cut off; raised as WatchClosed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"cut off: {self._error}" if self._error else "open"
        pending = len(self._replay) - self._replay_pos + len(self._live)
        return f"<SQLiteWatcher {self.prefix!r} since={self._since} pending={pending} {state}>"

    def __aiter__(self) -> SQLiteWatcher:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise WatchClosed(self._error)
            if self._replay_pos < len(self._replay):
                event = self._replay[self._replay_pos]
                self._replay_pos += 1
                if self._replay_pos == len(self._replay):
                    self._replay, self._replay_pos = [], 0
                return event
            if self._live:
                return self._live.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if not self._closed and self._error is None:
            self._store._unregister(self)
        self._closed = True
        self._drop()

    def _push(self, event: Event) -> bool:
        """Queue a live event; False if that put us over the backlog limit (we are cut off)."""
        if event.revision <= self._since:
            return True
        if len(self._live) >= MAX_WATCH_BACKLOG:
            self._cut(f"watch on {self.prefix!r} fell more than {MAX_WATCH_BACKLOG} events "
                      f"behind at revision {event.revision}; list again and re-watch")
            return False
        self._live.append(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    def _cut(self, reason: str) -> None:
        self._error = reason
        self._drop()

    def _drop(self) -> None:
        self._replay, self._replay_pos = [], 0
        self._live.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class SQLiteStore(Store):
    def __init__(self, path: str, *, history_seconds: float = 900,
                 history_min_events: int = 50_000, clock: Callable[[], float] = time.monotonic,
                 compaction_interval_s: float = COMPACT_INTERVAL_S):
        self.path = path
        self._compaction_interval_s = compaction_interval_s
        self._history_seconds = history_seconds
        self._history_min_events = history_min_events
        self._clock = clock
        self._state = "new"  # new -> open -> closing -> closed
        self._writer: SQLiteWriter | None = None
        self._kv: dict[str, KeyValue] = {}
        self._keys: list[str] = []
        self._history: list[Event] = []
        self._revision = 0
        self._compact_revision = 0
        # (revision, time): every event <= revision was applied at or before time.
        self._ages = RevisionAges(clock)
        self._watchers: dict[str, set[SQLiteWatcher]] = {}
        self._prefix_lengths: collections.Counter[int] = collections.Counter()
        self._compactor: asyncio.Task | None = None

    def __repr__(self) -> str:
        return (f"<SQLiteStore {self.path} {self._state} rev={self._revision} "
                f"compacted={self._compact_revision} keys={len(self._kv)} "
                f"history={len(self._history)} watchers={self.watcher_count}>")

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    @property
    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values())

    @property
    def writer(self) -> SQLiteWriter | None:
        """The writer thread's handle (its `txns` / `commits` counters show group commit)."""
        return self._writer

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise StoreError(f"store {self.path} was already started")
        loop = asyncio.get_running_loop()
        self._writer = SQLiteWriter(self.path, loop, self._on_commit, self._on_compact,
                                    self._on_restore)
        snapshot = await self._writer.open()
        self._kv = snapshot.kvs
        self._keys = snapshot.keys
        self._history = snapshot.events
        self._revision = snapshot.revision
        self._compact_revision = snapshot.compact_revision
        self._ages.mark(self._revision)
        self._state = "open"
        self._compactor = loop.create_task(self._compact_periodically(),
                                           name=f"store compaction {self.path}")

    async def close(self) -> None:
        """Let queued txns finish, stop the writer, cut off every watcher."""
        if self._state != "open":
            self._state = "closed" if self._state == "new" else self._state
            return
        self._state = "closing"
        self._compactor.cancel()
        try:
            await self._compactor
        except asyncio.CancelledError:
            pass
        await self._writer.stop()
        self._state = "closed"
        self._cut_watchers(f"store {self.path} closed")

    def _cut_watchers(self, reason: str) -> None:
        for watchers in list(self._watchers.values()):
            for watcher in watchers:
                watcher._cut(reason)
        self._watchers.clear()
        self._prefix_lengths.clear()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"store {self.path} is {self._state}, not open; "
                             "call start() first and do not use it after close()")

    # --- reads: from memory -----------------------------------------------------------------

    def _range(self, prefix: str) -> tuple[int, int]:
        lo = bisect.bisect_left(self._keys, prefix)
        end = _prefix_end(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end, lo)
        return lo, hi

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._kv.get(key)

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._check_open()
        lo, hi = self._range(prefix)
        kv = self._kv
        return [kv[key] for key in self._keys[lo:hi]], self._revision

    async def count(self, prefix: str) -> int:
        self._check_open()
        lo, hi = self._range(prefix)
        return hi - lo

    # --- writes: through the writer thread -------------------------------------------------

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        """All or none at one revision; resolves only once the commit is durable.

        A caller cancelled while waiting does not cancel the txn: it may still commit.
        """
        self._check_open()
        ops = list(ops)
        _check_ops(ops)
        future = asyncio.get_running_loop().create_future()
        self._writer.submit(TxnRequest(ops, future))
        return await future

    def _on_commit(self, batch: list[TxnRequest]) -> None:
        """Loop side of a committed batch: apply in revision order, fan out, then acknowledge."""
        applied = False
        for req in batch:
            if req.events:
                self._apply(req.events)
                applied = True
        if applied:
            self._ages.mark(self._revision)
        for req in batch:
            _settle(req.future, req.results, req.error)

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            key = event.kv.key
            if event.type == "PUT":
                if key not in self._kv:
                    bisect.insort(self._keys, key)
                self._kv[key] = event.kv
            else:
                del self._kv[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
            self._history.append(event)
            self._fan_out(event)
        self._revision = events[-1].revision

    def _fan_out(self, event: Event) -> None:
        key = event.kv.key
        behind = None
        for length in self._prefix_lengths:
            watchers = self._watchers.get(key[:length])
            if watchers:
                for watcher in watchers:
                    if not watcher._push(event):
                        behind = behind or []
                        behind.append(watcher)
        for watcher in behind or ():
            self._unregister(watcher)

    # --- watch ---------------------------------------------------------------------------

    def watch(self, prefix: str, since_revision: int) -> SQLiteWatcher:
        self._check_open()
        if since_revision < 0:
            raise ValueError(f"watch on {prefix!r}: since_revision must be >= 0, "
                             f"got {since_revision}")
        if since_revision < self._compact_revision:
            raise Compacted(since_revision, self._compact_revision)
        history = self._history
        start = bisect.bisect_right(history, since_revision, key=_revision_of)
        replay = [history[i] for i in range(start, len(history))
                  if history[i].kv.key.startswith(prefix)]
        # No await between the copy above and the registration below: no gap, no duplicate.
        watcher = SQLiteWatcher(self, prefix, since_revision, replay)
        self._watchers.setdefault(prefix, set()).add(watcher)
        self._prefix_lengths[len(prefix)] += 1
        return watcher

    def _unregister(self, watcher: SQLiteWatcher) -> None:
        watchers = self._watchers.get(watcher.prefix)
        if not watchers or watcher not in watchers:
            return
        watchers.remove(watcher)
        if not watchers:
            del self._watchers[watcher.prefix]
        length = len(watcher.prefix)
        self._prefix_lengths[length] -= 1
        if not self._prefix_lengths[length]:
            del self._prefix_lengths[length]

    # --- compaction ------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision > self._revision:
            raise ValueError(f"cannot compact store {self.path} to revision {revision}: "
                             f"it is only at revision {self._revision}")
        if revision <= self._compact_revision:
            return
        future = asyncio.get_running_loop().create_future()
        self._writer.submit(CompactRequest(revision, future))
        await future

    def _on_compact(self, req: CompactRequest) -> None:
        if req.error is None and req.revision > self._compact_revision:
            self._compact_revision = req.revision
            del self._history[:bisect.bisect_right(self._history, req.revision,
                                                   key=_revision_of)]
        _settle(req.future, None, req.error)

    # --- restore -------------------------------------------------------------------------

    async def restore(self, items: list[tuple[str, bytes]], above_revision: int) -> int:
        """Fill the empty store in one SQLite transaction, every key at one revision."""
        self._check_open()
        items = list(items)
        if items:
            _check_ops([Op("create", key, value) for key, value in items])
        future = asyncio.get_running_loop().create_future()
        self._writer.submit(RestoreRequest(items, above_revision, future))
        return await future

    def _on_restore(self, req: RestoreRequest) -> None:
        if req.error is None:
            self._kv = req.kvs
            self._keys = sorted(req.kvs)
            self._history = []
            self._revision = self._compact_revision = req.revision
            self._ages.mark(self._revision)
            # Anyone watching saw the empty store: what they hold no longer describes it.
            self._cut_watchers(f"store {self.path} was restored from a backup; list again")
        _settle(req.future, self._revision, req.error)

    async def compact_expired(self) -> int:
        """One auto-compaction pass; returns the compact revision afterwards.

        Drops events older than history_seconds, but keeps at least history_min_events (a
        revision is dropped whole, so never cut inside one).
        """
        self._check_open()
        expired = self._ages.expire(self._history_seconds)
        history = self._history
        first_kept = len(history) - self._history_min_events
        if first_kept <= 0:
            return self._compact_revision
        if first_kept < len(history):
            keep_bound = history[first_kept].revision - 1
        else:
            keep_bound = self._revision
        target = min(expired, keep_bound)
        if target > self._compact_revision:
            await self.compact(target)
        return self._compact_revision

    async def _compact_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._compaction_interval_s)
            try:
                await self.compact_expired()
            except StoreError as exc:  # logged and retried next round; history just grows
                log.warning("auto-compaction of %s failed: %s", self.path, exc)
