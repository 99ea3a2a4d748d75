"""The SQLite writer thread of `SQLiteStore`: ordering, durability and group commit.

Theory of operation
-------------------
One thread owns the only SQLite connection; the event loop never touches SQLite. The loop
hands it requests through a FIFO queue (txns, compactions, restores, stop). The thread takes every txn
waiting in the queue and commits them as ONE SQLite transaction, so a whole batch costs one
fsync of the WAL (group commit): while one batch is being fsynced the next one queues up,
which is what makes durable writes fast under concurrency.

The writer is the single source of ordering. It keeps its own copy of the committed state
(key -> KeyValue; the frozen KeyValues are shared with the loop, so this is a dict of
references) and checks each txn's preconditions against it plus the changes of the txns
before it in the same batch. Revisions are therefore handed out here, in queue order.

- A txn whose preconditions fail never touches SQLite and takes no revision.
- A txn whose SQL fails (a key SQLite cannot encode, say) is rolled back to its SAVEPOINT;
  the rest of the batch still commits.
- If BEGIN/COMMIT fails, every txn of the batch fails and the writer's state is unchanged.

Acknowledgement: only after COMMIT returned (WAL + synchronous=FULL: the WAL is fsynced)
does the thread post the batch to the loop with `call_soon_threadsafe`; the loop applies
batches in the order posted, i.e. in revision order. A kill -9 at any moment therefore loses
at most unacknowledged txns, and never half of one (a batch is one SQLite transaction).

A restore (of an empty store only) is one SQLite transaction too: the keys, the jump of the
revision and the compaction mark commit together, so a failed restore leaves the file empty.

`locking_mode=EXCLUSIVE` makes a second process (or store) opening the same file fail fast
instead of silently forking the revision sequence.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .base import (Event, KeyExists, KeyNotFound, KeyValue, Op, RevisionMismatch, StoreError,
                   StoreNotEmpty)

SCHEMA_VERSION = 1
# A bound on one SQLite transaction, so one huge burst does not delay every ack behind it.
MAX_BATCH_TXNS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL,
    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL);
-- One row per event. For DELETE, value/create_rev/mod_rev are the deleted kv (which is also
-- the event's prev); for an update, prev_value/prev_mod_rev are the value it replaced.
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL,
    prev_value BLOB, prev_mod_rev INTEGER,
    PRIMARY KEY (rev, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', 1), ('revision', 0), ('compact_revision', 0);
"""


@dataclass(slots=True)
class TxnRequest:
    """One txn on its way through the writer; exactly one of results / error is set."""

    ops: list[Op]
    future: asyncio.Future
    results: list[KeyValue] | None = None
    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None


@dataclass(slots=True)
class CompactRequest:
    revision: int
    future: asyncio.Future
    error: BaseException | None = None


@dataclass(slots=True)
class RestoreRequest:
    """Fill the empty store at one revision above `above`; `kvs` is what was written."""

    items: list[tuple[str, bytes]]
    above: int
    future: asyncio.Future
    revision: int = 0
    kvs: dict[str, KeyValue] = field(default_factory=dict)
    error: BaseException | None = None


