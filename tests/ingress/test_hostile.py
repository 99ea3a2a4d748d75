"""Hostile clients against the proxy over loopback: a slowloris of 1,000 connections is cut
off by the header timeout (408) while a normal client keeps being served throughout."""

from __future__ import annotations

import asyncio
import time

from meshnet.ingress.proxy import ServerSettings

from test_proxy import PROXY_HOST, Harness, get, raw
from fakes import ingress, path

SLOWLORIS_CONNECTIONS = 1000
HEADER_TIMEOUT_S = 1.5


async def test_slowloris_of_1000_connections_is_cut_off_and_others_are_served():
    h = await Harness(ServerSettings(header_timeout_s=HEADER_TIMEOUT_S)).start(1)
    try:
        h.route([ingress("web", {"a.com": [path("/", "web")]})])
        conns = []
        for _ in range(SLOWLORIS_CONNECTIONS):
            reader, writer = await asyncio.open_connection(PROXY_HOST, h.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: a.com\r\nX-")
            conns.append((reader, writer))
        t0 = time.monotonic()

        async def trickle(writer):  # one more header byte every 200 ms
            try:
                while True:
                    await asyncio.sleep(0.2)
                    writer.write(b"a")
            except (ConnectionError, RuntimeError):
                return

        tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
        served = 0
        while time.monotonic() - t0 < HEADER_TIMEOUT_S:
            out = await raw(h.port, get("/", extra=b"Connection: close\r\n\r\n"), timeout=2)
            assert out.startswith(b"HTTP/1.1 200 OK")
            served += 1
        async def closed_by_proxy(reader):
            try:
                return await reader.read(-1)
            except ConnectionError:
                # the trickler wrote after the proxy closed: the kernel answered RST, which
                # discards the unread 408; the proxy's own count below still shows it
                return b"reset"

        answers = await asyncio.wait_for(
            asyncio.gather(*(closed_by_proxy(r) for r, _ in conns)), HEADER_TIMEOUT_S + 5)
        elapsed = time.monotonic() - t0
        for t in tricklers:
            t.cancel()
        for _, w in conns:
            w.close()
        assert all(a.startswith(b"HTTP/1.1 408 Request Timeout") or a == b"reset"
                   for a in answers)
        assert h.proxy.requests.get("", "", "408") == SLOWLORIS_CONNECTIONS
        assert served > 5
        assert elapsed < HEADER_TIMEOUT_S + 3
        assert len(h.proxy.connections) == 0
        print(f"slowloris: {SLOWLORIS_CONNECTIONS} cut off after {elapsed:.1f}s; "
              f"{served} normal requests served meanwhile")
    finally:
        await h.stop()
