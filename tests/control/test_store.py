"""SQLiteStore: etcd semantics, durability, history and watchers — on real files in tmp_path."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import sys

import pytest

from meshnet.control.store import (BackendNotImplemented, Compacted, Event, KeyExists,
                                   KeyNotFound, KeyValue, Op, RevisionMismatch, SQLiteStore,
                                   StoreError, WatchClosed, open_store)
from meshnet.control.store.sqlite import MAX_WATCH_BACKLOG

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


@pytest.fixture
async def store(tmp_path):
    s = await opened(tmp_path / "store.db")
    yield s
    await s.close()


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
    for txn in setup:
        await store.txn(txn)
    before = await snapshot(store)
    with pytest.raises(error) as info:
        await store.txn(ops)
    for name, value in attrs.items():
        assert getattr(info.value, name) == value
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
    with pytest.raises(ValueError, match=message):
        await store.txn(ops)
    assert store.revision == 0


async def test_revisions_follow_etcd(store):
    assert store.revision == 0
    assert await store.create("/a", b"1") == KeyValue("/a", b"1", 1, 1)
    assert await store.update("/a", b"2") == KeyValue("/a", b"2", 1, 2)
    assert await store.update("/a", b"3", expected_mod_revision=2) == KeyValue("/a", b"3", 1, 3)
    # One txn, one revision for all of its ops; delete returns the deleted value.
    results = await store.txn([create("/b", b"b"), create("/c", b"c"), delete("/a", rev=3)])
    assert results == [KeyValue("/b", b"b", 4, 4), KeyValue("/c", b"c", 4, 4),
                       KeyValue("/a", b"3", 1, 3)]
    assert store.revision == 4
    assert await store.get("/a") is None
    # Re-creating a deleted key starts a new life: a new create revision.
    assert await store.create("/a", b"again") == KeyValue("/a", b"again", 5, 5)
    assert await store.delete("/b", expected_mod_revision=4) == KeyValue("/b", b"b", 4, 4)
    assert await snapshot(store) == ([KeyValue("/a", b"again", 5, 5),
                                      KeyValue("/c", b"c", 4, 4)], 6)


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
async def test_list_and_count_by_prefix(tmp_path, prefix, expected):
    store = await opened(tmp_path / "store.db")
    keys = LIST_KEYS + ["/deleted/1", "/a/deleted"]
    random.Random(7).shuffle(keys)
    for key in keys:
        await store.create(key, key.encode())
    await store.txn([delete("/deleted/1"), delete("/a/deleted")])
    for reopen in (False, True):  # from the live index, then from the one rebuilt at start
        if reopen:
            await store.close()
            store = await opened(tmp_path / "store.db")
        kvs, revision = await store.list(prefix)
        assert [kv.key for kv in kvs] == sorted(expected)
        assert all(kv.value == kv.key.encode() for kv in kvs)
        assert revision == len(keys) + 1
        assert await store.count(prefix) == len(expected)
    await store.close()


async def test_list_then_watch_from_its_revision_misses_nothing(store):
    for i in range(5):
        await store.create(f"/pods/p{i}", b"")
    kvs, revision = await store.list("/pods/")
    assert (len(kvs), revision) == (5, 5)
    await store.create("/pods/p5", b"")
    await store.create("/other/x", b"")
    await store.delete("/pods/p0")
    watcher = store.watch("/pods/", revision)
    events = await take(watcher, 2)
    assert [(e.type, e.kv.key, e.revision) for e in events] == [
        ("PUT", "/pods/p5", 6), ("DELETE", "/pods/p0", 8)]
    watcher.close()


# --- watch ----------------------------------------------------------------------------------

async def test_watch_events_carry_kv_and_prev(store):
    watcher = store.watch("/", 0)
    await store.create("/a", b"1")
    await store.update("/a", b"2")
    await store.txn([delete("/a"), create("/b", b"b")])
    assert await take(watcher, 4) == [
        Event("PUT", KeyValue("/a", b"1", 1, 1), None, 1),
        Event("PUT", KeyValue("/a", b"2", 1, 2), KeyValue("/a", b"1", 1, 1), 2),
        Event("DELETE", KeyValue("/a", b"2", 1, 2), KeyValue("/a", b"2", 1, 2), 3),
        Event("PUT", KeyValue("/b", b"b", 3, 3), None, 3),
    ]
    watcher.close()


async def test_watch_from_the_past_replays_then_goes_live_without_gap_or_duplicate(store):
    for i in range(300):
        await store.create(f"/w/{i:04d}", b"")
    watchers = [store.watch("/w/", since) for since in (0, 150, 299, 300)]

    async def writer():
        for i in range(300, 600):
            await store.create(f"/w/{i:04d}", b"")

    # Writes land while the watchers are still replaying: each must see every later
    # revision exactly once, in order.
    writing = asyncio.create_task(writer())
    for watcher, since in zip(watchers, (0, 150, 299, 300)):
        events = await take(watcher, 600 - since)
        assert [e.revision for e in events] == list(range(since + 1, 601))
        watcher.close()
    await writing


async def test_watch_filters_by_prefix_and_from_a_future_revision(store):
    everything, pods, future = store.watch("", 0), store.watch("/pods/", 0), store.watch("/", 3)
    await store.create("/pods/a", b"")
    await store.create("/podsx", b"")  # a prefix is a string prefix: "/pods/" excludes this
    await store.create("/svc/a", b"")
    await store.create("/pods/b", b"")
    await store.create("/svc/b", b"")
    assert [e.kv.key for e in await take(everything, 5)] == [
        "/pods/a", "/podsx", "/svc/a", "/pods/b", "/svc/b"]
    assert [e.kv.key for e in await take(pods, 2)] == ["/pods/a", "/pods/b"]
    assert [e.revision for e in await take(future, 2)] == [4, 5]
    for watcher in (everything, pods, future):
        watcher.close()
    assert store.watcher_count == 0


async def test_history_survives_restart(tmp_path):
    store = await opened(tmp_path / "store.db")
    await store.create("/a", b"1")
    await store.txn([update("/a", b"2"), create("/b", b"b")])
    await store.delete("/a")
    watcher = store.watch("", 0)
    before = await take(watcher, 4)
    await store.close()

    store = await opened(tmp_path / "store.db")
    assert store.revision == 3  # kept although the last write was a delete
    assert await take(store.watch("", 0), 4) == before
    resumed = store.watch("", 2)
    assert await take(resumed, 1) == before[3:]
    assert (await store.create("/c", b"")).mod_revision == 4
    assert [e.kv.key for e in await take(resumed, 1)] == ["/c"]
    await store.close()


async def test_watch_closed_by_its_owner_stops_iteration(store):
    watcher = store.watch("/", 0)
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0)  # let it block on the empty queue
    watcher.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, TIMEOUT_S)
    await store.create("/a", b"")
    assert [e async for e in watcher] == []
    assert store.watcher_count == 0


async def test_closing_the_store_cuts_off_watchers_and_refuses_work(tmp_path):
    store = await opened(tmp_path / "store.db")
    watcher = store.watch("/", 0)
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(WatchClosed, match="closed"):
        await asyncio.wait_for(waiting, TIMEOUT_S)
    with pytest.raises(StoreError, match="not open"):
        await store.create("/a", b"")
    with pytest.raises(StoreError, match="not open"):
        store.watch("/", 0)


async def test_a_watcher_too_far_behind_is_cut_off(store):
    slow, keeping_up, elsewhere = (store.watch("/s/", 0), store.watch("/s/", 0),
                                   store.watch("/t/", 0))
    await store.txn([create(f"/s/{i:05d}") for i in range(MAX_WATCH_BACKLOG)])
    assert (await take(keeping_up, 1))[0].kv.key == "/s/00000"
    await store.create("/s/one-more", b"")  # slow is now MAX_WATCH_BACKLOG + 1 behind
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

async def test_compacted_history_is_gone_across_restart(tmp_path):
    store = await opened(tmp_path / "store.db")
    for i in range(5):
        await store.create(f"/k/{i}", b"")
    await store.compact(2)
    await store.compact(1)  # older than the compact revision: nothing to do
    assert store.compact_revision == 2
    with pytest.raises(ValueError, match="only at revision 5"):
        await store.compact(6)
    for reopen in (False, True):
        if reopen:
            await store.close()
            store = await opened(tmp_path / "store.db")
        assert (store.revision, store.compact_revision) == (5, 2)
        with pytest.raises(Compacted) as info:
            store.watch("/k/", 1)
        assert (info.value.requested, info.value.compact_revision) == (1, 2)
        with pytest.raises(Compacted):
            store.watch("/k/", 0)
        # Exactly at the compact revision is fine: every event after it is still there.
        assert [e.revision for e in await take(store.watch("/k/", 2), 3)] == [3, 4, 5]
        assert len((await store.list("/k/"))[0]) == 5  # compaction never touches the state
    await store.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
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
async def test_auto_compaction(tmp_path, seconds, min_events, txns, now, expected):
    clock = FakeClock()
    store = await opened(tmp_path / "store.db", history_seconds=seconds,
                         history_min_events=min_events, clock=clock)
    for i, (clock.now, ops) in enumerate(txns):
        await store.txn([create(f"/k/{i}/{j}") for j in range(ops)])
    clock.now = now
    assert await store.compact_expired() == expected
    assert store.compact_revision == expected
    # What is left is exactly the events after the compact revision.
    left = sum(ops for rev, (_, ops) in enumerate(txns, 1) if rev > expected)
    kept = await take(store.watch("", expected), left)
    assert kept[0].revision == expected + 1
    assert left >= min_events
    await store.close()


async def test_history_loaded_at_start_ages_from_the_start(tmp_path):
    clock = FakeClock(1000)  # a monotonic clock restarts with the process: old times mean nothing
    store = await opened(tmp_path / "store.db", history_seconds=10, history_min_events=0,
                         clock=clock)
    for i in range(3):
        await store.create(f"/k/{i}", b"")
    await store.close()
    clock.now = 0
    store = await opened(tmp_path / "store.db", history_seconds=10, history_min_events=0,
                         clock=clock)
    clock.now = 9
    assert await store.compact_expired() == 0
    clock.now = 10
    assert await store.compact_expired() == 3
    await store.close()


# --- concurrency and durability -------------------------------------------------------------

async def test_group_commit_with_16_concurrent_clients(store):
    clients, per_client = 16, 40
    await store.create("/counter", b"0")
    watcher = store.watch("", 0)

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
    assert revision == 1 + 2 * total  # every successful txn exactly one revision, no gaps
    assert len({kv.mod_revision for kv in kvs}) == total
    events = await take(watcher, revision)
    assert [e.revision for e in events] == list(range(1, revision + 1))
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
    # (description, url, expected path relative to data_dir, or the error and its message)
    ("the default", "", "data/store.db", None, None),
    ("sqlite without a path", "sqlite", "data/store.db", None, None),
    ("an absolute sqlite path", "sqlite://{tmp}/elsewhere/x.db", "elsewhere/x.db", None, None),
    ("a relative sqlite path", "sqlite://x.db", None, StoreError, "absolute path"),
    ("etcd", "etcd://127.0.0.1:2379", None, BackendNotImplemented, "later issue"),
    ("an unknown scheme", "mysql://db", None, StoreError, "unsupported scheme"),
]


@pytest.mark.parametrize("url, path, error, message", [c[1:] for c in OPEN_STORE],
                         ids=[c[0] for c in OPEN_STORE])
async def test_open_store(tmp_path, url, path, error, message):
    url = url.format(tmp=tmp_path)
    data_dir = str(tmp_path / "data")
    if error is not None:
        with pytest.raises(error, match=message):
            open_store(url, data_dir)
        return
    store = open_store(url, data_dir, history_seconds=60)
    assert isinstance(store, SQLiteStore) and store.path == str(tmp_path / path)
    await store.start()  # creates the missing directory
    await store.create("/a", b"")
    await store.close()
    assert os.path.exists(tmp_path / path)


def test_etcd_not_implemented_is_both_kinds_of_error():
    with pytest.raises(NotImplementedError):
        open_store("etcd://127.0.0.1:2379", "/nonexistent")
