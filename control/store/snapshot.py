"""Backups of the whole store: a versioned JSON-lines snapshot, its validation and restore.

Theory of operation
-------------------
A snapshot is the store's state at ONE revision: one `list("")` (SQLite answers it from one
committed state, etcd from one header revision), written as JSON lines:

    {"kind": "MeshnetStoreSnapshot", "version": 1, "revision": 1234, "compactRevision": 900,
     "keys": 2, "createdAt": "2026-11-26T10:00:00Z"}
    {"key": "/registry/namespaces/default", "createRevision": 5, "modRevision": 5,
     "value": "{\"apiVersion\":\"v1\",...}"}
    {"key": "/registry/ranges/serviceips/10.96.0.1", ..., "value": "..."}
    {"kind": "MeshnetStoreSnapshotEnd", "keys": 2, "sha256": "<hex of the record lines>"}

Records are in key order, one per key; a value that is not UTF-8 is carried as
"valueBase64" instead of "value". Revisions in records are the source store's (for reading
the file); a restore does not keep them. The end line makes a truncated file detectable and
its sha256 (over the record lines' bytes, newlines included) a damaged or edited one.

Restore (`parse_snapshot` then `restore_snapshot`) validates the WHOLE file before the
store is touched; an error names the file, the line and what is wrong. The store must be
empty (`Store.restore` refuses otherwise). Every key then gets a new revision above
`revision + bump_revision`, and everything below counts as compacted: a client holding a
resourceVersion of the lost store, or of writes made after the backup was taken (up to
bump_revision of them), gets 410 Gone and relists, never a resumed watch into different
history. The default bump is the one etcd's disaster-recovery guide passes to
`etcdutl snapshot restore --bump-revision` (with --mark-compacted) for Kubernetes.

Range keys (allocated ClusterIPs and NodePorts, /registry/ranges/...) are store keys like any
other, so allocations come back exactly as they were.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .base import KeyValue, Store, StoreError

SNAPSHOT_KIND = "MeshnetStoreSnapshot"
END_KIND = "MeshnetStoreSnapshotEnd"
SNAPSHOT_VERSION = 1
# As etcd's disaster-recovery guide: `etcdutl snapshot restore --bump-revision 1000000000
# --mark-compacted` for Kubernetes: more revisions than any cluster writes between a backup
# and the disaster.
DEFAULT_BUMP_REVISION = 1_000_000_000
# Values under this prefix are API objects (or range owners): JSON objects, checked on restore.
REGISTRY_PREFIX = "/registry/"


class SnapshotError(StoreError):
    """A snapshot file that cannot be restored: where (file:line) and what."""

    def __init__(self, source: str, line: int | None, message: str):
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line or None  # None: the file as a whole


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int  # the source store's revision the snapshot was taken at
    compact_revision: int
    created_at: str
    items: list[KeyValue]  # in key order; revisions as in the source store

    def __repr__(self) -> str:
        return f"<Snapshot rev={self.revision} keys={len(self.items)} at {self.created_at}>"


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _record(kv: KeyValue) -> dict:
    record: dict = {"key": kv.key, "createRevision": kv.create_revision,
                    "modRevision": kv.mod_revision}
    try:
        record["value"] = kv.value.decode("utf-8")
    except UnicodeDecodeError:
        record["valueBase64"] = base64.b64encode(kv.value).decode("ascii")
    return record


def encode_snapshot(kvs: list[KeyValue], revision: int, compact_revision: int, *,
                    clock: Callable[[], float] = time.time) -> Iterator[bytes]:
    """The snapshot's lines (pure: kvs and revision come from one `store.list("")`)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))
    yield _line({"kind": SNAPSHOT_KIND, "version": SNAPSHOT_VERSION, "revision": revision,
                 "compactRevision": compact_revision, "keys": len(kvs), "createdAt": created})
    digest = hashlib.sha256()
    for kv in kvs:
        line = _line(_record(kv))
        digest.update(line)
        yield line
    yield _line({"kind": END_KIND, "keys": len(kvs), "sha256": digest.hexdigest()})


async def take_snapshot(store: Store) -> tuple[list[KeyValue], int, int]:
    """(kvs, revision, compact_revision) of the whole store at one revision."""
    kvs, revision = await store.list("")
    return kvs, revision, store.compact_revision


# --- reading -----------------------------------------------------------------------------------

