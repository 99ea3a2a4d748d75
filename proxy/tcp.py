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

from meshnet.proxy.balancer import Balancer
from meshnet.proxy.forwarding import FlowControl, Forwarding, reset
from meshnet.proxy.table import ListenerKey, Route
from meshnet.proxy.views import EndpointView

log = logging.getLogger("meshnet.proxy.tcp")


# Bytes a client may send before its upstream is joined; past this, reading pauses.
EARLY_LIMIT = 64 * 1024


class _Side(asyncio.Protocol):
    # Both sides hold each other and their transports; connection_lost breaks those cycles so
    # a finished connection is freed by reference counting, not left to the cyclic GC.
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None  # made on the first pause
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

    def pause(self, reason: str) -> None:
        if self.flow is None:
            self.flow = FlowControl(self.transport)
        self.flow.pause(reason)

    def resume(self, reason: str) -> None:
        if self.flow is not None:
            self.flow.resume(reason)

    def pause_writing(self) -> None:
        if self.peer is not None and not self.peer.closed:
            self.peer.pause("peer-full")

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.closed:
            self.peer.resume("peer-full")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.peer
        if peer is not None and not peer.closed and peer.transport is not None:
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        self._done()
        if peer is not None and peer.closed:  # the last of the pair: break the cycles
            peer.peer = self.peer = None
            peer.flow = self.flow = None

    def _done(self) -> None:
        pass


class UpstreamSide(_Side):
    def __init__(self, client: "ClientSide"):
        super().__init__()
        self.peer = client

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        # Join now rather than when create_connection returns: that is one more trip round
        # the event loop (its waiter's callbacks are scheduled), on every connection's path.
        self.peer._connected(self)

    def _done(self) -> None:
        if self.peer is not None:
            self.peer._upstream_done()


