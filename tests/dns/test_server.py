"""The UDP/TCP server over real loopback sockets: protocol rules, forwarding, failover."""

from __future__ import annotations

import asyncio
import struct

import pytest
from dnslib import EDNS0, RCODE, DNSRecord

from meshnet.dns.cache import ResponseCache
from meshnet.dns.forward import Forwarder
from meshnet.dns.server import DnsServer
from meshnet.dns.views import view_endpoints, view_service
from meshnet.dns.zone import ZoneConfig, ZoneTable, compile_zone

from fakes import (FakeUpstream, endpoints, question, rr_text, sample_objects, service,
                   tcp_exchange, udp_exchange)

BIG = [f"10.244.1.{i}" for i in range(1, 41)]


def big_table():
    services, eps, pods = sample_objects()
    services.append(service("big", cluster_ip="None"))
    eps.append(endpoints("big", ready=BIG))
    return compile_zone([view_service(s) for s in services],
                        {(e.namespace, e.name): e for e in map(view_endpoints, eps)}, [],
                        ZoneConfig())


@pytest.fixture
async def upstream():
    up = await FakeUpstream({"example.org.": ["example.org. 300 IN A 192.0.2.10"],
                             "short.example.": ["short.example. 1 IN A 192.0.2.11"]}).start()
    yield up
    up.close()


@pytest.fixture
async def server(upstream):
    fwd = Forwarder([("127.0.0.1", upstream.port)], attempt_timeout_s=0.5, timeout_s=1.0)
    srv = DnsServer(big_table(), fwd)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.stop()
    fwd.close()


async def ask(server, name, qtype="A", *, tcp=False, edns=None, raw=None) -> DNSRecord:
    q = question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(**edns))
    data = raw if raw is not None else q.pack()
    port = server.address[1]
    if tcp:
        return DNSRecord.parse((await tcp_exchange(port, [data]))[0])
    out = await udp_exchange(port, data)
    assert out is not None, f"no answer to {name} {qtype}"
    return DNSRecord.parse(out)


async def test_udp_and_tcp_on_one_port(server):
    for tcp in (False, True):
        reply = await ask(server, "web.default.svc.cluster.local", tcp=tcp)
        assert rr_text(reply.rr) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
        assert reply.header.aa == 1


async def test_truncated_over_udp_full_over_tcp(server):
    name = "big.default.svc.cluster.local"
    small = await ask(server, name)
    assert small.header.tc == 1 and small.rr == [] and str(small.q.qname) == name + "."
    full = await ask(server, name, tcp=True)
    assert full.header.tc == 0 and len(full.rr) == 40
    edns = await ask(server, name, edns={"udp_len": 4096})
    assert edns.header.tc == 0 and len(edns.rr) == 40


async def test_edns_size_honoured_and_opt_echoed(server):
    reply = await ask(server, "big.default.svc.cluster.local", edns={"udp_len": 600})
    assert reply.header.tc == 1
    opts = [rr for rr in reply.ar if rr.rtype == 41]
    assert len(opts) == 1 and opts[0].rclass == 1232
    plain = await ask(server, "web.default.svc.cluster.local")
    assert not [rr for rr in plain.ar if rr.rtype == 41]


async def test_unknown_edns_version_gets_badvers(server):
    reply = await ask(server, "web.default.svc.cluster.local", edns={"version": 1})
    opt = [rr for rr in reply.ar if rr.rtype == 41][0]
    assert (opt.ttl >> 24) == 1 and reply.header.rcode == 0  # extended rcode 16 = BADVERS
    assert reply.rr == []


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
async def test_unknown_opcodes_get_notimp(server, opcode):
    data = bytearray(question("web.default.svc.cluster.local").pack())
    data[2] = (data[2] & 0x87) | (opcode << 3)
    reply = DNSRecord.parse(await udp_exchange(server.address[1], bytes(data)))
    assert RCODE.get(reply.header.rcode) == "NOTIMP" and reply.header.opcode == opcode


