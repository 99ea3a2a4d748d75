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

from dnslib import (CLASS, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, AAAA, DNSLabel,
                    DNSRecord)

from meshnet.dns.zone import ZoneTable, dashed, undashed

MAX_CNAME_CHAIN = 8  # an ExternalName pointing at another in-zone ExternalName, and so on
CLASS_IN, CLASS_ANY, QTYPE_ANY = 1, 255, 255


@dataclass(frozen=True)
class Answer:
    reply: DNSRecord | None      # None: not in any local zone, forward upstream
    chase: str = ""              # CNAME target to resolve upstream and append (A/AAAA only)
    zone: bool = False           # answered from a local zone (for metrics)


# The table's compact record data (zone.py) as dnslib records, built only for an answer.
_RDATA = {QTYPE.A: A, QTYPE.AAAA: AAAA, QTYPE.PTR: PTR, QTYPE.CNAME: CNAME, QTYPE.NS: NS,
          QTYPE.TXT: TXT, QTYPE.SRV: lambda v: SRV(*v), QTYPE.SOA: lambda v: SOA(*v)}


def _rr(owner, qtype: int, ttl: int, value) -> RR:
    return RR(owner, qtype, CLASS.IN, ttl, _RDATA[qtype](value))


def _key(label: DNSLabel | str) -> str:
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
        return {(QTYPE.A if ":" not in ip else QTYPE.AAAA): (ip,)}
    return table.records.get(canonical)


def _authority(reply: DNSRecord, table: ZoneTable, apex: str) -> None:
    soa = table.soa(apex)
    # RFC 2308 section 5: the negative TTL is min(SOA TTL, SOA MINIMUM).
    reply.add_auth(_rr(apex, QTYPE.SOA, min(table.ttl, soa[2][4]), soa))


def is_local(table: ZoneTable, name: str) -> bool:
    """Whether `name` (lowercase, absolute) is answered from the table, not forwarded: a name
    in one of its zones, or (once synced) a reverse name of a known service or endpoint."""
    if table.apex_of(name) is not None:
        return True
    return table.synced and name.endswith(".arpa.") and name in table.records


def answer(table: ZoneTable, request: DNSRecord) -> Answer:
    q = request.q
    key = _key(q.qname)
    apex = table.apex_of(key)
    if apex is None:
        if not is_local(table, key):
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
        reply.add_answer(_rr(owner, QTYPE.CNAME, table.ttl, cname[0]))
        owner = cname[0]
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
        for value in node.get(t, ()):
            reply.add_answer(_rr(owner, t, table.ttl, value))
            found = True
            if t in (QTYPE.SRV, QTYPE.NS):
                _glue(reply, table, _key(value[3] if t == QTYPE.SRV else value))
    if not found and apex:
        _authority(reply, table, apex)
    return Answer(reply, zone=True)


def _glue(reply: DNSRecord, table: ZoneTable, target: str) -> None:
    """Additional-section addresses for SRV targets and the NS name (CoreDNS adds them too)."""
    node = table.records.get(target)
    if not node:
        return
    for t in (QTYPE.A, QTYPE.AAAA):
        for value in node.get(t, ()):
            rr = _rr(target, t, table.ttl, value)
            if rr not in reply.ar:
                reply.add_ar(rr)
