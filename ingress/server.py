"""The client side of the proxy: one asyncio Protocol per client connection, one Exchange per
request.

Theory of operation
-------------------
`ClientConnection` parses requests with httptools and enforces the limits that protect the
proxy from its clients: the request head must be complete within `header_timeout_s` of its
first byte (slowloris: answered 408) and within `max_header_bytes` (431); a body must keep
arriving (`body_timeout_s`); an idle keep-alive connection is closed after
`keepalive_timeout_s`. Anything the parser refuses (smuggling shapes, bad chunks, obs-fold)
is answered 400 and the connection is closed, so nothing after it is ever interpreted.

Each request head becomes an `Exchange`. Exchanges run strictly one at a time per connection;
pipelined requests wait in `queue` with reading paused. An Exchange matches its route in the
table that is current when its head completes (a table swap never affects requests in flight),
takes a pooled connection to a ready endpoint (round robin; the next endpoint on a failed
connect), then streams: request body chunks go straight into the backend's transport, response
chunks straight into the client's, and each side's pause_writing pauses reading on the other.
Until a backend is attached, body chunks are buffered up to `BUFFER_HIGH_WATER_BYTES`.
An `Upgrade` request whose backend answers 101 turns both connections into a byte tunnel.

Timers are lazy (arming and cancelling a timer per request cost more than parsing it): the
idle and body timers are armed once and, when they fire, compare the time of the last
activity with the timeout and re-arm for the rest. The request-head deadline is no timer of
its own but an entry in the proxy's `Deadlines` (meshnet/deadlines.py: one loop timer for all
connections; a timer armed and cancelled per connection cost a tenth of a new connection's
Python work), taken at the connect and again only when a read ends in the middle of a request
head -- never for the common head that arrives in one read.
Writes to the client made while a backend's read is being handled are corked into one write
(`cork`/`uncork`).

Requests are remembered by their bytes (`Proxy.request_heads`): a read that was one whole
request without a body, from its first byte to its end and nothing else, maps to the fields
of its Exchange; a later read with the same bytes, arriving where a request starts (the
parser holds no part of one, none is in flight), is that same request and is not parsed
again -- clients repeat their requests byte for byte. The parser's own state stays true
because it is only ever skipped between messages. `on_message_begin` says when the parser
holds part of a request; without it a read after a request's first bytes could equal a
remembered request and be taken for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import httptools

from meshnet.ingress import http1
from meshnet.ingress.proxy import Exchange

log = logging.getLogger("meshnet.ingress.server")

# nginx lingering_timeout: how long input is still read (and discarded) after a rejection.
LINGER_S = 5.0
# Corked writes up to this size are joined into one (a TLS record holds 16 KiB).
JOIN_MAX_BYTES = 16 * 1024


class ClientConnection(asyncio.Protocol):
    __slots__ = ("proxy", "settings", "scheme", "transport", "client_ip", "trusted",
                 "forwarded", "forwarded_cache", "parser", "current", "parsing", "queue",
                 "tunnel", "closed",
                 "_paused", "_url", "_headers", "_head_bytes", "_reject", "_upgrade_rest",
                 "_loop", "_cork", "_in_head", "_in_message", "_memo", "_lingering",
                 "_header_deadline", "_idle_timer", "_idle_since", "_body_timer",
                 "_body_activity")

    def __init__(self, proxy, scheme: str, loop: asyncio.AbstractEventLoop | None = None,
                 forwarded_port: bytes = b""):
        self.proxy = proxy
        self.settings = proxy.settings
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.trusted = False  # the peer is a trusted proxy (its X-Forwarded-* are kept)
        self.forwarded: tuple[bytes, bytes, bytes] = (b"", b"", forwarded_port)
        # (Host, its forwarded_headers) of the last request: built once per connection.
        self.forwarded_cache: tuple[bytes | None, bytes] = (None, b"")
        # Made at the first read the memo of requests does not answer (most connections of a
        # client that repeats itself never need one).
        self.parser: httptools.HttpRequestParser | None = None
        self.current: Exchange | None = None
        self.parsing: Exchange | None = None
        # Pipelined requests; a deque from the first one (the common client never pipelines).
        self.queue: collections.deque[Exchange] | tuple = ()
        self.tunnel: asyncio.Transport | None = None
        self.closed = False
        self._paused: frozenset[str] = frozenset()  # why reading is paused; replaced, not mutated
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._reject = 0
        self._upgrade_rest = b""
        # The listener passes its loop: asyncio.get_running_loop() costs a getpid() syscall.
        self._loop = loop or asyncio.get_running_loop()
        self._cork: list[bytes] | None = None
        self._in_head = False  # between on_url and on_headers_complete
        self._in_message = False  # the parser holds part of a request
        # What the read being parsed leaves to remember (see data_received): None while it
        # may, the Exchange's fields after one request head, False otherwise.
        self._memo: tuple | bool | None = None
        # Discarding input until the close: after a rejection, or a request that closes.
        self._lingering = False
        # The proxy's Deadlines bucket this connection is in while a request head is due.
        self._header_deadline: set | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_activity = 0.0

    def __repr__(self) -> str:
        state = "tunnel" if self.tunnel else ("busy" if self.current else "idle")
        return f"<ClientConnection {self.client_ip} {self.scheme} {state} queued={len(self.queue)}>"

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.client_ip = peer[0]
        port = self.forwarded[2]
        if not port:  # else the listener's port, known to it
            port = str((transport.get_extra_info("sockname") or ("", 0))[1]).encode()
        proxy = self.proxy
        self.trusted = proxy.trusts_any and proxy.is_trusted(self.client_ip)
        # The X-Forwarded-* values of this connection, encoded once.
        self.forwarded = (self.client_ip.encode(), self.scheme.encode(), port)
        proxy.connections.add(self)
        # The first request's head is timed from the connect: a slowloris that never sends a
        # byte is cut off the same as one that sends them slowly.
        self._header_deadline = proxy.deadlines.add(self, self.settings.header_timeout_s,
                                                    self._loop)

    def data_received(self, data: bytes):
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self._lingering:
            return  # after a rejected request: read and thrown away until the close
        # _memo becomes None below when this read starts a request and may be remembered.
        self._memo = False
        if not self._in_message and self.current is None:
            memo = self.proxy.request_heads
            if memo.resting:
                memo.resting -= 1
            else:
                head = memo.get(data)
                if head is not None:
                    memo.hits += 1
                    return self._start_remembered(head)
                self._memo = None
        if self._body_timer is not None:
            self._body_activity = self._loop.time()
        try:
            (self.parser or self._new_parser()).feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_rest += data[exc.args[0]:]
            self.pause_reading("upgrade")  # nothing more until the backend answers 101
        except httptools.HttpParserCallbackError:
            self.reject(self._reject or 400)
        except httptools.HttpParserError as exc:
            log.info("%s: bad request: %s", self.client_ip, exc)
            self.reject(400)
        else:
            if self._in_head and self._header_deadline is None:
                # A head split across reads: from now it must complete within the timeout.
                self._header_deadline = self.proxy.deadlines.add(
                    self, self.settings.header_timeout_s, self._loop)
            elif self._memo and not self._in_message:
                # This read was one whole request, head and nothing else: the next read
                # with the same bytes is answered from memory.
                self.proxy.request_heads.remember(data, self._memo)

    def connection_lost(self, exc):
        self.closed = True
        # The parser holds our bound methods: left in place, every connection (and its
        # transport, over TLS its SSL objects) would be a cycle only the GC frees.
        self.parser = None
        self.proxy.connections.discard(self)
        if self._header_deadline is not None:
            self._header_deadline.discard(self)
        for timer in (self._idle_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        if self.tunnel is not None:
            self.tunnel.close()
        for ex in (self.current, *self.queue):
            if ex is not None:
                ex.client_gone()
        self.queue = ()

    def pause_writing(self):
        ex = self.current
        if ex is not None and ex.upstream is not None and ex.upstream.transport is not None:
            ex.upstream.transport.pause_reading()

    def resume_writing(self):
        ex = self.current
        if ex is not None and ex.upstream is not None and ex.upstream.transport is not None \
                and not ex.upstream.transport.is_closing():
            ex.upstream.transport.resume_reading()

    # -- httptools callbacks -------------------------------------------------------------------------

    def _new_parser(self) -> httptools.HttpRequestParser:
        self.parser = httptools.HttpRequestParser(self)
        return self.parser

    def on_message_begin(self):
        self._in_message = True

    def on_url(self, url: bytes):
        self._in_head = True
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.settings.max_header_bytes:
            self._reject = 431
            raise ValueError("request head too large")

    def on_header(self, name: bytes, value: bytes):
        self._headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.settings.max_header_bytes:
            self._reject = 431
            raise ValueError("request head too large")

    def on_headers_complete(self):
        self._in_head = False
        if self._header_deadline is not None:
            self._header_deadline.discard(self)
            self._header_deadline = None
        p = self.parser
        special, rest = http1.split_headers(self._headers, http1.REQUEST_SPECIAL)
        host = special.get(b"host")
        ex = Exchange(self, p.get_method(), self._url, host, rest, p.get_http_version(),
                      p.should_keep_alive())
        self._url, self._headers, self._head_bytes = b"", [], 0
        self.parsing = ex
        if len(special) > (host is not None):  # fields beyond Host the proxy must handle
            self._take_special(ex, special)
        if self._memo is None and not ex.framing and ex.upgrade is None \
                and b"expect" not in special:  # no body, nothing but the head to do
            self._memo = (ex.method, ex.target, host, rest, ex.version, ex.keep_alive,
                          ex.special)
        else:
            self._memo = False
        if self.current is None:
            self.current = ex
            ex.start()
        else:
            if not self.queue:
                self.queue = collections.deque()
            self.queue.append(ex)
            self.pause_reading("pipeline")

    def _start_remembered(self, head: tuple) -> None:
        """A read whose bytes equal a whole request read before (proxy.request_heads): its
        Exchange is made from the fields that parse gave, without parsing again. Only reads
        that start at a request's first byte get here (the parser holds nothing), so the same
        bytes mean the same request, and llhttp already accepted them once."""
        if self._header_deadline is not None:  # the first request's, from the connect
            self._header_deadline.discard(self)
            self._header_deadline = None
        method, target, host, rest, version, keep_alive, special = head
        ex = Exchange(self, method, target, host, rest, version, keep_alive)
        ex.special = special
        ex.request_done = True
        if not keep_alive:  # as on_message_complete
            self._lingering = True
        self.current = ex
        ex.start()

    def _take_special(self, ex: Exchange, special: dict[bytes, bytes]) -> None:
        """The request head's fields beyond Host: its body's framing, Upgrade, Expect,
        X-Forwarded-* from a trusted peer (the Exchange reads those from `special`)."""
        ex.special = special
        if self.parser.should_upgrade():
            ex.upgrade = special.get(b"upgrade")
        cl = special.get(b"content-length")
        framing = "chunked" if b"transfer-encoding" in special else \
            ("length" if cl is not None else "")
        if framing:
            ex.framing = framing
            ex.content_length = int(cl) if cl else 0
            self._body_activity = self._loop.time()
            if self._body_timer is None:
                self._body_timer = self._loop.call_later(self.settings.body_timeout_s,
                                                         self._body_timed_out)
        expect = special.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self.current is None:
            # Answered here (as nginx does) so the body starts flowing while the backend is
            # chosen; the Expect header is not forwarded.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        if self.parsing is not None:
            self.parsing.on_request_body(body)

    def on_message_complete(self):
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_message = False
        ex, self.parsing = self.parsing, None
        if ex is not None:
            if ex.framing:
                ex.on_request_end()
            else:
                ex.request_done = True
            if not ex.keep_alive:
                # Nothing after a request that closes the connection is read, as nginx: it
                # is not a request (llhttp refuses it), and no reason to refuse this one.
                self._lingering = True

    # -- used by exchanges ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._cork is not None:
            self._cork.append(data)
        elif not self.closed:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until uncork(): one send() for a whole response that came in one
        read from the backend."""
        if self._cork is None:
            self._cork = []

    def uncork(self) -> None:
        pending, self._cork = self._cork, None
        if pending and not self.closed and not self.transport.is_closing():
            if len(pending) == 1:
                self.transport.write(pending[0])
            elif sum(map(len, pending)) <= JOIN_MAX_BYTES:
                # Joined: over TLS one record instead of one per piece (uvloop encrypts each
                # write of a writelines() on its own), over TCP one send all the same.
                self.transport.write(b"".join(pending))
            else:
                self.transport.writelines(pending)  # one writev, no join copy

    def close(self) -> None:
        self.uncork()
        self.transport.close()

    def pause_reading(self, reason: str) -> None:
        if not self._paused and not self.closed:
            self.transport.pause_reading()
        self._paused = self._paused | {reason}

    def resume_reading(self, reason: str) -> None:
        if reason in self._paused:
            self._paused = self._paused - {reason}
            if not self._paused and not self.closed:
                self.transport.resume_reading()

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        if ex is not self.current or self.closed:
            return
        self.current = None
        if not ex.request_done:
            # A body still arriving (say a 404 to a large POST) is not passed on: discard
            # what is in flight and close, which leaves no doubt where a next request starts.
            self._linger()
            return
        if not keep_alive:
            self.close()
            return
        if self.queue:
            self.current = self.queue.popleft()
            if not self.queue:
                self.resume_reading("pipeline")
            self.current.start()
        else:
            self._idle_since = self._loop.time()
            if self._idle_timer is None:
                self._idle_timer = self._loop.call_later(self.settings.keepalive_timeout_s,
                                                         self._idle_timed_out)

    def become_tunnel(self, upstream_transport: asyncio.Transport) -> None:
        self.tunnel = upstream_transport
        self.current = None
        for timer in (self._body_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        if self._upgrade_rest:
            upstream_transport.write(self._upgrade_rest)
            self._upgrade_rest = b""
        self.resume_reading("upgrade")

    def reject(self, status: int, linger: bool = True) -> None:
        """Answer an error the request itself caused and close: after a framing error the
        connection's byte stream can no longer be trusted.

        linger: the client may still be sending (a 100 KB head refused at 32 KiB); closing
        with unread bytes makes the kernel send RST, which can destroy the answer before the
        client reads it. So, as nginx's lingering_close: send FIN, then read and discard
        until the client closes or LINGER_S passes. Not for timeouts: a client too slow to
        send a head gets no more of our time."""
        if self.closed or self._lingering:
            return
        self.proxy.count_rejected(status)
        if self.current is None or not self.current.response_started:
            self.write(http1.error_page(status, keep_alive=False))
        if linger:
            self._linger()
        else:
            self.close()

    def _linger(self) -> None:
        """Close, but read and discard the client's input first (see reject)."""
        if self._lingering or self.closed:
            return
        if not self.transport.can_write_eof():  # TLS: no half-close
            return self.close()
        self.uncork()
        self._lingering = True
        self.transport.write_eof()
        self._paused = frozenset()
        self.transport.resume_reading()
        self._loop.call_later(LINGER_S, self.transport.close)

    def eof_received(self):
        return False  # the client is done sending: close (also ends a lingering close)

    # -- internals --------------------------------------------------------------------------------


    def expire(self) -> None:
        """The request head is late (proxy.deadlines calls this): 408."""
        self._header_deadline = None
        if self.current is None and not self.closed:
            self.reject(408, linger=False)

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        if self.closed or self.tunnel is not None or self.current is not None or self._in_head:
            return  # busy: exchange_finished arms it again
        left = self._idle_since + self.settings.keepalive_timeout_s - self._loop.time()
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._idle_timed_out)
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.closed or self.parsing is None:
            return  # the body ended
        now = self._loop.time()
        if self._paused:  # we stopped reading (backpressure): the client is not slow
            self._body_activity = now
        left = self._body_activity + self.settings.body_timeout_s - now
        if left > 0:
            self._body_timer = self._loop.call_later(left, self._body_timed_out)
        else:
            self.reject(408, linger=False)


async def start_listener(proxy, host: str, port: int, ssl_context=None, *,
                         reuse_port: bool = False) -> asyncio.Server:
    """Listen for clients; `ssl_context` makes it the HTTPS listener; `reuse_port`: one of
    several processes on the same address (SO_REUSEPORT, --workers)."""
    loop = asyncio.get_running_loop()
    scheme = "https" if ssl_context is not None else "http"
    # The port for X-Forwarded-Port, once the listener is bound (port 0: the kernel's pick).
    bound = [b""]
    # TCP_NODELAY: uvloop (and asyncio) set it on every TCP transport.
    server = await loop.create_server(
        lambda: ClientConnection(proxy, scheme, loop, bound[0]), host, port, ssl=ssl_context,
        reuse_address=True, backlog=4096, reuse_port=reuse_port or None,
        ssl_handshake_timeout=proxy.settings.header_timeout_s if ssl_context is not None
        else None)
    ports = {sock.getsockname()[1] for sock in server.sockets}
    if len(ports) == 1:  # else (a name with v4 and v6 sockets on :0) each connection asks
        bound[0] = str(ports.pop()).encode()
    return server
