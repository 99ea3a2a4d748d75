"""The TCP relay over real loopback sockets, on uvloop as in production."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time

import pytest
import uvloop

from relay_helpers import LOOP, forwarding, refused_port, tcp_backend, until
from meshnet.proxy.forwarding import Options
from meshnet.proxy.table import ProxyTable
from meshnet.proxy.tcp import start_tcp_listener
from meshnet.proxy.views import LEAST_CONN


pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")


@pytest.fixture
def event_loop_policy():
    return uvloop.EventLoopPolicy()


async def ask(port: int, payload: bytes = b"hi") -> bytes:
    reader, writer = await asyncio.open_connection(LOOP, port)
    writer.write(payload)
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return data


async def backends(*names):
    servers = [await tcp_backend(n) for n in names]
    return [s for s, _ in servers], [p for _, p in servers]


async def test_round_robin_reaches_every_backend():
    servers, ports = await backends("a", "b", "c")
    fwd, key, _ = forwarding("TCP", ports)
    listener = await start_tcp_listener(fwd, key)
    try:
        answers = [await ask(key.port) for _ in range(6)]
        assert answers == [b"a:hi", b"b:hi", b"c:hi"] * 2
        await until(lambda: not fwd.connections, "connections to finish")
        svc = "default/web/TCP"
        assert fwd.metrics.connections.get(svc) == 6
        assert fwd.metrics.bytes.get(svc, "to_endpoint") == 12
        assert fwd.metrics.bytes.get(svc, "to_client") == 24
        assert fwd.metrics.active.get(svc) == 0
    finally:
        listener.close()
        for s in servers:
            s.close()


async def test_no_endpoints_resets_at_once():
    fwd, key, _ = forwarding("TCP", [])
    listener = await start_tcp_listener(fwd, key)
    try:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOP, key.port)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        assert time.monotonic() - start < 0.5
        assert fwd.metrics.errors.get("default/web/TCP", "no_endpoints") == 1
    finally:
        listener.close()


async def test_refused_endpoint_is_retried_and_backed_off():
    servers, ports = await backends("live")
    fwd, key, route = forwarding("TCP", [refused_port(), ports[0]])
    listener = await start_tcp_listener(fwd, key)
    try:
        answers = [await ask(key.port) for _ in range(4)]
        assert answers == [b"live:hi"] * 4, "no connection fails"
        assert fwd.metrics.errors.get("default/web/TCP", "connect_failed") == 1, \
            "the dead endpoint is tried once, then kept out by backoff"
        dead = route.endpoints[0]
        assert dead in fwd.balancer(route).failures
    finally:
        listener.close()
        servers[0].close()


async def test_all_endpoints_refusing_resets():
    fwd, key, _ = forwarding("TCP", [refused_port(), refused_port()])
    listener = await start_tcp_listener(fwd, key)
    try:
        reader, writer = await asyncio.open_connection(LOOP, key.port)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        assert fwd.metrics.errors.get("default/web/TCP", "exhausted") == 1
    finally:
        listener.close()


def blackhole() -> tuple[list[socket.socket], int]:
    """A loopback port whose accept queue is full: SYNs to it are dropped, connects hang."""
    listener = socket.socket()
    listener.bind((LOOP, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the queue; later connects stay in SYN_SENT
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((LOOP, port))
        fillers.append(s)
    time.sleep(0.05)
    return [listener, *fillers], port


async def test_connect_budget_runs_out_on_an_unresponsive_endpoint():
    socks, port = blackhole()
    fwd, key, route = forwarding("TCP", [port], options=Options(connect_budget_s=0.3))
    listener = await start_tcp_listener(fwd, key)
    try:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOP, key.port)
        writer.write(b"hi")
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        took = time.monotonic() - start
        assert 0.25 < took < 1.0, f"refused after the 0.3 s budget, not {took:.2f} s"
        assert fwd.metrics.errors.get("default/web/TCP", "connect_failed") == 1
        assert fwd.metrics.errors.get("default/web/TCP", "exhausted") == 1
        assert route.endpoints[0] in fwd.balancer(route).failures, "backing off"
        await until(lambda: not fwd.connections and not fwd.deadlines.pending(),
                    "the connection and its deadline to be gone")
    finally:
        listener.close()
        for s in socks:
            s.close()


async def test_many_short_connections_leave_nothing_behind():
    """Each finished connection is freed at once (no reference cycles left to the GC) and
    leaves no deadline, balancer count or open relay behind."""
    import gc

    from meshnet.proxy.tcp import ClientSide

    servers, ports = await backends("a", "b")
    fwd, key, route = forwarding("TCP", ports)
    listener = await start_tcp_listener(fwd, key)
    gc.disable()
    try:
        answers = [await ask(key.port, b"x") for _ in range(40)]
        assert sorted(set(answers)) == [b"a:x", b"b:x"]
        await until(lambda: not fwd.connections, "every relay to finish")
        assert not fwd.deadlines.pending()
        assert all(n == 0 for n in fwd.balancer(route).conns.values())
        alive = [o for o in gc.get_objects() if isinstance(o, ClientSide) and o.fwd is fwd]
        assert alive == [], f"{len(alive)} relays kept alive by reference cycles"
    finally:
        gc.enable()
        listener.close()
        for s in servers:
            s.close()


async def test_half_close_both_directions():
    """The client shuts down its write side and still receives everything; then the server
    finishes first while the client keeps sending."""
    async def handler(reader, writer):
        first = await reader.readexactly(5)
        if first == b"hello":  # client closes first: read to EOF, answer after it
            rest = await reader.read()
            writer.write(b"got:" + first + rest)
            writer.close()
        else:  # server closes its side first, then keeps reading
            writer.write(b"bye")
            writer.write_eof()
            rest = await reader.read()
            writer.close()
            got.set_result(first + rest)

    got = asyncio.get_running_loop().create_future()
    server, port = await tcp_backend("x", handler)
    fwd, key, _ = forwarding("TCP", [port])
    listener = await start_tcp_listener(fwd, key)
    try:
        assert await ask(key.port, b"hello world") == b"got:hello world"

        reader, writer = await asyncio.open_connection(LOOP, key.port)
        writer.write(b"other")
        assert await reader.read() == b"bye", "server's EOF arrives"
        writer.write(b" still sending")  # our direction still open
        writer.write_eof()
        assert await asyncio.wait_for(got, 5) == b"other still sending"
        writer.close()
    finally:
        listener.close()
        server.close()


async def test_backpressure_pauses_the_client_and_delivers_intact():
    size = 64 * 1024 * 1024
    payload = os.urandom(1024 * 1024) * 64
    release = asyncio.Event()
    digest = asyncio.get_running_loop().create_future()

    async def slow_reader(reader, writer):
        await release.wait()
        h, n = hashlib.sha256(), 0
        while chunk := await reader.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        digest.set_result((n, h.hexdigest()))
        writer.close()

    server, port = await tcp_backend("x", slow_reader)
    fwd, key, _ = forwarding("TCP", [port])
    listener = await start_tcp_listener(fwd, key)
    try:
        reader, writer = await asyncio.open_connection(LOOP, key.port)
        writer.write(payload)
        sender = asyncio.ensure_future(writer.drain())
        await until(lambda: any(c.flow is not None and "peer-full" in c.flow.reasons
                                for c in fwd.connections),
                    "the relay to pause reading the client")
        conn, = fwd.connections
        assert conn.peer.transport.get_write_buffer_size() < 1024 * 1024, \
            "the proxy does not buffer the stream"
        assert not sender.done(), "the client is held back"
        release.set()
        await sender
        writer.write_eof()
        n, hexdigest = await asyncio.wait_for(digest, 30)
        assert (n, hexdigest) == (size, hashlib.sha256(payload).hexdigest())
        writer.close()
    finally:
        listener.close()
        server.close()


async def test_established_connection_survives_table_swap():
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    server, port = await tcp_backend("x", echo)
    fwd, key, _ = forwarding("TCP", [port])
    listener = await start_tcp_listener(fwd, key)
    try:
        reader, writer = await asyncio.open_connection(LOOP, key.port)
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        fwd.table = ProxyTable()  # the service is gone for new connections
        writer.write(b"two")
        assert await reader.readexactly(3) == b"two"
        r2, w2 = await asyncio.open_connection(LOOP, key.port)
        with pytest.raises(ConnectionResetError):
            await r2.read()
        w2.close()
        writer.close()
    finally:
        listener.close()
        server.close()


async def test_least_conn_sends_new_connections_to_the_idle_backend():
    held = []

    async def hold(reader, writer):
        held.append(writer)
        writer.write(b"x")
        await reader.read()
        writer.close()

    async def quick(reader, writer):
        writer.write(b"q")
        await reader.read()
        writer.close()

    s1, p1 = await tcp_backend("busy", hold)
    s2, p2 = await tcp_backend("idle", quick)
    fwd, key, route = forwarding("TCP", [p1, p2], policy=LEAST_CONN)
    listener = await start_tcp_listener(fwd, key)
    try:
        r1, w1 = await asyncio.open_connection(LOOP, key.port)
        assert await r1.readexactly(1) == b"x", "first connection goes to the first backend"
        for _ in range(3):
            r, w = await asyncio.open_connection(LOOP, key.port)
            assert await r.readexactly(1) == b"q", "the busy backend is avoided"
            w.write_eof()
            await r.read()
            w.close()
        w1.close()
    finally:
        listener.close()
        s1.close()
        s2.close()

