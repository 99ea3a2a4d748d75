"""A store on a real etcd cluster, spoken to through etcd's JSON gRPC gateway.

Theory of operation
-------------------
Every store key lives in etcd at `prefix + key` (UTF-8), so several meshnet clusters (or test
runs) can share one etcd as long as no prefix is a string prefix of another. Revisions ARE
etcd's header revisions: one txn is one etcd txn is one revision, `mod_revision` is the
resourceVersion, and any number of API servers on the same etcd agree on them. Nothing is
cached: every read goes to etcd (linearizable), and `revision` / `compact_revision` are the
newest values seen in any response.

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
  report KeyExists for our own write), else StoreError says the outcome is unknown.

Why the JSON gateway over aiohttp and not a gRPC client (aetcd, etcd3): aiohttp is already a
dependency, the gateway ships in every etcd >= 3.3 on the client port, and the five calls
we use are plain JSON; a gRPC client would add grpcio (a large native wheel) and generated
protobuf stubs. The price: base64 keys/values and one HTTP connection per watch (gRPC would
multiplex watches on one stream) — TODO(multi-node issue, API server watch cache): share one
etcd watch per resource prefix among API watchers.

Do not: retry a sent txn; report a revision not read from an etcd header; assume a fresh
etcd is at revision 0 (it starts at 1, so a new store's first write is revision 2).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import time
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp

from .ages import RevisionAges
from .base import Compacted, Event, KeyValue, Op, Store, StoreError, WatchClosed, Watcher
from .sqlite import COMPACT_INTERVAL_S, MAX_WATCH_BACKLOG, _check_ops
from .sqlite_writer import plan_txn

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/meshnet"
# etcd's own request timeout is 5 s + 2 × election timeout; give it that and a bit.
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0
# How long a request (or a broken watch) keeps trying other endpoints before giving up:
# longer than an etcd leader election (default election timeout 1 s).
FAILOVER_TIMEOUT_S = 10.0
RETRY_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)
GRPC_UNAVAILABLE = 14
GRPC_OUT_OF_RANGE = 11  # etcd's "required revision has been compacted / is a future revision"


class WatchCompacted(Compacted, WatchClosed):
    """The revision a watch (re)started from was compacted in etcd, found out while streaming."""


class _GatewayError(StoreError):
    def __init__(self, endpoint: str, path: str, code: int, message: str):
        super().__init__(f"etcd {endpoint}{path}: {message} (gRPC code {code})")
        self.code = code
        self.message = message


class _Retryable(Exception):
    """A transport failure worth trying on the next endpoint."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _range_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (b"\\0" = to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """`etcd://host:port[,host:port...][?prefix=/p]` -> (["http://host:port", ...], prefix)."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or parts.path not in ("", "/") or parts.fragment:
        raise StoreError(f"store URL {url!r}: expected etcd://host:port[,host:port...]"
                         f"[?prefix={DEFAULT_PREFIX}]")
    endpoints = []
    for member in parts.netloc.split(","):
        host, sep, port = member.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StoreError(f"store URL {url!r}: endpoint {member!r} is not host:port "
                             "(e.g. 127.0.0.1:2379)")
        endpoints.append(f"http://{host}:{port}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"prefix"}
    if unknown:
        raise StoreError(f"store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                         "the only option is prefix")
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1].rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise StoreError(f"store URL {url!r}: prefix {prefix!r} must start with '/'")
    return endpoints, prefix


class EtcdWatcher(Watcher):
    """Events from one etcd watch stream (resumed across endpoint failures), queued here."""

    def __init__(self, store: EtcdStore, prefix: str, since: int):
        self._store = store
        self.prefix = prefix
        self._since = since
        self._next = since + 1  # the revision the stream (re)starts from
        self._events: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._error: StoreError | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"etcd watch {prefix!r} since {since}")

    def __repr__(self) -> str:
        state = ("closed" if self._closed else f"cut off: {self._error}" if self._error
                 else "open")
        return (f"<EtcdWatcher {self.prefix!r} since={self._since} next={self._next} "
                f"pending={len(self._events)} {state}>")

    def __aiter__(self) -> EtcdWatcher:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            if self._events:
                return self._events.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop()

    async def received(self, revision: int) -> None:
        """Wait until the stream has delivered everything up to revision (or ended)."""
        while self._next <= revision and not self._closed and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _cut(self, error: StoreError) -> None:
        if self._error is None and not self._closed:
            self._error = error
            self._stop()

    def _stop(self) -> None:
        self._events.clear()
        self._store._watchers.discard(self)
        if self._task is not asyncio.current_task():
            self._task.cancel()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _run(self) -> None:
        store = self._store
        try:
            await store._with_failover(self._stream, retry_sent=True,
                                       what=f"watch on {self.prefix!r}")
            # The stream ended without error: etcd canceled it (shutdown, member removal).
            self._cut(WatchClosed(f"etcd ended the watch on {self.prefix!r} at revision "
                                  f"{self._next - 1}; list again and re-watch"))
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            self._cut(exc)
        except Exception as exc:  # a bug or a gateway surprise: the consumer must not hang
            log.exception("watch on %r failed", self.prefix)
            self._cut(WatchClosed(f"watch on {self.prefix!r} failed: {exc!r}"))

    async def _stream(self, session: aiohttp.ClientSession, endpoint: str) -> None:
        store = self._store
        body = {"create_request": store._range_body(self.prefix, start_revision=str(self._next),
                                                    prev_kv=True)}
        async with session.post(f"{endpoint}/v3/watch", json=body, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S)) as resp:
            if resp.status != 200:
                raise _Retryable(f"HTTP {resp.status}: {(await resp.text())[:200]}")
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip() and self._on_message(json.loads(line)):
                        return
        raise _Retryable("the watch stream ended")

    def _on_message(self, message: dict) -> bool:
        """Handle one streamed WatchResponse; True when the watch is over."""
        if "error" in message:
            error = message["error"]
            raise _Retryable(f"{error.get('message', error)} (code {error.get('grpc_code')})")
        result = message.get("result", {})
        store = self._store
        compact = int(result.get("compact_revision", 0))
        if compact:
            store._observe_compaction(compact)
            self._cut(WatchCompacted(self._next - 1, compact))
            return True
        if result.get("canceled"):
            self._cut(WatchClosed(f"etcd canceled the watch on {self.prefix!r}: "
                                  f"{result.get('cancel_reason', 'no reason given')}"))
            return True
        events = [store._event(e) for e in result.get("events", ())]
        if len(self._events) + len(events) > MAX_WATCH_BACKLOG:
            revision = events[-1].revision
            self._cut(WatchClosed(f"watch on {self.prefix!r} fell more than "
                                  f"{MAX_WATCH_BACKLOG} events behind at revision {revision}; "
                                  "list again and re-watch"))
            return True
        self._events.extend(events)
        if events:
            self._next = events[-1].revision + 1
        store._observe(int(result.get("header", {}).get("revision", 0)))
        self._wake()
        return False


