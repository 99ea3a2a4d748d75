"""ResponseCache: TTLs, negative TTLs (RFC 2308), ageing and what is never cached.
Answers are kept as bytes (`wire.Reply`); the clock is injected; no sleeps."""

from __future__ import annotations

import pytest
from dnslib import RR, DNSRecord

from meshnet.dns.cache import ResponseCache, cache_key, cacheable_ttl
from meshnet.dns.wire import Reply

from fakes import Clock, rr_text

SOA = "example. {ttl} IN SOA ns.example. h.example. 1 2 3 4 {minimum}"


def reply(rcode=0, answers=(), authority=(), tc=0, name="www.example.") -> Reply:
    r = DNSRecord.question(name).reply()
    r.header.rcode, r.header.tc = rcode, tc
    for line in answers:
        r.add_answer(*RR.fromZone(line))
    for line in authority:
        r.add_auth(*RR.fromZone(line))
    return Reply.parse(r.pack())


def records(hit) -> list[str]:
    return rr_text(DNSRecord.parse(hit.wire()).rr)


TTL_CASES = [
    ("positive: smallest answer TTL", reply(answers=["www.example. 300 IN A 192.0.2.1",
                                                     "www.example. 60 IN A 192.0.2.2"]), 60),
    ("positive TTL capped at an hour", reply(answers=["www.example. 86400 IN A 192.0.2.1"]),
     3600),
    ("NXDOMAIN: min(SOA TTL, SOA minimum)",
     reply(3, authority=[SOA.format(ttl=900, minimum=30)]), 30),
    ("NODATA: the SOA TTL when smaller", reply(0, authority=[SOA.format(ttl=10, minimum=300)]),
     10),
    ("negative without SOA: not cached", reply(3), 0),
    ("SERVFAIL: never", reply(2), 0),
    ("REFUSED: never", reply(5), 0),
    ("truncated: never", reply(answers=["www.example. 60 IN A 192.0.2.1"], tc=1), 0),
    ("TTL 0: not cached", reply(answers=["www.example. 0 IN A 192.0.2.1"]), 0),
    ("TTL with the top bit set counts as 0 (RFC 2181 8)",
     reply(answers=["www.example. 2147483648 IN A 192.0.2.1"]), 0),
    ("negative: a SOA MINIMUM with the top bit set counts as 0",
     reply(3, authority=["example. 900 IN SOA ns.example. h.example. 1 2 3 4 4294967295"]), 0),
]


@pytest.mark.parametrize("desc,r,want", TTL_CASES, ids=[c[0] for c in TTL_CASES])
def test_cacheable_ttl(desc, r, want):
    assert cacheable_ttl(r) == want


def test_hits_age_the_ttls_and_expire():
    clock = Clock()
    cache = ResponseCache(clock=clock)
    r = reply(answers=["www.example. 60 IN A 192.0.2.1"])
    key = cache_key(r)
    assert cache.put(key, r) == 60
    clock.now += 25.9
    hit = cache.lookup(key)
    assert hit.aged_s == 25 and records(hit) == ["www.example. 35 IN A 192.0.2.1"]
    assert hit.reply.wire == r.wire  # the stored bytes are never changed
    clock.now += 34.1
    assert cache.lookup(key) is None and len(cache) == 0
    assert (cache.hits, cache.misses) == (1, 1)


def test_negative_entries_expire_on_the_negative_ttl():
    clock = Clock()
    cache = ResponseCache(clock=clock)
    r = reply(3, authority=[SOA.format(ttl=900, minimum=30)])
    cache.put(cache_key(r), r)
    clock.now += 29
    hit = cache.lookup(cache_key(r))
    assert hit.reply.rcode == 3
    assert rr_text(DNSRecord.parse(hit.wire()).auth) == [
        "example. 871 IN SOA ns.example. h.example. 1 2 3 4 30"]
    clock.now += 1
    assert cache.lookup(cache_key(r)) is None


def test_keys_are_case_insensitive_and_lru_bounded():
    cache = ResponseCache(max_entries=2, clock=Clock())
    for name in ("a.example.", "b.example.", "c.example."):
        r = reply(answers=[f"{name} 60 IN A 192.0.2.1"], name=name.upper())
        assert cache_key(r) == (name, 1, 1, False)
        cache.put(cache_key(r), r)
    assert len(cache) == 2
    assert cache.lookup(("a.example.", 1, 1, False)) is None
    assert cache.lookup(("c.example.", 1, 1, False)) is not None
