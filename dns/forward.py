"""Forwarding names outside the local zones to upstream resolvers.

Theory of operation
-------------------
`Forwarder.resolve(name, qtype, qclass)` returns the upstream's reply (a DNSRecord) or raises
`ForwardError`. In order:
1. the cache (`cache.py`) answers if it can;
2. an identical question already in flight is joined, not sent again (CoreDNS does the same;
   it also keeps a burst of cache misses from multiplying upstream load);
3. beyond `max_concurrent` questions in flight, `Overloaded` is raised at once (the server
   answers REFUSED, as CoreDNS's forward plugin does with max_concurrent) instead of queueing
   without bound;
4. upstreams are tried in order starting with the last one that answered; each attempt has
   `attempt_timeout_s`, the whole question `timeout_s`. A timeout, a socket error, or a
   SERVFAIL/REFUSED moves on to the next upstream (failover). A truncated UDP answer is
   retried over TCP on the same upstream.

Each upstream keeps one connected UDP socket; replies are matched by a random 16-bit ID *and*
the question (name, type, class), so a stray or spoofed datagram cannot complete a query.
The whole query is re-encoded for the client by the server (new ID, our own OPT).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct

from dnslib import RCODE, DNSQuestion, DNSRecord, EDNS0

from meshnet.dns.cache import ResponseCache
from meshnet.dns.errors import ForwardError, Overloaded

log = logging.getLogger("meshnet.dns.forward")

DEFAULT_TIMEOUT_S = 5.0           # whole question, all upstreams (CoreDNS: 5 s)
DEFAULT_ATTEMPT_TIMEOUT_S = 2.0   # one upstream (CoreDNS forward's read timeout is 2 s)
DEFAULT_MAX_CONCURRENT = 1000     # CoreDNS's forward plugin has no default; dnsmasq uses 150
UPSTREAM_UDP_PAYLOAD = 1232


def _question_key(q: DNSQuestion) -> tuple[str, int, int]:
    return (str(q.qname).lower(), q.qtype, q.qclass)


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, upstream: "Upstream"):
        self.upstream = upstream

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 12:
            return
        waiter = self.upstream.pending.get(struct.unpack_from("!H", data)[0])
        if waiter is None or waiter[1].done():
            return
        try:
            reply = DNSRecord.parse(data)
        except Exception:
            return  # garbage: keep waiting for the real answer until the timeout
        if reply.q is None or _question_key(reply.q) != waiter[0]:
            return
        waiter[1].set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: fail the attempts now instead of timing out.
        for _key, fut in list(self.upstream.pending.values()):
            if not fut.done():
                fut.set_exception(ForwardError(f"upstream {self.upstream}: {exc}"))


class Upstream:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.pending: dict[int, tuple[tuple, asyncio.Future]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.failures = 0
        self.answered = 0

    def __repr__(self) -> str:
        return f"<Upstream {self.host}:{self.port} answered={self.answered} " \
               f"failures={self.failures}>"

    async def _udp(self) -> asyncio.DatagramTransport:
        if self.transport is None or self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamProtocol(self), remote_addr=(self.host, self.port))
        return self.transport

    def _new_id(self) -> int:
        while True:
            qid = secrets.randbits(16)
            if qid not in self.pending:
                return qid

    async def exchange(self, question: DNSQuestion, timeout_s: float) -> DNSRecord:
        qid = self._new_id()
        msg = DNSRecord(q=question)
        msg.header.id, msg.header.rd = qid, 1
        msg.add_ar(EDNS0(udp_len=UPSTREAM_UDP_PAYLOAD))
        data = msg.pack()
        fut = asyncio.get_running_loop().create_future()
        self.pending[qid] = (_question_key(question), fut)
        try:
            (await self._udp()).sendto(data)
            reply = await asyncio.wait_for(fut, timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            raise ForwardError(f"upstream {self.host}:{self.port}: no answer within "
                               f"{timeout_s:.1f}s") from None
        except OSError as exc:
            raise ForwardError(f"upstream {self.host}:{self.port}: {exc}") from None
        finally:
            self.pending.pop(qid, None)
        if reply.header.tc:
            reply = await self._tcp(data, question, timeout_s)
        return reply

    async def _tcp(self, data: bytes, question: DNSQuestion, timeout_s: float) -> DNSRecord:
        writer = None
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(struct.pack("!H", len(data)) + data)
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = DNSRecord.parse(await reader.readexactly(size))
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise ForwardError(f"upstream {self.host}:{self.port} over TCP: "
                               f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # an unparsable answer
            raise ForwardError(f"upstream {self.host}:{self.port} over TCP: bad answer: "
                               f"{exc}") from None
        finally:
            if writer is not None:
                writer.close()
        if _question_key(reply.q) != _question_key(question):
            raise ForwardError(f"upstream {self.host}:{self.port}: answer for another question")
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for _key, fut in self.pending.values():
            if not fut.done():
                fut.cancel()


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], *, cache: ResponseCache | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT):
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.upstreams = [Upstream(h, p) for h, p in upstreams]
        self.cache = cache if cache is not None else ResponseCache()
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.max_concurrent = max_concurrent
        self.inflight: dict[tuple, asyncio.Future] = {}
        self.preferred = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"<Forwarder upstreams={self.upstreams} inflight={len(self.inflight)}>"

    async def resolve(self, name, qtype: int, qclass: int = 1) -> DNSRecord:
        question = DNSQuestion(name, qtype, qclass)
        key = _question_key(question) + (False,)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        shared = self.inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        if len(self.inflight) >= self.max_concurrent:
            self.refused += 1
            raise Overloaded(f"{len(self.inflight)} questions already in flight "
                             f"(--max-concurrent {self.max_concurrent})")
        fut = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            reply = await self._ask(question)
            self.cache.put(key, reply)
            fut.set_result(reply)
            return reply
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else ForwardError("cancelled"))
            fut.exception()  # mark retrieved: joiners may be gone
            raise
        finally:
            del self.inflight[key]

    async def _ask(self, question: DNSQuestion) -> DNSRecord:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        errors = []
        n = len(self.upstreams)
        for i in range(n):
            index = (self.preferred + i) % n
            upstream = self.upstreams[index]
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                reply = await upstream.exchange(question, min(self.attempt_timeout_s, left))
            except ForwardError as exc:
                upstream.failures += 1
                errors.append(str(exc))
                continue
            if reply.header.rcode in (RCODE.SERVFAIL, RCODE.REFUSED) and i < n - 1:
                upstream.failures += 1
                errors.append(f"upstream {upstream.host}:{upstream.port}: "
                              f"{RCODE.get(reply.header.rcode)}")
                continue
            upstream.answered += 1
            self.preferred = index
            return reply
        raise ForwardError("; ".join(errors) or "no upstream answered in time")

    def close(self) -> None:
        for upstream in self.upstreams:
            upstream.close()
