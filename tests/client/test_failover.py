"""Several API servers behind one client: the decision table, kubeconfig and --server parsing,
and real meshnet-apiservers on one etcd, one of them SIGKILLed under an informer and writes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from conftest import start_apiserver
from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ConfigError, ConnectionFailed
from meshnet.client.failover import (SERVERS_EXTENSION, Failure, ServerRotation,
                                     retry_on_next, split_servers)
from meshnet.client.informer import Informer
from meshnet.client.kubeconfig import Kubeconfig
from meshnet.client.rest import RestClient

sys.path.insert(0, str(Path(__file__).parent.parent / "control"))
from etcd_server import start_etcd  # noqa: E402  (tests/control's real etcd)

CONFIGMAPS = lookup("configmaps")
KUBECTL = str(Path(sys.executable).parent / "kubectl")
WAIT_S = 20.0

# -- the pure core ----------------------------------------------------------------------------

# (description, method, failure, may go to the next server)
RETRIES = [
    ("a GET that could not connect", "GET", Failure.CONNECT, True),
    ("a POST that could not connect: it was never sent", "POST", Failure.CONNECT, True),
    ("a GET whose connection broke: reads repeat", "GET", Failure.TRANSPORT, True),
    ("a POST whose connection broke: it may have been applied", "POST", Failure.TRANSPORT,
     False),
    ("a PUT answered 503 by a proxy: not repeated", "put", Failure.GATEWAY, False),
    ("a DELETE whose connection broke", "DELETE", Failure.TRANSPORT, False),
    ("a PATCH that could not connect", "PATCH", Failure.CONNECT, True),
    ("a GET answered 502", "GET", Failure.GATEWAY, True),
]


@pytest.mark.parametrize("desc,method,failure,want", RETRIES, ids=[r[0] for r in RETRIES])
def test_retry_on_next(desc, method, failure, want):
    assert retry_on_next(method, failure) is want


@pytest.mark.parametrize("value,want", [
    ("https://a:6443", ("https://a:6443",)),
    ("https://a:6443/, https://b:6443,,https://a:6443", ("https://a:6443", "https://b:6443")),
    (["https://b/", "https://c"], ("https://b", "https://c")),
    ("", ()),
])
def test_split_servers(value, want):
    assert split_servers(value) == want


def test_rotation_sticks_and_moves_once_per_failure():
    r = ServerRotation(["a", "b", "c"])
    assert (r.current, r.round()) == ("a", ("a", "b", "c"))
    r.failed("a")
    assert (r.current, r.round(), r.failovers) == ("b", ("b", "c", "a"), 1)
    r.failed("a")  # a late report about a server already left behind: nothing moves
    assert (r.current, r.failovers) == ("b", 1)
    r.failed("b")
    r.failed("c")
    assert (r.current, r.failovers) == ("a", 3)  # round the ring
    one = ServerRotation(["only"])
    one.failed("only")
    assert (one.current, one.failovers) == ("only", 0)
    with pytest.raises(ValueError):
        ServerRotation([])


def _kubeconfig(path: Path, cluster: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "contexts": [{"name": "c", "context": {"cluster": "lab", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return path


def _extension(servers) -> list:
    return [{"name": SERVERS_EXTENSION, "extension": {"servers": servers}}]


# (description, cluster entry, --server, expected servers)
KUBECONFIGS = [
    ("one server", {"server": "https://a:6443"}, None, ("https://a:6443",)),
    ("the extension adds servers after `server`",
     {"server": "https://a:6443", "extensions": _extension(["https://b:6443", "https://c:6443"])},
     None, ("https://a:6443", "https://b:6443", "https://c:6443")),
    ("the extension may repeat `server`; order kept, duplicates dropped",
     {"server": "https://b:6443/", "extensions": _extension(["https://a:6443",
                                                             "https://b:6443"])},
     None, ("https://b:6443", "https://a:6443")),
    ("other extensions (minikube's cluster_info) are ignored",
     {"server": "https://a:6443", "extensions": [{"name": "cluster_info",
                                                  "extension": {"provider": "x"}}]},
     None, ("https://a:6443",)),
    ("--server replaces the kubeconfig's servers, extension included",
     {"server": "https://a:6443", "extensions": _extension(["https://b:6443"])},
     "https://x:6443,https://y:6443", ("https://x:6443", "https://y:6443")),
]


@pytest.mark.parametrize("desc,cluster,server,want", KUBECONFIGS,
                         ids=[k[0] for k in KUBECONFIGS])
def test_servers_from_kubeconfig(tmp_path, desc, cluster, server, want):
    kc = Kubeconfig.load(str(_kubeconfig(tmp_path / "kc", cluster)), env={})
    conn = kc.connection(None, server=server)
    assert (conn.servers, conn.server) == (want, want[0])


def test_bad_extension_is_a_config_error(tmp_path):
    path = _kubeconfig(tmp_path / "kc", {"server": "https://a:6443",
                                         "extensions": _extension("https://b:6443")})
    with pytest.raises(ConfigError, match=r'cluster "lab": extension meshnet.io/servers'):
        Kubeconfig.load(str(path), env={}).connection(None)


# -- real API servers on one etcd ------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    """Two meshnet-apiservers on one etcd sharing one CA and token (as a lab's are), and a
    kubeconfig naming both: `server` is the first, the extension the second."""
    (tmp_path / "etcd").mkdir()
    etcd = start_etcd(tmp_path / "etcd")
    servers = []
    try:
        args = ["--store", etcd.url]
        first = tmp_path / "a"
        first.mkdir()
        servers.append(start_apiserver(first, args))
        second = tmp_path / "b"
        second.mkdir()
        for name in ("ca.crt", "ca.key", "tokens.csv"):
            shutil.copy2(first / name, second / name)
        servers.append(start_apiserver(second, args))
        doc = yaml.safe_load(servers[0].kubeconfig.read_text())
        doc["clusters"][0]["cluster"]["extensions"] = _extension([servers[1].url])
        both = tmp_path / "both.kubeconfig"
        both.write_text(yaml.safe_dump(doc))
        yield servers, both
    finally:
        for server in servers:
            server.stop()
        etcd.stop()


class Seen:
    def __init__(self):
        self.added: list[str] = []
        self.changed = asyncio.Event()

    def on_add(self, key, view):
        self.added.append(key)
        self.changed.set()

    async def until(self, names: set[str]):
        async def wait():
            while not names <= set(self.added):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), WAIT_S)


async def _create(client: AsyncClient, name: str) -> int:
    """Create like a controller does: retry on a connection failure; AlreadyExists on a retry
    means the earlier attempt was applied. Returns the failed attempts."""
    failures = 0
    while True:
        try:
            await client.create(CONFIGMAPS, "default", {"metadata": {"name": name}})
            return failures
        except ConnectionFailed:
            failures += 1
            assert failures < 3, f"create {name}: still failing"
        except ApiError as exc:
            if exc.reason == "AlreadyExists" and failures:
                return failures
            raise


async def test_informer_and_writes_survive_a_sigkilled_server(pair):
    (a, b), kubeconfig = pair
    client = AsyncClient.from_kubeconfig(str(kubeconfig))
    assert client.servers.servers == (a.url, b.url)
    seen = Seen()
    inf = Informer(client, CONFIGMAPS, namespace="default", on_add=seen.on_add)
    inf.start()
    try:
        await asyncio.wait_for(inf.synced.wait(), WAIT_S)
        before = {f"before-{i}" for i in range(5)}
        for name in sorted(before):
            assert await _create(client, name) == 0
        await seen.until({f"default/{n}" for n in before})
        assert client.server == a.url

        a.kill()  # SIGKILL: no goodbye on any connection
        t0 = time.monotonic()
        after = [f"after-{i}" for i in range(20)]
        failed = [await _create(client, name) for name in after]
        first_ok_s = time.monotonic() - t0
        # At most the one write that was in flight on a dead kept-alive connection fails
        # (and is retried, as every caller does); every other goes to the survivor at once.
        assert sum(failed) <= 1, failed
        assert client.server == b.url and client.servers.failovers == 1
        assert first_ok_s < 5, f"20 writes took {first_ok_s:.1f}s across the failover"

        # No event lost, none doubled; the watch resumed from its resourceVersion on the
        # survivor instead of listing again.
        await seen.until({f"default/{n}" for n in after})
        assert sorted(seen.added) == sorted(f"default/{n}" for n in (*before, *after))
        assert inf.relists == 1
        assert len(inf.cache) == 25
    finally:
        await inf.stop()
        await client.close()


def test_rest_client_and_kubectl_use_the_survivor(pair):
    (a, b), kubeconfig = pair
    client = RestClient(Kubeconfig.load(str(kubeconfig), env={}).connection(None), timeout=10)
    client.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "default")
    assert client.server == a.url
    a.kill()
    # A GET on the kept-alive connection to the dead server is repeated on the survivor.
    assert client.get(CONFIGMAPS, "x", "default")["metadata"]["name"] == "x"
    assert client.server == b.url
    client.create(CONFIGMAPS, {"metadata": {"name": "y"}}, "default")
    # kubectl keeps the extension and ignores it: it talks to `server` only.
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = b.url
    doc["clusters"][0]["cluster"]["extensions"] = _extension([a.url])
    for_kubectl = kubeconfig.with_name("kubectl.kubeconfig")
    for_kubectl.write_text(yaml.safe_dump(doc))
    out = subprocess.run([KUBECTL, "--kubeconfig", str(for_kubectl), "get", "configmaps",
                          "-o", "name"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert {"configmap/x", "configmap/y"} <= set(out.stdout.split())
    client.close()


def test_all_servers_down_names_each(tmp_path):
    conn = Kubeconfig.load(str(_kubeconfig(tmp_path / "kc", {
        "server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True,
        "extensions": _extension(["https://127.0.0.1:2"])})), env={}).connection(None)
    with pytest.raises(ConnectionFailed) as exc:
        RestClient(conn).get_json("/version")
    assert str(exc.value).startswith("Unable to connect to any of 2 API servers: 127.0.0.1:1: "
                                     "The connection to the server 127.0.0.1:1 was refused")


async def _gateway(status: int) -> web.AppRunner:
    """A proxy whose backend is gone: every request gets `status` and a page, no Status."""
    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status, text="no healthy upstream")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_gateway_errors_move_reads_not_writes(pair):
    (a, b), kubeconfig = pair
    runner = await _gateway(503)
    proxy = "http://127.0.0.1:%d" % runner.addresses[0][1]
    client = AsyncClient.from_kubeconfig(str(kubeconfig), server=f"{proxy},{b.url}")
    try:
        # A read answered 503 by the proxy is asked again of the next server.
        assert (await client.list(CONFIGMAPS, "default"))["kind"] == "ConfigMapList"
        assert client.server == b.url
        client.servers.failed(b.url)  # back to the proxy
        assert client.server == proxy
        # A write is not repeated (the proxy may have passed it on): the 503 is the answer,
        # and the next request goes to the next server.
        with pytest.raises(ApiError) as exc:
            await client.create(CONFIGMAPS, "default", {"metadata": {"name": "gw"}})
        assert exc.value.code == 503
        assert client.server == b.url
        await client.create(CONFIGMAPS, "default", {"metadata": {"name": "gw"}})
        # A watch opens on the next server too.
        client.servers.failed(b.url)
        events = client.watch(CONFIGMAPS, "default", timeout_s=5)
        first = await asyncio.wait_for(events.__anext__(), WAIT_S)
        assert first["type"] == "ADDED" and client.server == b.url
        await events.aclose()
    finally:
        await client.close()
        await runner.cleanup()


class StubServer:
    """An API server stand-in on loopback for what a real one does not do on purpose: a list
    at resourceVersion 5, and watches that hang, end at once, or deliver one event."""

    def __init__(self, watch: str):
        self.watch = watch  # "hang", "empty" or "event"
        self.lists: list[dict] = []
        self.watches: list[dict] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.query.get("watch") not in ("true", "1"):
                self.lists.append(dict(request.query))
                return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1",
                                          "metadata": {"resourceVersion": "5"}, "items": []})
            self.watches.append(dict(request.query))
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            if self.watch == "hang":
                await asyncio.sleep(3600)
            elif self.watch == "event":
                event = {"type": "ADDED", "object": {"metadata": {
                    "name": "late", "namespace": "default", "resourceVersion": "6"}}}
                await response.write(json.dumps(event).encode() + b"\n")
                await asyncio.sleep(3600)
            await response.write_eof()
            return response
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/default/configmaps", handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return "http://127.0.0.1:%d" % self.runner.addresses[0][1]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def test_a_stuck_watch_is_broken_off_and_resumed_on_the_next_server(tmp_path):
    stuck, good = StubServer("hang"), StubServer("event")
    servers = f"{await stuck.start()},{await good.start()}"
    kc = _kubeconfig(tmp_path / "kc", {"server": "http://unused"})
    client = AsyncClient.from_kubeconfig(str(kc), server=servers, watch_idle_timeout_s=0.5)
    seen = Seen()
    inf = Informer(client, CONFIGMAPS, namespace="default", on_add=seen.on_add)
    inf.start()
    try:
        await seen.until({"default/late"})
        # Listed once on the first server; its silent watch was given up after 0.5 s and the
        # next server asked for the events after the listed resourceVersion: no relist.
        assert (len(stuck.lists), len(stuck.watches), len(good.lists)) == (1, 1, 0)
        assert good.watches[0]["resourceVersion"] == "5"
        assert inf.resource_version == "6" and inf.relists == 1
    finally:
        await inf.stop()
        await client.close()
        await stuck.stop()
        await good.stop()


async def test_watches_that_end_at_once_back_off(tmp_path):
    empty = StubServer("empty")
    server = await empty.start()
    kc = _kubeconfig(tmp_path / "kc", {"server": "http://unused"})
    client = AsyncClient.from_kubeconfig(str(kc), server=server)
    inf = Informer(client, CONFIGMAPS, namespace="default")
    inf.start()
    try:
        await asyncio.wait_for(inf.synced.wait(), WAIT_S)
        await asyncio.sleep(2.0)  # the measured interval: how often it comes back
        # 0.2, 0.4, 0.8 s (+ jitter) between attempts: a handful, not thousands.
        assert 2 <= len(empty.watches) <= 5, len(empty.watches)
    finally:
        await inf.stop()
        await client.close()
        await empty.stop()
