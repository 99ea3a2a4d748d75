"""The store on both backends: etcd semantics, durability, history and watchers.

Every test taking `store` or `backend` runs twice: on SQLite (a real file in tmp_path) and on
a real etcd (one member per session on loopback ports, a fresh key prefix per test). etcd's
revisions are global and a fresh etcd starts at revision 1, so tests count revisions from
`base`, the store's revision when the test began (0 on a new SQLite file).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import random
import signal
import sqlite3
import sys

import pytest

from meshnet.control.store import (Compacted, EtcdStore, EtcdTLS, Event, KeyExists,
                                   KeyNotFound, KeyValue, Op, RevisionMismatch, SQLiteStore,
                                   StoreError, WatchClosed, WatchCompacted, open_store)
from meshnet.control.store.etcd import parse_etcd_url
from meshnet.control.store.sqlite import MAX_WATCH_BACKLOG

from etcd_server import etcd_fixture, start_etcd

TIMEOUT_S = 10  # generous bound on any single await, so a bug fails instead of hanging


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def opened(path, **options) -> SQLiteStore:
    store = SQLiteStore(str(path), **options)
    await store.start()
    return store


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, tmp_path):
        self.path = tmp_path / "store.db"

    async def open(self, **options) -> SQLiteStore:
        return await opened(self.path, **options)


class EtcdBackend:
    name = "etcd"

    def __init__(self, cluster, prefix: str):
        self.cluster = cluster
        self.prefix = prefix

    async def open(self, **options) -> EtcdStore:
        store = EtcdStore(self.cluster.endpoints, prefix=self.prefix, **options)
        await store.start()
        return store


etcd = etcd_fixture(scope="session")


# Fixed width, so no test's prefix is a string prefix of another's.
_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path)
    return EtcdBackend(request.getfixturevalue("etcd"), f"/test-{next(_prefixes):06d}")


@pytest.fixture
async def store(backend):
    s = await backend.open()
    yield s
    await s.close()


async def delivered(watcher, revision: int) -> None:
    """Wait until the backend has handed the watcher everything up to revision.

    SQLite pushes to watchers before a txn is acknowledged; an etcd watch is its own stream,
    which may lag the txn's response."""
    received = getattr(watcher, "received", None)
    if received is not None:
        await asyncio.wait_for(received(revision), TIMEOUT_S)


async def take(watcher, n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(watcher), TIMEOUT_S) for _ in range(n)]


async def snapshot(store) -> tuple[list[KeyValue], int]:
    return await store.list("")


def create(key, value=b"v"):
    return Op("create", key, value)


def update(key, value=b"v2", rev=None):
    return Op("update", key, value, rev)


def delete(key, rev=None):
    return Op("delete", key, b"", rev)


# --- compare-and-swap and atomicity -------------------------------------------------------

CAS_FAILURES = [
    # (description, setup txns, failing txn, error type, error attributes)
    ("create over an existing key", [[create("/a")]], [create("/a")],
     KeyExists, {"key": "/a"}),
    ("update of a missing key", [], [update("/a")], KeyNotFound, {"key": "/a"}),
    ("delete of a missing key", [], [delete("/a")], KeyNotFound, {"key": "/a"}),
    ("update of a deleted key", [[create("/a")], [delete("/a")]], [update("/a")],
     KeyNotFound, {"key": "/a"}),
    ("update at a stale mod revision", [[create("/a")], [update("/a")]], [update("/a", rev=1)],
     RevisionMismatch, {"key": "/a", "expected": 1, "actual": 2}),
    ("delete at a stale mod revision", [[create("/a")], [update("/a")]], [delete("/a", rev=1)],
     RevisionMismatch, {"key": "/a", "expected": 1, "actual": 2}),
    ("a failing last op undoes the ops before it", [[create("/a")]],
     [create("/b"), update("/c"), delete("/a")], KeyNotFound, {"key": "/c"}),
    ("a failing middle op undoes the ops around it", [[create("/a"), create("/b")]],
     [update("/a", b"new"), create("/b"), create("/c")], KeyExists, {"key": "/b"}),
]


@pytest.mark.parametrize("setup, ops, error, attrs",
                         [c[1:] for c in CAS_FAILURES], ids=[c[0] for c in CAS_FAILURES])