@dataclass(slots=True)
class _StopRequest:
    future: asyncio.Future


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is on disk at open: the current state and the history kept after compaction."""

    kvs: dict[str, KeyValue]
    keys: list[str]  # sorted: code point order, which is also SQLite's UTF-8 byte order
    revision: int
    compact_revision: int
    events: list[Event]


def plan_txn(ops: Iterable[Op], revision: int,
             lookup: Callable[[str], KeyValue | None]
             ) -> tuple[dict[str, KeyValue | None], list[KeyValue], list[Event]]:
    """Check a txn's preconditions and compute its effect at `revision` (pure).

    Returns (changes: key -> new KeyValue or None for deleted, per-op results, events).
    Keys within one txn are distinct (checked by the store), so every op sees `lookup`'s state.
    """
    changes: dict[str, KeyValue | None] = {}
    results: list[KeyValue] = []
    events: list[Event] = []
    for op in ops:
        old = lookup(op.key)
        if op.kind == "create":
            if old is not None:
                raise KeyExists(op.key)
            new = KeyValue(op.key, op.value, revision, revision)
            events.append(Event("PUT", new, None, revision))
        else:
            if old is None:
                raise KeyNotFound(op.key)
            expected = op.expected_mod_revision
            if expected is not None and old.mod_revision != expected:
                raise RevisionMismatch(op.key, expected, old.mod_revision)
            if op.kind == "update":
                new = KeyValue(op.key, op.value, old.create_revision, revision)
                events.append(Event("PUT", new, old, revision))
            else:
                new = None
                events.append(Event("DELETE", old, old, revision))
        changes[op.key] = new
        results.append(new if new is not None else old)
    return changes, results, events


def _event_from_row(row: tuple) -> Event:
    rev, type_, key, value, create_rev, mod_rev, prev_value, prev_mod_rev = row
    kv = KeyValue(key, bytes(value), create_rev, mod_rev)
    if type_ == "DELETE":
        return Event("DELETE", kv, kv, rev)
    if prev_mod_rev is None:
        return Event("PUT", kv, None, rev)
    return Event("PUT", kv, KeyValue(key, bytes(prev_value), create_rev, prev_mod_rev), rev)


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the txn's outcome stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteWriter:
    """The thread that owns the SQLite connection. All methods are called from the loop."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop,
                 on_commit: Callable[[list[TxnRequest]], None],
                 on_compact: Callable[[CompactRequest], None],
                 on_restore: Callable[[RestoreRequest], None]):
        self.path = path
        self._loop = loop
        self._on_commit = on_commit
        self._on_compact = on_compact
        self._on_restore = on_restore
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        # The writer's own view (see the module docstring); touched only by the thread.
        self._kv: dict[str, KeyValue] = {}
        self._revision = 0
        self._compact_revision = 0
        self.commits = 0  # SQLite transactions committed; commits < txns shows group commit
        self.txns = 0

    def __repr__(self) -> str:
        return (f"<SQLiteWriter {self.path} rev={self._revision} "
                f"txns={self.txns} commits={self.commits}>")

    async def open(self) -> Snapshot:
        ready = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name=f"sqlite-writer {self.path}", daemon=True)
        self._thread.start()
        return await ready

    def submit(self, request: TxnRequest | CompactRequest | RestoreRequest) -> None:
        self._queue.put(request)

    async def stop(self) -> None:
        """Finish every request queued so far, close the database, end the thread."""
        done = self._loop.create_future()
        self._queue.put(_StopRequest(done))
        await done

    # --- the thread ---------------------------------------------------------------------

    def _post(self, callback: Callable, *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _run(self, ready: asyncio.Future) -> None:
        try:
            snapshot = self._open()
        except Exception as exc:
            if self._db is not None:
                self._db.close()
            if not isinstance(exc, StoreError):
                exc = StoreError(f"cannot open store {self.path}: {exc}")
            self._post(_settle, ready, None, exc)
            return
        self._post(_settle, ready, snapshot, None)
        stop = None
        try:
            stop = self._serve()
        finally:
            self._db.close()
            if stop is not None:
                self._post(_settle, stop.future, None, None)

    def _open(self) -> Snapshot:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # timeout=0: a store held by another process is an error to report, not to wait on.
        self._db = db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no shared-memory index
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreError(f"store {self.path} is in use by another process or store; "
                                 "stop it or use another data directory") from exc
            raise
        if mode != "wal":
            raise StoreError(f"store {self.path}: SQLite refused WAL mode (got {mode!r}); "
                             "put the data directory on a local filesystem")
        db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every COMMIT
        db.executescript(_SCHEMA)
        meta = dict(db.execute("SELECT name, value FROM meta"))
        if meta["schema_version"] != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {meta['schema_version']}, "
                             f"this meshnet reads version {SCHEMA_VERSION}")
        self._revision, self._compact_revision = meta["revision"], meta["compact_revision"]
        self._kv = {key: KeyValue(key, bytes(value), create_rev, mod_rev)
                    for key, value, create_rev, mod_rev
                    in db.execute("SELECT key, value, create_rev, mod_rev FROM kv")}
        events = [_event_from_row(row) for row in db.execute(
            "SELECT rev, type, key, value, create_rev, mod_rev, prev_value, prev_mod_rev "
            "FROM log WHERE rev > ? ORDER BY rev, seq", (self._compact_revision,))]
        return Snapshot(dict(self._kv), sorted(self._kv), self._revision,
                        self._compact_revision, events)

    def _serve(self) -> _StopRequest:
        carry = None
        while True:
            item = carry if carry is not None else self._queue.get()
            carry = None
            batch: list[TxnRequest] = []
            while isinstance(item, TxnRequest):
                batch.append(item)
                if len(batch) >= MAX_BATCH_TXNS:
                    item = None
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._commit_batch(batch)
            if isinstance(item, _StopRequest):
                return item
            if isinstance(item, CompactRequest):
                self._compact(item)
            if isinstance(item, RestoreRequest):
                self._restore(item)

    def _commit_batch(self, batch: list[TxnRequest]) -> None:
        db = self._db
        overlay: dict[str, KeyValue | None] = {}

        def lookup(key: str) -> KeyValue | None:
            return overlay[key] if key in overlay else self._kv.get(key)

        revision = self._revision
        try:
            for req in batch:
                try:
                    changes, req.results, req.events = plan_txn(req.ops, revision + 1, lookup)
                except StoreError as exc:
                    req.error = exc
                    continue
                if not db.in_transaction:
                    db.execute("BEGIN IMMEDIATE")
                db.execute("SAVEPOINT txn")
                try:
                    self._write(req.events)
                except (sqlite3.Error, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                    db.execute("ROLLBACK TO txn")
                    db.execute("RELEASE txn")
                    req.results, req.events = None, []
                    req.error = StoreError(f"store {self.path}: writing txn on "
                                           f"{[op.key for op in req.ops]!r} failed: {exc}")
                    continue
                db.execute("RELEASE txn")
                revision += 1
                overlay.update(changes)
            if db.in_transaction:
                db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
                db.execute("COMMIT")
                self.commits += 1
        except Exception as exc:  # BEGIN/COMMIT failed (disk full, I/O error): all or none
            if db.in_transaction:
                db.execute("ROLLBACK")
            error = StoreError(f"store {self.path}: commit failed, txn not applied: {exc}")
            for req in batch:
                req.results, req.events = None, []
                req.error = req.error or error
            revision, overlay = self._revision, {}
        for key, kv in overlay.items():
            if kv is None:
                del self._kv[key]
            else:
                self._kv[key] = kv
        self._revision = revision
        self.txns += len(batch)
        self._post(self._on_commit, batch)

    def _write(self, events: list[Event]) -> None:
        db = self._db
        for seq, ev in enumerate(events):
            kv, prev = ev.kv, ev.prev
            if ev.type == "PUT":
                db.execute("INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                           "create_rev = excluded.create_rev, mod_rev = excluded.mod_rev",
                           (kv.key, kv.value, kv.create_revision, kv.mod_revision))
                prev_value = prev.value if prev is not None else None
                prev_mod = prev.mod_revision if prev is not None else None
            else:
                db.execute("DELETE FROM kv WHERE key = ?", (kv.key,))
                prev_value = prev_mod = None  # prev is kv itself
            db.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (ev.revision, seq, ev.type, kv.key, kv.value, kv.create_revision,
                        kv.mod_revision, prev_value, prev_mod))

    def _compact(self, req: CompactRequest) -> None:
        if req.revision > self._compact_revision:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM log WHERE rev <= ?", (req.revision,))
                db.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'",
                           (req.revision,))
                db.execute("COMMIT")
                self._compact_revision = req.revision
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                req.error = StoreError(f"store {self.path}: compaction to "
                                       f"{req.revision} failed: {exc}")
        self._post(self._on_compact, req)


    def _restore(self, req: RestoreRequest) -> None:
        try:
            req.revision, req.kvs = self._write_restore(req.items, req.above)
        except StoreError as exc:
            req.error = exc
        self._post(self._on_restore, req)

    def _write_restore(self, items: list[tuple[str, bytes]],
                       above: int) -> tuple[int, dict[str, KeyValue]]:
        """One SQLite transaction: every key at revision R = max(above, revision) + 1, the
        log emptied, compact_revision = R (nothing before R can be watched)."""
        if self._kv:
            raise StoreNotEmpty(f"store {self.path} is not empty ({len(self._kv)} keys, "
                                f"revision {self._revision}); restore needs a fresh store: "
                                "move the file away or use another --data-dir")
        revision = max(above, self._revision) + 1
        kvs = {key: KeyValue(key, value, revision, revision) for key, value in items}
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM log")
            db.executemany("INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)",
                           ((kv.key, kv.value, revision, revision) for kv in kvs.values()))
            db.executemany("UPDATE meta SET value = ? WHERE name = ?",
                           ((revision, "revision"), (revision, "compact_revision")))
            db.execute("COMMIT")
        except (sqlite3.Error, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"store {self.path}: restore failed, nothing written: {exc}") \
                from None
        self._kv = dict(kvs)
        self._revision = self._compact_revision = revision
        return revision, kvs