def _int_field(obj: dict, name: str, fail: Callable[[str], SnapshotError],
               minimum: int = 0) -> int:
    value = obj.get(name)
    if type(value) is not int or value < minimum:
        raise fail(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _json_object(raw: bytes, what: str, fail: Callable[[str], SnapshotError]) -> dict:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise fail(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise fail(f"{what} is not a JSON object")
    return obj


def _parse_header(raw: bytes, fail: Callable[[str], SnapshotError]) -> dict:
    header = _json_object(raw, "the first line", fail)
    if header.get("kind") != SNAPSHOT_KIND:
        raise fail(f"not a meshnet store snapshot: the first line's kind is "
                   f"{header.get('kind')!r}, expected {SNAPSHOT_KIND!r} (a file written by "
                   "`meshctl backup`)")
    version = header.get("version")
    if version != SNAPSHOT_VERSION:
        newer = type(version) is int and version > SNAPSHOT_VERSION
        raise fail(f"snapshot format version {version!r} "
                   + (f"is newer than this meshnet reads ({SNAPSHOT_VERSION}); restore it with "
                      "the meshnet that wrote it" if newer else
                      f"is unknown; this meshnet reads version {SNAPSHOT_VERSION}"))
    for name in ("revision", "compactRevision", "keys"):
        _int_field(header, name, fail)
    return header


def _parse_record(record: dict, revision: int,
                  fail: Callable[[str], SnapshotError]) -> KeyValue:
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise fail(f"the record's key must be a non-empty string, got {key!r}")
    create = _int_field(record, "createRevision", lambda m: fail(f"{key}: {m}"), 1)
    mod = _int_field(record, "modRevision", lambda m: fail(f"{key}: {m}"), create)
    if mod > revision:
        raise fail(f"{key}: modRevision {mod} is after the snapshot's revision {revision}: "
                   "records from different snapshots were mixed")
    if ("value" in record) == ("valueBase64" in record):
        raise fail(f"{key}: needs exactly one of value and valueBase64")
    if "value" in record:
        try:
            value = record["value"].encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise fail(f"{key}: value must be a string of Unicode text") from None
    else:
        try:
            value = base64.b64decode(record["valueBase64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise fail(f"{key}: valueBase64 is not base64 ({exc})") from None
    if key.startswith(REGISTRY_PREFIX):
        _json_object(value, f"the value of {key}", fail)
    return KeyValue(key, value, create, mod)


def parse_snapshot(lines: Iterable[bytes], source: str = "<snapshot>") -> Snapshot:
    """Validate a whole snapshot (pure); raises SnapshotError naming source:line and what."""
    number = 0

    def fail(message: str, line: int | None = None) -> SnapshotError:
        return SnapshotError(source, number if line is None else line, message)

    header: dict | None = None
    items: list[KeyValue] = []
    end: dict | None = None
    digest = hashlib.sha256()
    for number, raw in enumerate(lines, 1):
        if not raw.endswith(b"\n"):
            raise fail("the line is cut off (no end of line): the file is truncated (an "
                       "interrupted backup or copy?)")
        if not raw.strip():
            raise fail("empty line (a snapshot has none)")
        if header is None:
            header = _parse_header(raw, fail)
            continue
        if end is not None:
            raise fail(f"a line after the {END_KIND} line: the file was appended to")
        obj = _json_object(raw, "the line", fail)
        if "kind" in obj:
            if obj["kind"] != END_KIND:
                raise fail(f"unexpected kind {obj['kind']!r}: only the first line and the "
                           f"last ({END_KIND!r}) have one")
            end = obj
            continue
        kv = _parse_record(obj, header["revision"], fail)
        if items and kv.key <= items[-1].key:
            raise fail(f"key {kv.key!r} is not after the previous line's {items[-1].key!r}: "
                       "records must be in key order, each key once")
        digest.update(raw)
        items.append(kv)
    if header is None:
        raise fail("the file is empty: not a meshnet store snapshot", line=0)
    if end is None:
        raise fail(f"the file ends after {len(items)} of {header['keys']} records without "
                   f"its {END_KIND} line: it is truncated (an interrupted backup or copy?)")
    if end.get("keys") != len(items) or header["keys"] != len(items):
        raise fail(f"the file holds {len(items)} records, its first and last lines say "
                   f"{header['keys']} and {end.get('keys')!r}")
    if end.get("sha256") != digest.hexdigest():
        raise fail("the records do not match the sha256 of the last line: the file was "
                   "damaged or edited after the backup")
    return Snapshot(header["revision"], header["compactRevision"], str(header.get("createdAt")),
                    items)


def read_snapshot(path: str) -> Snapshot:
    """parse_snapshot of a file; a file that cannot be read is a SnapshotError too."""
    try:
        with open(path, "rb") as f:
            return parse_snapshot(f, path)
    except OSError as exc:
        raise SnapshotError(path, None, f"cannot read it: {exc.strerror or exc}") from None


async def restore_snapshot(store: Store, snapshot: Snapshot,
                           bump_revision: int = DEFAULT_BUMP_REVISION) -> int:
    """Fill the empty store with the snapshot's keys above revision + bump_revision; returns
    the store's revision afterwards (every older resourceVersion now gets 410)."""
    if bump_revision < 0:
        raise ValueError(f"bump_revision must be >= 0, got {bump_revision}")
    items = [(kv.key, kv.value) for kv in snapshot.items]
    return await store.restore(items, snapshot.revision + bump_revision)
