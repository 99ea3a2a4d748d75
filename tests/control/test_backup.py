"""Store backups: the snapshot format and its validation (table-first, no store), and restores
between the backends (SQLite -> etcd, etcd -> SQLite, and each into itself) on real stores.

What a restore must give: the same keys and values (allocation range keys included), every
revision above the backup's plus the bump, everything before compacted (watching from an old
resourceVersion fails with Compacted, the API server's 410), the state kept across a reopen,
and nothing written when the store is not empty or the write fails.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json

import aiohttp
import pytest

from meshnet.control.store import (Compacted, EtcdStore, KeyValue, Op, SnapshotError,
                                   SQLiteStore, StoreError, StoreNotEmpty, encode_snapshot,
                                   parse_snapshot, restore_snapshot, take_snapshot)
from meshnet.control.store.etcd import RESTORE_TXN_OPS

from etcd_server import etcd_fixture

TIMEOUT_S = 10
BUMP = 1000
_prefixes = itertools.count()

SERVICE = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {
    "name": "web", "namespace": "default", "uid": "u-1"},
    "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80, "nodePort": 30080}]}}).encode()
OWNER = json.dumps({"kind": "Service", "namespace": "default", "name": "web",
                    "uid": "u-1"}).encode()


etcd = etcd_fixture()


class Backends:
    """Fresh stores of either kind: a new SQLite file or a new etcd prefix each time."""

    def __init__(self, tmp_path, etcd):
        self.tmp_path = tmp_path
        self.etcd = etcd
        self.opened: list = []
        self.names = itertools.count()

    async def open(self, kind: str, name: str | None = None):
        name = name or f"s{next(self.names)}"
        if kind == "sqlite":
            store = SQLiteStore(str(self.tmp_path / f"{name}.db"))
        else:
            store = EtcdStore(self.etcd.endpoints,
                              prefix=f"/backup-{next(_prefixes):04d}-{name}")
        await store.start()
        self.opened.append(store)
        return store

    async def reopen(self, store):
        await store.close()
        again = (SQLiteStore(store.path) if isinstance(store, SQLiteStore)
                 else EtcdStore(store.endpoints, prefix=store.prefix))
        await again.start()
        self.opened.append(again)
        return again

    async def close(self):
        for store in self.opened:
            await store.close()


@pytest.fixture
async def backends(tmp_path, etcd):
    b = Backends(tmp_path, etcd)
    yield b
    await b.close()


async def fill(store) -> None:
    """A little of everything a cluster stores: objects, range keys, history, odd values."""
    await store.create("/registry/namespaces/default", b'{"kind":"Namespace"}')
    await store.txn([Op("create", "/registry/services/specs/default/web", SERVICE),
                     Op("create", "/registry/ranges/serviceips/10.96.0.20", OWNER),
                     Op("create", "/registry/ranges/servicenodeports/30080", OWNER)])
    await store.create("/registry/configmaps/default/gone", b"{}")
    await store.delete("/registry/configmaps/default/gone")
    await store.update("/registry/namespaces/default", b'{"kind":"Namespace","v":2}')
    await store.create("/registry/configmaps/default/ünïcode", '{"k":"☃"}'.encode())
    await store.create("/other/binary", b"\xff\x00\xfe")  # not UTF-8: travels as base64


def snapshot_bytes(kvs, revision, compact) -> bytes:
    return b"".join(encode_snapshot(kvs, revision, compact, clock=lambda: 0))


# --- the format, table-first ------------------------------------------------------------------

GOOD = [KeyValue("/other/binary", b"\xff\x00", 2, 2),
        KeyValue("/registry/a", b'{"a":1}', 1, 3),
        KeyValue("/registry/b", b'{"b":"\xe2\x98\x83"}', 4, 4)]


def good_lines() -> list[bytes]:
    return list(encode_snapshot(GOOD, 5, 0, clock=lambda: 0))


def _edit(lines, number, **changes):
    obj = json.loads(lines[number - 1])
    for name, value in changes.items():
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
    lines[number - 1] = json.dumps(obj).encode() + b"\n"
    return lines


BROKEN = [
    # (description, edit of the good file's lines, line reported (0: the file), message)
    ("an empty file", lambda ls: [], 0, "the file is empty"),
    ("not JSON", lambda ls: [b"hello\n"], 1, "the first line is not valid JSON"),
    ("another kind of file", lambda ls: _edit(ls, 1, kind="Pod"), 1,
     "not a meshnet store snapshot"),
    ("a newer format", lambda ls: _edit(ls, 1, version=2), 1,
     "version 2 is newer than this meshnet reads (1)"),
    ("a header without revision", lambda ls: _edit(ls, 1, revision=None), 1,
     "revision must be an integer >= 0, got None"),
    ("cut off inside a record", lambda ls: ls[:3] + [ls[3][:20]], 4,
     "the line is cut off (no end of line): the file is truncated"),
    ("cut off between lines", lambda ls: ls[:4], 4,
     "ends after 3 of 3 records without its MeshnetStoreSnapshotEnd line"),
    ("a record edited", lambda ls: _edit(ls, 3, value='{"a":2}'), 5,
     "do not match the sha256 of the last line"),
    ("records out of order", lambda ls: [ls[0], ls[1], ls[3], ls[2], ls[4]], 4,
     "key '/registry/a' is not after the previous line's '/registry/b'"),
    ("a key twice", lambda ls: ls[:3] + ls[2:], 4, "each key once"),
    ("both value forms", lambda ls: _edit(ls, 3, valueBase64="AA=="), 3,
     "/registry/a: needs exactly one of value and valueBase64"),
    ("bad base64", lambda ls: _edit(ls, 2, valueBase64="%%%"), 2,
     "/other/binary: valueBase64 is not base64"),
    ("an object that is not JSON", lambda ls: _edit(ls, 3, value="{oops"), 3,
     "the value of /registry/a is not valid JSON"),
    ("a record newer than the snapshot", lambda ls: _edit(ls, 4, modRevision=9), 4,
     "modRevision 9 is after the snapshot's revision 5"),
    ("a negative revision", lambda ls: _edit(ls, 4, createRevision=-1), 4,
     "/registry/b: createRevision must be an integer >= 1"),
    ("a record without key", lambda ls: _edit(ls, 2, key=None), 2,
     "key must be a non-empty string"),
    ("counts that disagree", lambda ls: _edit(ls, 5, keys=4), 5,
     "holds 3 records, its first and last lines say 3 and 4"),
    ("a line after the end", lambda ls: ls + [ls[1]], 6,
     "a line after the MeshnetStoreSnapshotEnd line"),
    ("an empty line", lambda ls: ls[:2] + [b"\n"] + ls[2:], 3, "empty line"),
    ("a second header", lambda ls: ls[:2] + [ls[0]] + ls[2:], 3,
     "unexpected kind 'MeshnetStoreSnapshot'"),
]


@pytest.mark.parametrize("edit, line, message", [c[1:] for c in BROKEN],
                         ids=[c[0] for c in BROKEN])
def test_a_broken_snapshot_says_where_and_what(edit, line, message):
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(edit(good_lines()), "backup.snap")
    where = f"backup.snap:{line}: " if line else "backup.snap: "
    assert str(info.value).startswith(where), str(info.value)
    assert message in str(info.value)
    assert info.value.line == (line or None)


def test_a_snapshot_round_trips_exactly():
    lines = good_lines()
    assert json.loads(lines[0]) == {"kind": "MeshnetStoreSnapshot", "version": 1,
                                    "revision": 5, "compactRevision": 0, "keys": 3,
                                    "createdAt": "1970-01-01T00:00:00Z"}
    assert json.loads(lines[1])["valueBase64"] == base64.b64encode(b"\xff\x00").decode()
    assert json.loads(lines[3])["value"] == '{"b":"☃"}'  # text stays readable
    snapshot = parse_snapshot(lines)
    assert (snapshot.revision, snapshot.compact_revision, snapshot.items) == (5, 0, GOOD)


# --- restore between backends -------------------------------------------------------------------

PAIRS = [("sqlite", "etcd"), ("etcd", "sqlite"), ("sqlite", "sqlite"), ("etcd", "etcd")]


@pytest.mark.parametrize("source, target", PAIRS, ids=[f"{s}-to-{t}" for s, t in PAIRS])
async def test_restore_into_a_fresh_store(backends, source, target):
    src = await backends.open(source)
    first = src.revision
    await fill(src)
    await src.compact(src.revision - 2)  # the source's own compaction does not matter
    kvs, revision, compact = await take_snapshot(src)
    snapshot = parse_snapshot(snapshot_bytes(kvs, revision, compact).splitlines(keepends=True))

    dst = await backends.open(target)
    restored = await restore_snapshot(dst, snapshot, BUMP)
    got, listed_at = await dst.list("")
    assert [(kv.key, kv.value) for kv in got] == [(kv.key, kv.value) for kv in kvs]
    assert listed_at == restored == dst.revision == dst.compact_revision
    assert all(revision + BUMP < kv.create_revision == kv.mod_revision <= restored
               for kv in got)
    # Any resourceVersion the lost store (or writes after the backup) handed out: 410.
    for old in (first, revision, revision + BUMP, restored - 1):
        with pytest.raises(Compacted):
            dst.watch("", old)
    watcher = dst.watch("/registry/", restored)
    made = await dst.create("/registry/configmaps/default/after", b"{}")
    assert made.mod_revision == restored + 1
    assert (await asyncio.wait_for(anext(watcher), TIMEOUT_S)).kv == made
    watcher.close()

    dst = await backends.reopen(dst)  # what the API servers started afterwards see
    assert (dst.revision, dst.compact_revision) == (restored + 1, restored)
    assert [(kv.key, kv.value) for kv in (await dst.list(""))[0]] == sorted(
        [(kv.key, kv.value) for kv in kvs] + [(made.key, b"{}")])
    with pytest.raises(Compacted):
        dst.watch("", revision)
    assert (await dst.update(made.key, b'{"x":1}')).mod_revision == restored + 2


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
async def test_restore_refuses_a_store_that_is_not_empty(backends, kind):
    store = await backends.open(kind)
    await store.create("/registry/namespaces/default", b"{}")
    before = await store.list("")
    snapshot = parse_snapshot(list(encode_snapshot(GOOD, 5, 0)))
    with pytest.raises(StoreNotEmpty, match="not empty"):
        await restore_snapshot(store, snapshot, BUMP)
    assert await store.list("") == before
    # Restored once, never again (etcd keeps the restore's record at the prefix).
    fresh = await backends.open(kind)
    await restore_snapshot(fresh, snapshot, BUMP)
    with pytest.raises(StoreNotEmpty):
        await restore_snapshot(fresh, snapshot, BUMP)


async def test_an_empty_snapshot_restores_to_an_empty_store_at_the_bumped_revision(backends):
    for kind in ("sqlite", "etcd"):
        store = await backends.open(kind)
        snapshot = parse_snapshot(list(encode_snapshot([], 7, 0)))
        restored = await restore_snapshot(store, snapshot, BUMP)
        assert restored > 7 + BUMP and await store.count("") == 0
        with pytest.raises(Compacted):
            store.watch("", 7)


async def _gateway(etcd, path: str, body: dict) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.post(etcd.endpoints[0] + path, json=body) as resp:
            return await resp.json()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_a_failed_etcd_restore_leaves_the_prefix_empty(backends, etcd):
    """The last txn is refused (a value over etcd's --max-request-bytes): the txns before it
    had committed, and are deleted again; the prefix can be restored afterwards."""
    store = await backends.open("etcd")
    items = [KeyValue(f"/registry/configmaps/default/c{i:04d}", b"{}", 1, 1)
             for i in range(RESTORE_TXN_OPS + 10)]
    too_big = KeyValue("/registry/zz/big", b'{"x":"' + b"x" * (2 << 20) + b'"}', 1, 1)
    snapshot = parse_snapshot(list(encode_snapshot(items + [too_big], 1, 0)))
    with pytest.raises(StoreError):
        await restore_snapshot(store, snapshot, BUMP)
    assert await store.count("") == 0
    listed = await _gateway(etcd, "/v3/kv/range", {
        "key": _b64(store.prefix), "range_end": _b64(store.prefix[:-1] + chr(
            ord(store.prefix[-1]) + 1)), "count_only": True})
    assert int(listed.get("count", 0)) == 0, "the restore's record was left behind"
    fine = parse_snapshot(list(encode_snapshot(items, 1, 0)))
    assert await restore_snapshot(store, fine, BUMP) > 1 + BUMP
    assert await store.count("") == len(items)


async def test_an_unfinished_etcd_restore_is_never_opened(etcd):
    """A restore that died between its txns (the process killed) leaves its record at
    "restoring": no store opens on that prefix."""
    prefix = f"/backup-{next(_prefixes):04d}-unfinished"
    record = {"kind": "MeshnetStoreMeta", "state": "restoring", "revisionOffset": 5000,
              "restoredAbove": 5000, "restoredKeys": 3}
    await _gateway(etcd, "/v3/kv/put", {"key": _b64(prefix), "value": _b64(json.dumps(record))})
    store = EtcdStore(etcd.endpoints, prefix=prefix)
    with pytest.raises(StoreError, match=f"holds a restore that did not finish.*etcdctl del "
                                         f"--prefix {prefix}"):
        await store.start()
