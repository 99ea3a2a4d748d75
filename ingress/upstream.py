"""Backend connections: the HTTP/1.1 client side of the proxy and its keep-alive pool.

Theory of operation
-------------------
An `UpstreamConnection` carries one exchange at a time. The downstream side (server.py) writes
the request head and body into `transport`; this protocol parses the response with httptools
and pushes every piece straight into the exchange (`on_response_head`, `on_response_body`,
`on_response_end`), which writes it to the client: no queue in between, so backpressure is a
pair of pause/resume calls (a slow client pauses reading here, a slow backend pauses reading
from the client).

A connection goes back to the pool only when the response ended cleanly, the request body was
fully sent and the backend did not ask to close; otherwise it is closed. Idle pooled
connections are never reused after `IDLE_TIMEOUT_S` (below the 75 s keep-alive nginx and most
servers use, so the proxy never reuses a connection the backend is closing); one pool-wide
sweep closes them.

Small responses are remembered by their bytes (`UpstreamPool.responses`,
`closing_responses`): a read that was one whole response framed by Content-Length, from its
first byte to its last, maps to the bytes the client was sent for it, so a later read with
the same bytes, where a response starts, is written out at once, not parsed (backends repeat
themselves; nginx's Date changes once a second). Only responses that carry the backend's own
Date are kept (ours would go stale), only for HTTP/1.1 clients and not for HEAD, and not when
the backend closes after the response. `on_message_begin` says when the parser holds part of
a response, as on the client side.

Timers are lazy, because a timer armed and cancelled per request costs more than the
request's parsing: the read timer is armed once and, when it fires, compares the time of the
last byte from the backend with the timeout and re-arms itself for the rest; it is re-armed
early only when an exchange needs a shorter timeout than the one pending.
"""

from __future__ import annotations

import asyncio
import logging

import httptools

from meshnet.ingress import http1

log = logging.getLogger("meshnet.ingress.upstream")

IDLE_TIMEOUT_S = 30.0
MAX_IDLE_PER_BACKEND = 64


