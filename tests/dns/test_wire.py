"""wire.py without sockets: names (compression pointers, loops, escapes), whole-message scans,
upstream answers as the forwarder keeps them, TTL ageing. Every malformed input must raise
WireError with a message naming what and where, and nothing else."""

from __future__ import annotations

import random
import struct

import pytest
from dnslib import EDNS0, RR, DNSRecord

from meshnet.dns.errors import WireError
from meshnet.dns.wire import MAX_POINTERS, Reply, aged, read_name, scan, skip_name

from fakes import question, rr_text

HEADER = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # a query header, one question
EXAMPLE = b"\x03www\x07example\x03org\x00"                      # at offset 12


def ptr(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def chain(hops: int) -> tuple[bytes, int]:
    """A root name at 12 and `hops` pointers after it, each to the one before: the name at
    the last one follows them all."""
    body = b"\x00" + b"".join(ptr(12 if i == 0 else 13 + 2 * (i - 1)) for i in range(hops))
    return HEADER + body, 13 + 2 * (hops - 1)


NAME_CASES = [
    # (description, message, offset of the name, expected name and end, or error text)
    ("a plain name", HEADER + EXAMPLE, 12, ("www.example.org.", 29)),
    ("lowercased", HEADER + b"\x03WwW\x07ExAmple\x03ORG\x00", 12, ("www.example.org.", 29)),
    ("the root", HEADER + b"\x00", 12, (".", 13)),
    ("a pointer to an earlier name ends it",
     HEADER + EXAMPLE + b"\x04mail" + ptr(16), 29, ("mail.example.org.", 36)),
    ("a pointer to a pointer",
     HEADER + EXAMPLE + ptr(16) + b"\x01a" + ptr(29), 31, ("a.example.org.", 35)),
    ("labels with a dot, a backslash and a space are escaped",
     HEADER + b"\x03a.b\x03c\\d\x02e \x00", 12, ("a\\046b.c\\092d.e\\032.", 24)),
    ("bytes outside ASCII are escaped", HEADER + b"\x02\xc3\xa9\x00", 12, ("\\195\\169.", 16)),
    ("pointer to itself: a loop", HEADER + EXAMPLE + ptr(29), 29,
     "compression pointer at offset 29 to offset 29 does not point backwards (a loop)"),
    ("pointer forward", HEADER + EXAMPLE + ptr(33) + b"\x01a\x00", 29,
     "to offset 33 does not point backwards"),
    ("two pointers pointing at each other", HEADER + b"\x01a" + ptr(16) + ptr(12), 16,
     "compression pointer at offset 14 to offset 16 does not point backwards (a loop)"),
    ("a name pointing into its own labels", HEADER + b"\x01a\x01b" + ptr(12), 12,
     "to offset 12 does not point backwards (a loop)"),
    ("pointer into the header", HEADER + ptr(4), 12, "points into the header (offset 4)"),
    ("label past the end", HEADER + b"\x05ab", 12,
     "name at offset 12: runs past the end of the 15-byte message"),
    ("no root label", HEADER + b"\x03www", 12, "runs past the end"),
    ("pointer cut off", HEADER + EXAMPLE + b"\xc0", 29,
     "compression pointer at offset 29 cut off by the end of the 30-byte message"),
    ("label type 0x40 (extended)", HEADER + b"\x41abc\x00", 12, "label type 0x40 at offset 12"),
    ("label type 0x80 (reserved)", HEADER + b"\x80\x00", 12, "label type 0x80"),
    ("longer than 255 bytes", HEADER + b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 3 + b"\x00",
     12, "longer than 255 bytes"),
    ("exactly 255 bytes", HEADER + (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"c" * 61 + b"\x00",
     12, (("a" * 63 + ".") * 3 + "c" * 61 + ".", 12 + 255)),
    ("the longest pointer chain allowed", *chain(MAX_POINTERS), (".", chain(MAX_POINTERS)[1] + 2)),
    ("one pointer more", *chain(MAX_POINTERS + 1), "more than 127 compression pointers"),
    ("a chain as long as the message allows", *chain(20000),
     "more than 127 compression pointers"),
]


@pytest.mark.parametrize("desc,data,at,want", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_read_name(desc, data, at, want):
    if isinstance(want, str):
        with pytest.raises(WireError, match=want.replace("(", r"\(").replace(")", r"\)")):
            read_name(data, at)
        with pytest.raises(WireError):
            skip_name(data, at)
    else:
        assert read_name(data, at) == want
        assert skip_name(data, at) == want[1]


def answer(*zone_lines, name="a.example", auth=(), additional=(), edns=False, rcode=0):
    r = question(name).reply()
    r.header.rcode = rcode
    for line in zone_lines:
        r.add_answer(*RR.fromZone(line))
    for line in auth:
        r.add_auth(*RR.fromZone(line))
    for line in additional:
        r.add_ar(*RR.fromZone(line))
    if edns:
        r.add_ar(EDNS0(udp_len=1232))
    return r.pack()


A300 = "a.example. 300 IN A 192.0.2.1"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root, OPT, 1232, version 0
SOA30 = "example. 30 IN SOA ns.example. h.example. 1 2 3 4 30"

SCAN_ERRORS = [
    ("shorter than a header", b"\x00" * 11, "11 bytes: shorter than the 12-byte header"),
    ("two questions", HEADER[:4] + b"\x00\x02" + HEADER[6:] + EXAMPLE + b"\x00\x01\x00\x01",
     "2 questions: exactly one is supported"),
    ("question type cut off", HEADER + EXAMPLE + b"\x00\x01",
     "question at offset 12: type and class cut off by the end of the 31-byte message"),
    ("counts larger than the message", answer(A300)[:6] + b"\xff\xff" + answer(A300)[8:],
     "counts 65535/0/0: more records than the"),
    ("record header cut off", answer()[:6] + b"\x00\x01" + answer()[8:]
     + b"\x0azzzzzzzzzz\x00\x00\x01\x00",
     "record 1 at offset 27: cut off by the end of the 42-byte message"),
    ("rdata past the end", answer(A300)[:-1],
     "record 1 at offset 27: 4 bytes of data run past the end of the 42-byte message"),
    ("a looping owner name", answer(A300)[:27] + ptr(27) + answer(A300)[29:],
     "name at offset 27: compression pointer at offset 27 to offset 27 does not point "
     "backwards"),
    ("an OPT in the answer section", answer()[:6] + b"\x00\x01" + answer()[8:] + OPT,
     "record 1 at offset 27: OPT outside the additional section"),
]


@pytest.mark.parametrize("desc,data,error", SCAN_ERRORS, ids=[c[0] for c in SCAN_ERRORS])
def test_scan_errors(desc, data, error):
    with pytest.raises(WireError, match=error.replace("(", r"\(")):
        scan(data)


def test_scan_a_query_with_edns():
    q = question("WWW.Example.org", "AAAA")
    q.header.id = 0xBEEF
    q.add_ar(EDNS0(udp_len=4096, flags="do"))
    data = q.pack()
    m = scan(data)
    assert (m.id, m.name, m.qtype, m.qclass, m.qend) == (0xBEEF, "www.example.org.", 28, 1, 33)
    assert m.counts == (0, 0, 1) and m.ttl_offsets == () and m.end == len(data)
    (opt,) = m.opts
    assert (opt.start, opt.end, opt.udp_size, opt.ttl & 0x8000, opt.index) == \
        (33, len(data), 4096, 0x8000, 0)


REPLY_CASES = [
    # (description, upstream bytes, TTLs found, min answer TTL, negative TTL, records kept)
    ("one A record", answer(A300), [300], 300, None, 1),
    ("two records, the second owner compressed",
     answer(A300, "a.example. 60 IN A 192.0.2.2"), [300, 60], 60, None, 2),
    ("a CNAME chain: the smallest TTL of the answer section",
     answer("a.example. 600 IN CNAME b.example.", "b.example. 20 IN A 192.0.2.3"),
     [600, 20], 20, None, 2),
    ("negative: min(SOA TTL, SOA MINIMUM) from authority", answer(auth=[SOA30], rcode=3),
     [30], None, 30, 1),
    ("negative: the SOA MINIMUM when smaller",
     answer(auth=["example. 900 IN SOA ns.example. h.example. 1 2 3 4 15"], rcode=3),
     [900], None, 15, 1),
    ("the OPT record is dropped, its TTL field is flags",
     answer(A300, edns=True), [300], 300, None, 1),
    ("additional records are kept and aged", answer(
        "a.example. 300 IN NS ns.a.example.", additional=["ns.a.example. 100 IN A 192.0.2.9"]),
     [300, 100], 300, None, 2),
]


@pytest.mark.parametrize("desc,data,ttls,min_ttl,negative,kept", REPLY_CASES,
                         ids=[c[0] for c in REPLY_CASES])
def test_reply_parse(desc, data, ttls, min_ttl, negative, kept):
    r = Reply.parse(data)
    assert [struct.unpack_from("!I", r.wire, at)[0] for at in r.ttl_offsets] == ttls
    assert (r.min_answer_ttl, r.negative_ttl) == (min_ttl, negative)
    assert (r.name, r.qtype, r.qclass) == ("a.example.", 1, 1)
    assert sum(r.counts) == kept
    decoded = DNSRecord.parse(r.wire)
    assert not [rr for rr in decoded.ar if rr.rtype == 41]
    older = DNSRecord.parse(aged(r.wire, r.ttl_offsets, 45))
    assert [rr.ttl for rr in older.rr + older.auth + older.ar] == [max(0, t - 45) for t in ttls]


def test_reply_drops_the_opt_and_what_follows_it():
    base = DNSRecord.parse(answer(A300))
    base.add_ar(EDNS0(udp_len=1232))
    base.add_ar(*RR.fromZone("x.example. 60 IN A 192.0.2.7"))
    data = base.pack()
    r = Reply.parse(data)
    assert r.counts == (1, 0, 0) and r.ttl_offsets == (r.ttl_offsets[0],)
    assert rr_text(DNSRecord.parse(r.wire).rr) == [A300]
    assert DNSRecord.parse(r.wire).ar == []


def test_reply_drops_trailing_bytes_and_rejects_queries():
    data = answer(A300)
    assert Reply.parse(data + b"junk").wire == data
    with pytest.raises(WireError, match="QR bit clear: a query, not an answer"):
        Reply.parse(question("a.example").pack())


def test_aged_never_goes_below_zero_and_keeps_the_input():
    data = answer(A300, "a.example. 5 IN A 192.0.2.2")
    r = Reply.parse(data)
    older = aged(r.wire, r.ttl_offsets, 10)
    assert [rr.ttl for rr in DNSRecord.parse(older).rr] == [290, 0]
    assert r.wire == data


def test_mutated_messages_raise_only_wire_errors():
    """Every prefix of a real answer, and 20,000 seeded mutations of it, either scan or raise
    WireError — never IndexError, struct.error or a hang."""
    rng = random.Random(7)
    base = answer(A300, "a.example. 60 IN CNAME b.example.", auth=[SOA30],
                  additional=["ns.a.example. 100 IN A 192.0.2.9"], edns=True)
    samples = [base[:i] for i in range(len(base))]
    for _ in range(20000):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(data))
            data[i] = rng.choice((0xC0, 0xC0 | rng.randrange(64), 0x3F, 0x40, 0xFF, 0,
                                  rng.randrange(256)))
        samples.append(bytes(data[:rng.randrange(12, len(data) + 1)]))
    parsed = 0
    for data in samples:
        try:
            m = scan(data)
        except WireError:
            continue
        parsed += 1
        assert all(12 <= at <= len(data) - 4 for at in m.ttl_offsets) and m.end <= len(data)
    assert 0 < parsed < len(samples)
