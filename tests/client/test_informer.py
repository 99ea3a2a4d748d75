"""Informers over a real API server: list+watch, view-based change filtering, relist after
the server comes back with changes made while the informer was away."""

from __future__ import annotations

import asyncio

import pytest

from conftest import start_apiserver
from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError
from meshnet.client.informer import Informer

CONFIGMAPS = lookup("configmaps")
WAIT_S = 15.0


class Recorder:
    def __init__(self):
        self.events: list[tuple] = []
        self.changed = asyncio.Event()

    def on_add(self, key, view):
        self.events.append(("add", key, view))
        self.changed.set()

    def on_update(self, key, old, new):
        self.events.append(("update", key, new))
        self.changed.set()

    def on_delete(self, key, old):
        self.events.append(("delete", key, old))
        self.changed.set()

    async def until(self, predicate, what: str):
        async def wait():
            while not predicate(self.events):
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(wait(), WAIT_S)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {self.events}") from None


def data_view(obj: dict):
    """A trimmed, frozen view: only data counts, so label-only changes are not reported."""
    return tuple(sorted((obj.get("data") or {}).items()))


@pytest.fixture
def server(tmp_path):
    srv = start_apiserver(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


async def test_informer_follows_changes_and_relists(server):
    client = AsyncClient.from_kubeconfig(str(server.kubeconfig))
    rec = Recorder()
    await client.create(CONFIGMAPS, "default", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    inf = Informer(client, CONFIGMAPS, namespace="default", transform=data_view,
                   on_add=rec.on_add, on_update=rec.on_update, on_delete=rec.on_delete)
    inf.start()
    try:
        await asyncio.wait_for(inf.synced.wait(), WAIT_S)
        assert rec.events == [("add", "default/a", (("v", "1"),))]

        await client.patch(CONFIGMAPS, "default", "a", {"metadata": {"labels": {"x": "y"}}})
        await client.patch(CONFIGMAPS, "default", "a", {"data": {"v": "2"}})
        await rec.until(lambda ev: ev[-1][0] == "update", "the data update")
        assert rec.events[1:] == [("update", "default/a", (("v", "2"),))]  # label change hidden

        await client.create(CONFIGMAPS, "default", {"metadata": {"name": "b"}})
        await client.delete(CONFIGMAPS, "default", "a")
        await rec.until(lambda ev: ev[-1][0] == "delete", "the delete")
        assert rec.events[2:] == [("add", "default/b", ()), ("delete", "default/a",
                                                                (("v", "2"),))]

        # The server goes away; meanwhile the world changes; the informer catches up.
        server.stop()
        server.start()  # same data dir, same port
        before = len(rec.events)
        await client.create(CONFIGMAPS, "default", {"metadata": {"name": "c"}, "data": {"k": "v"}})
        await client.delete(CONFIGMAPS, "default", "b")
        await rec.until(lambda ev: {e[1] for e in ev[before:]} >= {"default/c", "default/b"},
                        "catch-up after restart")
        assert sorted(inf.cache) == ["default/c"]
    finally:
        await inf.stop()
        await client.close()


async def test_client_errors_are_status(server):
    client = AsyncClient.from_kubeconfig(str(server.kubeconfig))
    try:
        with pytest.raises(ApiError) as exc:
            await client.get(CONFIGMAPS, "default", "missing")
        assert (exc.value.code, exc.value.reason) == (404, "NotFound")
    finally:
        await client.close()