async def test_failed_txn_changes_nothing(store, setup, ops, error, attrs):
    base = store.revision  # the table's revisions count from here

    def shifted(txn):
        return [op if op.expected_mod_revision is None else
                Op(op.kind, op.key, op.value, base + op.expected_mod_revision) for op in txn]

    for txn in setup:
        await store.txn(shifted(txn))
    before = await snapshot(store)
    with pytest.raises(error) as info:
        await store.txn(shifted(ops))
    for name, value in attrs.items():
        assert getattr(info.value, name) == (base + value if name != "key" else value)
    assert await snapshot(store) == before
    # A failed txn takes no revision: the next write gets the very next one.
    kv = await store.create("/next", b"x")
    assert kv.mod_revision == before[1] + 1


INVALID_TXNS = [
    ("no ops", [], "at least one op"),
    ("unknown kind", [Op("put", "/a", b"")], "kind 'put'"),
    ("empty key", [create("")], "non-empty str"),
    ("str value", [create("/a", "text")], "must be bytes"),
    ("same key twice", [create("/a"), update("/a")], "appears twice"),
]


@pytest.mark.parametrize("ops, message", [c[1:] for c in INVALID_TXNS],
                         ids=[c[0] for c in INVALID_TXNS])
async def test_invalid_txn_is_rejected_before_the_writer(store, ops, message):
    base = store.revision
    with pytest.raises(ValueError, match=message):
        await store.txn(ops)
    assert store.revision == base


async def test_revisions_follow_etcd(store):
    b = store.revision  # 0 for a new SQLite file; etcd's current revision
    assert await store.create("/a", b"1") == KeyValue("/a", b"1", b + 1, b + 1)
    assert await store.update("/a", b"2") == KeyValue("/a", b"2", b + 1, b + 2)
    assert await store.update("/a", b"3", expected_mod_revision=b + 2) == KeyValue(
        "/a", b"3", b + 1, b + 3)
    # One txn, one revision for all of its ops; delete returns the deleted value.
    results = await store.txn([create("/b", b"b"), create("/c", b"c"), delete("/a", rev=b + 3)])
    assert results == [KeyValue("/b", b"b", b + 4, b + 4), KeyValue("/c", b"c", b + 4, b + 4),
                       KeyValue("/a", b"3", b + 1, b + 3)]
    assert store.revision == b + 4
    assert await store.get("/a") is None
    # Re-creating a deleted key starts a new life: a new create revision.
    assert await store.create("/a", b"again") == KeyValue("/a", b"again", b + 5, b + 5)
    assert await store.delete("/b", expected_mod_revision=b + 4) == KeyValue(
        "/b", b"b", b + 4, b + 4)
    assert await snapshot(store) == ([KeyValue("/a", b"again", b + 5, b + 5),
                                      KeyValue("/c", b"c", b + 4, b + 4)], b + 6)


async def test_a_txn_sqlite_rejects_fails_alone(tmp_path):
    """A key SQLite cannot encode fails at its SAVEPOINT; the batch around it commits."""
    store = await opened(tmp_path / "store.db")
    # The bad txn's first op is written before its second fails: only the SAVEPOINT undoes it.
    bad = store.txn([create("/bad/first"), create("/bad/\ud800")])
    results = await asyncio.gather(store.create("/ok/1", b"1"), bad,
                                   store.create("/ok/2", b"2"), return_exceptions=True)
    assert isinstance(results[1], StoreError) and "/bad/" in str(results[1])
    # (Whether or not the three shared a batch, the bad one must leave no trace in the file.)
    assert sorted(kv.mod_revision for kv in (results[0], results[2])) == [1, 2]
    assert store.revision == 2
    await store.close()
    store = await opened(tmp_path / "store.db")
    assert [kv.key for kv in (await snapshot(store))[0]] == ["/ok/1", "/ok/2"]
    assert store.revision == 2
    await store.close()


async def test_a_key_etcd_cannot_hold_fails_alone(etcd):
    """The etcd twin of the test above: a key that is not UTF-8 fails before anything is sent."""
    store = await EtcdBackend(etcd, f"/test-{next(_prefixes):06d}").open()
    base = store.revision
    with pytest.raises(StoreError, match="not valid UTF-8"):
        await store.txn([create("/bad/first"), create("/bad/\ud800")])
    assert (await store.create("/ok", b"")).mod_revision == base + 1
    assert [kv.key for kv in (await snapshot(store))[0]] == ["/ok"]
    await store.close()


# --- list -----------------------------------------------------------------------------------

