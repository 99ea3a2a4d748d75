"""The controller machinery: informers over the registry, a work queue of keys, workers.

Theory of operation
-------------------
This is client-go's shape (informer -> workqueue -> reconcile), in-process:

- An `Informer` lists one kind through the registry, then watches from the list's
  resourceVersion, keeping a local cache of the (shared, never mutated) objects. When the watch
  ends — 410 Gone after a compaction, a watcher cut off for falling behind, any error — it lists
  again and replays the difference to its handlers as adds, updates and deletes, so a handler
  never misses the end state of an object. Handlers only record which keys changed (they
  enqueue); they never write.
- A `WorkQueue` holds keys, not objects. A key queued twice is processed once; a key being
  processed that is queued again is processed again afterwards (never by two workers at once).
  Failed keys come back after an exponential backoff per key (client-go's
  ItemExponentialFailureRateLimiter), reset by `forget()` on success.
- A `Controller` runs its informers, waits until each has listed once (nothing is reconciled
  from a partial cache), calls `prepare()`, then runs workers that call `reconcile(key)`.
  `reconcile` is level-triggered: it reads the desired state from the caches and makes the
  world match, whatever events led there. Raising `Requeue` asks for another pass later;
  any other exception is logged and retried with backoff.
- `stop()` closes the queue, lets in-flight reconciles finish within `STOP_GRACE_S`, then
  cancels everything and closes the watches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable, Iterable

from meshnet.api.errors import StatusError
from meshnet.api.resources import ResourceInfo

log = logging.getLogger("meshnet.controllers")

# client-go's workqueue.DefaultItemBasedRateLimiter starts at 5ms; we cap at one minute rather
# than 1000s because our failures are conflicts and restarts, not cloud API quotas.
BACKOFF_BASE_S = 0.005
BACKOFF_MAX_S = 60.0
# Informer relist backoff after an unexpected error (410 relists at once).
RELIST_BACKOFF_BASE_S = 0.2
RELIST_BACKOFF_MAX_S = 30.0
STOP_GRACE_S = 5.0


def backoff_delay(failures: int, base_s: float = BACKOFF_BASE_S,
                  max_s: float = BACKOFF_MAX_S) -> float:
    """Delay before retry number `failures` (0-based): base * 2**failures, capped."""
    if failures >= 64:
        return max_s
    return min(base_s * (2 ** failures), max_s)


def object_key(obj: dict) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.rpartition("/")
    return (ns if sep else None), name


class Requeue(Exception):
    """Raised by reconcile to be called again for this key: after `after_s`, or with backoff."""

    def __init__(self, reason: str = "", after_s: float | None = None):
        super().__init__(reason)
        self.after_s = after_s


# -- work queue --------------------------------------------------------------------------------


class WorkQueue:
    def __init__(self, name: str = "queue", *, base_s: float = BACKOFF_BASE_S,
                 max_s: float = BACKOFF_MAX_S):
        self.name = name
        self.base_s = base_s
        self.max_s = max_s
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # queued (or to be queued once processing ends)
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()  # nothing queued, nothing processing
        self._drained.set()
        self._shutting_down = False

    def __repr__(self) -> str:
        return (f"<WorkQueue {self.name} queued={len(self._queue)} "
                f"processing={len(self._processing)} delayed={len(self._timers)}>")

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._drained.clear()
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: str, delay_s: float) -> None:
        if self._shutting_down:
            return
        if delay_s <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay_s
        if existing is not None:
            if existing.when() <= when:
                return  # an earlier retry is already scheduled
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, backoff_delay(failures, self.base_s, self.max_s))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        """The next key to process, or None once shut down."""
        while not self._queue:
            if self._shutting_down:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()
        elif not self._queue and not self._processing:
            self._drained.set()

    async def join(self) -> None:
        """Until nothing is queued or being processed (delayed retries do not count)."""
        await self._drained.wait()

    def shutdown(self) -> None:
        self._shutting_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._queue.clear()
        self._dirty.clear()
        self._wakeup.set()
        self._drained.set()


# -- informer ----------------------------------------------------------------------------------


Handler = Callable[..., None]


class Informer:
    """A local cache of one kind (optionally one namespace), kept current by list + watch."""

    def __init__(self, registry, info: ResourceInfo, namespace: str | None = None):
        self.registry = registry
        self.info = info
        self.namespace = namespace
        self.cache: dict[str, dict] = {}
        self._by_ns: dict[str | None, dict[str, dict]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._on_add: list[Handler] = []
        self._on_update: list[Handler] = []
        self._on_delete: list[Handler] = []
        self._watch = None
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self.relists = 0

    def __repr__(self) -> str:
        scope = f" ns={self.namespace}" if self.namespace else ""
        return (f"<Informer {self.info.plural}{scope} objects={len(self.cache)} "
                f"rv={self.resource_version or '-'} synced={self.synced.is_set()}>")

    def add_handlers(self, *, on_add: Handler | None = None, on_update: Handler | None = None,
                     on_delete: Handler | None = None) -> None:
        """on_add(obj), on_update(old, new), on_delete(obj); they must not block or write."""
        if on_add:
            self._on_add.append(on_add)
        if on_update:
            self._on_update.append(on_update)
        if on_delete:
            self._on_delete.append(on_delete)

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    async def wait_for(self, resource_version: str | int) -> None:
        """Until this cache has caught up with resource_version (read-your-writes)."""
        wanted = int(resource_version)
        if self.synced.is_set() and _rv_int(self.resource_version) >= wanted:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((wanted, fut))
        await fut

    def _advance(self, rv: str) -> None:
        self.resource_version = rv
        if self._waiters:
            now = _rv_int(rv)
            ready = [(w, f) for w, f in self._waiters if w <= now]
            self._waiters = [(w, f) for w, f in self._waiters if w > now]
            for _, fut in ready:
                if not fut.done():
                    fut.set_result(None)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.cache.values())
        return list(self._by_ns.get(namespace, {}).values())

    async def list_once(self) -> str:
        """List, replay the difference to the cache's handlers, and return the list's
        resourceVersion (where the following watch starts)."""
        items, rv = await self.registry.list(self.info, self.namespace)
        self._replace(items)
        self.synced.set()
        self._advance(rv)
        return rv

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                rv = await self.list_once()
                failures = 0
                await self._watch_from(rv)
                # The watch ended without an error (closed): list again.
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, StatusError) and exc.code == 410:
                    log.debug("%r: %s; relisting", self, exc.message)
                else:
                    delay = backoff_delay(failures, RELIST_BACKOFF_BASE_S, RELIST_BACKOFF_MAX_S)
                    if isinstance(exc, StatusError):
                        log.warning("%r: %s; relisting in %.1fs", self, exc.message, delay)
                    else:
                        log.exception("%r: list/watch failed; relisting in %.1fs", self, delay)
                    await asyncio.sleep(delay)
                    failures += 1
            self.relists += 1

    async def _watch_from(self, rv: str) -> None:
        watch = self.registry.watch(self.info, self.namespace, since=rv)
        self._watch = watch
        try:
            async for event in watch:
                kind, obj = _event_parts(event)
                if kind == "ERROR":
                    raise StatusError(int(obj.get("code") or 500), obj.get("reason", ""),
                                      obj.get("message", "watch error"))
                if kind in ("ADDED", "MODIFIED"):
                    self._upsert(obj)
                elif kind == "DELETED":
                    self._remove(object_key(obj), obj)
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                self._advance(rv)
        finally:
            self._watch = None
            watch.close()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    # -- cache maintenance (the only place handlers are called from) ---------------------------

    def _replace(self, items: Iterable[dict]) -> None:
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._remove(key, self.cache[key])
        for obj in fresh.values():
            self._upsert(obj)

    def _upsert(self, obj: dict) -> None:
        key = object_key(obj)
        old = self.cache.get(key)
        if old is not None and _rv(old) == _rv(obj):
            return  # a relist (or a replayed ADDED) found it unchanged
        self.cache[key] = obj
        self._by_ns.setdefault(_ns(obj), {})[key] = obj
        if old is None:
            self._call(self._on_add, obj)
        else:
            self._call(self._on_update, old, obj)

    def _remove(self, key: str, obj: dict) -> None:
        old = self.cache.pop(key, None)
        if old is None:
            return
        bucket = self._by_ns.get(_ns(old))
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._by_ns[_ns(old)]
        self._call(self._on_delete, obj if obj is not None else old)

    def _call(self, handlers: list[Handler], *args) -> None:
        for handler in handlers:
            try:
                handler(*args)
            except Exception:
                log.exception("%r: handler %s failed", self, getattr(handler, "__name__", handler))


def _event_parts(event) -> tuple[str, dict]:
    if isinstance(event, tuple):
        return event[0], event[1]
    return event.type, event.object


def _rv(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")


def _rv_int(rv: str) -> int:
    try:
        return int(rv)
    except (TypeError, ValueError):
        return 0


def _ns(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


# -- controller --------------------------------------------------------------------------------


class Controller:
    """Informers + a work queue + workers calling `reconcile(key)`; see the module doc."""

    name = "controller"
    workers = 1

    def __init__(self, registry):
        self.registry = registry
        self.queue = WorkQueue(self.name)
        self.informers: list[Informer] = []
        self._tasks: list[asyncio.Task] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.started = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.queue!r} tasks={len(self._tasks)}>"

    def informer(self, info: ResourceInfo, namespace: str | None = None) -> Informer:
        inf = Informer(self.registry, info, namespace)
        self.informers.append(inf)
        return inf

    def enqueue(self, obj: dict) -> None:
        self.queue.add(object_key(obj))

    async def prepare(self) -> None:
        """Called once all informers have listed, before the first reconcile."""

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def start(self, *, sync_timeout_s: float = 30.0) -> None:
        """Start informers, wait until each has listed once, `prepare()`, start workers."""
        for inf in self.informers:
            self._tasks.append(asyncio.create_task(inf.run(), name=f"{self.name}:{inf!r}"))
        if self.informers:
            waits = [asyncio.create_task(inf.synced.wait()) for inf in self.informers]
            done, pending = await asyncio.wait(waits, timeout=sync_timeout_s)
            for t in pending:
                t.cancel()
            if pending:
                await self.stop()
                raise TimeoutError(f"{self.name}: caches did not sync within {sync_timeout_s}s "
                                   f"({[i for i in self.informers if not i.synced.is_set()]})")
        try:
            await self.prepare()
        except BaseException:
            await self.stop()
            raise
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}:worker{i}"))
        self.started = True

    async def stop(self) -> None:
        self.queue.shutdown()
        if self._busy:
            try:
                await asyncio.wait_for(self._idle.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                log.warning("%s: reconciles still running after %.0fs; cancelling", self.name,
                            STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        for inf in self.informers:
            inf.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.started = False

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            self._busy += 1
            self._idle.clear()
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Requeue as req:
                log.debug("%s: requeue %s: %s", self.name, key, req)
                if req.after_s is None:
                    self.queue.add_rate_limited(key)
                else:
                    self.queue.add_after(key, req.after_s)
            except Exception as exc:
                delay = backoff_delay(self.queue.num_requeues(key), self.queue.base_s,
                                      self.queue.max_s)
                if isinstance(exc, StatusError):
                    log.warning("%s: reconcile %s: %s (retry in %.2fs)", self.name, key,
                                exc.message, delay)
                else:
                    log.exception("%s: reconcile %s failed (retry in %.2fs)", self.name, key,
                                  delay)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until the queue is drained: nothing queued, no reconcile running (delayed retries
        do not count). For tests and orderly start-up."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self!r} not idle after {timeout_s}s") from None
