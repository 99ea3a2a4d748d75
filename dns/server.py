"""The DNS server: UDP and TCP on one port, moving bytes in and out of the pure core.

Theory of operation
-------------------
Every packet, whatever the transport, goes through `DnsServer.handle(data, tcp, send)`:
`parse_query` (protocol rules, read straight from the bytes) -> for a name in a local zone,
`answer(self.table, request)` (the zone) -> `encode_reply`; for any other name, the cache or
the forwarder, whose answers are relayed as bytes (`relay_reply`: the client's ID, question
and OPT around the upstream's records) and never decoded. Zone answers, cache hits and
forwarded questions are all handled inside the protocol callbacks: no task, no await — an
upstream answer completes its clients from the upstream socket's callback. Only ExternalName
chases become tasks, kept in `self.tasks` so that `stop()` can let them finish within a
deadline and cancel the rest; `stop()` waits likewise for forwarded questions in flight.

`self.table` is the published zone table. The daemon replaces it with one attribute assignment;
a query reads it once, so it sees one whole table, old or new, never a mix. The assignment also
empties the memo of encoded zone answers (the `table` setter), in place: the UDP protocol holds
the memo dict itself, so that a repeated question costs, in Python, one slice, one dict lookup
keyed by the packet's bytes after the ID, one concatenation putting the client's ID in front of
the stored reply, one sendto and one list increment (about 1,800 of the 11,500 user-space
instructions a UDP query costs: bench/bench_dns_micro.py; the rest is uvloop and the
interpreter making and reading the client's address, and the GIL around each callback).

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
from typing import Callable, NamedTuple

from dnslib import RCODE, DNSRecord

from meshnet.dns.answer import Answer, answer, is_local
from meshnet.dns.cache import CacheHit
from meshnet.dns.errors import ForwardError, Overloaded, WireError
from meshnet.dns.forward import Forwarder
from meshnet.dns.protocol import Query, encode_reply, error_reply, parse_query, relay_reply
from meshnet.dns.stats import DnsMetrics, rcode_label, type_label
from meshnet.dns.wire import FLAG_TC, Reply, aged
from meshnet.dns.zone import ZoneTable

log = logging.getLogger("meshnet.dns.server")

TCP_IDLE_TIMEOUT_S = 10.0   # CoreDNS's default read timeout for idle TCP connections
TCP_MAX_PENDING = 64        # queries in flight per TCP connection before we stop reading
STOP_DEADLINE_S = 2.0
BIND_ATTEMPTS = 20          # port 0: find a port free for both UDP and TCP
MEMO_MAX_ENTRIES = 20000    # encoded zone answers kept per published table
MEMO_MAX_QUERY_BYTES = 512  # bigger queries are not memoised (bounds the memo's memory)

Send = Callable[[bytes | None], None]


Labels = tuple[str, str, str, bool]  # proto, type, rcode, truncated: see `DnsServer._hits`


class CachedReply(NamedTuple):
    """An encoded reply from the upstream cache, kept per query packet (minus its ID)."""
    tail: bytes          # the reply without its ID: the client's ID goes in front
    ttl_offsets: tuple[int, ...]  # into `tail`
    aged_s: int          # how many seconds the TTLs in `tail` have already been decreased by
    stored: float        # when the upstream answer entered the cache (cache clock)
    expires: float
    hits: list[int]      # the counter of its labels (`DnsServer._hits`)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "DnsServer"):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.sendto: Callable[[bytes, object], None] | None = None
        # The server's UDP memo and kept cache hits: the same dicts for the server's whole
        # life (cleared in place, never replaced), so the hot path can hold them.
        self.memo = server._memo
        self.cached = server._cached

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.sendto = transport.sendto

    def datagram_received(self, data: bytes, addr) -> None:
        # The hot path, inlined: a memoised answer is a slice, one dict lookup keyed by the
        # packet's bytes after the ID (no decoding: the bytes after the ID determine the
        # reply), the client's ID put in front of the stored reply, one sendto, and its hit
        # counted in the list its labels share (nothing hashed). Everything else, and an
        # upstream answer that is expired or due for ageing, goes through handle().
        key = data[2:]
        hit = self.memo.get(key)
        if hit is not None:
            self.sendto(data[:2] + hit[0], addr)
            hit[1][0] += 1
            return
        cached = self.cached.get(key)  # an upstream cache hit
        if cached is not None:
            cache = self.server.forwarder.cache
            now = cache.clock()
            if now < cached.expires and int(now - cached.stored) == cached.aged_s:
                self.sendto(data[:2] + cached.tail, addr)
                cached.hits[0] += 1
                cache.hits += 1
                return
        sendto = self.sendto
        self.server.handle(data, False, lambda out: out is not None and sendto(out, addr))

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
        self._table = table
        self.forwarder = forwarder
        self.metrics = metrics or DnsMetrics()
        self.tasks: set[asyncio.Task] = set()
        self.connections: set[_TcpProtocol] = set()
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        # Zone answers depend only on (table, packet minus its ID, transport): the encoded
        # reply, minus its ID, is memoised per published table and transport, keyed by the
        # packet's bytes after the ID, and dropped wholesale when the table changes.
        # Memo hits are counted in `_hits`, one list per label set (proto, type, rcode,
        # truncated) that every entry with those labels shares, so a hit is `counter[0] += 1`
        # with nothing hashed; the counts are added to the request and response counters
        # when /metrics is scraped. They are not timed (timing one costs about as much as
        # answering it), so the latency histogram covers the other answers.
        self._memo: dict[bytes, tuple[bytes, list[int]]] = {}      # UDP
        self._memo_tcp: dict[bytes, tuple[bytes, list[int]]] = {}
        self._hits: dict[Labels, list[int]] = {}
        self.metrics.registry.metrics.insert(0, _MemoCounts(self))
        # Upstream cache hits likewise, but these outlive table changes (a forwarded name
        # cannot become a zone name, reverse names excepted, which are not kept) and expire
        # with their cache entry; their TTLs are aged in the encoded bytes.
        self._cached: dict[bytes, CachedReply] = {}                # UDP
        self._cached_tcp: dict[bytes, CachedReply] = {}
        self.waiting = 0  # clients waiting for a forwarded answer
        self._drained: asyncio.Future | None = None  # set when `waiting` drops to 0 in stop()

    @property
    def table(self) -> ZoneTable:
        return self._table

    @table.setter
    def table(self, table: ZoneTable) -> None:
        """Publish a zone table: the answers memoised from the previous one go with it."""
        self._table = table
        self._memo.clear()
        self._memo_tcp.clear()

    def __repr__(self) -> str:
        return f"<DnsServer {self.address} {self.table!r} tasks={len(self.tasks)} " \
               f"forwarding={self.waiting} tcp={len(self.connections)}>"

    # -- sockets -------------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Bind UDP and TCP on one port. With `reuse_port`, both sockets set SO_REUSEPORT so
        that other worker processes can bind the same address (meshnet/workers.py)."""
        loop = asyncio.get_running_loop()
        for attempt in range(BIND_ATTEMPTS if port == 0 else 1):
            self.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port),
                reuse_port=reuse_port or None)
            bound = self.udp.get_extra_info("sockname")[1]
            try:
                self.tcp = await loop.create_server(lambda: _TcpProtocol(self), host, bound,
                                                    reuse_address=True,
                                                    reuse_port=reuse_port or None)
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        if self.waiting:
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), deadline_s)
            except asyncio.TimeoutError:
                log.warning("stopping with %d forwarded questions unanswered", self.waiting)
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks),
                                                timeout=max(0.0, deadline - loop.time()))
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
        table = self._table
        memo = self._memo_tcp if tcp else self._memo
        key = data[2:]
        hit = memo.get(key)
        if hit is not None:
            send(data[:2] + hit[0])
            hit[1][0] += 1
            return
        kept = self._cached_tcp if tcp else self._cached
        if kept:
            cached = kept.get(key)
            if cached is not None and self._send_cached(kept, cached, key, data, send):
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
        m.requests.inc("tcp" if tcp else "udp", type_label(parsed.qtype))
        if self.forwarder is not None and not is_local(table, parsed.name):
            try:
                self._forward(parsed, kept, key, tcp, send, start)
            except Exception:  # a bug: logged, and the client gets SERVFAIL
                log.exception("forwarding %r", parsed)
                self._reply_error(parsed, RCODE.SERVFAIL, tcp, send, start)
            return
        try:
            result = answer(table, parsed.request)
        except WireError:  # the wire reader took it, dnslib does not (bad rdata in it)
            m.malformed.inc("answered")
            self._reply_error(parsed, RCODE.FORMERR, tcp, send, start)
            return
        except Exception:
            log.exception("answering %r", parsed)
            self._reply_error(parsed, RCODE.SERVFAIL, tcp, send, start)
            return
        if result.reply is None:  # not ours, and no upstream to ask
            self._reply_error(parsed, RCODE.REFUSED, tcp, send, start)
            return
        if result.chase and self.forwarder is not None:
            task = asyncio.get_running_loop().create_task(
                self._chase(parsed, result, tcp, send, start))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        out = self._send(parsed, result.reply, tcp, send, start, "zone")
        if len(memo) >= MEMO_MAX_ENTRIES:
            memo.clear()
        if len(data) <= MEMO_MAX_QUERY_BYTES and not result.chase:
            memo[key] = (out[2:], self._counter(parsed, result.reply.header.rcode, out, tcp))

    def _counter(self, query: Query, rcode: int, out: bytes, tcp: bool) -> list[int]:
        """The hit counter shared by every kept reply with the labels of this one."""
        labels = ("tcp" if tcp else "udp", type_label(query.qtype), rcode_label(rcode),
                  not tcp and bool(out[2] & (FLAG_TC >> 8)))
        counter = self._hits.get(labels)
        if counter is None:
            counter = self._hits[labels] = [0]
        return counter

    @property
    def memo_hits(self) -> dict[Labels, int]:
        """Memo and kept-cache hits not yet added to the Prometheus counters, by labels."""
        return {labels: counter[0] for labels, counter in self._hits.items() if counter[0]}

    def flush_memo_hits(self) -> None:
        """Add the memo hits counted since the last call to the Prometheus counters."""
        m = self.metrics
        for (proto, qtype, rcode, truncated), counter in self._hits.items():
            n = counter[0]
            if not n:
                continue
            counter[0] = 0
            m.requests.inc(proto, qtype, amount=n)
            m.responses.inc(rcode, amount=n)
            if truncated:
                m.truncated.inc(amount=n)

    # -- forwarded names: bytes in, bytes out --------------------------------------------------

    def _forward(self, query: Query, kept: dict[bytes, CachedReply], key: bytes, tcp: bool,
                 send: Send, start: float) -> None:
        fwd = self.forwarder
        cache_key = (query.name, query.qtype, query.qclass, False)
        hit = fwd.cache.lookup(cache_key)
        if hit is not None:  # a cache hit needs no task either
            out = relay_reply(query, hit.reply, hit.wire(), tcp)
            self._keep_cached(query, kept, key, hit, out, tcp)
            self._sent(out, hit.reply.rcode, tcp, send, start, "cache")
            return
        try:
            fwd.ask(cache_key, query.question,
                    lambda reply, error: self._forwarded(query, tcp, send, start, reply, error))
        except Overloaded:
            self.metrics.forwarded.inc("refused")
            self._reply_error(query, RCODE.REFUSED, tcp, send, start)
            return
        self.waiting += 1

    def _forwarded(self, query: Query, tcp: bool, send: Send, start: float,
                   reply: Reply | None, error: ForwardError | None) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if error is not None:
            log.debug("forwarding %r: %s", query, error)
            self.metrics.forwarded.inc("error")
            self._reply_error(query, RCODE.SERVFAIL, tcp, send, start)
            return
        self.metrics.forwarded.inc("ok")
        self._sent(relay_reply(query, reply, reply.wire, tcp), reply.rcode, tcp, send, start,
                   "forward")

    def _keep_cached(self, query: Query, kept: dict[bytes, CachedReply], key: bytes,
                     hit: CacheHit, out: bytes, tcp: bool) -> None:
        """Keep the relayed bytes of a cache hit per query packet, so that the next identical
        packet is one lookup (reverse names are not kept: a table change can make them local).
        The client's header and question have the upstream's lengths, so the TTLs sit where
        they sit in the upstream's bytes; a truncated reply has none."""
        if len(key) + 2 > MEMO_MAX_QUERY_BYTES or query.name.endswith(".arpa."):
            return
        if len(kept) >= MEMO_MAX_ENTRIES:
            kept.clear()
        truncated = bool(out[2] & (FLAG_TC >> 8))
        kept[key] = CachedReply(
            out[2:], () if truncated else tuple(at - 2 for at in hit.reply.ttl_offsets),
            hit.aged_s, hit.stored, hit.expires,
            self._counter(query, hit.reply.rcode, out, tcp))

    def _send_cached(self, kept: dict[bytes, CachedReply], entry: CachedReply, key: bytes,
                     data: bytes, send: Send) -> bool:
        cache = self.forwarder.cache
        now = cache.clock()
        if now >= entry.expires:
            del kept[key]
            return False
        elapsed = int(now - entry.stored)
        if elapsed != entry.aged_s:
            entry = entry._replace(tail=aged(entry.tail, entry.ttl_offsets,
                                             elapsed - entry.aged_s), aged_s=elapsed)
            kept[key] = entry
        send(data[:2] + entry.tail)
        cache.hits += 1
        entry.hits[0] += 1
        return True

    # -- sending -------------------------------------------------------------------------------

    def _sent(self, out: bytes, rcode: int, tcp: bool, send: Send, start: float,
              source: str) -> None:
        if not tcp and out[2] & (FLAG_TC >> 8):
            self.metrics.truncated.inc()
        send(out)
        self.metrics.responses.inc(rcode_label(rcode))
        self.metrics.duration.observe(time.perf_counter() - start, source)

    def _send(self, query: Query, reply: DNSRecord, tcp: bool, send: Send, start: float,
              source: str) -> bytes:
        out = encode_reply(query, reply, tcp)
        self._sent(out, reply.header.rcode, tcp, send, start, source)
        return out

    def _reply_error(self, query: Query, rcode: int, tcp: bool, send: Send,
                     start: float) -> None:
        send(error_reply(query, rcode, tcp))
        self.metrics.responses.inc(rcode_label(rcode))
        self.metrics.duration.observe(time.perf_counter() - start, "error")

    async def _chase(self, query: Query, result: Answer, tcp: bool, send: Send,
                     start: float) -> None:
        """An ExternalName's CNAME with its target's records from upstream appended."""
        reply = result.reply
        try:
            try:
                wire = await self.forwarder.resolve(result.chase, query.qtype, query.qclass)
                reply.rr.extend(DNSRecord.parse(wire).rr)
                self.metrics.forwarded.inc("ok")
            except ForwardError as exc:
                log.debug("chasing %s: %s", result.chase, exc)
                self.metrics.forwarded.inc("error")
            except Exception:  # an upstream answer our reader took and dnslib does not
                log.debug("chasing %s: undecodable answer", result.chase, exc_info=True)
                self.metrics.forwarded.inc("error")
            self._send(query, reply, tcp, send, start, "chase")
        except asyncio.CancelledError:
            if tcp:
                send(None)
            raise
        except Exception:
            log.exception("chasing for %r", query)
            self._reply_error(query, RCODE.SERVFAIL, tcp, send, start)
