"""A small reader of DNS messages in wire format (RFC 1035 4.1), for the forwarding path.

Theory of operation
-------------------
Forwarding does not need the records, only where they are: `scan(data)` walks a whole message
once and returns a `Message` with the header, the question (name in lowercase presentation
form, type, class, and where it ends), the offset of every record's TTL, the smallest TTL of
the answer section, the negative TTL a SOA in the authority section gives, and the OPT records.
Nothing else is decoded: rdata is skipped by its length, so an answer is relayed as the bytes
the upstream sent (RFC 1035 4.1.4 pointers inside them stay valid as long as the header and
question keep their length, which rewriting the ID and the question's case does).

`Reply.parse(data)` is what the forwarder keeps of an upstream answer: its bytes up to the
OPT record (the client gets our own OPT instead, or none if it sent none, RFC 6891 6.1.1) and
the scan results the cache and the relay need.

Invariants: every offset `scan` returns lies inside the message; a name is at most 255 bytes
(RFC 1035 3.1) and every compression pointer points strictly before the run of labels it ends
(a pointer can only refer to a name written earlier), so a loop is impossible; with at most
`MAX_POINTERS` pointers a name takes at most 255 steps however the message is crafted. Any
message that breaks these, or whose counts claim more than its bytes hold, raises `WireError`
naming the offset; nothing here raises anything else.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from meshnet.dns.errors import WireError

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
HEADER_BYTES = 12
QUESTION_FIXED = struct.Struct("!HH")  # type, class
RR_FIXED = struct.Struct("!HHIH")     # type, class, TTL, rdlength
TTL = struct.Struct("!I")
MAX_NAME_BYTES = 255                  # RFC 1035 3.1, counting the length bytes and the root
MAX_LABEL_BYTES = 63
MAX_POINTERS = 127                    # a 255-byte name has at most 127 labels to point at

FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
RCODE_MASK = 0x000F
TYPE_SOA, TYPE_OPT = 6, 41
SOA_MINIMUM_BYTES = 22  # two names of at least one byte each and five 32-bit fields
TTL_ZERO_ABOVE = 0x7FFFFFFF  # RFC 2181 8: a TTL with the top bit set counts as zero

# Label bytes shown as themselves; anything else is written \DDD (RFC 1035 5.1), and so are
# "." and "\" inside a label, so that two different names never get the same text.
_PLAIN = bytes(c for c in range(33, 127) if c not in b".\\")
_ODD_BYTE = re.compile(rb"[^!-\[\]-~]")  # outside 33-126, or a backslash (dots are counted)


class Opt(NamedTuple):
    """An OPT pseudo-record (RFC 6891 6.1.2): where it is and its two fixed fields."""
    start: int
    end: int
    udp_size: int    # the CLASS field
    ttl: int         # extended rcode (8 bits), version (8), DO and the other flags (16)
    index: int       # its place in the additional section


class Message(NamedTuple):
    id: int
    flags: int
    name: str                    # the question, lowercase, absolute ("www.example.org.")
    qtype: int
    qclass: int
    qend: int                    # offset just past the question
    counts: tuple[int, int, int]  # answer, authority, additional
    ttl_offsets: tuple[int, ...]  # every record's TTL but OPT's
    min_answer_ttl: int | None   # smallest TTL in the answer section
    negative_ttl: int | None     # min(TTL, MINIMUM) of the first SOA in authority (RFC 2308 5)
    opts: tuple[Opt, ...]
    end: int                     # offset just past the last record


def _walk(data: bytes, pos: int, labels: list | None) -> int:
    """Check the name at `pos`, collect its labels into `labels` (if given) and return the
    offset just past it where it is written (past its first pointer, if it has one)."""
    n = len(data)
    start = limit = pos
    end = -1
    size = 1  # the root byte
    hops = 0
    while True:
        if pos >= n:
            raise WireError(f"name at offset {start}: runs past the end of the {n}-byte message")
        length = data[pos]
        if length == 0:
            return pos + 1 if end < 0 else end
        if length <= MAX_LABEL_BYTES:
            size += length + 1
            if size > MAX_NAME_BYTES:
                raise WireError(f"name at offset {start}: longer than {MAX_NAME_BYTES} bytes")
            if labels is not None:
                labels.append(data[pos + 1:pos + 1 + length])
            pos += 1 + length
            continue
        if length < 0xC0:  # 0x40 and 0x80: extended and reserved label types (RFC 6891 5)
            raise WireError(f"name at offset {start}: label type 0x{length & 0xC0:02x} at "
                            f"offset {pos} is not supported")
        if pos + 1 >= n:
            raise WireError(f"name at offset {start}: compression pointer at offset {pos} cut "
                            f"off by the end of the {n}-byte message")
        target = ((length & 0x3F) << 8) | data[pos + 1]
        if end < 0:
            end = pos + 2
        hops += 1
        if hops > MAX_POINTERS:
            raise WireError(f"name at offset {start}: more than {MAX_POINTERS} compression "
                            "pointers")
        if target >= limit:
            raise WireError(f"name at offset {start}: compression pointer at offset {pos} to "
                            f"offset {target} does not point backwards (a loop)")
        if target < HEADER_BYTES:
            raise WireError(f"name at offset {start}: compression pointer at offset {pos} "
                            f"points into the header (offset {target})")
        limit = pos = target


def _text(labels: list) -> str:
    if not labels:
        return "."
    joined = b".".join(labels)
    if _ODD_BYTE.search(joined) is None and joined.count(b".") == len(labels) - 1:
        return joined.lower().decode("ascii") + "."
    return "".join("".join(chr(c) if c in _PLAIN else f"\\{c:03d}" for c in label.lower())
                   + "." for label in labels)


def read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at `pos` as lowercase text with the trailing dot, and the offset past it."""
    labels: list = []
    end = _walk(data, pos, labels)
    return _text(labels), end