LIST_KEYS = ["/a", "/a/", "/a/x", "/a/y/1", "/a/y/2", "/a0", "/a/\U0010ffff", "/b/1",
             "/\U0010ffff/x", "/\U0010ffff\U0010ffff", "/é"]
LIST_CASES = [
    ("everything", "", sorted(LIST_KEYS)),
    ("a directory", "/a/", ["/a/", "/a/\U0010ffff", "/a/x", "/a/y/1", "/a/y/2"]),
    ("a name prefix, not only a directory", "/a",
     ["/a", "/a/", "/a/\U0010ffff", "/a/x", "/a/y/1", "/a/y/2", "/a0"]),
    ("a nested directory", "/a/y/", ["/a/y/1", "/a/y/2"]),
    ("an exact key is its own prefix", "/b/1", ["/b/1"]),
    ("nothing there", "/c/", []),
    ("a prefix ending in the largest code point", "/\U0010ffff",
     ["/\U0010ffff/x", "/\U0010ffff\U0010ffff"]),
    ("non-ASCII", "/é", ["/é"]),
]


@pytest.mark.parametrize("prefix, expected", [c[1:] for c in LIST_CASES],
                         ids=[c[0] for c in LIST_CASES])
async def test_list_and_count_by_prefix(backend, prefix, expected):
    store = await backend.open()
    base = store.revision
    keys = LIST_KEYS + ["/deleted/1", "/a/deleted"]
    random.Random(7).shuffle(keys)
    for key in keys:
        await store.create(key, key.encode())
    await store.txn([delete("/deleted/1"), delete("/a/deleted")])
    for reopen in (False, True):  # from the live index, then from the one rebuilt at start
        if reopen:
            await store.close()
            store = await backend.open()
        kvs, revision = await store.list(prefix)
        assert [kv.key for kv in kvs] == sorted(expected)
        assert all(kv.value == kv.key.encode() for kv in kvs)
        assert revision == base + len(keys) + 1
        assert await store.count(prefix) == len(expected)
    await store.close()


async def test_list_then_watch_from_its_revision_misses_nothing(store):
    b = store.revision
    for i in range(5):
        await store.create(f"/pods/p{i}", b"")
    kvs, revision = await store.list("/pods/")
    assert (len(kvs), revision) == (5, b + 5)
    await store.create("/pods/p5", b"")
    await store.create("/other/x", b"")
    await store.delete("/pods/p0")
    watcher = store.watch("/pods/", revision)
    events = await take(watcher, 2)
    assert [(e.type, e.kv.key, e.revision) for e in events] == [
        ("PUT", "/pods/p5", b + 6), ("DELETE", "/pods/p0", b + 8)]
    watcher.close()


# --- watch ----------------------------------------------------------------------------------

async def test_watch_events_carry_kv_and_prev(store):
    b = store.revision
    watcher = store.watch("/", b)
    await store.create("/a", b"1")
    await store.update("/a", b"2")
    await store.txn([delete("/a"), create("/b", b"b")])
    assert await take(watcher, 4) == [
        Event("PUT", KeyValue("/a", b"1", b + 1, b + 1), None, b + 1),
        Event("PUT", KeyValue("/a", b"2", b + 1, b + 2), KeyValue("/a", b"1", b + 1, b + 1),
              b + 2),
        Event("DELETE", KeyValue("/a", b"2", b + 1, b + 2), KeyValue("/a", b"2", b + 1, b + 2),
              b + 3),
        Event("PUT", KeyValue("/b", b"b", b + 3, b + 3), None, b + 3),
    ]
    watcher.close()


async def test_watch_from_the_past_replays_then_goes_live_without_gap_or_duplicate(store):
    b = store.revision
    for i in range(300):
        await store.create(f"/w/{i:04d}", b"")
    watchers = [store.watch("/w/", b + since) for since in (0, 150, 299, 300)]

    async def writer():
        for i in range(300, 600):
            await store.create(f"/w/{i:04d}", b"")

    # Writes land while the watchers are still replaying: each must see every later
    # revision exactly once, in order.
    writing = asyncio.create_task(writer())
    for watcher, since in zip(watchers, (0, 150, 299, 300)):
        events = await take(watcher, 600 - since)
        assert [e.revision - b for e in events] == list(range(since + 1, 601))
        watcher.close()
    await writing


