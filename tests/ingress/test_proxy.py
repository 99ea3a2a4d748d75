"""The HTTP proxy over real sockets on loopback: an in-process Proxy with a compiled table,
real aiohttp backends on 127.0.0.x, and raw-socket or aiohttp clients."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from meshnet.ingress.proxy import Proxy, ServerSettings
from meshnet.ingress.routes import compile_routes
from meshnet.ingress.server import start_listener

from backends import Backend, body_json
from fakes import endpoints, ingress, path, service, views

PROXY_HOST = "127.0.0.2"


class Harness:
    def __init__(self, settings=ServerSettings()):
        self.proxy = Proxy(settings)
        self.backends: list[Backend] = []
        self.server = None
        self.port = 0

    async def start(self, n_backends=2):
        for i in range(n_backends):
            self.backends.append(await Backend(f"b{i}", f"127.0.0.{10 + i}").start())
        self.server = await start_listener(self.proxy, PROXY_HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def route(self, ingresses, extra_endpoints=(), ready=None):
        """Compile: Service `web` -> all backends (or `ready` of them)."""
        ready = self.backends if ready is None else ready
        objs_s = [service("web", {"http": 80})]
        objs_e = [endpoints("web", [b.host for b in ready], {"http": self.backends[0].port})]
        for name, ips in extra_endpoints:
            objs_s.append(service(name, {"http": 80}))
            objs_e.append(endpoints(name, ips, {"http": self.backends[0].port}))
        table, problems = compile_routes(*views(ingresses, objs_s, objs_e))
        self.proxy.table = table
        return problems

    async def stop(self):
        self.server.close()
        for conn in list(self.proxy.connections):
            conn.transport.abort()
        self.proxy.pool.close()
        for b in self.backends:
            await b.stop()


@pytest.fixture
async def h():
    harness = await Harness().start()
    # All backends listen on the same port number (each on its own address) so that one
    # Endpoints port serves them all.
    port = harness.backends[0].port
    for b in harness.backends[1:]:
        await b.stop()
        b.port = port
        await b.start()
    harness.route([ingress("web", {"a.com": [path("/", "web")]})])
    yield harness
    await harness.stop()


async def raw(port: int, data: bytes, *, host=PROXY_HOST, timeout=5.0) -> bytes:
    """Send data, read until the proxy closes the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()


def get(path_="/", host="a.com", extra=b"") -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: %b\r\n%b" % (path_.encode(), host.encode(), extra)


