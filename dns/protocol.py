"""DNS message rules that do not depend on the zone: parsing, EDNS0, errors, truncation.

Pure functions over bytes and dnslib records; the sockets live in `server.py`.

`parse_query(data)` returns a `Query`, or bytes (an error reply to send as is), or None (drop):
- fewer than 12 bytes (no header to answer to) or the QR bit set (a response: answering it
  could start a loop between two servers): dropped;
- an opcode other than QUERY: NOTIMP (RFC 1035 4.1.1), header only;
- QDCOUNT other than 1, or anything dnslib cannot parse (truncated data, bad label pointers,
  compression loops, counts larger than the packet): FORMERR, header only — never an exception;
- more than one OPT record: FORMERR (RFC 6891 6.1.1); an EDNS version other than 0: BADVERS
  with our OPT (RFC 6891 6.1.3).

`encode_reply(query, reply, tcp)` adds our OPT when the query had one (echoing the DO bit,
RFC 3225), and if the message does not fit — the advertised UDP size (at least 512, at most
`MAX_UDP_PAYLOAD`), or 65535 over TCP — sends the header and question only with TC set, so the
client retries over TCP (RFC 2181 9, RFC 7766).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dnslib import EDNS0, QTYPE, RCODE, DNSHeader, DNSRecord

MIN_UDP_PAYLOAD = 512          # RFC 1035 2.3.4
MAX_UDP_PAYLOAD = 4096         # never send more than this over UDP, whatever is advertised
ADVERTISED_UDP_PAYLOAD = 1232  # what we accept ourselves (DNS flag day 2020)
MAX_TCP_MESSAGE = 65535
OPCODE_QUERY = 0
RCODE_BADVERS_HIGH = 1         # extended rcode 16 = 1 << 4, carried in the OPT TTL's top byte
DO_BIT = 0x8000


@dataclass
class Query:
    request: DNSRecord
    edns: bool = False
    udp_size: int = MIN_UDP_PAYLOAD
    do: bool = False

    def __repr__(self) -> str:
        q = self.request.q
        return f"<Query {q.qname} {QTYPE.get(q.qtype)} id={self.request.header.id}>"


def _header_only(data: bytes, rcode: int) -> bytes:
    """An error reply built from the raw header: id, opcode and RD kept, all counts zero."""
    qid, flags = struct.unpack_from("!HH", data)
    flags = 0x8000 | (flags & 0x7900) | rcode  # QR, opcode (0x7800) and RD (0x0100) kept
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


def parse_query(data: bytes) -> Query | bytes | None:
    if len(data) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & 0x8000:
        return None
    if (flags >> 11) & 0xF != OPCODE_QUERY:
        return _header_only(data, RCODE.NOTIMP)
    if qdcount != 1:
        return _header_only(data, RCODE.FORMERR)
    try:
        request = DNSRecord.parse(data)
    except Exception:  # dnslib raises DNSError, BufferError, struct.error, RecursionError...
        return _header_only(data, RCODE.FORMERR)
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    if not opts:
        return Query(request)
    if len(opts) > 1 or str(opts[0].rname) != ".":
        return _header_only(data, RCODE.FORMERR)
    opt = opts[0]
    version = (opt.ttl >> 16) & 0xFF
    query = Query(request, edns=True,
                  udp_size=min(max(opt.rclass, MIN_UDP_PAYLOAD), MAX_UDP_PAYLOAD),
                  do=bool(opt.ttl & DO_BIT))
    if version != 0:
        reply = request.reply(ra=1, aa=0)
        reply.ar = []
        reply.add_ar(EDNS0(udp_len=ADVERTISED_UDP_PAYLOAD, ext_rcode=RCODE_BADVERS_HIGH))
        return reply.pack()
    return query


def _opt(query: Query) -> EDNS0:
    return EDNS0(udp_len=ADVERTISED_UDP_PAYLOAD, flags="do" if query.do else "")


def encode_reply(query: Query, reply: DNSRecord, tcp: bool = False) -> bytes:
    """The wire form of `reply` to `query`, truncated (TC) when it does not fit."""
    reply.ar = [rr for rr in reply.ar if rr.rtype != QTYPE.OPT]
    if query.edns:
        reply.add_ar(_opt(query))
    data = reply.pack()
    limit = MAX_TCP_MESSAGE if tcp else (query.udp_size if query.edns else MIN_UDP_PAYLOAD)
    if len(data) <= limit:
        return data
    return truncated(query, reply.header)


def truncated(query: Query, header: DNSHeader) -> bytes:
    """Header and question only, TC set; our OPT kept so the client still sees EDNS."""
    small = DNSRecord(DNSHeader(id=header.id, qr=1, aa=header.aa, ra=header.ra,
                                rd=header.rd, tc=1, rcode=header.rcode), q=query.request.q)
    if query.edns:
        small.add_ar(_opt(query))
    return small.pack()


def ttl_offsets(wire: bytes) -> tuple[int, ...] | None:
    """Where the TTL of every record (OPT excepted) sits in a packed message, so that a cached
    reply can be aged in place without decoding it again; None if `wire` does not parse."""
    try:
        qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
        pos = 12
        offsets = []
        for i in range(qd + an + ns + ar):
            while True:  # the owner name: labels up to a root byte or a compression pointer
                length = wire[pos]
                if length & 0xC0 == 0xC0:
                    pos += 2
                    break
                pos += 1 + length
                if length == 0:
                    break
            if i < qd:
                pos += 4
                continue
            rtype, = struct.unpack_from("!H", wire, pos)
            if rtype != QTYPE.OPT:
                offsets.append(pos + 4)
            rdlength, = struct.unpack_from("!H", wire, pos + 8)
            pos += 10 + rdlength
        return tuple(offsets) if pos == len(wire) else None
    except (IndexError, struct.error):
        return None


def aged(wire: bytes, offsets: tuple[int, ...], seconds: int) -> bytes:
    """`wire` with every TTL at `offsets` decreased by `seconds` (not below zero)."""
    out = bytearray(wire)
    for at in offsets:
        ttl, = struct.unpack_from("!I", out, at)
        struct.pack_into("!I", out, at, max(0, ttl - seconds))
    return bytes(out)


def error_reply(query: Query, rcode: int, tcp: bool = False) -> bytes:
    """SERVFAIL/REFUSED for a parsed query, question kept."""
    reply = query.request.reply(ra=1, aa=0)
    reply.header.rcode = rcode
    return encode_reply(query, reply, tcp)