async def test_watch_filters_by_prefix_and_from_a_future_revision(store):
    b = store.revision
    everything, pods, future = (store.watch("", b), store.watch("/pods/", b),
                                store.watch("/", b + 3))
    await store.create("/pods/a", b"")
    await store.create("/podsx", b"")  # a prefix is a string prefix: "/pods/" excludes this
    await store.create("/svc/a", b"")
    await store.create("/pods/b", b"")
    await store.create("/svc/b", b"")
    assert [e.kv.key for e in await take(everything, 5)] == [
        "/pods/a", "/podsx", "/svc/a", "/pods/b", "/svc/b"]
    assert [e.kv.key for e in await take(pods, 2)] == ["/pods/a", "/pods/b"]
    assert [e.revision - b for e in await take(future, 2)] == [4, 5]
    for watcher in (everything, pods, future):
        watcher.close()
    assert store.watcher_count == 0


async def test_history_survives_restart(backend):
    store = await backend.open()
    b = store.revision
    await store.create("/a", b"1")
    await store.txn([update("/a", b"2"), create("/b", b"b")])
    await store.delete("/a")
    watcher = store.watch("", b)
    before = await take(watcher, 4)
    await store.close()

    store = await backend.open()
    assert store.revision == b + 3  # kept although the last write was a delete
    assert await take(store.watch("", b), 4) == before
    resumed = store.watch("", b + 2)
    assert await take(resumed, 1) == before[3:]
    assert (await store.create("/c", b"")).mod_revision == b + 4
    assert [e.kv.key for e in await take(resumed, 1)] == ["/c"]
    await store.close()


async def test_watch_closed_by_its_owner_stops_iteration(store):
    watcher = store.watch("/", store.revision)
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0)  # let it block on the empty queue
    watcher.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, TIMEOUT_S)
    await store.create("/a", b"")
    assert [e async for e in watcher] == []
    assert store.watcher_count == 0


async def test_closing_the_store_cuts_off_watchers_and_refuses_work(backend):
    store = await backend.open()
    watcher = store.watch("/", store.revision)
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(WatchClosed, match="closed"):
        await asyncio.wait_for(waiting, TIMEOUT_S)
    with pytest.raises(StoreError, match="not open"):
        await store.create("/a", b"")
    with pytest.raises(StoreError, match="not open"):
        store.watch("/", store.revision)


async def test_a_watcher_too_far_behind_is_cut_off(store):
    b = store.revision
    slow, keeping_up, elsewhere = (store.watch("/s/", b), store.watch("/s/", b),
                                   store.watch("/t/", b))
    await store.txn([create(f"/s/{i:05d}") for i in range(MAX_WATCH_BACKLOG)])
    assert (await take(keeping_up, 1))[0].kv.key == "/s/00000"
    await store.create("/s/one-more", b"")  # slow is now MAX_WATCH_BACKLOG + 1 behind
    await delivered(slow, store.revision)
    with pytest.raises(WatchClosed, match="fell more than"):
        await take(slow, 1)
    rest = await take(keeping_up, MAX_WATCH_BACKLOG)
    assert rest[-1].kv.key == "/s/one-more"
    await store.create("/t/x", b"")
    assert (await take(elsewhere, 1))[0].kv.key == "/t/x"
    assert store.watcher_count == 2
    keeping_up.close()
    elsewhere.close()


# --- compaction -----------------------------------------------------------------------------

async def test_compacted_history_is_gone_across_restart(backend):
    store = await backend.open()
    b = store.revision
    for i in range(5):
        await store.create(f"/k/{i}", b"")
    await store.compact(b + 2)
    await store.compact(b + 1)  # older than the compact revision: nothing to do
    assert store.compact_revision == b + 2
    with pytest.raises(ValueError, match=f"only at revision {b + 5}"):
        await store.compact(b + 6)
    for reopen in (False, True):
        if reopen:
            await store.close()
            store = await backend.open()
        assert (store.revision, store.compact_revision) == (b + 5, b + 2)
        with pytest.raises(Compacted) as info:
            store.watch("/k/", b + 1)
        assert (info.value.requested, info.value.compact_revision) == (b + 1, b + 2)
        with pytest.raises(Compacted):
            store.watch("/k/", 0)
        # Exactly at the compact revision is fine: every event after it is still there.
        assert [e.revision - b for e in await take(store.watch("/k/", b + 2), 3)] == [3, 4, 5]
        assert len((await store.list("/k/"))[0]) == 5  # compaction never touches the state
    await store.close()
    if backend.name == "sqlite":
        with sqlite3.connect(backend.path) as db:
            assert db.execute("SELECT min(rev), count(*) FROM log").fetchone() == (3, 3)


