"""Shared pieces of the controller tests: a real Registry over a real SQLite store, and
`eventually`, which re-checks a condition after every store change instead of sleeping."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from meshnet.api.resources import lookup
from meshnet.control.apiserver.registry import Registry
from meshnet.control.store.sqlite import SQLiteStore

NAMESPACES = lookup("namespaces")
PODS = lookup("pods")
SERVICES = lookup("services")
ENDPOINTS = lookup("endpoints")
EVENTS = lookup("events")
CONVERGE_S = 10.0


@asynccontextmanager
async def open_store(path: Path):
    store = SQLiteStore(str(path))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def make_registry(tmp_path: Path, name: str = "store.db"):
    async with open_store(tmp_path / name) as store:
        yield Registry(store)


async def create_namespace(registry, name: str) -> dict:
    return await registry.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name}})


async def eventually(registry, fetch, predicate, what: str, timeout_s: float = CONVERGE_S):
    """fetch() until predicate(value) holds, re-checking after each store change; returns the
    value. Controllers converge asynchronously; this waits for exactly as long as it takes."""
    store = registry.store
    watcher = store.watch("/registry/", store.revision)
    value = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = await fetch()
                if predicate(value):
                    return value
                await watcher.__anext__()
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; "
                             f"last value: {value!r}") from None
    finally:
        watcher.close()


async def caught_up(informer, resource_version, timeout_s: float = CONVERGE_S) -> None:
    """Until informer has seen resource_version — which must be a write of its own kind: a
    watch on one prefix never sees the revisions of another."""
    await asyncio.wait_for(informer.wait_for(resource_version), timeout_s)


def rv_of(obj: dict) -> str:
    return obj["metadata"]["resourceVersion"]


async def get_or_none(registry, info, namespace, name):
    from meshnet.api.errors import StatusError

    try:
        return await registry.get(info, namespace, name)
    except StatusError as exc:
        if exc.code == 404:
            return None
        raise
