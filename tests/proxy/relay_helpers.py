"""Loopback helpers for the relay tests: free ports, backends, a Forwarding with one route."""

from __future__ import annotations

import asyncio
import random
import socket

from meshnet.proxy.balancer import Balancer
from meshnet.proxy.forwarding import Forwarding, Options
from meshnet.proxy.table import INTERNAL, ListenerKey, ProxyTable, Route, ServicePortName
from meshnet.proxy.views import ROUND_ROBIN, EndpointView

LOOP = "127.0.0.1"
WAIT_S = 10.0


class NoShuffle(random.Random):
    def shuffle(self, x):
        return None


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOP, 0))
        return s.getsockname()[1]


def refused_port() -> int:
    """A loopback port nobody listens on (connects get ECONNREFUSED)."""
    return free_port()


def forwarding(protocol: str, ports: list[int], *, policy: str = ROUND_ROBIN,
               affinity_s: int = 0, options: Options | None = None
               ) -> tuple[Forwarding, ListenerKey, Route]:
    fwd = Forwarding(options)
    key = ListenerKey(protocol, LOOP, free_port(socket.SOCK_STREAM if protocol == "TCP"
                                                else socket.SOCK_DGRAM))
    route = Route(ServicePortName("default", "web", "", protocol), INTERNAL,
                  tuple(EndpointView("", protocol, LOOP, p) for p in ports), policy,
                  affinity_s)
    fwd.table = ProxyTable(listeners={key: route})
    fwd.balancers[route.balancer_key] = Balancer(NoShuffle())
    return fwd, key, route


async def tcp_backend(name: str, handler=None) -> tuple[asyncio.AbstractServer, int]:
    """A server answering `<name>:<what it read until EOF>` by default."""

    async def default(reader, writer):
        data = await reader.read(1 << 20)
        writer.write(name.encode() + b":" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler or default, LOOP, 0)
    return server, server.sockets[0].getsockname()[1]


async def until(predicate, what: str, timeout: float = WAIT_S) -> None:
    """Poll a condition on the loop (relay state has no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
