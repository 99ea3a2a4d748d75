"""The Python cost of one proxied keep-alive request, without sockets (not a benchmark of
throughput): a ClientConnection and a pooled UpstreamConnection over fake transports, fed the
bytes wrk and the bench backend exchange.

    .venv/bin/python bench/bench_ingress_micro.py [REQUESTS] [--new-connection] [--unique]
    # instructions per request, deterministic (the difference of two counts):
    valgrind --tool=cachegrind --cache-sim=no .venv/bin/python bench/bench_ingress_micro.py 2000
    valgrind --tool=cachegrind --cache-sim=no .venv/bin/python bench/bench_ingress_micro.py 6000

--unique makes every request and every response head differ (a query string, a header), so
that none is found in the memos of heads (server.py, upstream.py): the cost of a miss.

Timings on a shared machine wander by tens of percent; instruction counts (PYTHONHASHSEED=0)
repeat to within a few hundred, which is what a change to the request path is judged by.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ingress"))

import uvloop  # noqa: E402

from fakes import endpoints, ingress, path, service, views  # noqa: E402
from meshnet.ingress.proxy import Proxy  # noqa: E402
from meshnet.ingress.routes import RoutingConfig, compile_routes  # noqa: E402
from meshnet.ingress.server import ClientConnection  # noqa: E402
from meshnet.ingress.upstream import UpstreamConnection  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 15:40:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
            b"hello, bench\n")
WARM_UP = 2000
BLOCK = 2000


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data):
        self.out.append(data)

    def writelines(self, data):
        self.out.extend(data)

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    abort = close

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.40", 80)}.get(name,
                                                                                       default)

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def can_write_eof(self):
        return True


CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"


async def run(count: int, new_connection: bool = False, unique: bool = False) -> None:
    """new_connection: a client connection per request (made, one request with
    `Connection: close`, lost), as wrk -H 'Connection: close' makes them. unique: no request
    or response head repeats."""
    table, _ = compile_routes(*views([ingress("a", {"bench.test": [path("/", "web")]})],
                                     [service("web")], [endpoints("web", ["10.0.0.1"])]),
                              RoutingConfig())
    proxy = Proxy()
    proxy.table = table
    upstream = UpstreamConnection(proxy.pool, ("10.0.0.1", 8080))
    upstream.connection_made(FakeTransport())
    proxy.pool.release(upstream)
    client = ClientConnection(proxy, "http", asyncio.get_running_loop())
    client_transport = FakeTransport()
    client.connection_made(client_transport)
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)  # as main.serve does
    loop = asyncio.get_running_loop()

    serial = iter(range(10**9))

    def heads(request: bytes) -> tuple[bytes, bytes]:
        if not unique:
            return request, RESPONSE
        n = b"%d" % next(serial)
        return (request.replace(b"GET / ", b"GET /?n=" + n + b" "),
                RESPONSE.replace(b"Content-Type", b"X-N: " + n + b"\r\nContent-Type"))

    def one_request():
        request, response = heads(REQUEST)
        client.data_received(request)
        upstream.data_received(response)

    def one_connection():
        request, response = heads(CLOSE_REQUEST)
        conn = ClientConnection(proxy, "http", loop, b"80")
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(request)
        upstream.data_received(response)
        conn.connection_lost(None)
        return transport

    step = one_connection if new_connection else one_request
    for _ in range(WARM_UP):
        step()
    out = one_connection().out if new_connection else client_transport.out
    assert out[-1].startswith(b"HTTP/1.1 200 OK"), out
    best = float("inf")
    for _ in range(max(1, count // BLOCK)):
        client_transport.out.clear()
        upstream.transport.out.clear()
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            step()
        best = min(best, time.perf_counter() - t0)
    print(f"{best / BLOCK * 1e6:.2f} us per request (the fastest block of {BLOCK})")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    uvloop.run(run(int(args[0]) if args else 20_000, "--new-connection" in sys.argv,
                   "--unique" in sys.argv))


if __name__ == "__main__":
    main()
