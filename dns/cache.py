"""The cache of upstream answers (forwarded names only; the zone table is never cached).

Theory of operation
-------------------
Keyed by (lowercase name, type, class, DO). It holds upstream answers as bytes (`wire.Reply`:
what the upstream sent, up to its OPT record, with the offsets of its TTLs), never decoded.
A positive answer lives for the smallest TTL in its answer section; a negative one (NXDOMAIN,
or NOERROR with no answer) for min(SOA TTL, SOA MINIMUM) from its authority section (RFC 2308
section 5), and is not cached at all without a SOA. SERVFAIL, REFUSED and truncated answers
are never cached. Both are capped (`MAX_TTL_S`, `MAX_NEGATIVE_TTL_S`, like CoreDNS's cache
plugin).

A hit says how long the answer has been in the cache; `CacheHit.wire()` gives its bytes with
every TTL decreased by that many seconds (CoreDNS and dnsmasq do the same), so a client never
holds a record longer than its owner allowed. The clock is injected; tests drive it. Entries
are evicted least-recently-used past `max_entries`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, NamedTuple

from meshnet.dns.wire import Reply, aged

MAX_TTL_S = 3600
MAX_NEGATIVE_TTL_S = 1800
DEFAULT_MAX_ENTRIES = 10000
RCODE_NOERROR, RCODE_NXDOMAIN = 0, 3

CacheKey = tuple[str, int, int, bool]


def cache_key(reply: Reply, do: bool = False) -> CacheKey:
    return (reply.name, reply.qtype, reply.qclass, do)


def cacheable_ttl(reply: Reply) -> int:
    """How long `reply` may be cached, in seconds; 0 = not at all."""
    if reply.tc:
        return 0
    rcode = reply.rcode
    if rcode == RCODE_NOERROR and reply.min_answer_ttl is not None:
        return min(reply.min_answer_ttl, MAX_TTL_S)
    if rcode in (RCODE_NOERROR, RCODE_NXDOMAIN) and reply.negative_ttl is not None:
        return min(reply.negative_ttl, MAX_NEGATIVE_TTL_S)
    return 0


class CacheHit(NamedTuple):
    reply: Reply
    aged_s: int      # whole seconds the answer has spent in the cache
    stored: float    # cache clock when it was stored
    expires: float

    def wire(self) -> bytes:
        """The upstream's bytes with the TTLs decreased by the time spent in the cache."""
        r = self.reply
        return aged(r.wire, r.ttl_offsets, self.aged_s) if self.aged_s else r.wire


class ResponseCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self.entries: OrderedDict[CacheKey, tuple[float, float, Reply]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<ResponseCache entries={len(self.entries)} hits={self.hits} misses={self.misses}>"

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: CacheKey, reply: Reply) -> int:
        ttl = cacheable_ttl(reply)
        if ttl <= 0 or self.max_entries <= 0:
            return 0
        now = self.clock()
        self.entries[key] = (now + ttl, now, reply)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return ttl

    def lookup(self, key: CacheKey) -> CacheHit | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        now = self.clock()
        if now >= entry[0]:
            del self.entries[key]
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        expires, stored, reply = entry
        return CacheHit(reply, int(now - stored), stored, expires)
