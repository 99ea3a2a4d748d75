"""The UDP relay over real loopback sockets, on uvloop as in production."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import uvloop

from relay_helpers import LOOP, forwarding, until
from meshnet.proxy.forwarding import Options
from meshnet.proxy.udp import start_udp_listener

pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4


@pytest.fixture
def event_loop_policy():
    return uvloop.EventLoopPolicy()


class Backend(asyncio.DatagramProtocol):
    """Answers `<name>:<datagram>`; counts what it got."""

    def __init__(self, name: bytes):
        self.name = name
        self.got: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.append(data)
        self.transport.sendto(self.name + b":" + data, addr)


async def backend(name: bytes) -> tuple[Backend, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: Backend(name),
                                                           local_addr=(LOOP, 0))
    return proto, transport.get_extra_info("sockname")[1]


class Client(asyncio.DatagramProtocol):
    """A client socket of its own (its own source port = its own flow)."""

    def __init__(self):
        self.replies: asyncio.Queue = asyncio.Queue()

    @classmethod
    async def open(cls) -> "Client":
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(LOOP, 0))
        return proto

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.replies.put_nowait((data, addr))

    def send(self, port: int, data: bytes) -> None:
        self.transport.sendto(data, (LOOP, port))

    async def ask(self, port: int, data: bytes) -> tuple[bytes, tuple]:
        self.send(port, data)
        return await asyncio.wait_for(self.replies.get(), 5)

    def close(self):
        self.transport.close()


async def test_flows_round_robin_and_replies_come_from_the_service_address():
    backs = [await backend(n) for n in (b"a", b"b", b"c")]
    fwd, key, _ = forwarding("UDP", [p for _, p in backs])
    listener = await start_udp_listener(fwd, key)
    clients = [await Client.open() for _ in range(3)]
    try:
        answers = []
        for c in clients:
            data, source = await c.ask(key.port, b"q")
            answers.append(data)
            assert source == (key.ip, key.port), "reply from the address the client used"
        assert answers == [b"a:q", b"b:q", b"c:q"]
        for _ in range(3):  # a flow sticks to its endpoint
            assert (await clients[0].ask(key.port, b"again"))[0] == b"a:again"
        assert fwd.metrics.connections.get("default/web/UDP") == 3
    finally:
        for c in clients:
            c.close()
        listener.close()
        for proto, _ in backs:
            proto.transport.close()


async def test_64k_datagram_intact():
    back, port = await backend(b"")
    fwd, key, _ = forwarding("UDP", [port])
    listener = await start_udp_listener(fwd, key)
    client = await Client.open()
    try:
        payload = os.urandom(MAX_DATAGRAM - 1)  # the echo adds one byte (":")
        data, _ = await client.ask(key.port, payload)
        assert back.got == [payload]
        assert data == b":" + payload
    finally:
        client.close()
        listener.close()
        back.transport.close()


async def test_idle_flow_expires_and_next_datagram_opens_a_new_one():
    backs = [await backend(n) for n in (b"a", b"b")]
    fwd, key, _ = forwarding("UDP", [p for _, p in backs],
                             options=Options(udp_idle_timeout_s=0.2))
    transport = await start_udp_listener(fwd, key)
    listener = transport.get_protocol()
    client = await Client.open()
    try:
        assert (await client.ask(key.port, b"1"))[0] == b"a:1"
        assert len(listener.flows) == 1
        await until(lambda: not listener.flows, "the idle flow to expire")
        assert fwd.metrics.active.get("default/web/UDP") == 0
        assert (await client.ask(key.port, b"2"))[0] == b"b:2", "a new flow, next endpoint"
    finally:
        client.close()
        transport.close()
        for proto, _ in backs:
            proto.transport.close()


async def test_unreachable_endpoint_ends_the_flow_and_backs_off():
    live, live_port = await backend(b"live")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind((LOOP, 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # ICMP port unreachable from now on
    fwd, key, route = forwarding("UDP", [dead_port, live_port])
    transport = await start_udp_listener(fwd, key)
    client = await Client.open()
    try:
        client.send(key.port, b"lost")
        await until(lambda: route.endpoints[0] in fwd.balancer(route).failures,
                    "the unreachable endpoint to be marked failed")
        assert (await client.ask(key.port, b"x"))[0] == b"live:x"
    finally:
        client.close()
        transport.close()
        live.transport.close()


async def test_no_endpoints_drops():
    fwd, key, _ = forwarding("UDP", [])
    transport = await start_udp_listener(fwd, key)
    client = await Client.open()
    try:
        client.send(key.port, b"x")
        await until(lambda: fwd.metrics.errors.get("default/web/UDP", "no_endpoints") == 1,
                    "the drop to be counted")
        assert not transport.get_protocol().flows
    finally:
        client.close()
        transport.close()