async def test_forwards_query_unchanged_and_sets_forwarded_headers(h):
    out = await raw(h.port, get("/p/q?x=1&y=%20z", extra=b"X-Forwarded-For: 6.6.6.6\r\n"
                                b"Connection: close\r\n\r\n"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    seen = body_json(out)
    assert seen["path_qs"] == "/p/q?x=1&y=%20z"
    hdr = {k.lower(): v for k, v in seen["headers"].items()}
    assert hdr["x-forwarded-for"] == "127.0.0.1"  # the spoofed value is replaced
    assert (hdr["x-real-ip"], hdr["x-forwarded-proto"], hdr["x-forwarded-host"],
            hdr["x-forwarded-port"], hdr["host"]) == \
        ("127.0.0.1", "http", "a.com", str(h.port), "a.com")
    assert b"\r\nServer: " in out and b"\r\nDate: " in out and b"Connection: close" in out


async def test_keep_alive_both_sides_and_round_robin(h):
    async with aiohttp.ClientSession() as s:
        seen = []
        for _ in range(10):
            async with s.get(f"http://{PROXY_HOST}:{h.port}/x", headers={"Host": "a.com"}) as r:
                assert r.status == 200
                seen.append((await r.json())["backend"])
    assert sorted(seen) == ["b0"] * 5 + ["b1"] * 5  # round robin over both endpoints
    assert h.proxy.pool.connects == 2  # one pooled connection per backend, reused
    assert len(h.proxy.connections) <= 1


ERROR_CASES = [
    # (description, host, path, expected status line)
    ("no route: 404", "nope.com", "/", b"HTTP/1.1 404 Not Found"),
    ("Service without ready endpoints: 503", "empty.com", "/", b"HTTP/1.1 503 Service"),
    ("no Service at all: 503", "ghost.com", "/", b"HTTP/1.1 503 Service"),
    ("nothing listening on the endpoint: 502", "dead.com", "/", b"HTTP/1.1 502 Bad Gateway"),
    ("dead endpoint first: the next one answers", "half.com", "/", b"HTTP/1.1 200 OK"),
]


@pytest.mark.parametrize("desc,host,path_,expected", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
async def test_error_answers(h, desc, host, path_, expected):
    h.route([ingress("i", {"empty.com": [path("/", "empty")], "ghost.com": [path("/", "ghost")],
                           "dead.com": [path("/", "dead")], "half.com": [path("/", "half")]})],
            extra_endpoints=[("empty", []), ("dead", ["127.0.0.99"]),
                             ("half", ["127.0.0.1", "127.0.0.10"])])
    # half.com: 127.0.0.1 sorts first and nothing listens there on the backends' port
    out = await raw(h.port, get(path_, host, b"Connection: close\r\n\r\n"))
    assert out.startswith(expected), (desc, out[:200])


async def test_before_first_sync_answers_503(h):
    h.proxy.table = None
    out = await raw(h.port, get("/", "a.com", b"Connection: close\r\n\r\n"), timeout=2)
    assert out.startswith(b"HTTP/1.1 503 ")


async def test_redirects_tls_hosts_with_308(h):
    h.route([ingress("i", {"s.com": [path("/", "web")]}, tls=[(["s.com"], "cert")])])
    out = await raw(h.port, get("/a/b?c=d", "s.com:8080", b"Connection: close\r\n\r\n"))
    assert out.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    assert b"\r\nLocation: https://s.com/a/b?c=d\r\n" in out


async def test_chunked_request_is_rechunked_and_head_has_no_body(h):
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    out = await raw(h.port, b"POST /c HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n" + body + get("/h", extra=b"Connection: close\r\n\r\n")
                    .replace(b"GET", b"HEAD"))
    first, second = out.split(b"HTTP/1.1 ", 2)[1:]
    assert json.loads(first.split(b"\r\n\r\n", 1)[1])["body_bytes"] == 11
    assert second.startswith(b"200 OK") and second.endswith(b"\r\n\r\n")  # HEAD: head only


async def test_pipelined_requests_are_answered_in_order(h):
    out = await raw(h.port, get("/1", extra=b"\r\n") + get("/2", extra=b"\r\n") +
                    get("/3", extra=b"Connection: close\r\n\r\n"))
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path_qs"]
             for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert paths == ["/1", "/2", "/3"]


async def test_websocket_echo_through_the_proxy(h):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"http://{PROXY_HOST}:{h.port}/ws",
                                headers={"Host": "a.com"}) as ws:
            for i in range(3):
                await ws.send_str(f"m{i}")
                msg = await ws.receive(timeout=5)
                assert msg.data.endswith(f":m{i}")
            # a routing change does not touch an open tunnel
            h.route([ingress("other", {"b.com": [path("/", "web")]})])
            await ws.send_str("after")
            assert (await ws.receive(timeout=5)).data.endswith(":after")


SMUGGLING_CASES = [
    ("Content-Length with Transfer-Encoding",
     b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.com\r\n\r\n"),
    ("two Content-Lengths", b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\n"
     b"Content-Length: 40\r\n\r\nabc"),
    ("Transfer-Encoding not ending in chunked",
     b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("space before the colon", b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding : chunked"
     b"\r\n\r\n0\r\n\r\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a.com\r\nX-A: b\r\n c\r\n\r\n"),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nabc\r\n0\r\n\r\n"),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n"
     b"\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: -1\r\n\r\n"),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a.com\n\n"),
    ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: a.com\r\nX: a\x00b\r\n\r\n"),
]


@pytest.mark.parametrize("desc,data", SMUGGLING_CASES, ids=[c[0] for c in SMUGGLING_CASES])
async def test_smuggling_shapes_are_rejected_and_the_connection_closed(h, desc, data):
    out = await raw(h.port, data)
    assert out.startswith(b"HTTP/1.1 400 Bad Request"), desc
    assert out.count(b"HTTP/1.1") == 1, desc  # nothing after the bad request was served


async def test_oversized_head_is_431_and_others_keep_being_served(h):
    out = await raw(h.port, get("/", extra=b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n"))
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    out = await raw(h.port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a.com\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    out = await raw(h.port, get("/", extra=b"Connection: close\r\n\r\n"))
    assert out.startswith(b"HTTP/1.1 200 OK")


async def test_slow_header_is_408_and_idle_keepalive_closes():
    h = await Harness(ServerSettings(header_timeout_s=0.3, keepalive_timeout_s=0.3)).start(1)
    try:
        h.route([ingress("web", {"a.com": [path("/", "web")]})])
        reader, writer = await asyncio.open_connection(PROXY_HOST, h.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a")  # ... and nothing more
        out = await asyncio.wait_for(reader.read(-1), 3)
        assert out.startswith(b"HTTP/1.1 408 Request Timeout")
        writer.close()
        reader, writer = await asyncio.open_connection(PROXY_HOST, h.port)
        writer.write(get("/", extra=b"\r\n"))
        out = await asyncio.wait_for(reader.read(-1), 3)  # closed after the idle timeout
        assert out.startswith(b"HTTP/1.1 200 OK") and out.count(b"HTTP/1.1") == 1
        writer.close()
    finally:
        await h.stop()


async def test_slow_backend_is_504():
    h = await Harness().start(1)
    try:
        h.route([ingress("web", {"a.com": [path("/", "web")]},
                         annotations={"meshnet.io/proxy-read-timeout": "300ms"})])
        out = await raw(h.port, get("/slow/2", extra=b"Connection: close\r\n\r\n"))
        assert out.startswith(b"HTTP/1.1 504 Gateway Timeout")
    finally:
        await h.stop()


async def test_body_size_annotation_is_413(h):
    h.route([ingress("web", {"a.com": [path("/", "web")]},
                     annotations={"meshnet.io/proxy-body-size": "1k"})])
    out = await raw(h.port, b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 2000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")


async def test_backend_not_reading_the_body_is_504_after_the_send_timeout():
    """proxy-send-timeout: a backend that accepts the connection but never reads."""
    stalled = []

    class Stall(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()  # its receive buffer fills; the proxy's writes stall
            stalled.append(transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stall, "127.0.0.12", 0)
    h = await Harness().start(1)
    try:
        port = server.sockets[0].getsockname()[1]
        h.proxy.table = compile_routes(*views(
            [ingress("web", {"a.com": [path("/", "stall")]},
                     annotations={"meshnet.io/proxy-send-timeout": "300ms"})],
            [service("stall", {"http": 80})], [endpoints("stall", ["127.0.0.12"],
                                                         {"http": port})]))[0]
        size = 256 << 20
        reader, writer = await asyncio.open_connection(PROXY_HOST, h.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"\0" * (16 << 20))  # enough to fill every buffer on the way
        t0 = loop.time()
        out = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        assert out.startswith(b"HTTP/1.1 504 Gateway Timeout"), out[:100]
        assert loop.time() - t0 < 5
        assert h.proxy.upstream_failures.get("timeout") == 1
    finally:
        await h.stop()
        server.close()
        for t in stalled:
            t.abort()


async def test_trusted_proxy_forwarded_headers_are_kept_and_extended():
    h = await Harness(ServerSettings(trusted_proxies=("127.0.0.0/8",))).start(1)
    try:
        h.route([ingress("web", {"a.com": [path("/", "web")]})])
        out = await raw(h.port, get("/", extra=b"X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"
                                    b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
                                    b"Connection: close\r\n\r\n"))
        hdr = {k.lower(): v for k, v in body_json(out)["headers"].items()}
        assert (hdr["x-forwarded-for"], hdr["x-real-ip"], hdr["x-forwarded-proto"],
                hdr["x-forwarded-port"]) == \
            ("203.0.113.9, 10.0.0.1, 127.0.0.1", "10.0.0.1", "https", "443")
    finally:
        await h.stop()
