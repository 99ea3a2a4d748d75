"""Answering one question from the zone table: a pure function, no I/O.

`answer(table, request)` returns an `Answer`: either a complete reply from the zone, or
`reply=None` meaning "not ours, forward it". A CNAME whose target lies outside the zone (an
ExternalName service) comes back as a reply plus `chase=<target>` for A/AAAA questions: the
server resolves the target upstream and appends those records (CoreDNS does the same).

Rules (RFC 1034 4.3.2, RFC 2308, RFC 8020, and the Kubernetes DNS spec 1.1.0):
- a name that does not exist in the zone: NXDOMAIN, the zone SOA in authority;
- a name that exists without the asked type (an IPv4 service asked for AAAA, an empty
  non-terminal such as `<ns>.svc.<zone>`): NOERROR with no answer, the SOA in authority;
- answers from the zone carry AA; owner names echo the query's case (0x20 resolvers compare it);
- before the first full sync, names in the zone get SERVFAIL, never NXDOMAIN, so that a
  restarting server does not poison negative caches.

The EDNS, opcode and truncation rules live in `protocol.py`; this module sees only parsed,
well-formed, single-question QUERY messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import CLASS, QTYPE, RCODE, RR, A, AAAA, DNSLabel, DNSRecord

from meshnet.dns.zone import ZoneTable, dashed, undashed

MAX_CNAME_CHAIN = 8  # an ExternalName pointing at another in-zone ExternalName, and so on
CLASS_IN, CLASS_ANY, QTYPE_ANY = 1, 255, 255


@dataclass(frozen=True)
class Answer:
    reply: DNSRecord | None      # None: not in any local zone, forward upstream
    chase: str = ""              # CNAME target to resolve upstream and append (A/AAAA only)
    zone: bool = False           # answered from a local zone (for metrics)


def _key(label: DNSLabel) -> str:
    return str(label).lower()


def _pod_node(table: ZoneTable, key: str, apex: str):
    """Pod names: any IPv6 spelling in verified mode, any IP at all in insecure mode."""
    if table.pods == "disabled":
        return None
    labels = key[: -len(apex)].split(".")
    # <ip>.<ns>.pod. -> ["<ip>", "<ns>", "pod", ""]
    if len(labels) != 4 or labels[2] != "pod":
        return None
    ip = undashed(labels[0])
    if ip is None:
        return None
    canonical = f"{dashed(ip)}.{labels[1]}.pod.{apex}"
    if table.pods == "insecure":
        return {(QTYPE.A if ":" not in ip else QTYPE.AAAA): ((A if ":" not in ip else AAAA)(ip),)}
    return table.records.get(canonical)


def _authority(reply: DNSRecord, table: ZoneTable, apex: str) -> None:
    soa = table.soa(apex)
    # RFC 2308 section 5: the negative TTL is min(SOA TTL, SOA MINIMUM).
    reply.add_auth(RR(apex, QTYPE.SOA, CLASS.IN, min(table.ttl, soa.times[4]), soa))


def answer(table: ZoneTable, request: DNSRecord) -> Answer:
    q = request.q
    key = _key(q.qname)
    apex = table.apex_of(key)
    if apex is None:
        node = table.records.get(key) if key.endswith(".arpa.") else None
        if node is None or not table.synced:
            return Answer(None)
        apex = ""  # a PTR for an address outside the reverse zones we own: positive only
    reply = request.reply(ra=1, aa=1)
    if not table.synced:
        reply.header.aa = 0
        reply.header.rcode = RCODE.SERVFAIL
        return Answer(reply, zone=True)
    if q.qclass not in (CLASS_IN, CLASS_ANY):
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return Answer(reply, zone=True)
    node = table.records.get(key)
    if node is None and apex == table.origin:
        node = _pod_node(table, key, apex)
    if node is None:
        reply.header.rcode = RCODE.NXDOMAIN
        if apex:
            _authority(reply, table, apex)
        return Answer(reply, zone=True)

    qtype, owner = q.qtype, q.qname
    chase = ""
    for _ in range(MAX_CNAME_CHAIN):
        cname = node.get(QTYPE.CNAME)
        if not cname or qtype in (QTYPE.CNAME, QTYPE_ANY):
            break
        reply.add_answer(RR(owner, QTYPE.CNAME, CLASS.IN, table.ttl, cname[0]))
        owner = cname[0].label
        target = _key(owner)
        node = table.records.get(target) if table.apex_of(target) else None
        if node is None:
            target_apex = table.apex_of(target)
            if target_apex is None:
                if qtype in (QTYPE.A, QTYPE.AAAA):
                    chase = str(owner)
            else:  # RFC 6604: the rcode describes the last name of the chain
                reply.header.rcode = RCODE.NXDOMAIN
                _authority(reply, table, target_apex)
            return Answer(reply, chase=chase, zone=True)

    types = list(node) if qtype == QTYPE_ANY else [qtype]
    found = False
    for t in types:
        for rd in node.get(t, ()):
            reply.add_answer(RR(owner, t, CLASS.IN, table.ttl, rd))
            found = True
            if t in (QTYPE.SRV, QTYPE.NS):
                _glue(reply, table, _key(rd.target if t == QTYPE.SRV else rd.label))
    if not found and apex:
        _authority(reply, table, apex)
    return Answer(reply, zone=True)


def _glue(reply: DNSRecord, table: ZoneTable, target: str) -> None:
    """Additional-section addresses for SRV targets and the NS name (CoreDNS adds them too)."""
    node = table.records.get(target)
    if not node:
        return
    for t in (QTYPE.A, QTYPE.AAAA):
        for rd in node.get(t, ()):
            rr = RR(target, t, CLASS.IN, table.ttl, rd)
            if rr not in reply.ar:
                reply.add_ar(rr)
