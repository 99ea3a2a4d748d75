"""The TCP relay: asyncio Protocols joining a client connection to an endpoint.

Theory of operation
-------------------
`ClientSide` is made by a listener for each accepted connection. It reads the route for its
listener from the published table once, and connects to the endpoints the balancer proposes —
at most `connect_attempts` of them within `connect_budget_s`, marking each failure for
passive-health backoff. With no ready endpoints, or when the budget runs out, the client gets
an RST at once (a refusal, like kube-proxy's REJECT rule, not a hang).

Once joined, each side writes what it reads into the other; no Python runs per byte. When a
side's write buffer passes the high-water mark, `pause_writing` pauses reading on the *other*
side (backpressure end to end) through the shared FlowControl helper.

Half-close is kept: an EOF from one side becomes `write_eof()` (shutdown(SHUT_WR)) on the
other, and the reverse direction keeps flowing; the pair is closed when both directions are
done. A reset on one side aborts the other, so an RST propagates.

Must not: read the table again after the connect (a swap must not move a live connection).

Cost per connection
-------------------
A short connection is dominated by fixed costs (two sockets, two uvloop transports, a connect
coroutine), so the Python around them is kept to few calls, each of which costs about as much
as a system call here: the protocols are made through `functools.partial` (no lambda frame);
the early bytes are one `bytes` object in the common case; a connection's metrics are two
calls (`ServiceCounters.opened`/`closed`); the connect deadline is left with a plain
`set.discard` on its bucket; the join is one method. Measured with callgrind over 2,000
connections through the bench's set-up: 128k user-space instructions per connection before
these, 106k after (docs/proxy.md, "Cost of a new connection"; bench/bench_proxy_micro.py
counts them).

The protocols have `__slots__`, every one set in the class's own `__init__`: on Python 3.11
an attribute read through an instance from a class-level default is not specialised (it cost
more than the stores it saved), and stores in a `_Side.__init__` shared by both classes see
two types and are not specialised either (measured: 2.0% and 1.3% more instructions per
connection than this).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from meshnet.proxy.balancer import Balancer
from meshnet.proxy.forwarding import FlowControl, Forwarding, ServiceCounters, reset
from meshnet.proxy.table import ListenerKey, Route
from meshnet.proxy.views import EndpointView

log = logging.getLogger("meshnet.proxy.tcp")


# Bytes a client may send before its upstream is joined; past this, reading pauses.
EARLY_LIMIT = 64 * 1024


class _Side(asyncio.Protocol):
    # Both sides hold each other and their transports; connection_lost breaks those cycles so
    # a finished connection is freed by reference counting, not left to the cyclic GC.
    # Slots, all set in each class's own __init__ (see "Cost per connection").
    __slots__ = ("transport", "flow", "peer", "eof", "closed", "received")
    keep_open_unjoined = False  # what an EOF before the join does (see eof_received)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            # A client not joined yet keeps its connection: the EOF is forwarded on the join.
            return self.keep_open_unjoined
        if peer.closed:
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

    def _lost(self, exc: Exception | None) -> _Side | None:
        """This side is gone: pass it on to the peer (an error as an RST); breaks the cycles
        if the peer is gone too. Returns the peer as it was."""
        self.closed = True
        peer = self.peer
        if peer is not None:
            if not peer.closed:
                if peer.transport is not None:
                    if exc is not None:
                        peer.transport.abort()
                    else:
                        peer.transport.close()
            else:  # the last of the pair
                peer.peer = self.peer = None
                peer.flow = self.flow = None
        return peer


class UpstreamSide(_Side):
    __slots__ = ()

    def __init__(self, client: "ClientSide"):
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None  # made on the first pause
        self.peer: _Side | None = client
        self.eof = False
        self.closed = False
        self.received = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        # Join now rather than when create_connection returns: that is one more trip round
        # the event loop (its waiter's callbacks are scheduled), on every connection's path.
        self.peer._joined(self)

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.peer
        if client is not None:
            # Counted before the pair lets go of each other (the bytes of both sides).
            client._finish(self)
        self._lost(exc)


class ClientSide(_Side):
    __slots__ = ("loop", "fwd", "key", "early", "route", "balancer", "counters", "order",
                 "endpoint", "trying", "client_ip", "service", "attempt", "deadline",
                 "connecting")
    keep_open_unjoined = True

    def __init__(self, fwd: Forwarding, key: ListenerKey, loop: asyncio.AbstractEventLoop):
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None  # made on the first pause
        self.peer: UpstreamSide | None = None  # once joined
        self.eof = False
        self.closed = False
        self.received = 0
        # Kept, not looked up: asyncio.get_running_loop() makes a getpid() system call.
        self.loop = loop
        self.fwd = fwd
        self.key = key
        self.early: bytes | bytearray | None = None  # read before the upstream joined
        self.route: Route | None = None
        self.balancer: Balancer | None = None
        self.counters: ServiceCounters | None = None
        self.order: list[EndpointView] | None = None  # the endpoints to try, in order
        self.endpoint: EndpointView | None = None  # once joined
        self.trying: EndpointView | None = None  # the endpoint being connected to
        self.client_ip = ""
        self.service = ""
        self.attempt = 0
        self.deadline: set | None = None  # the Forwarding.deadlines bucket while connecting
        self.connecting = None  # the create_connection coroutine in flight

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("joined" if self.peer else "connecting")
        return f"<ClientSide {self.client_ip} -> {self.key} via {self.endpoint} {state}>"

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        fwd = self.fwd
        route = self.route = fwd.table.listeners.get(self.key)
        if route is None:
            self.service = str(self.key)
            fwd.counters_for(self.service).refused("no_endpoints")
            reset(transport)
            return
        if route.affinity_timeout_s:
            # Only affinity needs the client's address (a getpeername per connection).
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        service = self.service = route.service
        counters = self.counters = fwd.counters.get(service) or fwd.counters_for(service)
        if not route.endpoints:
            counters.refused("no_endpoints")
            reset(transport)
            return
        counters.opened()
        fwd.connections.add(self)
        balancer = self.balancer = fwd.balancers.get(route.balancer_key) or fwd.balancer(route)
        order = self.order = balancer.candidates(route.endpoints, policy=route.policy,
                                                 affinity_timeout_s=route.affinity_timeout_s,
                                                 client_ip=self.client_ip, now=fwd.clock())
        if len(order) > fwd.options.connect_attempts:
            del order[fwd.options.connect_attempts:]  # the ones we will try
        self.deadline = fwd.deadlines.add(self, fwd.options.connect_budget_s, self.loop)
        self._connect_next()

    # -- connecting, without a Task ----------------------------------------------------------
    # A Task per connection (and asyncio.timeout around it) was a large share of the cost of a
    # short connection. Instead the create_connection coroutine is stepped by hand: started
    # here, resumed from its future's done-callback, and closed (which closes its socket) when
    # the connect budget runs out (`expire`, called by Forwarding.deadlines).

    def _connect_next(self) -> None:
        """Start connecting to the next candidate; moves on by itself past endpoints that fail
        at once, and resets the client when none is left."""
        if self.closed:
            return
        if self.attempt < len(self.order):
            ep = self.trying = self.order[self.attempt]
            self.attempt += 1
            self.connecting = self.loop.create_connection(
                functools.partial(UpstreamSide, self), ep.ip, ep.port)
            self._step(None)  # a connect failing at once comes back here, one level down
        elif self.peer is None:
            self._exhausted()

    def _step(self, _future) -> None:
        """Run the connect coroutine on (at the start, then each time its waiter is done):
        it returns once joined; a failed connect raises here."""
        coro = self.connecting
        if coro is None:  # given up on meanwhile (expire, client gone)
            return
        try:
            waiting = coro.send(None)
        except StopIteration:  # joined already (UpstreamSide.connection_made)
            self.connecting = None
            return
        except OSError as exc:
            self.connecting = None
            self._failed(self.trying, exc)
            self._connect_next()
            return
        waiting.add_done_callback(self._step)

    def _failed(self, ep: EndpointView, exc: BaseException) -> None:
        log.debug("%s: connect to %s:%d failed: %s", self.service, ep.ip, ep.port, exc)
        self.counters.error("connect_failed")
        self.balancer.failed(ep, now=self.fwd.clock())

    def _joined(self, upstream: UpstreamSide) -> None:
        """The upstream connected (from its connection_made): relay from now on."""
        fwd = self.fwd
        self.deadline.discard(self)
        if self.closed:  # the client went away while we were connecting
            upstream.peer = None
            upstream.transport.close()
            return
        ep = self.endpoint = self.trying
        route = self.route
        self.balancer.connected(ep, client_ip=self.client_ip, now=fwd.clock(),
                                affinity_timeout_s=route.affinity_timeout_s)
        self.peer = upstream
        early = self.early
        if early is not None:
            self.early = None
            self.received += len(early)
            upstream.transport.write(early)
        if self.eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        if self.flow is not None:
            self.flow.resume("connecting")

    def _exhausted(self) -> None:
        self.deadline.discard(self)
        self.counters.error("exhausted")
        reset(self.transport)

    def expire(self) -> None:
        """The connect budget ran out (Forwarding.deadlines): give up on this connection."""
        if self.connecting is None or self.closed or self.peer is not None:
            return
        coro, ep = self.connecting, self.trying
        self.connecting = None
        coro.close()  # create_connection closes its half-made transport
        self._failed(ep, TimeoutError("connect budget exhausted"))
        self._exhausted()

    def _cancel_connect(self) -> None:
        if self.deadline is not None:
            self.deadline.discard(self)
        if self.connecting is not None:
            coro = self.connecting
            self.connecting = None
            coro.close()

    # -- relaying ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None:
            self.received += len(data)
            peer.transport.write(data)
            return
        # Before the upstream joins, keep what arrives (the first request usually comes with
        # the connection, in one piece); pause only if it grows past EARLY_LIMIT.
        early = self.early
        if early is None:
            self.early = data
            early_size = len(data)
        else:
            if type(early) is bytes:
                early = self.early = bytearray(early)
            early += data
            early_size = len(early)
        if early_size > EARLY_LIMIT:
            self.pause("connecting")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is None:
            self._cancel_connect()
            self.closed = True
            self._finish(None)
            return
        self._lost(exc)

    def _finish(self, upstream: UpstreamSide | None) -> None:
        """Count the connection out (once): metrics, balancer, open relays."""
        try:
            self.fwd.connections.remove(self)
        except KeyError:  # never opened, or counted out already
            return
        if upstream is not None:
            self.counters.closed(self.received, upstream.received)
        else:
            self.counters.closed()
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
    return await loop.create_server(functools.partial(ClientSide, fwd, key, loop), key.ip,
                                    key.port, reuse_address=True, backlog=backlog)
