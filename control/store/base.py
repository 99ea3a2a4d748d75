"""The storage interface: etcd semantics, whatever is underneath.

Theory of operation
-------------------
The store is a flat, ordered key space of bytes with one global, strictly increasing
revision (etcd's model). Every successful write (a whole `txn`) gets the next revision;
each key remembers the revision that created it and the one that last modified it.
The API server maps `mod_revision` to `metadata.resourceVersion`.

- Reads (`get`, `list`) answer from the latest committed state and report the revision
  they saw, so a list followed by `watch(prefix, that_revision)` misses nothing.
- Writes are compare-and-swap: `create` fails if the key exists, `update`/`delete` with
  `expected_mod_revision` fail if the key changed. A write is acknowledged only once it is
  durable (for SQLite: committed with fsync; concurrent writers are group-committed).
- `watch(prefix, since)` yields every event with revision > `since`, in order, then live
  events. If `since` is older than the compacted revision it raises `Compacted` (the API
  server's 410 Gone). History is kept long enough for clients reconnecting within minutes.
- `restore(items, above)` fills an EMPTY store from a backup (`snapshot.py`): every key lands
  at a revision above `above` (the backup's revision plus a bump), and everything up to the
  last restored revision counts as compacted, so a client still holding a resourceVersion of
  the lost store gets 410 and relists instead of resuming into different history
  (etcdutl snapshot restore's --bump-revision and --mark-compacted).

Backends: `sqlite.SQLiteStore` (embedded default) and `etcd.EtcdStore`, same tests.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, `kv` is the deleted value and `revision` the deletion's."""

    type: str  # "PUT" | "DELETE"
    kv: KeyValue
    prev: KeyValue | None
    revision: int

    @property
    def created(self) -> bool:
        return self.type == "PUT" and self.prev is None


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction.

    kind: "create" (fails if present), "update" (fails if absent, or if
    expected_mod_revision is set and differs), "delete" (same preconditions as update).
    """

    kind: str
    key: str
    value: bytes = b""
    expected_mod_revision: int | None = None


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key {key!r} not found")
        self.key = key


class RevisionMismatch(StoreError):
    def __init__(self, key: str, expected: int, actual: int):
        super().__init__(f"key {key!r} is at revision {actual}, expected {expected}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    def __init__(self, requested: int, compact_revision: int):
        super().__init__(f"required revision {requested} has been compacted "
                         f"(oldest available is {compact_revision + 1})")
        self.requested = requested
        self.compact_revision = compact_revision


class StoreNotEmpty(StoreError):
    """A restore found keys (or an earlier restore) in the store it was to fill."""


class WatchClosed(StoreError):
    """The watcher fell too far behind (or the store closed) and was cut off."""


class Watcher(abc.ABC):
    """An ordered stream of events for one prefix. Iterate it; `close()` when done."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @abc.abstractmethod
    async def __anext__(self) -> Event: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class Store(abc.ABC):
    @property
    @abc.abstractmethod
    def revision(self) -> int:
        """The latest committed revision (0 for an empty, new store)."""

    @property
    @abc.abstractmethod
    def compact_revision(self) -> int:
        """Events at or below this revision are gone from history."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under prefix in key order, and the revision of that view."""

    @abc.abstractmethod
    async def count(self, prefix: str) -> int: ...

    @abc.abstractmethod
    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        """All ops or none, at one new revision. Returns per op the new value (create/update)
        or the deleted value (delete). Raises KeyExists / KeyNotFound / RevisionMismatch."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        return (await self.txn([Op("create", key, value)]))[0]

    async def update(self, key: str, value: bytes,
                     expected_mod_revision: int | None = None) -> KeyValue:
        return (await self.txn([Op("update", key, value, expected_mod_revision)]))[0]

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        return (await self.txn([Op("delete", key, b"", expected_mod_revision)]))[0]

    @abc.abstractmethod
    def watch(self, prefix: str, since_revision: int) -> Watcher:
        """Events under prefix with revision > since_revision. Raises Compacted."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Drop history at or below revision (never the current state)."""

    @abc.abstractmethod
    async def restore(self, items: list[tuple[str, bytes]], above_revision: int) -> int:
        """Fill this empty store with items (key, value; distinct keys) at revisions above
        above_revision, and mark every revision up to the last one written compacted.
        Returns the store's revision afterwards. Raises StoreNotEmpty if the store holds any
        key. A failed restore leaves nothing a store would open on: SQLite writes it as one
        transaction; etcd deletes what it wrote again (and a prefix where that failed too
        stays marked as an unfinished restore, which no store opens)."""
