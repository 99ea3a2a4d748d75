"""One etcd watch stream per `EtcdStore.watch`, resumed across endpoint failures."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import TYPE_CHECKING

import aiohttp

from .base import Compacted, Event, StoreError, WatchClosed, Watcher
from .etcd_gateway import CONNECT_TIMEOUT_S, Retryable
from .sqlite import MAX_WATCH_BACKLOG

if TYPE_CHECKING:
    from .etcd import EtcdStore

log = logging.getLogger(__name__)


class WatchCompacted(Compacted, WatchClosed):
    """The revision a watch (re)started from was compacted in etcd, found out while streaming."""


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
        body = {"create_request": store._range_body(
            self.prefix, start_revision=str(self._next - store._offset), prev_kv=True)}
        async with session.post(f"{endpoint}/v3/watch", json=body, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S)) as resp:
            if resp.status != 200:
                raise Retryable(f"HTTP {resp.status}: {(await resp.text())[:200]}")
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip() and self._on_message(json.loads(line)):
                        return
        raise Retryable("the watch stream ended")

    def _on_message(self, message: dict) -> bool:
        """Handle one streamed WatchResponse; True when the watch is over."""
        if "error" in message:
            error = message["error"]
            raise Retryable(f"{error.get('message', error)} (code {error.get('grpc_code')})")
        result = message.get("result", {})
        store = self._store
        compact = store._rev(result.get("compact_revision", 0))
        if compact:
            store._observe_compaction(compact)
            self._cut(WatchCompacted(self._next - 1, store.compact_revision))
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