AUTO_COMPACTION = [
    # (description, history_seconds, history_min_events, txns as (time, op count), now,
    #  expected compact revision)
    ("nothing older than history_seconds", 10, 0, [(t, 1) for t in range(5)], 5, 0),
    ("events older than history_seconds go", 10, 0, [(t, 1) for t in range(10)], 15, 6),
    ("the minimum number of events stays", 10, 8, [(t, 1) for t in range(10)], 15, 2),
    ("the minimum wins even when all expired", 10, 3, [(t, 1) for t in range(10)], 999, 7),
    ("a revision is never split to keep the minimum", 10, 2, [(0, 1), (1, 3), (2, 1)], 100, 1),
    ("writes within one mark interval age together", 10, 0,
     [(0, 1), (0.3, 1), (0.6, 1), (5, 1)], 10.7, 3),
    ("a mark ages by its newest write", 10, 0, [(0, 1), (0.3, 1), (0.6, 1), (5, 1)], 10.5, 0),
]


@pytest.mark.parametrize("seconds, min_events, txns, now, expected",
                         [c[1:] for c in AUTO_COMPACTION], ids=[c[0] for c in AUTO_COMPACTION])
async def test_auto_compaction(backend, seconds, min_events, txns, now, expected):
    clock = FakeClock()
    store = await backend.open(history_seconds=seconds, history_min_events=min_events,
                               clock=clock)
    b, untouched = store.revision, store.compact_revision
    for i, (clock.now, ops) in enumerate(txns):
        await store.txn([create(f"/k/{i}/{j}") for j in range(ops)])
    clock.now = now
    compacted = b + expected if expected else untouched
    assert await store.compact_expired() == compacted
    assert store.compact_revision == compacted
    # What is left is exactly the events after the compact revision.
    left = sum(ops for rev, (_, ops) in enumerate(txns, 1) if rev > expected)
    kept = await take(store.watch("", b + expected), left)
    assert kept[0].revision == b + expected + 1
    assert left >= min_events
    await store.close()


async def test_history_loaded_at_start_ages_from_the_start(backend):
    clock = FakeClock(1000)  # a monotonic clock restarts with the process: old times mean nothing
    store = await backend.open(history_seconds=10, history_min_events=0, clock=clock)
    b = store.revision
    for i in range(3):
        await store.create(f"/k/{i}", b"")
    await store.close()
    clock.now = 0
    store = await backend.open(history_seconds=10, history_min_events=0, clock=clock)
    untouched = store.compact_revision
    clock.now = 9
    assert await store.compact_expired() == untouched
    clock.now = 10
    assert await store.compact_expired() == b + 3
    await store.close()


# --- concurrency and durability -------------------------------------------------------------

async def test_group_commit_with_16_concurrent_clients(store):
    clients, per_client = 16, 40
    b = store.revision
    await store.create("/counter", b"0")
    watcher = store.watch("", b)

    async def client(c: int) -> None:
        for i in range(per_client):
            await store.create(f"/c/{c:02d}/{i:03d}", f"{c}/{i}".encode())
            # Read-modify-write under contention: CAS must serialize the increments even
            # when competing txns land in the same batch.
            while True:
                current = await store.get("/counter")
                try:
                    await store.update("/counter", str(int(current.value) + 1).encode(),
                                       expected_mod_revision=current.mod_revision)
                    break
                except RevisionMismatch:
                    pass

    await asyncio.gather(*(client(c) for c in range(clients)))
    total = clients * per_client
    kvs, revision = await store.list("/c/")
    assert [kv.key for kv in kvs] == sorted(f"/c/{c:02d}/{i:03d}"
                                            for c in range(clients) for i in range(per_client))
    assert all(kv.value == "{}/{}".format(*map(int, kv.key.split("/")[2:])).encode() for kv in kvs)
    assert (await store.get("/counter")).value == str(total).encode()
    assert revision == b + 1 + 2 * total  # every successful txn one revision, no gaps
    assert len({kv.mod_revision for kv in kvs}) == total
    events = await take(watcher, revision - b)
    assert [e.revision for e in events] == list(range(b + 1, revision + 1))
    if isinstance(store, SQLiteStore):
        writer = store.writer
        assert writer.commits < writer.txns, "concurrent txns were not group-committed"
    watcher.close()


