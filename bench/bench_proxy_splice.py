"""Does `os.splice` beat copying for bulk relaying? A measurement (not a test), on loopback.

    .venv/bin/python bench/bench_proxy_splice.py [--mib 1024] [--runs 3]

A sendfile source sends MIB MiB; a sink reads it to EOF. In between, one relay at a time,
each on uvloop in this process, one direction only (the one that carries the bulk):

- protocol: meshnet-proxy's own TCP relay (proxy/tcp.py: asyncio Protocols, data_received ->
  transport.write), through a real listener and route;
- copy: readiness callbacks on plain non-blocking sockets, recv_into a 1 MiB buffer + send
  (what a hand-written copy loop costs, without Protocol/transport overhead);
- splice: the same callbacks, but socket -> pipe -> socket with os.splice(SPLICE_F_MOVE |
  SPLICE_F_NONBLOCK) through a 1 MiB pipe: the bytes never enter user space.

Source, relay and sink each run in their own process pinned to their own CPU where there are
enough (else the relay gets CPU 1 alone). Prints GiB/s per relay (best of --runs).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import uvloop

F_SETPIPE_SZ = 1031
CHUNK = 1 << 20
FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0


def source(port: int, path: str) -> None:
    srv = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while True:
            conn, _ = srv.accept()
            with conn:
                off = 0
                while off < size:
                    off += os.sendfile(conn.fileno(), f.fileno(), off, size - off)


async def relay_fd(kind: str, listen_port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    srv = socket.create_server(("127.0.0.1", listen_port))
    srv.setblocking(False)
    print("ready", flush=True)
    while True:
        client, _ = await loop.sock_accept(srv)
        up = socket.create_connection(("127.0.0.1", upstream_port))
        up.setblocking(False)
        client.setblocking(False)
        done = loop.create_future()
        if kind == "splice":
            pump_splice(loop, up, client, done)
        else:
            pump_copy(loop, up, client, done)
        await done
        up.close()
        client.close()


def pump_copy(loop, src, dst, done):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    pending = [0, 0]  # start, end of unsent bytes in buf

    def readable():
        try:
            n = src.recv_into(view)
        except BlockingIOError:
            return
        if n == 0:
            loop.remove_reader(src.fileno())
            done.set_result(None)
            return
        pending[0], pending[1] = 0, n
        writable()

    def writable():
        while pending[0] < pending[1]:
            try:
                pending[0] += dst.send(view[pending[0]:pending[1]])
            except BlockingIOError:
                loop.remove_reader(src.fileno())
                loop.add_writer(dst.fileno(), writable)
                return
        loop.remove_writer(dst.fileno())
        loop.add_reader(src.fileno(), readable)

    loop.add_reader(src.fileno(), readable)


def pump_splice(loop, src, dst, done):
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    state = {"in_pipe": 0, "eof": False}

    def finish():
        os.close(r)
        os.close(w)
        done.set_result(None)

    def readable():
        try:
            n = os.splice(src.fileno(), w, CHUNK, flags=FLAGS)
        except BlockingIOError:
            return
        if n == 0:
            loop.remove_reader(src.fileno())
            state["eof"] = True
            if not state["in_pipe"]:
                finish()
            return
        state["in_pipe"] += n
        writable()

    def writable():
        while state["in_pipe"]:
            try:
                state["in_pipe"] -= os.splice(r, dst.fileno(), state["in_pipe"], flags=FLAGS)
            except BlockingIOError:
                loop.remove_reader(src.fileno())
                loop.add_writer(dst.fileno(), writable)
                return
        loop.remove_writer(dst.fileno())
        if state["eof"]:
            finish()
        else:
            loop.add_reader(src.fileno(), readable)

    loop.add_reader(src.fileno(), readable)


async def relay_protocol(listen_port: int, upstream_port: int) -> None:
    from meshnet.proxy.forwarding import Forwarding
    from meshnet.proxy.table import (CompiledService, ListenerKey, ProxyTable, Route,
                                     ServicePortName, update_table)
    from meshnet.proxy.tcp import start_tcp_listener
    from meshnet.proxy.views import EndpointView

    key = ListenerKey("TCP", "127.0.0.1", listen_port)
    route = Route(ServicePortName("bench", "bulk", "", "TCP"), "internal",
                  (EndpointView("", "TCP", "127.0.0.1", upstream_port),), "round-robin", 0)
    fwd = Forwarding()
    fwd.table = update_table(ProxyTable(), [CompiledService("bench/bulk", ((key, route),),
                                                            frozenset())])
    await start_tcp_listener(fwd, key)
    print("ready", flush=True)
    await asyncio.Event().wait()


def sink(port: int) -> dict:
    buf = memoryview(bytearray(CHUNK))
    total = 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.monotonic()
        while n := s.recv_into(buf):
            total += n
        return {"bytes": total, "seconds": time.monotonic() - start}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--ports", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        a, b = map(int, args.ports.split(","))
        if args.role == "source":
            source(a, args.file)
        elif args.role == "protocol":
            uvloop.run(relay_protocol(a, b))
        else:
            uvloop.run(relay_fd(args.role, a, b))
        return
    cpus = os.cpu_count() or 1
    procs = []
    with tempfile.NamedTemporaryFile(prefix="splice-", dir="/dev/shm") as f:
        block = os.urandom(CHUNK)
        for _ in range(args.mib):
            f.write(block)
        f.flush()
        try:
            src = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__,
                                    "--role", "source", "--ports", "17100,0", "--file", f.name],
                                   stdout=subprocess.PIPE)
            procs.append(src)
            src.stdout.readline()
            results = {}
            for i, kind in enumerate(("protocol", "copy", "splice")):
                port = 17101 + i
                relay = subprocess.Popen(["taskset", "-c", str(min(1, cpus - 1)),
                                          sys.executable, __file__, "--role", kind,
                                          "--ports", f"{port},17100"], stdout=subprocess.PIPE)
                procs.append(relay)
                relay.stdout.readline()
                best = 0.0
                for _ in range(args.runs):
                    got = sink(port)
                    assert got["bytes"] == args.mib * CHUNK, got
                    best = max(best, got["bytes"] / got["seconds"] / (1 << 30))
                results[kind] = round(best, 2)
                relay.terminate()
                relay.wait()
            print(json.dumps(results))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()


if __name__ == "__main__":
    main()