class UpstreamClosed(Exception):
    """The backend closed or failed before a complete response."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "addr", "transport", "exchange", "parser", "closed", "reused",
                 "head_only", "tunnel", "parked_at", "_loop", "_read_timer", "_read_timeout_s",
                 "_send_timeout_s", "_send_timer", "_last_read", "_special", "_rest",
                 "_reason", "_got_response", "_in_message", "_memo")

    def __init__(self, pool: "UpstreamPool", addr: tuple[str, int]):
        self.pool = pool
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.exchange = None  # the server.Exchange being answered
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = 0  # exchanges carried before the current one
        self.head_only = False  # a HEAD request: the response has no body whatever it says
        self.tunnel: asyncio.Transport | None = None
        self.parked_at = 0.0  # loop time it went idle in the pool
        self._loop = asyncio.get_running_loop()
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_timeout_s = 60.0
        self._send_timeout_s = 60.0
        self._send_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0  # loop time of the last byte from the backend (or the start)
        # The response head as it arrives, split as http1.split_headers splits a list (here
        # line by line: a second loop over the headers cost as much as the parser's calls).
        self._special: dict[bytes, bytes] = {}
        self._rest: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._got_response = False
        self._in_message = False  # the parser holds part of a response
        # What the read being parsed leaves to remember (see data_received): None while it
        # may, (memo, head sent, status, Content-Length) after a head that can be
        # remembered, False otherwise.
        self._memo: tuple | bool | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("busy" if self.exchange else "idle")
        return f"<UpstreamConnection {self.addr[0]}:{self.addr[1]} {state} reused={self.reused}>"

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport  # TCP_NODELAY: uvloop (and asyncio) set it already

    def data_received(self, data: bytes):
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        ex = self.exchange
        if ex is None:  # bytes on an idle connection: the backend is confused
            self.transport.close()
            return
        self._last_read = self._loop.time()
        # _memo becomes None below when this read starts a response and may be remembered.
        self._memo = False
        if not self._in_message and not self.head_only and ex.version == "1.1":
            memo = self.pool.responses if ex.keep_alive else self.pool.closing_responses
            if memo.resting:
                memo.resting -= 1
            else:
                known = memo.get(data)
                if known is not None:  # a whole response read before: what it became
                    memo.hits += 1
                    self.exchange = None
                    ex.on_whole_response(self, known[1], known[0])
                    return
                self._memo = None
        # Everything this read produces for the client (head, body, last chunk) leaves in
        # one write: a send() per piece was the largest cost per request.
        client = ex.client
        client.cork()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.exchange.on_response_upgraded(self, data[offset:])
        except httptools.HttpParserError as exc:
            self._fail(f"bad response from backend {self.addr[0]}:{self.addr[1]}: {exc}")
        else:
            known = self._memo
            if known and not self._in_message and len(data) <= http1.Memo.MAX_MESSAGE_BYTES:
                end = data.find(b"\r\n\r\n") + 4
                if len(data) - end == known[3]:  # this read was the response and no more
                    known[0].remember(data, (known[1] + data[end:], known[2]))
        finally:
            client.uncork()

    def connection_lost(self, exc):
        self.closed = True
        self.parser = None  # it holds our bound methods: a cycle only the GC would free
        self._cancel_timers()
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.close()
            return
        ex = self.exchange
        if ex is None:
            return
        self.exchange = None
        if self._got_response and ex.response_framing == "close":
            ex.on_response_end(self, reusable=False)  # the close delimits the body
        else:
            ex.on_upstream_failed(self, "backend closed the connection",
                                  before_response=not self._got_response)

    def pause_writing(self):
        # proxy-send-timeout, as nginx's proxy_send_timeout: the time allowed between two
        # successful writes to the backend, so it runs only while the backend is not reading.
        if self.exchange is not None:
            self.exchange.client.pause_reading("upstream")
            if self._send_timer is None:
                self._send_timer = self._loop.call_later(self._send_timeout_s,
                                                         self._send_timed_out)

    def resume_writing(self):
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self.exchange is not None:
            self.exchange.client.resume_reading("upstream")

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self):
        self._in_message = True

    def on_status(self, status: bytes):
        self._reason += status

    def on_header(self, name: bytes, value: bytes):
        low = name.lower()
        if low in http1.RESPONSE_SPECIAL:
            special = self._special
            if low not in special:
                special[low] = value
            elif low == b"connection":
                special[low] += b"," + value
        else:
            self._rest.append((name, value))

    def on_headers_complete(self):
        status = self.parser.get_status_code()
        special, rest, reason = self._special, self._rest, self._reason
        self._special, self._rest, self._reason = {}, [], b""
        if 100 <= status < 200 and status != 101:
            self._memo = False
            return  # 1xx interim: dropped (Expect is ours)
        self._got_response = True
        ex = self.exchange
        sent = ex.on_response_head(self, status, reason, special,
                                   http1.drop_connection_named(special, rest))
        # The pair (head read, head sent) holds for the next exchange alike when the body is
        # framed by Content-Length and the head sent has nothing of its own time (the
        # backend's Date, not ours). None: data_received found the exchange fit (HTTP/1.1,
        # not HEAD) and this the read's first head.
        if self._memo is None and ex.client_framing == "length" and b"date" in special:
            self._memo = (self.pool.responses if ex.keep_alive else self.pool.closing_responses,
                          sent, status, int(special[b"content-length"]))
        else:
            self._memo = False
        if self.head_only:
            # httptools cannot be told a response answers HEAD; end it here and start a
            # fresh parser for the next response on this connection.
            self.on_message_complete()
            self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes):
        ex = self.exchange
        if ex is not None:
            if ex.client_framing == "chunked":
                ex.on_response_body(body)
            else:
                ex.client.write(body)  # on_response_body's common case, one call less

    def on_message_complete(self):
        self._in_message = False
        if not self._got_response:  # the end of a 1xx interim response
            return
        if self.parser.get_status_code() == 101:  # the tunnel starts (HttpParserUpgrade)
            return
        ex, self.exchange = self.exchange, None  # the read timer finds no exchange and stops
        if ex is not None:
            reusable = self.head_only or self.parser.should_keep_alive()
            if not reusable:
                self._memo = False  # the backend closes: a remembered head would reuse it
            ex.on_response_end(self, reusable=reusable)

    # -- used by the exchange --------------------------------------------------------------------

    def start(self, exchange, head_only: bool, read_timeout_s: float,
              send_timeout_s: float = 60.0) -> None:
        self.exchange = exchange
        self.head_only = head_only
        self._got_response = False
        self._read_timeout_s = read_timeout_s
        self._send_timeout_s = send_timeout_s
        self._last_read = now = self._loop.time()
        timer = self._read_timer
        if timer is None or timer.when() > now + read_timeout_s:
            if timer is not None:
                timer.cancel()
            self._read_timer = self._loop.call_later(read_timeout_s, self._check_read)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def become_tunnel(self, client_transport: asyncio.Transport) -> None:
        self._cancel_timers()
        self.exchange = None
        self.tunnel = client_transport

    def abort(self) -> None:
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()

    # -- internals ---------------------------------------------------------------------------------

    def _check_read(self) -> None:
        self._read_timer = None
        ex = self.exchange
        if ex is None or self.closed:
            return  # idle: start() arms it again
        now = self._loop.time()
        if not ex.request_done:  # still sending the request body: not a read timeout
            self._last_read = now
        left = self._last_read + self._read_timeout_s - now
        if left > 0:
            self._read_timer = self._loop.call_later(left, self._check_read)
            return
        self._fail(f"backend {self.addr[0]}:{self.addr[1]} sent nothing for "
                   f"{self._read_timeout_s:g}s", timeout=True)

    def _fail(self, message: str, timeout: bool = False) -> None:
        ex, self.exchange = self.exchange, None
        self.closed = True
        self.transport.abort()
        if ex is not None:
            ex.on_upstream_failed(self, message, before_response=not self._got_response,
                                  timeout=timeout)

    def _send_timed_out(self) -> None:
        self._send_timer = None
        if self.exchange is not None and not self.closed:
            self._fail(f"backend {self.addr[0]}:{self.addr[1]} accepted no request bytes for "
                       f"{self._send_timeout_s:g}s", timeout=True)

    def _cancel_timers(self) -> None:
        for timer in (self._read_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._read_timer = self._send_timer = None


class UpstreamPool:
    """Idle keep-alive connections per backend address (LIFO: the warmest first)."""

    def __init__(self):
        self.idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        # The memos of whole responses (see UpstreamConnection.data_received): a read from a
        # backend -> (what the client is sent for it, status), for clients that keep the
        # connection and for those that close it.
        self.responses = http1.Memo()
        self.closing_responses = http1.Memo()
        self.connects = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return (f"<UpstreamPool backends={len(self.idle)} "
                f"idle={sum(len(v) for v in self.idle.values())} connects={self.connects}>")

    def take_idle(self, addr: tuple[str, int]) -> UpstreamConnection | None:
        """The warmest idle connection to addr, or None. Connections idle longer than
        IDLE_TIMEOUT_S are closed here rather than by a timer per parked connection."""
        idle = self.idle.get(addr)
        if not idle:
            return None
        too_old = idle[-1]._loop.time() - IDLE_TIMEOUT_S  # not get_running_loop(): a getpid()
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport.is_closing():
                continue
            if conn.parked_at < too_old:
                conn.transport.close()
                continue
            return conn
        return None

    async def acquire(self, addr: tuple[str, int], connect_timeout_s: float
                      ) -> UpstreamConnection:
        conn = self.take_idle(addr)
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        self.connects += 1
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(self, addr), addr[0], addr[1]),
            connect_timeout_s)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        idle = self.idle.setdefault(conn.addr, [])
        if conn.closed or len(idle) >= MAX_IDLE_PER_BACKEND:
            conn.transport.close()
            return
        conn.reused += 1
        conn.parked_at = conn._loop.time()  # not reused after IDLE_TIMEOUT_S (see sweep)
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S / 2,
                                                                  self.sweep)

    def sweep(self) -> None:
        """Close connections idle longer than IDLE_TIMEOUT_S; runs while any are parked."""
        self._sweeper = None
        too_old = asyncio.get_running_loop().time() - IDLE_TIMEOUT_S
        for addr, conns in list(self.idle.items()):
            for conn in [c for c in conns if c.parked_at < too_old]:
                conns.remove(conn)
                conn.transport.close()
            if not conns:
                del self.idle[addr]
        if self.idle:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S / 2,
                                                                  self.sweep)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.addr)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self.idle.values():
            for conn in conns:
                conn.transport.close()
        self.idle.clear()