CHILD_WRITER = r"""
import asyncio, sys
from meshnet.control.store import Op, SQLiteStore

async def main(path):
    store = SQLiteStore(path)
    await store.start()
    async def client(c):
        for i in range(10**9):
            key = f"/k/{c:02d}/{i:08d}"
            await store.txn([Op("create", key + "/a", b"a"), Op("create", key + "/b", b"b")])
            print(key, flush=True)  # acknowledged: the txn's COMMIT has returned
    await asyncio.gather(*(client(c) for c in range(16)))

asyncio.run(main(sys.argv[1]))
"""


async def test_sigkill_never_loses_an_acknowledged_txn(tmp_path):
    path = str(tmp_path / "store.db")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_WRITER, path, stdout=asyncio.subprocess.PIPE)
    acked = []
    try:
        while len(acked) < 2000:
            line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT_S)
            assert line, "the writer process ended before it was killed"
            acked.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)  # mid-stream: 16 txns are in flight
    rest = await asyncio.wait_for(child.stdout.read(), TIMEOUT_S)
    acked += rest.decode().split()
    assert await child.wait() == -signal.SIGKILL

    store = await opened(path)
    kvs, revision = await store.list("/k/")
    keys = {kv.key for kv in kvs}
    missing = [k for k in acked if f"{k}/a" not in keys or f"{k}/b" not in keys]
    assert missing == [], f"{len(missing)} acknowledged txns lost, e.g. {missing[:3]}"
    halves = [txn for txn, n in collections.Counter(k.rsplit("/", 1)[0] for k in keys).items()
              if n != 2]
    assert halves == [], f"half-applied txns: {halves[:3]}"
    assert revision == len(kvs) // 2 >= len(acked)
    assert [e.revision for e in await take(store.watch("", 0), 2 * revision)][-1] == revision
    assert (await store.create("/after", b"")).mod_revision == revision + 1
    await store.close()


async def test_one_process_one_store(tmp_path):
    first = await opened(tmp_path / "store.db")
    second = SQLiteStore(str(tmp_path / "store.db"))
    with pytest.raises(StoreError, match="in use"):
        await second.start()
    await first.close()
    third = await opened(tmp_path / "store.db")
    await third.close()


# --- open_store -----------------------------------------------------------------------------

OPEN_STORE = [
    # (description, url, TLS files, expected path relative to data_dir, or the error's message)
    ("the default", "", EtcdTLS(), "data/store.db", None),
    ("sqlite without a path", "sqlite", EtcdTLS(), "data/store.db", None),
    ("an absolute sqlite path", "sqlite://{tmp}/elsewhere/x.db", EtcdTLS(), "elsewhere/x.db",
     None),
    ("a relative sqlite path", "sqlite://x.db", EtcdTLS(), None, "absolute path"),
    ("an unknown scheme", "mysql://db", EtcdTLS(), None, "unsupported scheme"),
    ("TLS files for plain etcd", "etcd://127.0.0.1:2379", EtcdTLS(ca_file="/ca.crt"), None,
     "not etcds://"),
    ("TLS files for sqlite", "", EtcdTLS(ca_file="/ca.crt"), None, "not etcds://"),
    ("a client certificate without its key", "etcds://127.0.0.1:2379",
     EtcdTLS(cert_file="/c.crt"), None, "go together"),
    ("a missing CA file", "etcds://127.0.0.1:2379", EtcdTLS(ca_file="/nonexistent/ca.crt"),
     None, "--etcd-cafile /nonexistent/ca.crt: cannot load it"),
    ("a CA file that is not PEM", "etcds://127.0.0.1:2379", EtcdTLS(ca_file="{tmp}/junk"),
     None, "cannot load it as PEM"),
    ("a key that does not load", "etcds://127.0.0.1:2379",
     EtcdTLS(cert_file="{tmp}/junk", key_file="{tmp}/junk"), None,
     "--etcd-certfile {tmp}/junk / --etcd-keyfile {tmp}/junk: cannot load"),
]


@pytest.mark.parametrize("url, tls, path, message", [c[1:] for c in OPEN_STORE],
                         ids=[c[0] for c in OPEN_STORE])
