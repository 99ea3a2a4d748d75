"""Informers: a local cache of one kind that follows the API server.

Theory of operation
-------------------
list, then watch from the list's resourceVersion. A stream that simply ends (timeoutSeconds)
and a stream that broke or could not be opened (the server went away: the client has moved to
the next API server by then, see failover.py) resume from the last resourceVersion seen,
BOOKMARKs included, without a relist: resourceVersions are global, so the watch replays
exactly what happened since, on whichever server. On a 410 (history compacted) or any other
error status, list again and reconcile the cache against the new list (emitting adds, updates
and deletes for what changed while we were away), then watch again. No event is lost either
way: the watch resumes where the cache is, and a relist compares the whole cache.

The cache holds *views*: `transform(obj)` is applied to every object before it is stored and
compared, so a daemon keeps only the trimmed, frozen fields it needs, and an update whose view
did not change is not reported at all (no wasted syncs on status-only churn).

Handlers are plain callables `on_add(key, view)`, `on_update(key, old, new)`,
`on_delete(key, old)`; per STYLE.md they only record changes (a change tracker), the daemon's
sync loop does the work. `synced` is set after the first full list has been delivered:
nothing may be programmed before it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from meshnet.api.resources import ResourceInfo
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ClientError, ConnectionFailed

log = logging.getLogger("meshnet.informer")

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
WATCH_TIMEOUT_S = 300.0
SHORT_WATCH_S = 1.0  # a watch that ends sooner with no event counts as a failure


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def _identity(obj: dict) -> Any:
    return obj


def _ignore(*_args) -> None:
    return None


class Informer:
    def __init__(self, client: AsyncClient, info: ResourceInfo, *,
                 namespace: str | None = None, label_selector: str = "",
                 field_selector: str = "", transform: Callable[[dict], Any] = _identity,
                 on_add: Callable = _ignore, on_update: Callable = _ignore,
                 on_delete: Callable = _ignore, watch_timeout_s: float = WATCH_TIMEOUT_S):
        self.client = client
        self.info = info
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete
        self.watch_timeout_s = watch_timeout_s
        self.cache: dict[str, Any] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.relists = 0
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        state = "synced" if self.synced.is_set() else "syncing"
        return (f"<Informer {self.info.qualified} {state} rv={self.resource_version} "
                f"objects={len(self.cache)}>")

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.info.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        need_list = True
        while True:
            seen = self.resource_version
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                started = asyncio.get_running_loop().time()
                if await self._watch() or \
                        asyncio.get_running_loop().time() - started >= SHORT_WATCH_S:
                    backoff = BACKOFF_MIN_S  # a stream that ended normally: resume at once
                    continue
                # Closed at once with nothing in it (client-go's "very short watch"): the
                # server is unwell; do not hammer it.
                log.warning("%s informer: the watch ended at once without an event; watching "
                            "again in %.1fs", self.info.plural, backoff)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                need_list = True
                if exc.code == 410:
                    continue
                log.warning("%s informer: %s; retrying in %.1fs", self.info.plural, exc,
                            backoff)
            except ConnectionFailed as exc:
                # The cache is intact up to resource_version: watch again from there.
                log.warning("%s informer: %s; watching again from %s in %.1fs",
                            self.info.plural, exc, self.resource_version or "a list", backoff)
            except (ClientError, ValueError) as exc:
                need_list = True
                log.warning("%s informer: %s; retrying in %.1fs", self.info.plural, exc, backoff)
            if self.resource_version != seen:
                backoff = BACKOFF_MIN_S  # it made progress before failing: not a hot loop
            await asyncio.sleep(backoff * (1 + random.random() / 2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _relist(self) -> None:
        body = await self.client.list(self.info, self.namespace,
                                      label_selector=self.label_selector,
                                      field_selector=self.field_selector)
        fresh = {object_key(o): self.transform(o) for o in body.get("items") or []}
        old = self.cache
        self.cache = fresh
        for key in old.keys() - fresh.keys():
            self.on_delete(key, old[key])
        for key, view in fresh.items():
            if key not in old:
                self.on_add(key, view)
            elif old[key] != view:
                self.on_update(key, old[key], view)
        self.resource_version = body.get("metadata", {}).get("resourceVersion", "")
        self.relists += 1
        self.synced.set()

    async def _watch(self) -> int:
        """Follow one watch stream; returns how many events (BOOKMARKs included) it had."""
        count = 0
        async for event in self.client.watch(
                self.info, self.namespace, resource_version=self.resource_version,
                timeout_s=self.watch_timeout_s, label_selector=self.label_selector,
                field_selector=self.field_selector):
            obj = event.get("object") or {}
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            kind = event.get("type")
            if kind != "BOOKMARK":
                self._apply(kind, obj)
            if rv:
                self.resource_version = rv
            count += 1
        return count

    def _apply(self, kind: str, obj: dict) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            old = self.cache.pop(key, None)
            if old is not None:
                self.on_delete(key, old)
            return
        view = self.transform(obj)
        old = self.cache.get(key)
        self.cache[key] = view
        if old is None:
            self.on_add(key, view)
        elif old != view:
            self.on_update(key, old, view)