def skip_name(data: bytes, pos: int) -> int:
    """The offset just past the name at `pos`, which is checked as `read_name` does."""
    return _walk(data, pos, None)


def scan(data: bytes) -> Message:
    """Walk a whole single-question message; see the module docstring."""
    n = len(data)
    if n < HEADER_BYTES:
        raise WireError(f"{n} bytes: shorter than the {HEADER_BYTES}-byte header")
    qid, flags, qdcount, an, ns, ar = HEADER.unpack_from(data)
    if qdcount != 1:
        raise WireError(f"{qdcount} questions: exactly one is supported")
    name, pos = read_name(data, HEADER_BYTES)
    if pos + 4 > n:
        raise WireError(f"question at offset {HEADER_BYTES}: type and class cut off by the end "
                        f"of the {n}-byte message")
    qtype, qclass = QUESTION_FIXED.unpack_from(data, pos)
    qend = pos = pos + 4
    if (an + ns + ar) * 11 > n - pos:  # a record is at least 11 bytes
        raise WireError(f"counts {an}/{ns}/{ar}: more records than the {n}-byte message holds")
    ttl_offsets = []
    min_ttl = negative = None
    opts = []
    for i in range(an + ns + ar):
        start = pos
        pos = _walk(data, pos, None)
        if pos + 10 > n:
            raise WireError(f"record {i + 1} at offset {start}: cut off by the end of the "
                            f"{n}-byte message")
        rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos)
        rdata = pos + 10
        pos = rdata + rdlength
        if pos > n:
            raise WireError(f"record {i + 1} at offset {start}: {rdlength} bytes of data run "
                            f"past the end of the {n}-byte message")
        if rtype == TYPE_OPT:
            if i < an + ns:
                raise WireError(f"record {i + 1} at offset {start}: OPT outside the additional "
                                "section")
            opts.append(Opt(start, pos, rclass, ttl, i - an - ns))
            continue
        ttl_offsets.append(rdata - 6)
        if ttl > TTL_ZERO_ABOVE:
            ttl = 0
        if i < an:
            min_ttl = ttl if min_ttl is None or ttl < min_ttl else min_ttl
        elif (i < an + ns and rtype == TYPE_SOA and negative is None
              and rdlength >= SOA_MINIMUM_BYTES):
            minimum = TTL.unpack_from(data, pos - 4)[0]
            negative = min(ttl, 0 if minimum > TTL_ZERO_ABOVE else minimum)
    return Message(qid, flags, name, qtype, qclass, qend, (an, ns, ar), tuple(ttl_offsets),
                   min_ttl, negative, tuple(opts), pos)


class Reply(NamedTuple):
    """An upstream answer as the forwarder keeps and relays it."""
    wire: bytes                   # header and question as received, records up to the OPT
    qend: int
    flags: int
    name: str
    qtype: int
    qclass: int
    counts: tuple[int, int, int]  # of the records in `wire`
    ttl_offsets: tuple[int, ...]  # into `wire`
    min_answer_ttl: int | None
    negative_ttl: int | None

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK

    @property
    def tc(self) -> bool:
        return bool(self.flags & FLAG_TC)

    @classmethod
    def parse(cls, data: bytes) -> "Reply":
        m = scan(data)
        if not m.flags & FLAG_QR:
            raise WireError("QR bit clear: a query, not an answer")
        an, ns, ar = m.counts
        end, offsets = m.end, m.ttl_offsets
        if m.opts:
            # The OPT and whatever follows it are dropped: additional records are optional
            # (RFC 2181 9), and nothing before the OPT can point into what follows it.
            end, ar = m.opts[0].start, m.opts[0].index
            offsets = tuple(at for at in offsets if at < end)
            wire = data[:10] + struct.pack("!H", ar) + data[HEADER_BYTES:end]
        else:
            wire = data if end == len(data) else data[:end]
        return cls(wire, m.qend, m.flags, m.name, m.qtype, m.qclass, (an, ns, ar), offsets,
                   m.min_answer_ttl, m.negative_ttl)


def aged(wire: bytes, offsets: tuple[int, ...], seconds: int) -> bytes:
    """`wire` with every TTL at `offsets` decreased by `seconds` (not below zero)."""
    out = bytearray(wire)
    for at in offsets:
        ttl, = TTL.unpack_from(out, at)
        TTL.pack_into(out, at, max(0, ttl - seconds) if ttl <= TTL_ZERO_ABOVE else 0)
    return bytes(out)


def opt_record(udp_size: int, do: bool = False, ext_rcode: int = 0) -> bytes:
    """An OPT pseudo-record: root owner, our UDP payload size, version 0 (RFC 6891 6.1.2)."""
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, udp_size, (ext_rcode << 24) | (0x8000 if do else 0),
                                   0)
