"""DNS message rules that do not depend on the zone: parsing, EDNS0, errors, truncation.

Pure functions over bytes (and dnslib records for zone answers); the sockets live in
`server.py`.

`parse_query(data)` returns a `Query`, or bytes (an error reply to send as is), or None (drop):
- fewer than 12 bytes (no header to answer to) or the QR bit set (a response: answering it
  could start a loop between two servers): dropped;
- an opcode other than QUERY: NOTIMP (RFC 1035 4.1.1), header only;
- QDCOUNT other than 1, or anything the wire reader (`wire.py`) rejects (truncated data, bad
  or looping label pointers, counts larger than the packet): FORMERR, header only — never an
  exception;
- more than one OPT record: FORMERR (RFC 6891 6.1.1); an EDNS version other than 0: BADVERS
  with our OPT (RFC 6891 6.1.3).

A `Query` carries what every path needs, read straight from the bytes (question name, type,
class, EDNS); the dnslib form (`Query.request`) is decoded only when the zone answers, so a
forwarded question is never decoded at all.

`encode_reply(query, reply, tcp)` adds our OPT when the query had one (echoing the DO bit,
RFC 3225), and if the message does not fit — the advertised UDP size (at least 512, at most
`MAX_UDP_PAYLOAD`), or 65535 over TCP — sends the header and question only with TC set, so the
client retries over TCP (RFC 2181 9, RFC 7766). `relay_reply` does the same for an upstream
answer kept as bytes.
"""

from __future__ import annotations

import struct

from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from meshnet.dns.errors import WireError
from meshnet.dns.wire import (FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC, HEADER, HEADER_BYTES,
                              RCODE_MASK, Reply, opt_record, scan)

MIN_UDP_PAYLOAD = 512          # RFC 1035 2.3.4
MAX_UDP_PAYLOAD = 4096         # never send more than this over UDP, whatever is advertised
ADVERTISED_UDP_PAYLOAD = 1232  # what we accept ourselves (DNS flag day 2020)
MAX_TCP_MESSAGE = 65535
OPCODE_QUERY = 0
RCODE_BADVERS_HIGH = 1         # extended rcode 16 = 1 << 4, carried in the OPT TTL's top byte
DO_BIT = 0x8000
FLAG_CD = 0x0010
# Header bits a reply built here keeps from the header it stands for: QR, AA, RD, RA, rcode.
TRUNCATED_KEEP = FLAG_QR | FLAG_AA | FLAG_RD | FLAG_RA | RCODE_MASK
OUR_OPT = opt_record(ADVERTISED_UDP_PAYLOAD)
OUR_OPT_DO = opt_record(ADVERTISED_UDP_PAYLOAD, do=True)


class Query:
    """One well-formed question, as read from the client's bytes."""

    __slots__ = ("data", "id", "flags", "name", "qtype", "qclass", "qend", "edns", "udp_size",
                 "do", "_request")

    def __init__(self, data: bytes, qid: int, flags: int, name: str, qtype: int, qclass: int,
                 qend: int, edns: bool = False, udp_size: int = MIN_UDP_PAYLOAD,
                 do: bool = False):
        self.data, self.id, self.flags = data, qid, flags
        self.name, self.qtype, self.qclass, self.qend = name, qtype, qclass, qend
        self.edns, self.udp_size, self.do = edns, udp_size, do
        self._request: DNSRecord | None = None

    def __repr__(self) -> str:
        return f"<Query {self.name} {QTYPE.get(self.qtype)} id={self.id}>"

    @property
    def question(self) -> bytes:
        """The question section as the client wrote it (its case kept: 0x20 resolvers)."""
        return self.data[HEADER_BYTES:self.qend]

    @property
    def opt(self) -> bytes:
        """Our OPT record for the reply, or nothing if the client sent none."""
        return (OUR_OPT_DO if self.do else OUR_OPT) if self.edns else b""

    @property
    def request(self) -> DNSRecord:
        """The dnslib form, decoded on first use (zone answers only); WireError if dnslib
        cannot decode what the wire reader accepted (rdata it checks and we do not)."""
        if self._request is None:
            try:
                self._request = DNSRecord.parse(self.data)
            except Exception as exc:  # DNSError, BufferError, struct.error, ...
                raise WireError(f"{type(exc).__name__}: {exc}") from None
        return self._request


