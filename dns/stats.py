"""The Prometheus metrics of meshnet-dns (names follow CoreDNS's where they overlap)."""

from __future__ import annotations

from dnslib import QTYPE, RCODE

from meshnet.metrics import Registry

# Types outside this set are counted as "other" so a fuzzer cannot grow the label space.
KNOWN_TYPES = frozenset(("A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "SOA", "NS", "MX", "ANY",
                         "HTTPS", "SVCB", "CAA", "DS", "DNSKEY"))
# Latency buckets in seconds: zone answers take tens of microseconds, forwarded ones ms.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0)


def type_label(qtype: int) -> str:
    name = QTYPE.get(qtype)
    if name == "*":
        return "ANY"
    return name if name in KNOWN_TYPES else "other"


def rcode_label(rcode: int) -> str:
    name = RCODE.get(rcode)
    return name if isinstance(name, str) and not name.isdigit() else str(rcode)


class DnsMetrics:
    def __init__(self, registry: Registry | None = None):
        self.registry = r = registry or Registry()
        self.requests = r.counter("meshnet_dns_requests_total",
                                  "Queries received, by transport and type.", ("proto", "type"))
        self.responses = r.counter("meshnet_dns_responses_total",
                                   "Replies sent, by rcode.", ("rcode",))
        self.duration = r.histogram("meshnet_dns_request_duration_seconds",
                                    "Time from receiving a query to sending its reply.",
                                    ("source",), LATENCY_BUCKETS_S)
        self.malformed = r.counter("meshnet_dns_malformed_total",
                                   "Packets dropped or answered FORMERR/NOTIMP/BADVERS.",
                                   ("action",))
        self.truncated = r.counter("meshnet_dns_truncated_total",
                                   "UDP replies truncated (TC set).")
        self.forwarded = r.counter("meshnet_dns_forward_requests_total",
                                   "Questions sent upstream (cache misses included), by result.",
                                   ("result",))
        self.cache = r.gauge("meshnet_dns_cache_entries", "Entries in the upstream cache.")
        self.cache_hits = r.gauge("meshnet_dns_cache_hits", "Upstream cache hits since start.")
        self.zone_names = r.gauge("meshnet_dns_zone_names", "Owner names in the zone table.")
        self.syncs = r.counter("meshnet_dns_zone_syncs_total", "Zone tables published.")
        self.sync_duration = r.histogram("meshnet_dns_zone_compile_seconds",
                                         "Time to compile the zone table.")
