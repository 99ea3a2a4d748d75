"""The UDP relay: one flow per client address, replies sent from the service address.

Theory of operation
-------------------
A `UdpListener` is bound to the service frontend (VIP:port or node address:NodePort). The first
datagram from a client address opens a `UdpFlow`: the balancer picks an endpoint and the flow
gets its own connected UDP socket to it, so the kernel demultiplexes replies per client. Every
reply is sent back through the listener's socket, i.e. from the address the client sent to —
clients that check the reply's source (DNS resolvers do) accept it.

Datagrams that arrive while the flow's socket is being set up wait in a short queue. A flow
ends after `udp_idle_timeout_s` without traffic either way; the timer is one `call_later`
handle that re-arms itself for the remaining time instead of being reset on every datagram.
An ICMP port unreachable from the endpoint (seen as `error_received`) marks it failed for
backoff and ends the flow, so the client's next datagram goes to another endpoint.

With no ready endpoints datagrams are dropped (a userspace proxy cannot send the ICMP reject
kube-proxy's iptables rule sends).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from meshnet.proxy.forwarding import Forwarding
from meshnet.proxy.table import ListenerKey, Route
from meshnet.proxy.views import EndpointView

log = logging.getLogger("meshnet.proxy.udp")

PENDING_MAX = 64  # datagrams held per flow while its socket opens
RECV_BUFFER_BYTES = 4 * 1024 * 1024


class UdpFlow(asyncio.DatagramProtocol):
    def __init__(self, listener: "UdpListener", client: tuple, route: Route,
                 endpoint: EndpointView):
        self.listener = listener
        self.client = client
        self.route = route
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last_active = listener.fwd.clock()
        self.timer: asyncio.TimerHandle | None = None
        self.sent = self.received = 0
        self.closed = False

    def __repr__(self) -> str:
        return (f"<UdpFlow {self.client[0]}:{self.client[1]} -> {self.endpoint.ip}:"
                f"{self.endpoint.port} {'closed' if self.closed else 'open'}>")

    def connection_made(self, transport) -> None:
        self.transport = transport
        for data in self.pending:
            transport.sendto(data)
        self.pending.clear()
        self._arm(self.listener.fwd.options.udp_idle_timeout_s)

    def send(self, data: bytes) -> None:
        self.last_active = self.listener.fwd.clock()
        self.sent += len(data)
        if self.transport is not None:
            self.transport.sendto(data)
        elif len(self.pending) < PENDING_MAX:
            self.pending.append(data)

    def datagram_received(self, data: bytes, addr) -> None:
        self.last_active = self.listener.fwd.clock()
        self.received += len(data)
        listener = self.listener.transport
        if listener is not None and not listener.is_closing():
            listener.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        fwd = self.listener.fwd
        fwd.metrics.errors.inc(self.listener.service_of(self.route), "connect_failed")
        fwd.balancer(self.route).failed(self.endpoint, now=fwd.clock())
        self.close()

    def _arm(self, delay: float) -> None:
        self.timer = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        idle_s = self.listener.fwd.options.udp_idle_timeout_s
        left = self.last_active + idle_s - self.listener.fwd.clock()
        if left > 0:
            self._arm(left)
        else:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()
        self.listener.flow_closed(self)

    abort = close  # shutdown drops flows the same way


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, fwd: Forwarding, key: ListenerKey):
        self.fwd = fwd
        self.key = key
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple, UdpFlow] = {}

    def __repr__(self) -> str:
        return f"<UdpListener {self.key} flows={len(self.flows)}>"

    def service_of(self, route: Route | None) -> str:
        return str(route.spn) if route is not None else str(self.key)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        flow = self.flows.get(addr)
        if flow is None or flow.closed:
            flow = self._open(addr)
            if flow is None:
                return
        flow.send(data)

    def _open(self, client: tuple) -> UdpFlow | None:
        fwd = self.fwd
        route = fwd.table.listeners.get(self.key)
        service = self.service_of(route)
        fwd.metrics.connections.inc(service)
        if route is None or not route.endpoints:
            fwd.metrics.errors.inc(service, "no_endpoints")
            return None
        balancer = fwd.balancer(route)
        now = fwd.clock()
        order = balancer.candidates(route.endpoints, policy=route.policy,
                                    affinity_timeout_s=route.affinity_timeout_s,
                                    client_ip=client[0], now=now)
        for ep in order[:fwd.options.connect_attempts]:
            family = socket.AF_INET6 if ":" in ep.ip else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect((ep.ip, ep.port))  # UDP connect: no packet, only a route lookup
            except OSError as exc:
                sock.close()
                log.debug("%s: UDP flow to %s:%d failed: %s", service, ep.ip, ep.port, exc)
                fwd.metrics.errors.inc(service, "connect_failed")
                balancer.failed(ep, now=now)
                continue
            flow = UdpFlow(self, client, route, ep)
            balancer.connected(ep, client_ip=client[0], now=now,
                               affinity_timeout_s=route.affinity_timeout_s)
            self.flows[client] = flow
            fwd.connections.add(flow)
            fwd.metrics.active.inc(service)
            asyncio.get_running_loop().create_task(self._attach(flow, sock))
            return flow
        fwd.metrics.errors.inc(service, "exhausted")
        return None

    async def _attach(self, flow: UdpFlow, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: flow, sock=sock)
        except OSError as exc:
            log.warning("UDP flow %r: %s", flow, exc)
            sock.close()
            flow.close()

    def flow_closed(self, flow: UdpFlow) -> None:
        if self.flows.get(flow.client) is flow:
            del self.flows[flow.client]
        fwd = self.fwd
        if flow in fwd.connections:
            fwd.connections.discard(flow)
            service = self.service_of(flow.route)
            fwd.metrics.active.inc(service, amount=-1)
            fwd.metrics.bytes.inc(service, "to_endpoint", amount=flow.sent)
            fwd.metrics.bytes.inc(service, "to_client", amount=flow.received)
            fwd.balancer(flow.route).released(flow.endpoint)

    def abort(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()

    def connection_lost(self, exc) -> None:
        self.abort()


async def start_udp_listener(fwd: Forwarding, key: ListenerKey) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in key.ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
        sock.bind((key.ip, key.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpListener(fwd, key), sock=sock)
    return transport
