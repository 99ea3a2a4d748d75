"""The cache of upstream answers (forwarded names only; the zone table is never cached).

Theory of operation
-------------------
Keyed by (lowercase name, type, class, DO). A positive answer lives for the smallest TTL in its
answer section; a negative one (NXDOMAIN, or NOERROR with no answer) for min(SOA TTL, SOA
MINIMUM) from its authority section (RFC 2308 section 5), and is not cached at all without a
SOA. SERVFAIL, REFUSED and truncated answers are never cached. Both are capped
(`MAX_TTL_S`, `MAX_NEGATIVE_TTL_S`, like CoreDNS's cache plugin).

A hit returns a fresh copy whose TTLs are decreased by the time spent in the cache, so a client
never holds a record longer than its owner allowed. The clock is injected; tests drive it.
Entries are evicted least-recently-used past `max_entries`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from dnslib import QTYPE, RCODE, RR, DNSHeader, DNSRecord

MAX_TTL_S = 3600
MAX_NEGATIVE_TTL_S = 1800
DEFAULT_MAX_ENTRIES = 10000

CacheKey = tuple[str, int, int, bool]


def cache_key(request: DNSRecord, do: bool = False) -> CacheKey:
    q = request.q
    return (str(q.qname).lower(), q.qtype, q.qclass, do)


def cacheable_ttl(reply: DNSRecord) -> int:
    """How long `reply` may be cached, in seconds; 0 = not at all."""
    if reply.header.tc:
        return 0
    rcode = reply.header.rcode
    if rcode == RCODE.NOERROR and reply.rr:
        return min(min(rr.ttl for rr in reply.rr), MAX_TTL_S)
    if rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
        soas = [rr for rr in reply.auth if rr.rtype == QTYPE.SOA]
        if soas:
            return min(soas[0].ttl, soas[0].rdata.times[4], MAX_NEGATIVE_TTL_S)
    return 0


def _aged(rrs, elapsed: int) -> list:
    return [RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - elapsed), rr.rdata)
            if rr.rtype != QTYPE.OPT else rr for rr in rrs]


class ResponseCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self.entries: OrderedDict[CacheKey, tuple[float, float, DNSRecord]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<ResponseCache entries={len(self.entries)} hits={self.hits} misses={self.misses}>"

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: CacheKey, reply: DNSRecord) -> int:
        ttl = cacheable_ttl(reply)
        if ttl <= 0:
            return 0
        now = self.clock()
        self.entries[key] = (now + ttl, now, reply)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return ttl

    def get(self, key: CacheKey) -> DNSRecord | None:
        found = self.lookup(key)
        return found[0] if found else None

    def lookup(self, key: CacheKey) -> tuple[DNSRecord, int, float, float] | None:
        """A hit as (aged copy, seconds it was aged by, time stored, expiry time): what the
        server needs to keep the encoded reply and age it again later without decoding."""
        entry = self.entries.get(key)
        now = self.clock()
        if entry is None or now >= entry[0]:
            if entry is not None:
                del self.entries[key]
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        expires, stored, reply = entry
        elapsed = int(now - stored)
        h = reply.header
        copy = DNSRecord(DNSHeader(id=h.id, bitmap=h.bitmap, q=0, a=0, auth=0, ar=0),
                         q=reply.q)
        copy.rr = _aged(reply.rr, elapsed)
        copy.auth = _aged(reply.auth, elapsed)
        copy.ar = [rr for rr in _aged(reply.ar, elapsed) if rr.rtype != QTYPE.OPT]
        return copy, elapsed, stored, expires
