"""The registry: API objects on top of the store.

Theory of operation
-------------------
The HTTP layer and the in-process controllers both go through this one class; nothing else
touches the store's object keys. It owns the object lifecycle rules of kube-apiserver:

- create: default, validate, stamp `uid`, `creationTimestamp`, `generation` (1), refuse names
  that exist (409) and namespaces that do not exist or are terminating; run admission hooks,
  whose extra store ops (e.g. an allocated ClusterIP's range key) commit in the same txn.
- update: optimistic concurrency on `metadata.resourceVersion` (409 Conflict when stale, or
  unconditional when empty); `generation` bumps when `spec` changes; the `status` subresource
  changes only status, the main resource never changes status (for kinds with a status
  subresource); immutable fields stay put.
- delete: objects with finalizers get `deletionTimestamp` and stay until the last finalizer
  is removed by an update; others go at once.
- `resourceVersion` is the store's mod_revision as a decimal string; lists report the store
  revision they saw, so list-then-watch misses nothing.

Decoded objects are cached per key and mod_revision so that lists and watches do not parse
the same JSON twice. Objects returned are shared: callers must not mutate them (copy first).
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from meshnet.api import errors
from meshnet.api.fields import FieldSelectorError, parse_field_selector
from meshnet.api.labels import SelectorError, parse_selector
from meshnet.api.validation import (default_object, ensure_namespace, prepare_for_update,
                                    validate_object)
from meshnet.api.resources import ResourceInfo, lookup
from meshnet.control.store.base import (
    Compacted, Event, KeyExists, KeyNotFound, KeyValue, Op, RevisionMismatch, Store, WatchClosed,
)

AdmissionHook = Callable[[str, "dict | None", "dict | None"], Awaitable[list[Op]]]

NAMESPACES = lookup("namespaces")
# How often a write retries when an admission hook's range key was taken concurrently, or an
# unconditional update raced another writer. Each retry re-reads state, so a handful is plenty.
MAX_WRITE_RETRIES = 16
DELETED_CACHE_SIZE = 1024  # deletions whose shared object watchers may still ask for
# kube-apiserver: metadata.generateName gets 5 random characters from this alphabet.
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_NO_STATUS_RESET = {"Node"}  # kinds whose status a create may carry (kubelet registers with it)


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def _encode(obj: dict) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _parse_rv(rv: str, what: str = "resourceVersion") -> int:
    try:
        value = int(rv)
        if value < 0:
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise errors.bad_request(f'invalid {what} "{rv}": must be a non-negative integer') \
            from None


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    object: dict
    revision: int


class Registry:
    """Object-level operations on the store; see the module docstring."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._admission: dict[str, list[AdmissionHook]] = {}
        self._cache: dict[str, tuple[int, dict]] = {}
        self._deleted: OrderedDict[str, tuple[int, dict]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<Registry rev={self.store.revision} cached={len(self._cache)}>"

    # -- hooks ---------------------------------------------------------------------------------

    def add_admission(self, kind: str, hook: AdmissionHook) -> None:
        self._admission.setdefault(kind, []).append(hook)

    async def _admit(self, kind: str, op: str, obj: dict | None, old: dict | None) -> list[Op]:
        ops: list[Op] = []
        for hook in self._admission.get(kind, ()):
            ops.extend(await hook(op, obj, old) or ())
        return ops

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, kv: KeyValue) -> dict:
        """The object stored at kv, with its resourceVersion; shared, do not mutate."""
        hit = self._cache.get(kv.key)
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]
        obj = json.loads(kv.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        self._cache[kv.key] = (kv.mod_revision, obj)
        return obj

    def _decode_at(self, kv: KeyValue, revision: int) -> dict:
        """The deleted object at kv with the deletion's resourceVersion; one shared copy for
        every watcher of the deletion."""
        hit = self._deleted.get(kv.key)
        if hit is not None and hit[0] == revision:
            return hit[1]
        obj = copy.copy(self.decode(kv))
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(revision)}
        self._deleted[kv.key] = (revision, obj)
        if len(self._deleted) > DELETED_CACHE_SIZE:
            self._deleted.popitem(last=False)
        return obj

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        kv = await self.store.get(info.key(namespace, name))
        if kv is None:
            raise errors.not_found(info.plural, name, info.group)
        return self.decode(kv)

    async def list(self, info: ResourceInfo, namespace: str | None = None, *,
                   label_selector: str = "", field_selector: str = "") -> tuple[list[dict], str]:
        match = _matcher(info, label_selector, field_selector)
        kvs, rev = await self.store.list(info.key_prefix(namespace if info.namespaced else None))
        items = [obj for obj in map(self.decode, kvs) if match(obj)]
        return items, str(rev)

    # -- create --------------------------------------------------------------------------------

    def _prepare_meta(self, info: ResourceInfo, namespace: str | None, obj: dict) -> dict:
        if not isinstance(obj, dict):
            raise errors.bad_request("the request body must be a JSON or YAML object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if api_version and api_version != info.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not "
                                     f"match the expected API version ({info.api_version})")
        if kind and kind != info.kind:
            raise errors.bad_request(f'the kind in the data ("{kind}") does not match the '
                                     f'resource "{info.qualified}" (kind "{info.kind}")')
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind
        if not isinstance(obj.setdefault("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        ensure_namespace(info, obj, namespace)
        meta = obj["metadata"]
        if info.namespaced and not meta.get("namespace"):
            meta["namespace"] = "default"
        return meta

    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict, *,
                     dry_run: bool = False) -> dict:
        obj = copy.deepcopy(obj)
        meta = self._prepare_meta(info, namespace, obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        if "status" in info.subresources and info.kind not in _NO_STATUS_RESET:
            obj.pop("status", None)
        default_object(info, obj)
        causes = validate_object(info, obj, None)
        if causes:
            raise errors.invalid(info.kind, meta.get("name", ""), causes, info.group)
        if info.namespaced:
            await self._check_namespace(meta["namespace"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self.clock)
        if "spec" in obj or info.group == "apps":
            meta["generation"] = 1
        key = info.key(meta.get("namespace"), meta["name"])
        for _ in range(MAX_WRITE_RETRIES):
            candidate = copy.deepcopy(obj)
            extra = await self._admit(info.kind, "create", candidate, None)
            if dry_run:
                return candidate
            try:
                kvs = await self.store.txn([Op("create", key, _encode(candidate)), *extra])
            except KeyExists as exc:
                if exc.key == key:
                    raise errors.already_exists(info.plural, meta["name"], info.group) from None
                continue  # an allocated range key was taken concurrently: admit again
            return self.decode(kvs[0])
        raise errors.internal(f"could not create {info.qualified} {meta['name']!r}: allocation "
                              f"kept colliding after {MAX_WRITE_RETRIES} tries")

    async def _check_namespace(self, namespace: str) -> None:
        kv = await self.store.get(NAMESPACES.key(None, namespace))
        if kv is None:
            raise errors.not_found("namespaces", namespace)
        ns = self.decode(kv)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(f"unable to create new content in namespace {namespace} "
                                   f"because it is being terminated")

    # -- update --------------------------------------------------------------------------------

    async def update(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict, *,
                     subresource: str | None = None, dry_run: bool = False) -> dict:
        key = info.key(namespace, name)
        for _ in range(MAX_WRITE_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(info.plural, name, info.group)
            old = self.decode(kv)
            new = copy.deepcopy(obj)
            meta = self._prepare_meta(info, namespace, new)
            if meta.get("name", name) != name:
                raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not "
                                         f"match the name on the URL ({name})")
            meta["name"] = name
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and _parse_rv(wanted_rv) != kv.mod_revision:
                raise errors.stale_version(info.plural, name, info.group)
            new = self._merge_update(info, old, new, subresource)
            default_object(info, new)
            prepare_for_update(info, new, old)
            causes = validate_object(info, new, old)
            if causes:
                raise errors.invalid(info.kind, name, causes, info.group)
            if _encode(new) == _encode(old):
                return old  # no-op updates do not bump the resourceVersion (kube does the same)
            new_meta = new["metadata"]
            if new_meta.get("deletionTimestamp") and not _finalizers(new):
                try:
                    return await self._delete_now(info, key, kv, old, dry_run)
                except (RevisionMismatch, KeyNotFound, KeyExists):
                    continue
            extra = await self._admit(info.kind, "update", new, old)
            if dry_run:
                new["metadata"]["resourceVersion"] = str(kv.mod_revision)
                return new
            try:
                kvs = await self.store.txn(
                    [Op("update", key, _encode(new), kv.mod_revision), *extra])
            except RevisionMismatch as exc:
                if exc.key == key and wanted_rv:
                    raise errors.stale_version(info.plural, name, info.group) from None
                continue
            except (KeyExists, KeyNotFound) as exc:
                if exc.key == key:
                    raise errors.not_found(info.plural, name, info.group) from None
                continue
            return self.decode(kvs[0])
        raise errors.conflict(info.plural, name, "too many concurrent writers; try again",
                              info.group)

    def _merge_update(self, info: ResourceInfo, old: dict, new: dict,
                      subresource: str | None) -> dict:
        """Carry over what a client may not change through this endpoint."""
        old_meta, new_meta = old["metadata"], new["metadata"]
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            merged["metadata"].pop("resourceVersion", None)
            return merged
        if "status" in info.subresources and info.kind not in _NO_STATUS_RESET:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "namespace",
                      "deletionGracePeriodSeconds"):
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        new_meta.pop("resourceVersion", None)
        if "generation" in old_meta:
            changed = new.get("spec") != old.get("spec")
            new_meta["generation"] = old_meta["generation"] + (1 if changed else 0)
        return new

    async def guaranteed_update(self, info: ResourceInfo, namespace: str | None, name: str,
                                mutate: Callable[[dict], dict | None], *,
                                subresource: str | None = None) -> dict:
        """Read, mutate a copy, write with the read resourceVersion; retry on conflict."""
        for _ in range(MAX_WRITE_RETRIES):
            current = await self.get(info, namespace, name)
            new = mutate(copy.deepcopy(current))
            if new is None:
                return current
            try:
                return await self.update(info, namespace, name, new, subresource=subresource)
            except errors.StatusError as exc:
                if exc.reason != "Conflict":
                    raise
        raise errors.conflict(info.plural, name, "too many concurrent writers; try again",
                              info.group)

    # -- delete --------------------------------------------------------------------------------

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str, *,
                     precondition_uid: str | None = None, precondition_rv: str | None = None,
                     dry_run: bool = False) -> dict:
        key = info.key(namespace, name)
        for _ in range(MAX_WRITE_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(info.plural, name, info.group)
            old = self.decode(kv)
            meta = old["metadata"]
            if precondition_uid and precondition_uid != meta.get("uid"):
                raise errors.conflict(info.plural, name, f"Precondition failed: UID in "
                                      f"precondition: {precondition_uid}, UID in object meta: "
                                      f"{meta.get('uid')}", info.group)
            if precondition_rv and _parse_rv(precondition_rv) != kv.mod_revision:
                raise errors.conflict(info.plural, name, f"Precondition failed: "
                                      f"ResourceVersion in precondition: {precondition_rv}, "
                                      f"ResourceVersion in object meta: {kv.mod_revision}",
                                      info.group)
            if _finalizers(old):
                if meta.get("deletionTimestamp"):
                    return old
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339(self.clock)
                marked["metadata"].pop("resourceVersion", None)
                if info.kind == "Namespace":
                    marked.setdefault("status", {})["phase"] = "Terminating"
                if dry_run:
                    return marked
                try:
                    kvs = await self.store.txn(
                        [Op("update", key, _encode(marked), kv.mod_revision)])
                except (RevisionMismatch, KeyNotFound):
                    continue
                return self.decode(kvs[0])
            try:
                return await self._delete_now(info, key, kv, old, dry_run)
            except (RevisionMismatch, KeyNotFound):
                continue
        raise errors.conflict(info.plural, name, "too many concurrent writers; try again",
                              info.group)

    async def _delete_now(self, info: ResourceInfo, key: str, kv: KeyValue, old: dict,
                          dry_run: bool) -> dict:
        extra = await self._admit(info.kind, "delete", None, old)
        if dry_run:
            return old
        await self.store.txn([Op("delete", key, b"", kv.mod_revision), *extra])
        self._cache.pop(key, None)
        return old

    # -- watch ---------------------------------------------------------------------------------

    def watch(self, info: ResourceInfo, namespace: str | None = None, *, since: str = "",
              label_selector: str = "", field_selector: str = "") -> "RegistryWatch":
        """Events after resourceVersion `since`; "" or "0" first replays the current state as
        ADDED events (kube's "get state and start at most recent")."""
        match = _matcher(info, label_selector, field_selector)
        prefix = info.key_prefix(namespace if info.namespaced else None)
        replay = since in ("", "0", None)
        start = 0 if replay else _parse_rv(since)
        return RegistryWatch(self, prefix, start, replay, match)


class RegistryWatch:
    """Store events turned into Kubernetes watch events, filtered by selectors.

    With selectors, an object that stops matching yields DELETED and one that starts matching
    yields ADDED, as kube-apiserver's watch cache does.
    """

    def __init__(self, registry: Registry, prefix: str, since: int, replay: bool, match):
        self._registry = registry
        self._prefix = prefix
        self._since = since
        self._replay = replay
        self._match = match
        self._pending: deque[WatchEvent] = deque()
        self._watcher = None
        self.revision = since  # highest revision seen (delivered or filtered out)
        self._closed = False

    def __repr__(self) -> str:
        return f"<RegistryWatch {self._prefix} rev={self.revision}>"

    async def _open(self) -> None:
        registry = self._registry
        if self._replay:
            kvs, rev = await registry.store.list(self._prefix)
            self._pending.extend(WatchEvent("ADDED", o, rev)
                                 for o in map(registry.decode, kvs) if self._match(o))
            self._since = self.revision = rev
        try:
            self._watcher = registry.store.watch(self._prefix, self._since)
        except Compacted as exc:
            raise errors.gone(f"too old resource version: {exc.requested} "
                              f"({exc.compact_revision + 1})") from None

    def __aiter__(self):
        return self

    async def __anext__(self) -> WatchEvent:
        if self._watcher is None and not self._closed:
            await self._open()
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed or self._watcher is None:
                raise StopAsyncIteration
            try:
                event = await self._watcher.__anext__()
            except WatchClosed:
                raise errors.gone("watch closed: the client fell too far behind; "
                                  "list again and watch from the new resourceVersion") from None
            self.revision = event.revision
            converted = self._convert(event)
            if converted is not None:
                return converted

    def _convert(self, event: Event) -> WatchEvent | None:
        registry = self._registry
        rev = event.revision
        if event.type == "DELETE":
            old = registry._decode_at(event.kv, rev)
            registry._cache.pop(event.kv.key, None)
            return WatchEvent("DELETED", old, rev) if self._match(old) else None
        new = registry.decode(event.kv)
        if event.prev is None:
            return WatchEvent("ADDED", new, rev) if self._match(new) else None
        if self._match is _match_all:
            return WatchEvent("MODIFIED", new, rev)
        now_matches = self._match(new)
        was_matching = self._match(json.loads(event.prev.value))
        if now_matches and was_matching:
            return WatchEvent("MODIFIED", new, rev)
        if now_matches:
            return WatchEvent("ADDED", new, rev)
        if was_matching:
            return WatchEvent("DELETED", new, rev)
        return None

    def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()


def _finalizers(obj: dict) -> list:
    meta_finalizers = obj.get("metadata", {}).get("finalizers") or []
    if obj.get("kind") == "Namespace":
        return meta_finalizers + list((obj.get("spec") or {}).get("finalizers") or [])
    return meta_finalizers


def _match_all(obj: dict) -> bool:
    return True


def _matcher(info: ResourceInfo, label_selector: str, field_selector: str):
    """A predicate for list/watch filtering; bad selectors are a 400 with the parser's words."""
    if not label_selector and not field_selector:
        return _match_all
    try:
        labels = parse_selector(label_selector) if label_selector else None
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    try:
        fields = parse_field_selector(field_selector, info) if field_selector else None
    except FieldSelectorError as exc:
        raise errors.bad_request(str(exc)) from None

    def match(obj: dict) -> bool:
        if labels is not None and not labels.matches(obj.get("metadata", {}).get("labels") or {}):
            return False
        return fields is None or fields.matches(obj)

    return match