class ClientSide(_Side):
    def __init__(self, fwd: Forwarding, key: ListenerKey, loop: asyncio.AbstractEventLoop):
        super().__init__()
        # Kept, not looked up: asyncio.get_running_loop() makes a getpid() system call.
        self.loop = loop
        self.early: list[bytes] = []  # read before the upstream joined (see data_received)
        self.early_size = 0
        self.fwd = fwd
        self.key = key
        self.route: Route | None = None
        self.balancer: Balancer | None = None
        self.endpoint: EndpointView | None = None
        self.client_ip = ""
        self.service = ""
        self.order: list[EndpointView] = []
        self.attempt = 0
        self.deadline = 0.0
        # The connect in flight: (create_connection coroutine, endpoint, upstream side).
        self.connecting: tuple | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("joined" if self.peer else "connecting")
        return f"<ClientSide {self.client_ip} -> {self.key} via {self.endpoint} {state}>"

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        fwd = self.fwd
        route = fwd.table.listeners.get(self.key)
        self.route = route
        if route is not None and route.affinity_timeout_s:
            # Only affinity needs the client's address (a getpeername per connection).
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        self.service = route.service if route is not None else str(self.key)
        metrics = fwd.metrics
        metrics.connections.inc(self.service)
        if route is None or not route.endpoints:
            metrics.errors.inc(self.service, "no_endpoints")
            reset(transport)
            return
        fwd.connections.add(self)
        metrics.active.inc(self.service)
        balancer = self.balancer = fwd.balancer(route)
        self.order = balancer.candidates(route.endpoints, policy=route.policy,
                                         affinity_timeout_s=route.affinity_timeout_s,
                                         client_ip=self.client_ip, now=fwd.clock())
        self.deadline = fwd.deadlines.add(self, fwd.options.connect_budget_s, self.loop)
        self._connect_next()

    # -- connecting, without a Task ----------------------------------------------------------
    # A Task per connection (and asyncio.timeout around it) was a large share of the cost of a
    # short connection. Instead the create_connection coroutine is stepped by hand: started
    # here, resumed from its future's done-callback, and closed (which closes its socket) when
    # the connect budget runs out (`expire`, called by Forwarding.deadlines).

    def _connect_next(self) -> None:
        opts, loop = self.fwd.options, self.loop
        while not self.closed and self.attempt < min(len(self.order), opts.connect_attempts):
            ep = self.order[self.attempt]
            self.attempt += 1
            upstream = UpstreamSide(self)
            coro = loop.create_connection(lambda: upstream, ep.ip, ep.port)
            self.connecting = (coro, ep, upstream)
            if self._step(None):
                return
        if not self.closed and self.peer is None:
            self._exhausted()

    def _step(self, _future) -> bool:
        """Run the connect coroutine on; True while it waits or once it joined."""
        if self.connecting is None:
            return True
        coro, ep, upstream = self.connecting
        try:
            waiting = coro.send(None)
        except StopIteration:  # joined already, from UpstreamSide.connection_made
            self.connecting = None
            return True
        except OSError as exc:
            self.connecting = None
            self._failed(ep, exc)
            if _future is not None:  # resumed from a callback: go on with the next endpoint
                self._connect_next()
            return False
        waiting.add_done_callback(self._step)
        return True

    def _failed(self, ep: EndpointView, exc: BaseException) -> None:
        log.debug("%s: connect to %s:%d failed: %s", self.service, ep.ip, ep.port, exc)
        self.fwd.metrics.errors.inc(self.service, "connect_failed")
        self.balancer.failed(ep, now=self.fwd.clock())

    def _connected(self, upstream: UpstreamSide) -> None:
        self.fwd.deadlines.discard(self, self.deadline)
        if self.closed:  # the client went away while we were connecting
            upstream.peer = None
            upstream.transport.close()
            return
        ep = self.connecting[1]
        route = self.route
        self.balancer.connected(ep, client_ip=self.client_ip, now=self.fwd.clock(),
                                affinity_timeout_s=route.affinity_timeout_s)
        self.endpoint = ep
        self._join(upstream)

    def _exhausted(self) -> None:
        self.fwd.deadlines.discard(self, self.deadline)
        self.fwd.metrics.errors.inc(self.service, "exhausted")
        reset(self.transport)

    def expire(self) -> None:
        """The connect budget ran out (Forwarding.deadlines): give up on this connection."""
        if self.connecting is None or self.closed or self.peer is not None:
            return
        coro, ep, _ = self.connecting
        self.connecting = None
        coro.close()  # create_connection closes its half-made transport
        self._failed(ep, TimeoutError("connect budget exhausted"))
        self._exhausted()

    def _cancel_connect(self) -> None:
        self.fwd.deadlines.discard(self, self.deadline)
        if self.connecting is not None:
            coro = self.connecting[0]
            self.connecting = None
            coro.close()

    # -- relaying ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            # Before the upstream joins, keep what arrives (the first request usually comes
            # with the connection); pause only if it grows past EARLY_LIMIT.
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size > EARLY_LIMIT:
                self.pause("connecting")
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof = True
            return True  # forwarded as write_eof when the upstream joins
        return super().eof_received()

    def _join(self, upstream: UpstreamSide) -> None:
        self.peer = upstream
        if self.early:
            self.received += self.early_size
            upstream.transport.write(b"".join(self.early) if len(self.early) > 1
                                     else self.early[0])
            self.early.clear()
        if self.eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        self.resume("connecting")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is None:
            self._cancel_connect()
            self.closed = True
            self._finish()
            return
        super().connection_lost(exc)

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
        if self.endpoint is not None:
            self.balancer.released(self.endpoint)

    def abort(self) -> None:
        """Shutdown: drop the connection now."""
        self._cancel_connect()
        if self.peer is not None and not self.peer.closed:
            self.peer.transport.abort()
        if not self.closed:
            self.transport.abort()


async def start_tcp_listener(fwd: Forwarding, key: ListenerKey, *,
                             backlog: int = 1024) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ClientSide(fwd, key, loop), key.ip, key.port,
                                    reuse_address=True, backlog=backlog)
