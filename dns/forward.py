"""Forwarding names outside the local zones to upstream resolvers, as bytes.

Theory of operation
-------------------
`Forwarder.ask(key, question, done)` gets one question answered upstream and calls
`done(reply, None)` with the upstream's answer (a `wire.Reply`: its bytes, never decoded) or
`done(None, error)` with a `ForwardError`. No task and no future per question: the upstream
socket's callback, or a timer, moves each question on. The server checks the cache
(`cache.py`) before asking; then, in order:
1. an identical question already in flight is joined, not sent again (CoreDNS does the same;
   it also keeps a burst of cache misses from multiplying upstream load);
2. beyond `max_concurrent` questions in flight, `Overloaded` is raised at once (the server
   answers REFUSED, as CoreDNS's forward plugin does with max_concurrent) instead of queueing
   without bound;
3. upstreams are tried in order starting with the last one that answered; each attempt has
   `attempt_timeout_s`, the whole question `timeout_s`. A timeout, a socket error, an answer
   that does not parse, or a SERVFAIL/REFUSED moves on to the next upstream (failover). A
   truncated UDP answer is retried over TCP on the same upstream (the only task, and rare).

What goes upstream is the client's question section as it sent it (name, type, class; its
case kept) behind a header of our own — a random ID, RD set, nothing else — and our OPT
(1232 bytes, no DO): the same query whoever asked, so one cached answer serves every client.
Each upstream keeps one connected UDP socket; answers are matched by the random 16-bit ID *and*
the question, so a stray or spoofed datagram cannot complete a query. The server relays the
answer's bytes with the client's ID and question put back (`protocol.relay_reply`).

`resolve(name, qtype)` is the same as a coroutine, cache included, for ExternalName chases.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from typing import Callable

from dnslib import DNSQuestion, DNSRecord

from meshnet.dns.cache import CacheKey, ResponseCache
from meshnet.dns.errors import ForwardError, Overloaded, WireError
from meshnet.dns.wire import FLAG_RD, HEADER, HEADER_BYTES, Reply, opt_record, read_name

log = logging.getLogger("meshnet.dns.forward")

DEFAULT_TIMEOUT_S = 5.0           # whole question, all upstreams (CoreDNS: 5 s)
DEFAULT_ATTEMPT_TIMEOUT_S = 2.0   # one upstream (CoreDNS forward's read timeout is 2 s)
DEFAULT_MAX_CONCURRENT = 1000     # CoreDNS's forward plugin has no default; dnsmasq uses 150
UPSTREAM_UDP_PAYLOAD = 1232
UPSTREAM_OPT = opt_record(UPSTREAM_UDP_PAYLOAD)
RCODE_SERVFAIL, RCODE_REFUSED = 2, 5

Done = Callable[[Reply | None, ForwardError | None], None]


class _Question:
    """One question in flight upstream, and everyone waiting for its answer."""

    __slots__ = ("key", "question", "waiters", "deadline", "first", "attempt", "errors",
                 "packet", "timer")

    def __init__(self, key: CacheKey, question: bytes, done: Done, deadline: float,
                 first: int):
        self.key, self.question, self.waiters = key, question, [done]
        self.deadline, self.first, self.attempt = deadline, first, 0
        self.errors: list[str] = []
        self.packet = b""
        self.timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Question {self.key[0]} type={self.key[1]} attempt={self.attempt} " \
               f"waiters={len(self.waiters)}>"


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, upstream: "Upstream"):
        self.upstream = upstream

    def datagram_received(self, data: bytes, addr) -> None:
        upstream = self.upstream
        if len(data) < HEADER_BYTES:
            return
        q = upstream.pending.get((data[0] << 8) | data[1])
        if q is None:
            return
        try:
            reply = Reply.parse(data)
        except WireError:
            return  # garbage: keep waiting for the real answer until the timeout
        if (reply.name, reply.qtype, reply.qclass) != q.key[:3]:
            return
        upstream.settle(q)
        upstream.forwarder.on_udp_reply(q, upstream, reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: fail the attempts now instead of timing out.
        self.upstream.fail_all(f"upstream {self.upstream.name}: {exc}")


class Upstream:
    def __init__(self, host: str, port: int, forwarder: "Forwarder"):
        self.host, self.port = host, port
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.forwarder = forwarder
        self.pending: dict[int, _Question] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.opening: asyncio.Task | None = None
        self.backlog: list[bytes] = []
        self.failures = 0
        self.answered = 0

    def __repr__(self) -> str:
        return f"<Upstream {self.name} answered={self.answered} failures={self.failures} " \
               f"pending={len(self.pending)}>"

    def _new_id(self) -> int:
        while True:
            qid = secrets.randbits(16)
            if qid not in self.pending:
                return qid

    def send(self, q: _Question, timeout_s: float) -> None:
        qid = self._new_id()
        q.packet = HEADER.pack(qid, FLAG_RD, 1, 0, 0, 1) + q.question + UPSTREAM_OPT
        self.pending[qid] = q
        loop = asyncio.get_running_loop()
        q.timer = loop.call_later(timeout_s, self._timed_out, q, qid, timeout_s)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(q.packet)
            return
        self.backlog.append(q.packet)
        if self.opening is None:
            self.opening = loop.create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamProtocol(self), remote_addr=(self.host, self.port))
        except OSError as exc:
            self.fail_all(f"upstream {self.name}: {exc}")
        else:
            for packet in self.backlog:
                self.transport.sendto(packet)
        finally:
            self.backlog.clear()
            self.opening = None

    def settle(self, q: _Question) -> None:
        """An answer came (or the attempt is over): stop its timer, forget its ID."""
        self.pending.pop((q.packet[0] << 8) | q.packet[1], None)
        if q.timer is not None:
            q.timer.cancel()
            q.timer = None

    def _timed_out(self, q: _Question, qid: int, timeout_s: float) -> None:
        if self.pending.get(qid) is not q:
            return
        q.timer = None
        self.settle(q)
        self.failures += 1
        self.forwarder.next_upstream(q, f"upstream {self.name}: no answer within "
                                        f"{timeout_s:.1f}s")

    def fail_all(self, error: str) -> None:
        for q in list(self.pending.values()):
            self.settle(q)
            self.failures += 1
            self.forwarder.next_upstream(q, error)

    async def exchange_tcp(self, q: _Question, timeout_s: float) -> Reply:
        """The same query over TCP (RFC 7766), after a truncated UDP answer."""
        writer = None
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(struct.pack("!H", len(q.packet)) + q.packet)
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise ForwardError(f"upstream {self.name} over TCP: "
                               f"{type(exc).__name__}: {exc}") from None
        finally:
            if writer is not None:
                writer.close()
        try:
            reply = Reply.parse(data)
        except WireError as exc:
            raise ForwardError(f"upstream {self.name} over TCP: bad answer: {exc}") from None
        if data[:2] != q.packet[:2] or (reply.name, reply.qtype, reply.qclass) != q.key[:3]:
            raise ForwardError(f"upstream {self.name}: answer for another question")
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.opening is not None:
            self.opening.cancel()
        for q in list(self.pending.values()):
            self.settle(q)


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], *, cache: ResponseCache | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT):
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.upstreams = [Upstream(h, p, self) for h, p in upstreams]
        self.cache = cache if cache is not None else ResponseCache()
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.max_concurrent = max_concurrent
        self.inflight: dict[CacheKey, _Question] = {}
        self.tasks: set[asyncio.Task] = set()
        self.preferred = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"<Forwarder upstreams={self.upstreams} inflight={len(self.inflight)}>"

    def ask(self, key: CacheKey, question: bytes, done: Done) -> None:
        """Have `question` (a question section: name, type, class) answered upstream; `done`
        is called exactly once, from a later callback. Raises `Overloaded` at once."""
        q = self.inflight.get(key)
        if q is not None:
            q.waiters.append(done)
            return
        if len(self.inflight) >= self.max_concurrent:
            self.refused += 1
            raise Overloaded(f"{len(self.inflight)} questions already in flight "
                             f"(--max-concurrent {self.max_concurrent})")
        loop = asyncio.get_running_loop()
        q = _Question(key, question, done, loop.time() + self.timeout_s, self.preferred)
        self.inflight[key] = q
        loop.call_soon(self.next_upstream, q, "")

    def next_upstream(self, q: _Question, error: str) -> None:
        """Send `q` to its next upstream, or fail it when none is left or time is up."""
        if error:
            q.errors.append(error)
        n = len(self.upstreams)
        left = q.deadline - asyncio.get_running_loop().time()
        if q.attempt >= n or left <= 0:
            self._finish(q, None, ForwardError("; ".join(q.errors)
                                               or "no upstream answered in time"))
            return
        upstream = self.upstreams[(q.first + q.attempt) % n]
        q.attempt += 1
        upstream.send(q, min(self.attempt_timeout_s, left))

    def on_udp_reply(self, q: _Question, upstream: Upstream, reply: Reply) -> None:
        if reply.tc:  # RFC 7766: retry the same upstream over TCP
            task = asyncio.get_running_loop().create_task(self._retry_tcp(q, upstream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        self._answered(q, upstream, reply)

    async def _retry_tcp(self, q: _Question, upstream: Upstream) -> None:
        left = q.deadline - asyncio.get_running_loop().time()
        try:
            reply = await upstream.exchange_tcp(q, min(self.attempt_timeout_s, left))
        except ForwardError as exc:
            upstream.failures += 1
            self.next_upstream(q, str(exc))
            return
        except asyncio.CancelledError:
            self._finish(q, None, ForwardError("forwarder closed"))
            raise
        self._answered(q, upstream, reply)

    def _answered(self, q: _Question, upstream: Upstream, reply: Reply) -> None:
        if reply.rcode in (RCODE_SERVFAIL, RCODE_REFUSED) and q.attempt < len(self.upstreams):
            upstream.failures += 1
            self.next_upstream(q, f"upstream {upstream.name}: "
                                  f"{'SERVFAIL' if reply.rcode == RCODE_SERVFAIL else 'REFUSED'}")
            return
        upstream.answered += 1
        self.preferred = self.upstreams.index(upstream)
        self.cache.put(q.key, reply)
        self._finish(q, reply, None)

    def _finish(self, q: _Question, reply: Reply | None, error: ForwardError | None) -> None:
        if self.inflight.get(q.key) is q:
            del self.inflight[q.key]
        waiters, q.waiters = q.waiters, []
        for done in waiters:
            try:
                done(reply, error)
            except Exception:  # one client's bug must not cost the others their answer
                log.exception("delivering the answer to %r", q)

    async def resolve(self, name: str, qtype: int, qclass: int = 1) -> bytes:
        """The upstream answer to one question as bytes (from the cache, TTLs aged, if there);
        raises ForwardError. For ExternalName chases, whose targets come as text."""
        question = DNSRecord(q=DNSQuestion(name, qtype, qclass)).pack()[HEADER_BYTES:]
        key = (read_name(question, 0)[0], qtype, qclass, False)
        hit = self.cache.lookup(key)
        if hit is not None:
            return hit.wire()
        fut = asyncio.get_running_loop().create_future()

        def done(reply: Reply | None, error: ForwardError | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(reply.wire)

        self.ask(key, question, done)
        return await fut

    def close(self) -> None:
        for upstream in self.upstreams:
            upstream.close()
        for task in list(self.tasks):
            task.cancel()
        for q in list(self.inflight.values()):
            self._finish(q, None, ForwardError("forwarder closed"))
