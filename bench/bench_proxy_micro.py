"""meshnet-proxy's cost of a new TCP connection, on loopback in one process (not a test; a tool
for profiling).

    .venv/bin/python bench/bench_proxy_micro.py [run] [--connections 2000] [--direct]
    .venv/bin/python bench/bench_proxy_micro.py instructions

`run` (the default) starts, in one uvloop event loop, a backend on 127.0.0.1 that answers a
small request with a small response and closes (as bench_proxy.py's HAProxy backend does with
`Connection: close`), the real relay (`start_tcp_listener` over a Forwarding with one route to
that backend, made by tests/proxy/relay_helpers.py) and a client making `--connections`
sequential new connections through it: connect, send the request, read the response to EOF,
close. Client and backend are bare Protocols, so that little besides the relay runs.
`--direct` leaves the relay out (the client connects to the backend itself).

`instructions` runs `run` under `valgrind --tool=cachegrind --cache-sim=no` with 1,000 and
3,000 connections, through the relay and direct, and prints the differences per connection:
every user-space instruction one new connection costs (uvloop, libc, the interpreter, our
code), deterministic (PYTHONHASHSEED=0, and the connect deadlines' timer kept out of it, see
`_run`), not the kernel's. The relay's own cost is the
first figure less the second. Measured on 2026-11-27 (Python 3.11, uvloop 0.23): see
docs/proxy.md, "Cost of a new connection".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "proxy"))

import uvloop  # noqa: E402

from relay_helpers import LOOP, forwarding  # noqa: E402
from meshnet.proxy.tcp import start_tcp_listener  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
WARM_UP = 200


class _Backend(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE)
        self.transport.close()


class _Client(asyncio.Protocol):
    def __init__(self, done: asyncio.Future):
        self.done = done
        self.received = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set_result(self.received)


async def _connections(port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(count):
        done = loop.create_future()
        await loop.create_connection(functools.partial(_Client, done), LOOP, port)
        if await done != len(RESPONSE):
            raise SystemExit(f"a connection got {done.result()} bytes, not {len(RESPONSE)}")


async def _run(count: int, direct: bool) -> None:
    loop = asyncio.get_running_loop()
    backend = await loop.create_server(_Backend, LOOP, 0)
    port = backend.sockets[0].getsockname()[1]
    fwd, key, _ = forwarding("TCP", [port])
    # One connect-deadline bucket for the whole run, as at full speed one 50 ms bucket serves
    # hundreds of connections; under valgrind a new bucket (and a timer) every 50 ms of wall
    # clock would add an amount that depends on the machine's speed.
    fwd.deadlines.TICK_S = 3600.0
    listener = None
    if not direct:
        listener = await start_tcp_listener(fwd, key)
        port = key.port
    gc.collect()
    gc.freeze()  # as meshnet-proxy does after its first sync (proxy/main.py)
    await _connections(port, WARM_UP)
    await _connections(port, count)
    if listener is not None:
        listener.close()
    backend.close()


def run(args) -> None:
    uvloop.run(_run(args.connections, args.direct))
    print(f"{args.connections} connections {'direct' if args.direct else 'through the relay'}")


def _instructions_for(count: int, direct: bool) -> int:
    """Cachegrind's instruction total of a `run` of `count` connections."""
    out = tempfile.mktemp(prefix="cachegrind-proxy-")
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
            sys.executable, __file__, "run", "--connections", str(count)]
    done = subprocess.run(argv + ["--direct"] * direct, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    if os.path.exists(out):
        os.unlink(out)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return int(re.search(r"I\s+refs:\s+([\d,]+)", done.stderr).group(1).replace(",", ""))


def instructions(args) -> None:
    low, high = 1000, 3000
    per = {}
    for direct in (False, True):
        per[direct] = (_instructions_for(high, direct)
                       - _instructions_for(low, direct)) / (high - low)
    print(f"through the relay: {per[False]:,.0f} user-space instructions per new connection")
    print(f"direct:            {per[True]:,.0f}")
    print(f"the relay's share: {per[False] - per[True]:,.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="run", choices=("run", "instructions"))
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--direct", action="store_true", help="run: the client straight to the "
                   "backend, without the relay")
    args = p.parse_args()
    {"run": run, "instructions": instructions}[args.mode](args)


if __name__ == "__main__":
    main()
