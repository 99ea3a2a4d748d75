"""The DNS server: UDP and TCP on one port, moving bytes in and out of the pure core.

Theory of operation
-------------------
Every packet, whatever the transport, goes through `DnsServer.handle(data, tcp, send)`:
`parse_query` (protocol rules) -> `answer(self.table, request)` (the zone) -> `encode_reply`.
Zone answers are computed and sent synchronously inside the protocol callback: no task, no
await. Only forwarded questions and ExternalName chases become tasks, kept in `self.tasks` so
that `stop()` can let them finish within a deadline and cancel the rest.

`self.table` is the published zone table. The daemon replaces it with one attribute assignment;
a query reads it once, so it sees one whole table, old or new, never a mix.

`handle` never raises: a bug for one packet is logged and answered SERVFAIL (or dropped if the
packet could not even be parsed), and the server keeps serving others.

TCP (RFC 7766): two-byte length prefix, several queries per connection, answers in completion
order, an idle timeout of `TCP_IDLE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import defaultdict
from typing import Callable, NamedTuple

from dnslib import QTYPE, RCODE, DNSHeader, DNSRecord

from meshnet.dns.answer import Answer, answer
from meshnet.dns.errors import ForwardError, Overloaded
from meshnet.dns.forward import Forwarder
from meshnet.dns.protocol import (Query, aged, encode_reply, error_reply, parse_query,
                                  ttl_offsets)
from meshnet.dns.stats import DnsMetrics, rcode_label, type_label
from meshnet.dns.zone import ZoneTable

log = logging.getLogger("meshnet.dns.server")

TCP_IDLE_TIMEOUT_S = 10.0   # CoreDNS's default read timeout for idle TCP connections
TCP_MAX_PENDING = 64        # queries in flight per TCP connection before we stop reading
STOP_DEADLINE_S = 2.0
BIND_ATTEMPTS = 20          # port 0: find a port free for both UDP and TCP
MEMO_MAX_ENTRIES = 20000    # encoded zone answers kept per published table
MEMO_MAX_QUERY_BYTES = 512  # bigger queries are not memoised (bounds the memo's memory)

Send = Callable[[bytes], None]


class CachedReply(NamedTuple):
    """An encoded reply from the upstream cache, kept per query packet (minus its ID)."""
    wire: bytes
    ttl_offsets: tuple[int, ...]
    aged_s: int          # how many seconds the TTLs in `wire` have already been decreased by
    stored: float        # when the upstream answer entered the cache (cache clock)
    expires: float
    labels: tuple[str, str, str, bool]  # proto, type, rcode, truncated: see `memo_hits`


def relay(query: Query, upstream: DNSRecord) -> DNSRecord:
    """The client's reply from an upstream (or cached) answer: client's ID and question, no AA;
    a copy, because the upstream record is shared with the cache and other waiters."""
    h = upstream.header
    reply = DNSRecord(DNSHeader(id=query.request.header.id, qr=1, rd=query.request.header.rd,
                                ra=1, rcode=h.rcode), q=query.request.q)
    reply.rr = list(upstream.rr)
    reply.auth = list(upstream.auth)
    reply.ar = [rr for rr in upstream.ar if rr.rtype != QTYPE.OPT]
    return reply


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "DnsServer"):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        server, transport = self.server, self.transport
        # The hot path, inlined: a memoised zone answer is one lookup and one sendto.
        if server._memo_table is server.table:
            key = (False, data[2:])
            hit = server._memo.get(key)
            if hit is not None:
                transport.sendto(data[:2] + hit[0][2:], addr)
                server.memo_hits[hit[1]] += 1
                return
            cached = server._cached.get(key)  # an upstream cache hit
            if cached is not None:
                cache = server.forwarder.cache
                now = cache.clock()
                if now < cached.expires and int(now - cached.stored) == cached.aged_s:
                    transport.sendto(data[:2] + cached.wire[2:], addr)
                    server.memo_hits[cached.labels] += 1
                    cache.hits += 1
                    return  # else: expired or due for ageing, which handle() does
        server.handle(data, False, lambda out: out is not None and transport.sendto(out, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)  # ICMP unreachable from a client: ignore


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: "DnsServer"):
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pending = 0
        self.paused = False

    def __repr__(self) -> str:
        return f"<TcpConnection pending={self.pending} buffered={len(self.buffer)}>"

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self._arm()

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        if self.timer:
            self.timer.cancel()

    def _arm(self) -> None:
        if self.timer:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT_S, self.close)

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._arm()
        self.buffer += data
        while len(self.buffer) >= 2:
            size = (self.buffer[0] << 8) | self.buffer[1]
            if len(self.buffer) < 2 + size:
                break
            message = bytes(self.buffer[2:2 + size])
            del self.buffer[:2 + size]
            self.pending += 1
            self.server.handle(message, True, self._send)
        if self.pending >= TCP_MAX_PENDING and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def _send(self, out: bytes | None) -> None:
        self.pending -= 1
        if out is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!H", len(out)) + out)
        if self.paused and self.pending < TCP_MAX_PENDING // 2:
            self.paused = False
            self.transport.resume_reading()


class _MemoCounts:
    """Registered first in the registry: brings the memo hit counts in at scrape time."""

    def __init__(self, server: "DnsServer"):
        self.server = server

    def render(self) -> list[str]:
        self.server.flush_memo_hits()
        return []


class DnsServer:
    def __init__(self, table: ZoneTable, forwarder: Forwarder | None = None,
                 metrics: DnsMetrics | None = None):
        self.table = table
        self.forwarder = forwarder
        self.metrics = metrics or DnsMetrics()
        self.tasks: set[asyncio.Task] = set()
        self.connections: set[_TcpProtocol] = set()
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        # Zone answers depend only on (table, packet minus its ID, transport): the encoded
        # reply is memoised per published table, and dropped wholesale when the table changes.
        # Memo hits are counted here, one dict increment each, and added to the request and
        # response counters when /metrics is scraped; they are not timed (timing one costs
        # about as much as answering it), so the latency histogram covers the other answers.
        self._memo: dict[tuple[bool, bytes], tuple[bytes, tuple[str, str, str, bool]]] = {}
        self._memo_table: ZoneTable | None = None
        self.memo_hits: defaultdict[tuple[str, str, str, bool], int] = defaultdict(int)
        self.metrics.registry.metrics.insert(0, _MemoCounts(self))
        # Upstream cache hits likewise, but these outlive table changes (a forwarded name
        # cannot become a zone name, reverse names excepted, which are not kept) and expire
        # with their cache entry; their TTLs are aged in the encoded bytes.
        self._cached: dict[tuple[bool, bytes], CachedReply] = {}

    def __repr__(self) -> str:
        return f"<DnsServer {self.address} {self.table!r} tasks={len(self.tasks)} " \
               f"tcp={len(self.connections)}>"

    # -- sockets -------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        for attempt in range(BIND_ATTEMPTS if port == 0 else 1):
            self.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port))
            bound = self.udp.get_extra_info("sockname")[1]
            try:
                self.tcp = await loop.create_server(lambda: _TcpProtocol(self), host, bound,
                                                    reuse_address=True)
            except OSError:
                self.udp.close()
                if attempt == BIND_ATTEMPTS - 1 or port != 0:
                    raise
                continue
            self.address = (host, bound)
            return self.address
        raise OSError(f"no port free for both UDP and TCP on {host}")

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        if self.udp:
            self.udp.close()
        if self.tcp:
            self.tcp.close()
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=deadline_s)
            for task in pending:
                task.cancel()
        for conn in list(self.connections):
            conn.close()
        if self.tcp:
            await self.tcp.wait_closed()

    # -- queries -------------------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool, send: Send) -> None:
        start = time.perf_counter()
        m = self.metrics
        if self._memo_table is not self.table:
            self._memo, self._memo_table = {}, self.table
        key = (tcp, data[2:])
        hit = self._memo.get(key)
        if hit is None and self._cached:
            cached = self._cached.get(key)
            if cached is not None and self._send_cached(cached, key, data, send, start):
                return
        if hit is not None:
            send(data[:2] + hit[0][2:])
            self.memo_hits[hit[1]] += 1
            return
        try:
            parsed = parse_query(data)
        except Exception:  # parse_query must not raise; be sure anyway
            log.exception("parsing a %d-byte packet", len(data))
            parsed = None
        if not isinstance(parsed, Query):
            m.malformed.inc("dropped" if parsed is None else "answered")
            if parsed is not None:
                m.responses.inc(rcode_label(parsed[3] & 0xF))
            send(parsed)  # None: dropped (TCP still needs to know the message is done)
            return
        q = parsed.request.q
        m.requests.inc("tcp" if tcp else "udp", type_label(q.qtype))
        try:
            result = answer(self.table, parsed.request)
            if result.reply is not None and not result.chase:
                out = self._send(parsed, result.reply, tcp, send, start, "zone")
                if len(self._memo) >= MEMO_MAX_ENTRIES:
                    self._memo.clear()
                if len(data) <= MEMO_MAX_QUERY_BYTES:
                    self._memo[key] = (out, ("tcp" if tcp else "udp", type_label(q.qtype),
                                             rcode_label(result.reply.header.rcode),
                                             not tcp and bool(out[2] & 0x02)))
                return
            if result.reply is None and self.forwarder is not None:
                name = str(q.qname).lower()
                found = self.forwarder.cache.lookup((name, q.qtype, q.qclass, False))
                if found is not None:  # a cache hit needs no task either
                    cached, aged_s, stored, expires = found
                    out = self._send(parsed, relay(parsed, cached), tcp, send, start, "cache")
                    offsets = ttl_offsets(out)
                    if (len(data) <= MEMO_MAX_QUERY_BYTES and offsets is not None
                            and not name.endswith(".arpa.")):
                        if len(self._cached) >= MEMO_MAX_ENTRIES:
                            self._cached.clear()
                        self._cached[key] = CachedReply(
                            out, offsets, aged_s, stored, expires,
                            ("tcp" if tcp else "udp", type_label(q.qtype),
                             rcode_label(cached.header.rcode), not tcp and bool(out[2] & 0x02)))
                    return
        except Exception:
            log.exception("answering %r", parsed)
            self._reply_error(parsed, RCODE.SERVFAIL, tcp, send, start)
            return
        task = asyncio.get_running_loop().create_task(
            self._slow(parsed, result, tcp, send, start))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def flush_memo_hits(self) -> None:
        """Add the memo hits counted since the last call to the Prometheus counters."""
        hits, self.memo_hits = self.memo_hits, defaultdict(int)
        m = self.metrics
        for (proto, qtype, rcode, truncated), n in hits.items():
            m.requests.inc(proto, qtype, amount=n)
            m.responses.inc(rcode, amount=n)
            if truncated:
                m.truncated.inc(amount=n)

    def _send_cached(self, entry: CachedReply, key, data: bytes, send: Send,
                     start: float) -> bool:
        cache = self.forwarder.cache
        now = cache.clock()
        if now >= entry.expires:
            del self._cached[key]
            return False
        elapsed = int(now - entry.stored)
        if elapsed != entry.aged_s:
            entry = entry._replace(wire=aged(entry.wire, entry.ttl_offsets,
                                             elapsed - entry.aged_s), aged_s=elapsed)
            self._cached[key] = entry
        send(data[:2] + entry.wire[2:])
        cache.hits += 1
        self.memo_hits[entry.labels] += 1
        return True

    def _send(self, query: Query, reply: DNSRecord, tcp: bool, send: Send, start: float,
              source: str) -> bytes:
        out = encode_reply(query, reply, tcp)
        if not tcp and len(out) >= 12 and out[2] & 0x02:
            self.metrics.truncated.inc()
        send(out)
        self.metrics.responses.inc(rcode_label(reply.header.rcode))
        self.metrics.duration.observe(time.perf_counter() - start, source)
        return out

    def _reply_error(self, query: Query, rcode: int, tcp: bool, send: Send,
                     start: float) -> None:
        send(error_reply(query, rcode, tcp))
        self.metrics.responses.inc(rcode_label(rcode))
        self.metrics.duration.observe(time.perf_counter() - start, "error")

    async def _slow(self, query: Query, result: Answer, tcp: bool, send: Send,
                    start: float) -> None:
        q = query.request.q
        try:
            if self.forwarder is None:
                if result.reply is not None:  # a chase we cannot do: the CNAME alone
                    self._send(query, result.reply, tcp, send, start, "zone")
                else:
                    self._reply_error(query, RCODE.REFUSED, tcp, send, start)
                return
            if result.chase:
                reply = result.reply
                try:
                    upstream = await self.forwarder.resolve(result.chase, q.qtype, q.qclass)
                    reply.rr.extend(upstream.rr)
                    self.metrics.forwarded.inc("ok")
                except ForwardError as exc:
                    log.debug("chasing %s: %s", result.chase, exc)
                    self.metrics.forwarded.inc("error")
                self._send(query, reply, tcp, send, start, "chase")
                return
            try:
                upstream = await self.forwarder.resolve(q.qname, q.qtype, q.qclass)
            except Overloaded:
                self.metrics.forwarded.inc("refused")
                self._reply_error(query, RCODE.REFUSED, tcp, send, start)
                return
            except ForwardError as exc:
                log.debug("forwarding %r: %s", query, exc)
                self.metrics.forwarded.inc("error")
                self._reply_error(query, RCODE.SERVFAIL, tcp, send, start)
                return
            self.metrics.forwarded.inc("ok")
            self._send(query, relay(query, upstream), tcp, send, start, "forward")
        except asyncio.CancelledError:
            if tcp:
                send(None)
            raise
        except Exception:
            log.exception("forwarding %r", query)
            self._reply_error(query, RCODE.SERVFAIL, tcp, send, start)