class EtcdStore(Store):
    def __init__(self, endpoints: list[str], *, prefix: str = DEFAULT_PREFIX,
                 history_seconds: float = 900, history_min_events: int = 50_000,
                 clock: Callable[[], float] = time.monotonic,
                 compaction_interval_s: float = COMPACT_INTERVAL_S):
        if not endpoints:
            raise StoreError("etcd store: no endpoints given")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self._prefix_bytes = prefix.encode()
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
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S,
                                          sock_connect=CONNECT_TIMEOUT_S))
        self._state = "open"
        try:
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
        deadline = loop.time() + FAILOVER_TIMEOUT_S
        tries = 0
        while True:
            endpoint = self.endpoints[self._current]
            try:
                return await attempt(self._session, endpoint)
            except aiohttp.ClientConnectorError as exc:
                reason = f"cannot connect: {exc.os_error or exc}"
            except _Retryable as exc:
                if not retry_sent:
                    raise StoreError(f"etcd {endpoint}: {what} failed ({exc}); its outcome "
                                     "is unknown: read the keys to find out") from None
                reason = str(exc)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if not retry_sent:
                    raise StoreError(f"etcd {endpoint}: {what} failed after it was sent "
                                     f"({exc!r}); its outcome is unknown: read the keys to "
                                     "find out") from None
                reason = repr(exc)
            if self._state not in ("open",):
                raise StoreError(f"etcd store {self.prefix!r} closed during {what}")
            log.warning("etcd %s: %s failed (%s); trying the next endpoint", endpoint, what,
                        reason)
            if self.endpoints[self._current] == endpoint:
                self._current = (self._current + 1) % len(self.endpoints)
            tries += 1
            if loop.time() >= deadline:
                raise StoreError(f"etcd {', '.join(self.endpoints)}: {what} failed on every "
                                 f"endpoint for {FAILOVER_TIMEOUT_S:.0f} s (last: {reason}); "
                                 "is etcd running and reachable?")
            if tries % len(self.endpoints) == 0:
                await asyncio.sleep(RETRY_BACKOFF_S[min(tries // len(self.endpoints) - 1,
                                                        len(RETRY_BACKOFF_S) - 1)])

    async def _call(self, path: str, body: dict, *, retry_sent: bool = True,
                    what: str = "") -> dict:
        async def attempt(session: aiohttp.ClientSession, endpoint: str) -> dict:
            async with session.post(endpoint + path, json=body) as resp:
                text = await resp.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                raise _Retryable(f"HTTP {resp.status}: not JSON: {text[:200]!r}") from None
            if resp.status != 200:
                code, message = data.get("code", -1), data.get("message", text[:200])
                if code == GRPC_UNAVAILABLE:  # no leader, stopping: another member may serve
                    raise _Retryable(message)
                raise _GatewayError(endpoint, path, code, message)
            return data

        data = await self._call_checked(attempt, retry_sent, what or path)
        self._observe(int(data.get("header", {}).get("revision", 0)))
        return data

    async def _call_checked(self, attempt, retry_sent, what) -> dict:
        self._check_open()
        return await self._with_failover(attempt, retry_sent=retry_sent, what=what)

    def _observe(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision
            self._ages.mark(revision)

    def _observe_compaction(self, revision: int) -> None:
        self._compact_revision = max(self._compact_revision, revision)

    # --- keys and values -------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        try:
            return self._prefix_bytes + key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StoreError(f"key {key!r} cannot be stored in etcd: not valid UTF-8 "
                             f"({exc.reason})") from None

    def _kv(self, kv: dict) -> KeyValue:
        key = _unb64(kv["key"])[len(self._prefix_bytes):].decode("utf-8")
        return KeyValue(key, _unb64(kv.get("value")), int(kv.get("create_revision", 0)),
                        int(kv.get("mod_revision", 0)))

    def _event(self, event: dict) -> Event:
        prev = self._kv(event["prev_kv"]) if "prev_kv" in event else None
        revision = int(event["kv"]["mod_revision"])
        if event.get("type") == "DELETE":
            # etcd's kv of a delete is just the key and the deletion's revision; the deleted
            # value is prev_kv (missing only if that history was compacted meanwhile).
            old = prev or KeyValue(self._kv(event["kv"]).key, b"", 0, 0)
            return Event("DELETE", old, old, revision)
        return Event("PUT", self._kv(event["kv"]), prev, revision)

    def _range_body(self, prefix: str, **extra: object) -> dict:
        key = self._key(prefix)
        # etcd refuses an empty key; b"\0" .. b"\0" is its spelling of "every key".
        return {"key": _b64(key or b"\0"), "range_end": _b64(_range_end(key)), **extra}

    # --- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        data = await self._call("/v3/kv/range", {"key": _b64(self._key(key))})
        kvs = data.get("kvs")
        return self._kv(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        data = await self._call("/v3/kv/range", self._range_body(prefix))
        return [self._kv(kv) for kv in data.get("kvs", ())], int(data["header"]["revision"])

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
        lo, hi = max(self._compact_revision, 1), max(self._revision, 1)
        key = _b64(self._key("") or b"\0")
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                await self._call("/v3/kv/range", {"key": key, "revision": str(mid),
                                                  "count_only": True})
                hi = mid
            except _GatewayError as exc:
                if exc.code != GRPC_OUT_OF_RANGE or "compacted" not in exc.message:
                    raise
                lo = mid + 1
        # Revision 1 is etcd's empty initial state: "compacted at 1" drops no event.
        self._observe_compaction(lo if lo > 1 else 0)

    # --- writes --------------------------------------------------------------------------

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        """All or none at one new etcd revision; acknowledged once etcd committed it."""
        self._check_open()
        ops = list(ops)
        _check_ops(ops)
        compare, success, failure = [], [], []
        for op in ops:
            key = _b64(self._key(op.key))
            if op.kind == "create":
                compare.append({"key": key, "target": "CREATE", "result": "EQUAL",
                                "create_revision": "0"})
                success.append({"request_put": {"key": key, "value": _b64(op.value)}})
            else:
                compare.append({"key": key, "target": "CREATE", "result": "GREATER",
                                "create_revision": "0"})
                if op.expected_mod_revision is not None:
                    compare.append({"key": key, "target": "MOD", "result": "EQUAL",
                                    "mod_revision": str(op.expected_mod_revision)})
                if op.kind == "update":
                    success.append({"request_put": {"key": key, "value": _b64(op.value),
                                                    "prev_kv": True}})
                else:
                    success.append({"request_delete_range": {"key": key, "prev_kv": True}})
            failure.append({"request_range": {"key": key}})
        data = await self._call("/v3/kv/txn", {"compare": compare, "success": success,
                                               "failure": failure},
                                retry_sent=False, what=f"txn on {[op.key for op in ops]!r}")
        revision = int(data["header"]["revision"])
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
                results.append(KeyValue(op.key, op.value, int(prev["create_revision"]),
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
            await self._call("/v3/kv/compaction", {"revision": str(revision)},
                             what=f"compaction to {revision}")
        except _GatewayError as exc:
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
