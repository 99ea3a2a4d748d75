"""Forwarding as bytes, over real loopback sockets: what goes upstream (a new ID, RD, our OPT,
the client's question), what comes back to each client (its own ID, question case and OPT),
cached answers aged in place, garbage from upstream ignored, truncation of big answers."""

from __future__ import annotations

import asyncio
import struct

import pytest
from dnslib import EDNS0, RCODE, RR, DNSRecord

from meshnet.dns.cache import ResponseCache
from meshnet.dns.forward import Forwarder
from meshnet.dns.server import DnsServer
from meshnet.dns.zone import ZoneConfig, ZoneTable

from fakes import Clock, FakeUpstream, question, rr_text, tcp_exchange, udp_exchange

BIG = [f"big.example. 300 IN A 192.0.2.{i}" for i in range(1, 41)]  # > 512 bytes


@pytest.fixture
async def upstream():
    up = await FakeUpstream({"example.org.": ["example.org. 300 IN A 192.0.2.10"],
                             "big.example.": BIG,
                             "ns.example.": ["ns.example. 60 IN NS a.ns.example."]}).start()
    yield up
    up.close()


@pytest.fixture
async def clock():
    return Clock()


@pytest.fixture
async def server(upstream, clock):
    fwd = Forwarder([("127.0.0.1", upstream.port)], cache=ResponseCache(clock=clock),
                    attempt_timeout_s=0.5, timeout_s=1.0)
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.stop()
    fwd.close()


async def ask(server, name, qtype="A", *, qid=0x1234, edns=None, flags=None, tcp=False):
    q = question(name, qtype)
    q.header.id = qid
    if edns is not None:
        q.add_ar(EDNS0(**edns))
    data = bytearray(q.pack())
    if flags is not None:
        struct.pack_into("!H", data, 2, flags)
    if tcp:
        return DNSRecord.parse((await tcp_exchange(server.address[1], [bytes(data)]))[0])
    out = await udp_exchange(server.address[1], bytes(data))
    assert out is not None, f"no answer to {name}"
    return DNSRecord.parse(out)


def opts(record: DNSRecord) -> list:
    return [rr for rr in record.ar if rr.rtype == 41]


async def test_upstream_gets_a_new_id_rd_our_opt_and_the_clients_question(server, upstream):
    names = ["WwW.Example.ORG", "a.example.org", "b.example.org"]
    for name in names:
        # RD, AD and CD set by the client; EDNS 4096 with DO
        reply = await ask(server, name, edns={"udp_len": 4096, "flags": "do"}, flags=0x0130)
        assert reply.header.id == 0x1234 and str(reply.q.qname) == name + "."
    sent = upstream.packets
    assert len(sent) == 3
    assert any(struct.unpack("!H", p[:2])[0] != 0x1234 for p in sent)  # 2**-48 to all match
    first = DNSRecord.parse(sent[0])
    assert struct.unpack("!5H", sent[0][2:12]) == (0x0100, 1, 0, 0, 1)  # RD only
    assert sent[0][12:12 + 17] == b"\x03WwW\x07Example\x03ORG\x00"  # case kept (0x20)
    (opt,) = opts(first)
    assert opt.rclass == 1232 and not opt.ttl & 0x8000  # our size, no DO


async def test_the_client_gets_its_id_question_and_our_opt_back(server, upstream):
    reply = await ask(server, "WwW.Example.ORG", qid=0xBEEF, edns={"udp_len": 4096,
                                                                  "flags": "do"})
    assert reply.header.id == 0xBEEF and str(reply.q.qname) == "WwW.Example.ORG."
    assert (reply.header.qr, reply.header.rd, reply.header.ra, reply.header.aa) == (1, 1, 1, 0)
    (opt,) = opts(reply)
    assert opt.rclass == 1232 and opt.ttl & 0x8000  # ours, the DO bit echoed
    plain = await ask(server, "example.org", qid=7)  # the upstream sends an OPT: not relayed
    assert plain.header.id == 7 and opts(plain) == []
    assert rr_text(plain.rr) == ["example.org. 300 IN A 192.0.2.10"]


async def test_joined_questions_each_get_their_own_id_and_case(server, upstream):
    upstream.delay_s = 0.2
    replies = await asyncio.gather(ask(server, "example.org", qid=1),
                                   ask(server, "EXAMPLE.ORG", qid=2),
                                   ask(server, "Example.Org", qid=3, edns={"udp_len": 1232}))
    assert [(r.header.id, str(r.q.qname), len(opts(r))) for r in replies] == \
        [(1, "example.org.", 0), (2, "EXAMPLE.ORG.", 0), (3, "Example.Org.", 1)]
    assert len(upstream.packets) == 1
    # an owner name compressed against the question reads in each client's case
    assert [rr_text(r.rr) for r in replies] == [["example.org. 300 IN A 192.0.2.10"],
                                                ["EXAMPLE.ORG. 300 IN A 192.0.2.10"],
                                                ["Example.Org. 300 IN A 192.0.2.10"]]


