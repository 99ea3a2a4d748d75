"""The TCP relay: asyncio Protocols joining a client connection to an endpoint.

Theory of operation
-------------------
`ClientSide` is made by a listener for each accepted connection. It reads the route for its
listener from the published table once, pauses reading, and connects to the endpoints the
balancer proposes — at most `connect_attempts` of them within `connect_budget_s`, marking each
failure for passive-health backoff. With no ready endpoints, or when the budget runs out, the
client gets an RST at once (a refusal, like kube-proxy's REJECT rule, not a hang).

Once joined, each side writes what it reads into the other; no Python runs per byte. When a
side's write buffer passes the high-water mark, `pause_writing` pauses reading on the *other*
side (backpressure end to end) through the shared FlowControl helper.

Half-close is kept: an EOF from one side becomes `write_eof()` (shutdown(SHUT_WR)) on the
other, and the reverse direction keeps flowing; the pair is closed when both directions are
done. A reset on one side aborts the other, so an RST propagates.

Must not: read the table again after the connect (a swap must not move a live connection).
"""

from __future__ import annotations

import asyncio
import logging

from meshnet.proxy.forwarding import FlowControl, Forwarding, reset
from meshnet.proxy.table import ListenerKey, Route
from meshnet.proxy.views import EndpointView

log = logging.getLogger("meshnet.proxy.tcp")


class _Side(asyncio.Protocol):
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.closed = False
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.closed:
            return False
        if peer.eof:
            # Both directions finished: close both once their buffers drain.
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep our write direction open for the peer's remaining data

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.flow is not None:
            self.peer.flow.pause("peer-full")

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.flow is not None:
            self.peer.flow.resume("peer-full")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.peer
        if peer is not None and not peer.closed and peer.transport is not None:
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        self._done()

    def _done(self) -> None:
        pass


class UpstreamSide(_Side):
    def __init__(self, client: "ClientSide"):
        super().__init__()
        self.peer = client

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.flow = FlowControl(transport)

    def _done(self) -> None:
        self.peer._upstream_done()


class ClientSide(_Side):
    def __init__(self, fwd: Forwarding, key: ListenerKey):
        super().__init__()
        self.early: list[bytes] = []  # read before the upstream joined (see data_received)
        self.fwd = fwd
        self.key = key
        self.route: Route | None = None
        self.endpoint: EndpointView | None = None
        self.client_ip = ""
        self.task: asyncio.Task | None = None
        self.service = ""

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("joined" if self.peer else "connecting")
        return f"<ClientSide {self.client_ip} -> {self.key} via {self.endpoint} {state}>"

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.flow = FlowControl(transport)
        route = self.fwd.table.listeners.get(self.key)
        self.route = route
        if route is not None and route.affinity_timeout_s:
            # Only affinity needs the client's address (a getpeername per connection).
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        self.service = route.service if route is not None else str(self.key)
        metrics = self.fwd.metrics
        metrics.connections.inc(self.service)
        if route is None or not route.endpoints:
            metrics.errors.inc(self.service, "no_endpoints")
            reset(transport)
            return
        self.fwd.connections.add(self)
        metrics.active.inc(self.service)
        self.flow.pause("connecting")
        self.task = asyncio.get_running_loop().create_task(self._connect(route))

    async def _connect(self, route: Route) -> None:
        fwd, opts, loop = self.fwd, self.fwd.options, asyncio.get_running_loop()
        balancer = fwd.balancer(route)
        now = fwd.clock()
        order = balancer.candidates(route.endpoints, policy=route.policy,
                                    affinity_timeout_s=route.affinity_timeout_s,
                                    client_ip=self.client_ip, now=now)
        deadline = loop.time() + opts.connect_budget_s
        for ep in order[:opts.connect_attempts]:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                break
            upstream = UpstreamSide(self)
            try:
                # asyncio.timeout, not wait_for: wait_for wraps the connect in another Task,
                # a measurable share of the cost of a short connection.
                async with asyncio.timeout(remaining):
                    await loop.create_connection(lambda: upstream, ep.ip, ep.port)
            except (OSError, TimeoutError) as exc:
                log.debug("%s: connect to %s:%d failed: %s", self.service, ep.ip, ep.port, exc)
                fwd.metrics.errors.inc(self.service, "connect_failed")
                balancer.failed(ep, now=fwd.clock())
                continue
            if self.closed:  # the client went away while we were connecting
                upstream.transport.close()
                return
            balancer.connected(ep, client_ip=self.client_ip, now=fwd.clock(),
                               affinity_timeout_s=route.affinity_timeout_s)
            self.endpoint = ep
            self._join(upstream)
            return
        fwd.metrics.errors.inc(self.service, "exhausted")
        if not self.closed:
            reset(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            # uvloop may deliver a first read scheduled before connection_made paused us.
            self.early.append(data)
            self.transport.pause_reading()
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof = True
            return True  # forwarded as write_eof when the upstream joins
        return super().eof_received()

    def _join(self, upstream: UpstreamSide) -> None:
        self.peer = upstream
        for data in self.early:
            self.received += len(data)
            upstream.transport.write(data)
        self.early.clear()
        if self.eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        self.flow.resume("connecting")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.peer is None:
            self._finish()

    def _upstream_done(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self not in self.fwd.connections:
            return
        self.fwd.connections.discard(self)
        metrics = self.fwd.metrics
        metrics.active.inc(self.service, amount=-1)
        if self.peer is not None:
            metrics.bytes.inc(self.service, "to_endpoint", amount=self.received)
            metrics.bytes.inc(self.service, "to_client", amount=self.peer.received)
        if self.endpoint is not None and self.route is not None:
            self.fwd.balancer(self.route).released(self.endpoint)

    def abort(self) -> None:
        """Shutdown: drop the connection now."""
        if self.task is not None:
            self.task.cancel()
        if self.peer is not None and not self.peer.closed:
            self.peer.transport.abort()
        if not self.closed:
            self.transport.abort()


async def start_tcp_listener(fwd: Forwarding, key: ListenerKey, *,
                             backlog: int = 1024) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ClientSide(fwd, key), key.ip, key.port,
                                    reuse_address=True, backlog=backlog)
