"""protocol.py without sockets: parse outcomes, EDNS, truncation."""

from __future__ import annotations

import struct

import pytest
from dnslib import EDNS0, RR, DNSRecord

from meshnet.dns.protocol import Query, encode_reply, parse_query

from fakes import question


def q_bytes(edns=None, name="web.default.svc.cluster.local") -> bytes:
    q = question(name)
    if edns is not None:
        q.add_ar(EDNS0(**edns))
    return q.pack()


def rcode_of(out: bytes) -> int:
    return struct.unpack("!H", out[2:4])[0] & 0xF


PARSE_CASES = [
    ("empty packet: dropped", b"", None),
    ("11 bytes: dropped", b"\x00" * 11, None),
    ("a response: dropped (no loops)", b"\x12\x34\x80" + b"\x00" * 9, None),
    ("header only, no question: FORMERR", b"\x12\x34\x01\x00" + b"\x00" * 8, 1),
    ("opcode STATUS: NOTIMP", b"\x12\x34\x10\x00\x00\x01" + b"\x00" * 6, 4),
    ("two OPT records: FORMERR",
     q_bytes({"udp_len": 1232})[:10] + b"\x00\x02" + q_bytes({"udp_len": 1232})[12:]
     + q_bytes({"udp_len": 1232})[-11:], 1),
]


@pytest.mark.parametrize("desc,data,want", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_outcomes(desc, data, want):
    out = parse_query(data)
    if want is None:
        assert out is None
    else:
        assert isinstance(out, bytes) and rcode_of(out) == want and out[:2] == data[:2]
        assert out[2] & 0x80  # QR


SIZE_CASES = [
    ("no EDNS: 512", None, 512),
    ("EDNS 4096", {"udp_len": 4096}, 4096),
    ("EDNS below 512 counts as 512", {"udp_len": 100}, 512),
    ("EDNS above our cap: 4096", {"udp_len": 65000}, 4096),
]


@pytest.mark.parametrize("desc,edns,size", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_udp_size(desc, edns, size):
    query = parse_query(q_bytes(edns))
    assert isinstance(query, Query) and query.udp_size == size and query.edns == bool(edns)


def test_do_bit_is_echoed():
    query = parse_query(q_bytes({"udp_len": 1232, "flags": "do"}))
    out = DNSRecord.parse(encode_reply(query, query.request.reply()))
    assert out.ar[0].ttl & 0x8000


def big_reply(query: Query, n: int) -> DNSRecord:
    r = query.request.reply()
    for i in range(n):
        r.add_answer(*RR.fromZone(f"web.default.svc.cluster.local. 5 IN A 10.0.0.{i}"))
    return r


def test_truncation_keeps_the_question_and_opt():
    query = parse_query(q_bytes({"udp_len": 600}))
    out = encode_reply(query, big_reply(query, 60))
    reply = DNSRecord.parse(out)
    assert reply.header.tc == 1 and reply.rr == [] and str(reply.q.qname).startswith("web.")
    assert [rr.rtype for rr in reply.ar] == [41]
    full = DNSRecord.parse(encode_reply(query, big_reply(query, 60), tcp=True))
    assert full.header.tc == 0 and len(full.rr) == 60


def test_a_reply_that_fits_is_not_truncated():
    query = parse_query(q_bytes())
    reply = DNSRecord.parse(encode_reply(query, big_reply(query, 10)))
    assert reply.header.tc == 0 and len(reply.rr) == 10
