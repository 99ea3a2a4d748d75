"""A store on a real etcd cluster, spoken to through etcd's JSON gRPC gateway.

Theory of operation
-------------------
Every store key lives in etcd at `prefix + key` (UTF-8), so several meshnet clusters (or test
runs) can share one etcd as long as no prefix is a string prefix of another. Revisions ARE
etcd's header revisions: one txn is one etcd txn is one revision, `mod_revision` is the
resourceVersion, and any number of API servers on the same etcd agree on them (after a
restore: etcd's plus the prefix's offset, below). Nothing is cached: every read goes to etcd
(linearizable), and `revision` / `compact_revision` are the newest values seen in any response.
The gateway's wire details (URL, TLS, base64, ranges) are in `etcd_gateway`, the watch
streams in `etcd_watch`.

- txn: one etcd txn. Its compares are the ops' preconditions (create: create_revision == 0;
  update/delete: create_revision > 0, plus mod_revision == expected when given); its success
  branch the puts/deletes (with prev_kv, for the per-op results); its failure branch a range
  of every key, so the failing op is found from the same atomic snapshot the compares saw
  (`plan_txn`, shared with the SQLite writer, names the first failing op and its error).
- watch: one streaming `/v3/watch` request per watcher, start_revision = since + 1 and
  prev_kv on. A broken stream is resumed transparently on the next endpoint from the
  revision after the last event delivered. etcd's "compacted" cancel becomes
  `WatchCompacted` (a `Compacted` AND a `WatchClosed`, so the API server answers 410 either
  way); a consumer more than MAX_WATCH_BACKLOG events behind is cut off with WatchClosed.
- compaction: `/v3/kv/compaction`. etcd compaction is global: it drops history of every
  prefix. Auto-compaction ages revisions like SQLiteStore (coarse (revision, time) marks from
  every response seen, plus a refresh each interval) but counts `history_min_events` in
  revisions, not events: a revision holds at least one event, so at least that many events
  are kept, counted across the whole etcd keyspace.
- failover: requests go to the current endpoint; a connection failure moves to the next one.
  Reads and compactions are retried on any transport error; a txn only when the connection
  could not be made (after it was sent its outcome is unknown, and replaying a create could
  report KeyExists for our own write), else StoreError says the outcome is unknown. TLS
  (`etcds://`, kube-apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile) failures are
  configuration errors: reported at once, naming the flag to fix, never retried.
- restore: etcd's revision cannot be set, so a restored prefix gets a revision offset (store
  revision = etcd revision + offset) that puts every restored key above the backup's
  revision. It is kept in the store's own record, the etcd key exactly at the prefix (no
  store key maps there, and every range starts after it), read at start by every API server
  sharing the prefix; that record's revision is also the compaction floor (older
  resourceVersions get 410). A restore is written in bounded txns between a "restoring" and
  a "restored" state of the record; a store never opens on "restoring".

Why the JSON gateway over aiohttp and not a gRPC client (aetcd, etcd3): aiohttp is already a
dependency, the gateway ships in every etcd >= 3.3 on the client port, and the five calls
we use are plain JSON; a gRPC client would add grpcio (a large native wheel) and generated
protobuf stubs. The price: base64 keys/values and one HTTP connection per watch (gRPC would
multiplex watches on one stream) — TODO(multi-node issue, API server watch cache): share one
etcd watch per resource prefix among API watchers.

Do not: retry a sent txn; report a revision not read from an etcd header (plus the offset);
send a store revision to etcd without subtracting the offset; assume a fresh etcd is at
revision 0 (it starts at 1, so a new store's first write is revision 2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Callable

import aiohttp

from .ages import RevisionAges
from .base import Compacted, Event, KeyValue, Op, Store, StoreError, StoreNotEmpty, WatchClosed
from .etcd_gateway import (CONNECT_TIMEOUT_S, DEFAULT_PREFIX, GRPC_OUT_OF_RANGE, GRPC_UNAVAILABLE,
                           GatewayError, Retryable, b64, parse_etcd_url, range_end, tls_context,
                           tls_refusal, unb64)
from .etcd_watch import EtcdWatcher, WatchCompacted
from .sqlite import COMPACT_INTERVAL_S, _check_ops
from .sqlite_writer import plan_txn

__all__ = ["DEFAULT_PREFIX", "EtcdStore", "EtcdWatcher", "WatchCompacted", "parse_etcd_url",
           "tls_context"]

log = logging.getLogger(__name__)

# etcd's own request timeout is 5 s + 2 × election timeout; give it that and a bit.
REQUEST_TIMEOUT_S = 10.0
# How long a request (or a broken watch) keeps trying other endpoints before giving up:
# longer than an etcd leader election (default election timeout 1 s).
FAILOVER_TIMEOUT_S = 10.0
RETRY_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)
# A restore writes in txns of at most this many keys and bytes: etcd's defaults are
# --max-txn-ops 128 and --max-request-bytes 1.5 MiB (values travel base64'd, 4/3 larger).
RESTORE_TXN_OPS = 100
RESTORE_TXN_BYTES = 1 << 20
META_KIND = "MeshnetStoreMeta"


class EtcdStore(Store):
    def __init__(self, endpoints: list[str], *, prefix: str = DEFAULT_PREFIX,
                 history_seconds: float = 900, history_min_events: int = 50_000,
                 clock: Callable[[], float] = time.monotonic,
                 compaction_interval_s: float = COMPACT_INTERVAL_S,
                 ssl_context: ssl.SSLContext | None = None):
        if not endpoints:
            raise StoreError("etcd store: no endpoints given")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self._prefix_bytes = prefix.encode()
        self._ssl = ssl_context  # for https:// endpoints; None: the system's CAs
        # store revision = etcd revision + _offset: 0, unless a restore moved this prefix's
        # revisions above a backup's (read from the store's record at start).
        self._offset = 0
        self._current = 0  # index of the endpoint in use
        self._history_seconds = history_seconds
        self._history_min_events = history_min_events
        self._clock = clock
        self._compaction_interval_s = compaction_interval_s
        self._state = "new"
        self._session: aiohttp.ClientSession | None = None
        self._revision = 0
        self._compact_revision = 0
        self._ages = RevisionAges(clock)
        self._watchers: set[EtcdWatcher] = set()
        self._compactor: asyncio.Task | None = None

    def __repr__(self) -> str:
        return (f"<EtcdStore {self.endpoints[self._current]}{self.prefix} {self._state} "
                f"rev={self._revision} compacted={self._compact_revision} "
                f"watchers={self.watcher_count}>")

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise StoreError(f"etcd store {self.prefix!r} was already started")
        # No connection limit: every watcher holds one connection for its lifetime.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl or True),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S,
                                          sock_connect=CONNECT_TIMEOUT_S))
        self._state = "open"
        try:
            await self._load_meta()
            await self._refresh()
            await self._probe_compaction()
        except BaseException:
            await self.close()
            raise
        self._compactor = asyncio.get_running_loop().create_task(
            self._compact_periodically(), name=f"etcd compaction {self.prefix!r}")

    async def close(self) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closing"
        if self._compactor is not None:
            self._compactor.cancel()
            try:
                await self._compactor
            except asyncio.CancelledError:
                pass
        for watcher in list(self._watchers):
            watcher._cut(WatchClosed(f"etcd store {self.prefix!r} closed"))
        await self._session.close()
        self._state = "closed"

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"etcd store {self.prefix!r} is {self._state}, not open; "
                             "call start() first and do not use it after close()")

    # --- the gateway, with failover --------------------------------------------------------

    async def _with_failover(self, attempt: Callable, *, retry_sent: bool, what: str):
        """Run attempt(session, endpoint), moving to the next endpoint on transport errors."""
        loop = asyncio.get_running_loop()
        failing_since = None  # start of the current run of failures
        tries = 0
        while True:
            endpoint = self.endpoints[self._current]
            began = loop.time()
            try:
                return await attempt(self._session, endpoint)
            except Retryable as exc:
                if not retry_sent:
                    raise StoreError(f"etcd {endpoint}: {what} failed ({exc}); its outcome "
                                     "is unknown: read the keys to find out") from None
                reason = str(exc)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                refusal = tls_refusal(exc, endpoint)
                if refusal is not None:
                    raise refusal from None
                if isinstance(exc, aiohttp.ClientConnectorError):  # nothing was sent
                    reason = f"cannot connect: {exc.os_error or exc}"
                elif not retry_sent:
                    raise StoreError(f"etcd {endpoint}: {what} failed after it was sent "
                                     f"({exc!r}); its outcome is unknown: read the keys to "
                                     "find out") from None
                else:
                    reason = repr(exc)
            if self._state not in ("open",):
                raise StoreError(f"etcd store {self.prefix!r} closed during {what}")
            log.warning("etcd %s: %s failed (%s); trying the next endpoint", endpoint, what,
                        reason)
            if self.endpoints[self._current] == endpoint:
                self._current = (self._current + 1) % len(self.endpoints)
            now = loop.time()
            if failing_since is None or now - began >= FAILOVER_TIMEOUT_S:
                # The first failure, or an attempt that worked for a while (a watch stream
                # open for minutes) before failing: the failover budget starts now.
                failing_since, tries = now, 0
            tries += 1
            if now - failing_since >= FAILOVER_TIMEOUT_S:
                tls_hint = ("" if endpoint.startswith("https:") else
                            " (an etcd serving TLS drops plain connections: use etcds://)")
                raise StoreError(f"etcd {', '.join(self.endpoints)}: {what} failed on every "
                                 f"endpoint for {FAILOVER_TIMEOUT_S:.0f} s (last: {reason}); "
                                 f"is etcd running and reachable{tls_hint}?")
            if tries % len(self.endpoints) == 0:
                await asyncio.sleep(RETRY_BACKOFF_S[min(tries // len(self.endpoints) - 1,
                                                        len(RETRY_BACKOFF_S) - 1)])

    async def _call(self, path: str, body: dict, *, retry_sent: bool = True,
                    what: str = "", observe: bool = True) -> dict:
        async def attempt(session: aiohttp.ClientSession, endpoint: str) -> dict:
            async with session.post(endpoint + path, json=body) as resp:
                text = await resp.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                raise Retryable(f"HTTP {resp.status}: not JSON: {text[:200]!r}") from None
            if resp.status != 200:
                code, message = data.get("code", -1), data.get("message", text[:200])
                if code == GRPC_UNAVAILABLE:  # no leader, stopping: another member may serve
                    raise Retryable(message)
                raise GatewayError(endpoint, path, code, message)
            return data

        data = await self._call_checked(attempt, retry_sent, what or path)
        if observe:
            self._observe(data.get("header", {}).get("revision", 0))
        return data

    async def _call_checked(self, attempt, retry_sent, what) -> dict:
        self._check_open()
        return await self._with_failover(attempt, retry_sent=retry_sent, what=what)

    def _rev(self, etcd_revision: int | str) -> int:
        """The store revision of an etcd revision (0, "none", stays 0)."""
        revision = int(etcd_revision)
        return revision + self._offset if revision else 0

    def _observe(self, etcd_revision: int | str) -> None:
        revision = self._rev(etcd_revision)
        if revision > self._revision:
            self._revision = revision
            self._ages.mark(revision)

    def _observe_compaction(self, revision: int) -> None:
        """`revision` (a store revision) is known to be compacted."""
        self._compact_revision = max(self._compact_revision, revision)

    # --- keys and values -------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        try:
            return self._prefix_bytes + key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StoreError(f"key {key!r} cannot be stored in etcd: not valid UTF-8 "
                             f"({exc.reason})") from None

    def _kv(self, kv: dict) -> KeyValue:
        key = unb64(kv["key"])[len(self._prefix_bytes):].decode("utf-8")
        return KeyValue(key, unb64(kv.get("value")), self._rev(kv.get("create_revision", 0)),
                        self._rev(kv.get("mod_revision", 0)))

    def _event(self, event: dict) -> Event:
        prev = self._kv(event["prev_kv"]) if "prev_kv" in event else None
        revision = self._rev(event["kv"]["mod_revision"])
        if event.get("type") == "DELETE":
            # etcd's kv of a delete is just the key and the deletion's revision; the deleted
            # value is prev_kv (missing only if that history was compacted meanwhile).
            old = prev or KeyValue(self._kv(event["kv"]).key, b"", 0, 0)
            return Event("DELETE", old, old, revision)
        return Event("PUT", self._kv(event["kv"]), prev, revision)

    def _range_body(self, prefix: str, **extra: object) -> dict:
        key = self._key(prefix)
        if not prefix:
            # Store keys are non-empty, so every one sorts at or after prefix + "\0"; the key
            # exactly at the prefix is the store's record (`_load_meta`), not a store key.
            # (With no prefix at all, b"\0" .. b"\0" is etcd's spelling of "every key".)
            return {"key": b64(key + b"\0"), "range_end": b64(range_end(key)), **extra}
        return {"key": b64(key), "range_end": b64(range_end(key)), **extra}

    # --- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        data = await self._call("/v3/kv/range", {"key": b64(self._key(key))})
        kvs = data.get("kvs")
        return self._kv(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        data = await self._call("/v3/kv/range", self._range_body(prefix))
        return [self._kv(kv) for kv in data.get("kvs", ())], self._rev(data["header"]["revision"])

    async def count(self, prefix: str) -> int:
        data = await self._call("/v3/kv/range", self._range_body(prefix, count_only=True))
        return int(data.get("count", 0))

    async def _refresh(self) -> int:
        """Learn etcd's current revision (a cheap count of our prefix)."""
        await self.count("")
        return self._revision

    async def _probe_compaction(self) -> None:
        """Learn etcd's compact revision C: a range at revision r fails iff r < C, so binary
        search [1, revision] (log2(revision) tiny requests; only at start and after someone
        else compacted further than we knew). etcd's answer to "which revision" has no field."""
        offset = self._offset
        lo, hi = max(self._compact_revision - offset, 1), max(self._revision - offset, 1)
        key = b64(self._key("") or b"\0")
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                await self._call("/v3/kv/range", {"key": key, "revision": str(mid),
                                                  "count_only": True})
                hi = mid
            except GatewayError as exc:
                if exc.code != GRPC_OUT_OF_RANGE or "compacted" not in exc.message:
                    raise
                lo = mid + 1
        # Revision 1 is etcd's empty initial state: "compacted at 1" drops no event.
        self._observe_compaction(lo + offset if lo > 1 else 0)

    # --- writes --------------------------------------------------------------------------

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        """All or none at one new etcd revision; acknowledged once etcd committed it."""
        self._check_open()
        ops = list(ops)
        _check_ops(ops)
        compare, success, failure = [], [], []
        for op in ops:
            key = b64(self._key(op.key))
            if op.kind == "create":
                compare.append({"key": key, "target": "CREATE", "result": "EQUAL",
                                "create_revision": "0"})
                success.append({"request_put": {"key": key, "value": b64(op.value)}})
            else:
                compare.append({"key": key, "target": "CREATE", "result": "GREATER",
                                "create_revision": "0"})
                if op.expected_mod_revision is not None:
                    compare.append({"key": key, "target": "MOD", "result": "EQUAL",
                                    "mod_revision": str(op.expected_mod_revision - self._offset)})
                if op.kind == "update":
                    success.append({"request_put": {"key": key, "value": b64(op.value),
                                                    "prev_kv": True}})
                else:
                    success.append({"request_delete_range": {"key": key, "prev_kv": True}})
            failure.append({"request_range": {"key": key}})
        data = await self._call("/v3/kv/txn", {"compare": compare, "success": success,
                                               "failure": failure},
                                retry_sent=False, what=f"txn on {[op.key for op in ops]!r}")
        revision = self._rev(data["header"]["revision"])
        responses = data.get("responses", ())
        if not data.get("succeeded"):
            # The failure branch read every key in the same atomic step the compares ran on.
            state = {}
            for op, response in zip(ops, responses):
                kvs = response.get("response_range", {}).get("kvs")
                state[op.key] = self._kv(kvs[0]) if kvs else None
            plan_txn(ops, revision + 1, state.get)  # raises the first failing op's error
            raise StoreError(f"etcd txn on {[op.key for op in ops]!r} failed at revision "
                             f"{revision} although every precondition holds: {data!r}")
        results = []
        for op, response in zip(ops, responses):
            if op.kind == "create":
                results.append(KeyValue(op.key, op.value, revision, revision))
            elif op.kind == "update":
                prev = response["response_put"]["prev_kv"]
                results.append(KeyValue(op.key, op.value, self._rev(prev["create_revision"]),
                                        revision))
            else:
                results.append(self._kv(response["response_delete_range"]["prev_kvs"][0]))
        return results

    # --- watch ---------------------------------------------------------------------------

    def watch(self, prefix: str, since_revision: int) -> EtcdWatcher:
        """Events after since_revision. Compacted now if known to be compacted; else, if etcd
        finds it compacted, the iterator raises WatchCompacted."""
        self._check_open()
        if since_revision < 0:
            raise ValueError(f"watch on {prefix!r}: since_revision must be >= 0, "
                             f"got {since_revision}")
        if since_revision < self._compact_revision:
            raise Compacted(since_revision, self._compact_revision)
        self._key(prefix)  # an unencodable prefix fails here, not in the task
        watcher = EtcdWatcher(self, prefix, since_revision)
        self._watchers.add(watcher)
        return watcher

    # --- compaction ------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Compact etcd (all of it: compaction is not per prefix) at revision."""
        self._check_open()
        if revision <= self._compact_revision:
            return
        if revision > self._revision and revision > await self._refresh():
            raise ValueError(f"cannot compact etcd {self.endpoints[self._current]} to "
                             f"revision {revision}: it is only at revision {self._revision}")
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision - self._offset)},
                             what=f"compaction to {revision}")
        except GatewayError as exc:
            if exc.code != GRPC_OUT_OF_RANGE or "compacted" not in exc.message:
                raise
            await self._probe_compaction()  # someone else compacted further: nothing to do
            return
        self._observe_compaction(revision)

    async def compact_expired(self) -> int:
        """One auto-compaction pass (as SQLiteStore's); returns the compact revision after.

        Revisions older than history_seconds go, but the newest history_min_events revisions
        stay (each holds at least one event, of any prefix on this etcd).
        """
        self._check_open()
        expired = self._ages.expire(self._history_seconds)
        target = min(expired, self._revision - self._history_min_events)
        if target > self._compact_revision:
            await self.compact(target)
        return self._compact_revision

    async def _compact_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._compaction_interval_s)
            try:
                await self._refresh()  # so revisions written by other clients age too
                await self.compact_expired()
            except StoreError as exc:  # logged and retried next round; history just grows
                log.warning("auto-compaction of etcd %r failed: %s", self.prefix, exc)

    # --- the store's record and restore ------------------------------------------------------

    async def _meta(self) -> tuple[dict, int] | None:
        """The store's record at exactly the prefix (written by a restore): (record, its etcd
        mod_revision), or None for a store that was never restored."""
        if not self._prefix_bytes:
            return None
        data = await self._call("/v3/kv/range", {"key": b64(self._prefix_bytes)},
                                observe=False)
        kvs = data.get("kvs")
        if not kvs:
            return None
        try:
            record = json.loads(unb64(kvs[0].get("value")))
            if record.get("kind") != META_KIND or record.get("state") not in ("restoring",
                                                                              "restored"):
                raise ValueError(f"kind {record.get('kind')!r}, state {record.get('state')!r}")
            int(record["revisionOffset"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"etcd key {self.prefix!r} is not meshnet's store record ({exc}); "
                             "is another program using this prefix?") from None
        return record, int(kvs[0]["mod_revision"])

    async def _load_meta(self) -> None:
        meta = await self._meta()
        if meta is None:
            return
        record, mod_revision = meta
        if record["state"] != "restored":
            raise StoreError(f"etcd prefix {self.prefix!r} holds a restore that did not finish; "
                             "nothing may use it: delete it (etcdctl del --prefix "
                             f"{self.prefix}) and run the restore again")
        self._offset = int(record["revisionOffset"])
        # Everything up to the restore's last txn counts as compacted (see `restore`).
        self._observe_compaction(self._rev(mod_revision))

    def _meta_put(self, state: str, offset: int, above: int, keys: int) -> dict:
        record = {"kind": META_KIND, "state": state, "revisionOffset": offset,
                  "restoredAbove": above, "restoredKeys": keys}
        return {"request_put": {"key": b64(self._prefix_bytes),
                                "value": b64(json.dumps(record).encode())}}

    async def restore(self, items: list[tuple[str, bytes]], above_revision: int) -> int:
        """Fill this empty prefix from a backup, in txns of RESTORE_TXN_OPS keys.

        etcd's revision cannot be set, so the prefix gets a revision offset instead: store
        revision = etcd revision + offset, chosen so that the first restored key lands above
        above_revision. The offset lives in the store's record at exactly the prefix, which
        also marks the restore: created "restoring" first (a lock: a second restore into the
        prefix fails), set to "restored" in the txn of the last keys. A store never opens on
        a "restoring" prefix, and a failed restore deletes what it wrote, so nobody reads a
        half-restored store. The record's revision is the new compact revision.
        """
        self._check_open()
        items = list(items)
        if items:
            _check_ops([Op("create", key, value) for key, value in items])
        encoded = [(b64(self._key(key)), b64(value)) for key, value in items]
        if not self._prefix_bytes:
            raise StoreError("a restore into etcd needs a key prefix of its own (the store "
                             "keeps its record at the prefix); use ?prefix=/meshnet")
        present = await self.count("")
        if present or await self._meta() is not None:
            raise StoreNotEmpty(
                f"etcd prefix {self.prefix!r} is not empty ({present} keys"
                f"{'' if present else ' and the record of an earlier restore'}); a restore "
                "needs a fresh prefix: pick another ?prefix= or delete this one (etcdctl del "
                f"--prefix {self.prefix})")
        # The count above saw etcd at etcd revision (self._revision - 0); our first write
        # comes later, so an offset of above - that puts every restored key above `above`.
        offset = max(above_revision - self._revision, 0)
        meta_key = b64(self._prefix_bytes)
        locked = await self._call("/v3/kv/txn", {
            "compare": [{"key": meta_key, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [self._meta_put("restoring", offset, above_revision, len(items))]},
            retry_sent=False, what=f"restore into {self.prefix!r}", observe=False)
        if not locked.get("succeeded"):
            raise StoreNotEmpty(f"etcd prefix {self.prefix!r}: another restore started at the "
                                "same time")
        try:
            final = await self._write_restored(encoded, offset, above_revision)
        except BaseException as exc:
            undone = await self._undo_restore(exc)
            if not isinstance(exc, StoreError):
                raise
            raise StoreError(f"restore into etcd prefix {self.prefix!r} failed: {exc}; " + (
                "what it had written was deleted again" if undone else
                "deleting what it had written failed too, so the prefix is marked as an "
                f"unfinished restore: delete it (etcdctl del --prefix {self.prefix}) before "
                "trying again")) from exc
        self._offset = offset
        self._observe(final)
        self._observe_compaction(self._rev(final))
        return self._revision

    async def _write_restored(self, encoded: list[tuple[str, str]], offset: int,
                              above: int) -> int:
        """The keys in bounded txns, the last one also marking the record "restored";
        returns that txn's etcd revision."""
        chunks: list[list[tuple[str, str]]] = [[]]
        size = 0
        for key, value in encoded:
            if chunks[-1] and (len(chunks[-1]) >= RESTORE_TXN_OPS
                               or size + len(key) + len(value) > RESTORE_TXN_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append((key, value))
            size += len(key) + len(value)
        revision = 0
        for i, chunk in enumerate(chunks):
            success = [{"request_put": {"key": key, "value": value}} for key, value in chunk]
            if i == len(chunks) - 1:
                success.append(self._meta_put("restored", offset, above, len(encoded)))
            data = await self._call("/v3/kv/txn", {
                "compare": [{"key": key, "target": "CREATE", "result": "EQUAL",
                             "create_revision": "0"} for key, _ in chunk],
                "success": success}, retry_sent=False, observe=False,
                what=f"restore into {self.prefix!r} (txn {i + 1} of {len(chunks)})")
            if not data.get("succeeded"):
                raise StoreNotEmpty(f"etcd prefix {self.prefix!r}: keys appeared during the "
                                    "restore; is an API server using this prefix?")
            revision = int(data["header"]["revision"])
        return revision

    async def _undo_restore(self, cause: BaseException) -> bool:
        """Delete what a failed restore wrote (the prefix was empty: we hold its record);
        False if that failed too."""
        try:
            await self._call("/v3/kv/deleterange", {
                "key": b64(self._prefix_bytes), "range_end": b64(range_end(self._prefix_bytes))},
                what=f"undoing the restore into {self.prefix!r}", observe=False)
        except StoreError as exc:
            log.error("restore into etcd prefix %r failed (%s) and so did deleting what it "
                      "wrote (%s)", self.prefix, cause, exc)
            return False
        return True