async def test_open_store(tmp_path, url, tls, path, message):
    url = url.format(tmp=tmp_path)
    tls = EtcdTLS(*(f and f.format(tmp=tmp_path) for f in
                    (tls.ca_file, tls.cert_file, tls.key_file)))
    (tmp_path / "junk").write_text("not a certificate\n")
    data_dir = str(tmp_path / "data")
    if message is not None:
        with pytest.raises(StoreError) as info:
            open_store(url, data_dir, etcd_tls=tls)
        assert message.format(tmp=tmp_path) in str(info.value)
        return
    store = open_store(url, data_dir, etcd_tls=tls, history_seconds=60)
    assert isinstance(store, SQLiteStore) and store.path == str(tmp_path / path)
    await store.start()  # creates the missing directory
    await store.create("/a", b"")
    await store.close()
    assert os.path.exists(tmp_path / path)


ETCD_URLS = [
    # (description, url, endpoints, prefix or the error's message)
    ("one endpoint, the default prefix", "etcd://127.0.0.1:2379",
     ["http://127.0.0.1:2379"], "/meshnet"),
    ("several endpoints", "etcd://10.0.0.1:2379,10.0.0.2:2379,etcd-3:12379",
     ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://etcd-3:12379"], "/meshnet"),
    ("a prefix", "etcd://127.0.0.1:2379?prefix=/cluster-a", ["http://127.0.0.1:2379"],
     "/cluster-a"),
    ("a trailing slash of the prefix is dropped", "etcd://127.0.0.1:2379?prefix=/a/",
     ["http://127.0.0.1:2379"], "/a"),
    ("an empty prefix: the whole keyspace", "etcd://127.0.0.1:2379?prefix=",
     ["http://127.0.0.1:2379"], ""),
    ("a relative prefix", "etcd://127.0.0.1:2379?prefix=meshnet", None, "must start with '/'"),
    ("no port", "etcd://127.0.0.1", None, "is not host:port"),
    ("a bad port", "etcd://127.0.0.1:99999", None, "is not host:port"),
    ("an empty endpoint", "etcd://127.0.0.1:2379,", None, "is not host:port"),
    ("an unknown option", "etcd://127.0.0.1:2379?timeout=3", None, "unknown option(s) timeout"),
    ("a path", "etcd://127.0.0.1:2379/meshnet", None, "expected etcd[s]://host:port"),
    ("TLS", "etcds://10.0.0.1:2379,10.0.0.2:2379?prefix=/a",
     ["https://10.0.0.1:2379", "https://10.0.0.2:2379"], "/a"),
]


@pytest.mark.parametrize("url, endpoints, expected", [c[1:] for c in ETCD_URLS],
                         ids=[c[0] for c in ETCD_URLS])
def test_parse_etcd_url(url, endpoints, expected):
    if endpoints is None:
        with pytest.raises(StoreError) as info:
            parse_etcd_url(url)
        assert expected in str(info.value) and url in str(info.value)
    else:
        assert parse_etcd_url(url) == (endpoints, expected)


async def test_open_store_on_etcd(etcd, tmp_path):
    url = f"{etcd.url}?prefix=/test-open-store"
    store = open_store(url, str(tmp_path), history_seconds=60)
    assert isinstance(store, EtcdStore) and store.endpoints == etcd.endpoints
    await store.start()
    await store.create("/a", b"1")
    await store.close()
    again = open_store(url, str(tmp_path))
    await again.start()
    assert (await again.get("/a")).value == b"1"
    await again.close()
    assert not os.listdir(tmp_path)  # nothing local


# --- etcd only: what a shared, replicated store adds -----------------------------------------

async def test_etcd_compaction_by_another_client_reaches_a_watch(etcd):
    """Another API server compacted: our store does not know yet, etcd tells the watch."""
    prefix = f"/test-{next(_prefixes):06d}"
    ours, theirs = await EtcdBackend(etcd, prefix).open(), await EtcdBackend(etcd, prefix).open()
    b = ours.revision
    for i in range(3):
        await theirs.create(f"/k/{i}", b"")
    await theirs.compact(b + 2)
    assert ours.compact_revision < b + 2
    watcher = ours.watch("/k/", b)
    with pytest.raises(WatchCompacted) as info:
        await take(watcher, 1)
    assert isinstance(info.value, Compacted) and isinstance(info.value, WatchClosed)
    assert info.value.compact_revision == b + 2
    assert ours.compact_revision == b + 2
    with pytest.raises(Compacted):  # now known: refused up front
        ours.watch("/k/", b)
    # Compacting below what someone else already did is not an error.
    await ours.compact(b + 1)
    assert [e.kv.key for e in await take(ours.watch("/k/", b + 2), 1)] == ["/k/2"]
    await ours.close()
    await theirs.close()


async def test_etcd_fails_over_to_another_member(tmp_path):
    cluster = start_etcd(tmp_path, size=3)
    try:
        store = EtcdStore(cluster.endpoints, prefix="/failover")
        await store.start()
        b = store.revision
        watcher = store.watch("/k/", b)
        for i in range(5):
            await store.create(f"/k/{i}", b"")
        assert len(await take(watcher, 5)) == 5
        cluster.members[0].kill()  # the member every request and the watch were using
        for i in range(5, 10):
            key = f"/k/{i}"
            try:
                await store.create(key, b"")
            except StoreError as exc:  # sent on a connection the kill cut: find out, as a
                assert "outcome is unknown" in str(exc)  # client must
                if await store.get(key) is None:
                    await store.create(key, b"")
        assert store.endpoints[store._current] != cluster.endpoints[0]
        # The watch resumed on another member from the revision after its last event.
        events = await take(watcher, 5)
        assert [e.kv.key for e in events] == [f"/k/{i}" for i in range(5, 10)]
        assert [e.revision for e in events] == list(range(b + 6, b + 11))
        assert await store.count("/k/") == 10
        watcher.close()
        await store.close()
    finally:
        cluster.stop()


async def test_etcd_watch_older_than_the_failover_budget_still_fails_over(tmp_path,
                                                                          monkeypatch):
    """The failover budget counts from the first failure, not from when the call began: a
    watch stream that has been open for longer than the budget must still move on."""
    import meshnet.control.store.etcd as etcd_module

    monkeypatch.setattr(etcd_module, "FAILOVER_TIMEOUT_S", 1.0)
    cluster = start_etcd(tmp_path, size=3)
    try:
        store = EtcdStore(cluster.endpoints, prefix="/old-watch")
        await store.start()
        b = store.revision
        watcher = store.watch("/k/", b)
        await store.create("/k/0", b"")
        assert len(await take(watcher, 1)) == 1
        await asyncio.sleep(1.5)  # the stream is now older than the budget
        cluster.members[0].kill()
        for i in range(1, 4):
            try:
                await store.create(f"/k/{i}", b"")
            except StoreError as exc:
                assert "outcome is unknown" in str(exc)
                if await store.get(f"/k/{i}") is None:
                    await store.create(f"/k/{i}", b"")
        events = await take(watcher, 3)
        assert [e.kv.key for e in events] == ["/k/1", "/k/2", "/k/3"]
        watcher.close()
        await store.close()
    finally:
        cluster.stop()


async def test_etcd_sigkill_never_loses_an_acknowledged_txn(tmp_path):
    """The etcd twin of the SIGKILL test: kill etcd under 16 writers, restart it, count."""
    cluster = start_etcd(tmp_path)
    try:
        store = EtcdStore(cluster.endpoints, prefix="/durable")
        await store.start()
        acked, unknown, stop = [], [], asyncio.Event()

        async def client(c: int) -> None:
            for i in itertools.count():
                if stop.is_set():
                    return
                key = f"/k/{c:02d}/{i:08d}"
                try:
                    await store.txn([create(key + "/a", b"a"), create(key + "/b", b"b")])
                except StoreError as exc:
                    assert "outcome is unknown" in str(exc)
                    unknown.append(key)
                    continue
                acked.append(key)

        clients = [asyncio.create_task(client(c)) for c in range(16)]
        while len(acked) < 500:
            await asyncio.sleep(0.01)
        cluster.members[0].kill()  # mid-stream: up to 16 txns in flight
        killed_at = len(acked)
        await asyncio.to_thread(cluster.start)  # same data dir: writers reconnect
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), TIMEOUT_S * 2)
        assert len(acked) > killed_at, "no writer got through after the restart"

        kvs, revision = await store.list("/k/")
        keys = {kv.key for kv in kvs}
        missing = [k for k in acked if f"{k}/a" not in keys or f"{k}/b" not in keys]
        assert missing == [], f"{len(missing)} acknowledged txns lost, e.g. {missing[:3]}"
        halves = [t for t, n in collections.Counter(k.rsplit("/", 1)[0] for k in keys).items()
                  if n != 2]
        assert halves == [], f"half-applied txns: {halves[:3]}"
        assert len(kvs) // 2 <= len(acked) + len(unknown)
        await store.close()
    finally:
        cluster.stop()