MALFORMED = [
    ("two questions", lambda q: q[:4] + b"\x00\x02" + q[6:], "FORMERR"),
    ("no question", lambda q: q[:4] + b"\x00\x00" + q[6:], "FORMERR"),
    ("truncated question", lambda q: q[:20], "FORMERR"),
    ("huge answer count", lambda q: q[:6] + b"\xff\xff" + q[8:], "FORMERR"),
    ("pointer loop", lambda q: q[:12] + b"\xc0\x0c\x00\x01\x00\x01", "FORMERR"),
    ("forward pointer", lambda q: q[:12] + b"\xc0\x20\x00\x01\x00\x01", "FORMERR"),
    ("extended label type", lambda q: q[:12] + b"\x41abc\x00\x00\x01\x00\x01", "FORMERR"),
    ("name longer than 255 bytes",
     lambda q: q[:12] + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "FORMERR"),
    ("OPT record cut short", lambda q: q[:10] + b"\x00\x01" + q[12:] + b"\x00\x00\x29\x04",
     "FORMERR"),
    ("additional record pointing into itself",
     lambda q: q[:10] + b"\x00\x01" + q[12:] + struct.pack("!H", 0xC000 | len(q))
     + b"\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01", "FORMERR"),
]


@pytest.mark.parametrize("desc,mutate,rcode", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_get_formerr(server, desc, mutate, rcode):
    data = mutate(question("web.default.svc.cluster.local").pack())
    out = await udp_exchange(server.address[1], data)
    assert out is not None
    assert RCODE.get(struct.unpack("!H", out[2:4])[0] & 0xF) == rcode
    assert out[:2] == data[:2]


async def test_short_packets_and_responses_are_dropped(server):
    assert await udp_exchange(server.address[1], b"\x00\x01\x02", timeout_s=0.2) is None
    reply = DNSRecord.parse(question("web.default.svc.cluster.local").pack())
    reply.header.qr = 1
    assert await udp_exchange(server.address[1], reply.pack(), timeout_s=0.2) is None
    assert (await ask(server, "web.default.svc.cluster.local")).rr  # still serving


async def test_tcp_pipelined_queries(server):
    msgs = [question(n).pack() for n in ("web.default.svc.cluster.local", "example.org",
                                         "nothing.cluster.local")]
    replies = [DNSRecord.parse(r) for r in await tcp_exchange(server.address[1], msgs)]
    assert sorted(RCODE.get(r.header.rcode) for r in replies) == ["NOERROR", "NOERROR",
                                                                   "NXDOMAIN"]


async def test_forwarding_and_cache(server, upstream):
    first = await ask(server, "Example.ORG")
    assert rr_text(first.rr) == ["example.org. 300 IN A 192.0.2.10"]
    assert first.header.aa == 0 and str(first.q.qname) == "Example.ORG."
    await ask(server, "example.org")
    assert [q for q in upstream.queries if q[1] == "example.org."] == [("udp", "example.org.", "A")]


async def test_negative_answers_are_cached(server, upstream):
    for _ in range(3):
        reply = await ask(server, "missing.example")
        assert RCODE.get(reply.header.rcode) == "NXDOMAIN"
    assert len([q for q in upstream.queries if q[1] == "missing.example."]) == 1


async def test_externalname_is_chased_upstream(server, upstream):
    reply = await ask(server, "ext.default.svc.cluster.local")
    assert rr_text(reply.rr) == ["ext.default.svc.cluster.local. 5 IN CNAME example.org.",
                                 "example.org. 300 IN A 192.0.2.10"]


async def test_truncated_upstream_answer_is_retried_over_tcp(server, upstream):
    upstream.truncate_udp = True
    reply = await ask(server, "example.org")
    assert rr_text(reply.rr) == ["example.org. 300 IN A 192.0.2.10"]
    assert ("tcp", "example.org.", "A") in upstream.queries


async def test_failover_to_the_next_upstream(upstream):
    dead = await FakeUpstream().start()
    dead.silent = True
    fwd = Forwarder([("127.0.0.1", dead.port), ("127.0.0.1", upstream.port)],
                    attempt_timeout_s=0.2, timeout_s=2.0)
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        assert rr_text((await ask(srv, "example.org")).rr) == ["example.org. 300 IN A 192.0.2.10"]
        assert len(dead.queries) == 1
        # the upstream that answered is preferred from now on
        await ask(srv, "short.example")
        assert len(dead.queries) == 1
    finally:
        await srv.stop()
        fwd.close()
        dead.close()


async def test_all_upstreams_silent_gives_servfail(upstream):
    upstream.silent = True
    fwd = Forwarder([("127.0.0.1", upstream.port)], attempt_timeout_s=0.2, timeout_s=0.3)
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        assert RCODE.get((await ask(srv, "example.org")).header.rcode) == "SERVFAIL"
        # zone names before the first sync: SERVFAIL too, without asking upstream
        assert RCODE.get((await ask(srv, "web.default.svc.cluster.local")).header.rcode) == \
            "SERVFAIL"
        assert all(q[1] == "example.org." for q in upstream.queries)
    finally:
        await srv.stop()
        fwd.close()


async def test_concurrency_limit_refuses_beyond_it(upstream):
    upstream.delay_s = 0.3
    fwd = Forwarder([("127.0.0.1", upstream.port)], max_concurrent=2)
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        replies = await asyncio.gather(*(ask(srv, f"n{i}.example") for i in range(5)))
        rcodes = sorted(RCODE.get(r.header.rcode) for r in replies)
        assert rcodes == ["NXDOMAIN", "NXDOMAIN", "REFUSED", "REFUSED", "REFUSED"]
    finally:
        await srv.stop()
        fwd.close()


async def test_identical_questions_in_flight_are_sent_once(upstream):
    upstream.delay_s = 0.2
    fwd = Forwarder([("127.0.0.1", upstream.port)], cache=ResponseCache(max_entries=0))
    srv = DnsServer(ZoneTable.unsynced(ZoneConfig()), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        await asyncio.gather(*(ask(srv, "example.org") for _ in range(5)))
        assert len(upstream.queries) == 1
    finally:
        await srv.stop()
        fwd.close()


async def test_table_swap_is_seen_by_the_next_query(server):
    server.table = ZoneTable.unsynced(ZoneConfig())
    assert RCODE.get((await ask(server, "web.default.svc.cluster.local")).header.rcode) == \
        "SERVFAIL"
    server.table = big_table()
    assert (await ask(server, "web.default.svc.cluster.local")).rr


async def test_memoised_zone_answers_keep_the_id_and_case(server):
    for qid, name in ((1, "web.default.svc.cluster.local"), (2, "web.default.svc.cluster.local"),
                      (3, "WEB.default.svc.cluster.local")):
        q = question(name)
        q.header.id = qid
        reply = DNSRecord.parse(await udp_exchange(server.address[1], q.pack()))
        assert reply.header.id == qid and str(reply.rr[0].rname) == name + "."
    assert len(server._memo) == 2


async def test_cache_hits_are_kept_encoded_and_aged(upstream):
    now = [1000.0]
    fwd = Forwarder([("127.0.0.1", upstream.port)], cache=ResponseCache(clock=lambda: now[0]))
    srv = DnsServer(big_table(), fwd)
    await srv.start("127.0.0.1", 0)
    try:
        ttls = []
        for step, qid in ((0, 7), (0, 8), (10, 9), (0, 10), (300, 11)):
            now[0] += step
            q = question("example.org")
            q.header.id = qid
            reply = DNSRecord.parse(await udp_exchange(srv.address[1], q.pack()))
            assert reply.header.id == qid
            ttls.append(reply.rr[0].ttl)
        # forwarded, cache hit (now kept encoded), encoded hit, aged 10 s, expired: asked again
        assert ttls == [300, 300, 290, 290, 300]
        assert [q for q in upstream.queries if q[1] == "example.org."] == \
            [("udp", "example.org.", "A")] * 2
        assert srv._cached == {}  # the expired one dropped; the fresh one kept on its next hit
    finally:
        await srv.stop()
        fwd.close()


async def test_memo_hits_are_counted_at_scrape_time(server):
    for _ in range(3):
        await ask(server, "web.default.svc.cluster.local")
    assert server.memo_hits == {("udp", "A", "NOERROR", False): 2}  # the first one computed
    text = server.metrics.registry.render()
    assert 'meshnet_dns_requests_total{proto="udp",type="A"} 3' in text
    assert 'meshnet_dns_responses_total{rcode="NOERROR"} 3' in text
    assert server.memo_hits == {}