def header_only(data: bytes, rcode: int) -> bytes:
    """An error reply built from the raw header: id, opcode and RD kept, all counts zero."""
    qid, flags = struct.unpack_from("!HH", data)
    flags = 0x8000 | (flags & 0x7900) | rcode  # QR, opcode (0x7800) and RD (0x0100) kept
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


def parse_query(data: bytes) -> Query | bytes | None:
    if len(data) < HEADER_BYTES:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & FLAG_QR:
        return None
    if (flags >> 11) & 0xF != OPCODE_QUERY:
        return header_only(data, RCODE.NOTIMP)
    if qdcount != 1:
        return header_only(data, RCODE.FORMERR)
    try:
        m = scan(data)
    except WireError:
        return header_only(data, RCODE.FORMERR)
    if not m.opts:
        return Query(data, qid, flags, m.name, m.qtype, m.qclass, m.qend)
    opt = m.opts[0]
    if len(m.opts) > 1 or data[opt.start] != 0:  # two OPTs, or an OPT not owned by the root
        return header_only(data, RCODE.FORMERR)
    query = Query(data, qid, flags, m.name, m.qtype, m.qclass, m.qend, edns=True,
                  udp_size=min(max(opt.udp_size, MIN_UDP_PAYLOAD), MAX_UDP_PAYLOAD),
                  do=bool(opt.ttl & DO_BIT))
    if (opt.ttl >> 16) & 0xFF != 0:
        return (HEADER.pack(qid, FLAG_QR | FLAG_RA | (flags & (FLAG_RD | FLAG_CD)), 1, 0, 0, 1)
                + query.question + opt_record(ADVERTISED_UDP_PAYLOAD,
                                              ext_rcode=RCODE_BADVERS_HIGH))
    return query


def _opt(query: Query) -> EDNS0:
    return EDNS0(udp_len=ADVERTISED_UDP_PAYLOAD, flags="do" if query.do else "")


def _limit(query: Query, tcp: bool) -> int:
    return MAX_TCP_MESSAGE if tcp else (query.udp_size if query.edns else MIN_UDP_PAYLOAD)


def encode_reply(query: Query, reply: DNSRecord, tcp: bool = False) -> bytes:
    """The wire form of `reply` to `query`, truncated (TC) when it does not fit."""
    reply.ar = [rr for rr in reply.ar if rr.rtype != QTYPE.OPT]
    if query.edns:
        reply.add_ar(_opt(query))
    data = reply.pack()
    if len(data) <= _limit(query, tcp):
        return data
    return truncated(query, reply.header.bitmap)


def truncated(query: Query, flags: int) -> bytes:
    """Header and question only, TC set; our OPT kept so the client still sees EDNS."""
    return (HEADER.pack(query.id, (flags & TRUNCATED_KEEP) | FLAG_QR | FLAG_TC, 1, 0, 0,
                        int(query.edns)) + query.question + query.opt)


def relay_reply(query: Query, reply: Reply, wire: bytes, tcp: bool = False) -> bytes:
    """The client's answer from an upstream one (`wire`: `reply.wire`, its TTLs maybe aged):
    the client's ID, RD and question (its case), RA, the upstream's rcode and records, no AA
    (not authoritative), our OPT instead of the upstream's; truncated if it does not fit."""
    an, ns, ar = reply.counts
    flags = FLAG_QR | FLAG_RA | (query.flags & FLAG_RD) | (reply.flags & (FLAG_TC | RCODE_MASK))
    out = b"".join((HEADER.pack(query.id, flags, 1, an, ns, ar + query.edns), query.question,
                    wire[reply.qend:], query.opt))
    if len(out) <= _limit(query, tcp):
        return out
    return truncated(query, flags)


def error_reply(query: Query, rcode: int, tcp: bool = False) -> bytes:
    """SERVFAIL/REFUSED/FORMERR for a parsed query, question kept."""
    return (HEADER.pack(query.id, FLAG_QR | FLAG_RA | (query.flags & (FLAG_RD | FLAG_CD)) | rcode,
                        1, 0, 0, int(query.edns)) + query.question + query.opt)