async def test_cached_answers_are_aged_in_place_and_keep_each_clients_id(server, upstream,
                                                                         clock):
    seen = []
    for step, qid, name in ((0, 10, "example.org"), (0, 11, "example.org"),
                            (10.5, 12, "EXAMPLE.org"), (0, 13, "EXAMPLE.org"),
                            (100, 14, "example.org")):
        clock.now += step
        reply = await ask(server, name, qid=qid)
        assert reply.header.id == qid and str(reply.q.qname) == name + "."
        seen.append(reply.rr[0].ttl)
    # forwarded, first hit (from the cache), 10 s later (a new packet: from the cache, aged),
    # the same packet again (kept encoded), 100 s later (kept encoded, aged again)
    assert seen == [300, 300, 290, 290, 190]
    assert len(upstream.packets) == 1


async def test_negative_answers_are_cached_and_their_soa_aged(server, upstream, clock):
    upstream.negative_ttl = 30
    first = await ask(server, "missing.example", qid=1)
    clock.now += 12
    again = await ask(server, "missing.example", qid=2)
    assert [RCODE.get(r.header.rcode) for r in (first, again)] == ["NXDOMAIN", "NXDOMAIN"]
    assert [r.auth[0].ttl for r in (first, again)] == [30, 18]
    assert again.header.id == 2 and len(upstream.packets) == 1
    clock.now += 18  # the negative TTL is over: asked again
    await ask(server, "missing.example", qid=3)
    assert len(upstream.packets) == 2


def _answer_to(query: bytes, name: str | None = None) -> bytes:
    """A well-formed answer with the query's ID, for its question or for `name`."""
    r = DNSRecord.question(name or str(DNSRecord.parse(query).q.qname)).reply()
    r.header.id = struct.unpack("!H", query[:2])[0]
    r.add_answer(*RR.fromZone(f"{r.q.qname} 300 IN A 203.0.113.66"))
    return r.pack()


def _looping(query: bytes) -> bytes:
    out = bytearray(_answer_to(query))
    qend = out.index(b"\x00", 12) + 5
    out[qend:qend + 2] = struct.pack("!H", 0xC000 | qend)  # the owner name points at itself
    return bytes(out)


GARBAGE = [
    lambda q: b"\x00\x01\x02",                            # too short for a header
    lambda q: q[:2] + b"\x80",                              # our ID, then nothing
    lambda q: _answer_to(q)[:-3],                           # cut short
    _looping,                                               # a compression loop
    lambda q: _answer_to(q, "evil.example"),                # our ID, another question
    lambda q: bytes([q[0] ^ 0xFF]) + _answer_to(q)[1:],     # another ID
    lambda q: q,                                            # our own query (QR clear)
]


async def test_garbage_from_upstream_is_ignored_until_the_real_answer(server, upstream):
    upstream.before = GARBAGE
    reply = await ask(server, "example.org")
    assert rr_text(reply.rr) == ["example.org. 300 IN A 192.0.2.10"]
    assert server.forwarder.upstreams[0].answered == 1
    assert server.forwarder.inflight == {}


async def test_a_big_answer_is_truncated_for_small_clients_only(server, upstream):
    small = await ask(server, "big.example")
    assert small.header.tc == 1 and small.rr == [] and str(small.q.qname) == "big.example."
    assert len((await ask(server, "big.example", edns={"udp_len": 4096})).rr) == 40
    full = await ask(server, "big.example", tcp=True)
    assert full.header.tc == 0 and len(full.rr) == 40
    assert len(upstream.packets) == 1  # the later ones from the cache


async def test_servfail_when_the_answer_never_parses(upstream):
    upstream.before = [_looping]
    fwd = Forwarder([("127.0.0.1", upstream.port)], attempt_timeout_s=0.2, timeout_s=0.3)
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        upstream.delay_s = 0.5  # only the garbage arrives in time
        reply = await ask(srv, "example.org")
        assert RCODE.get(reply.header.rcode) == "SERVFAIL" and reply.header.id == 0x1234
        assert fwd.upstreams[0].failures == 1 and fwd.inflight == {}
    finally:
        await srv.stop()
        fwd.close()
