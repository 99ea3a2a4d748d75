"""meshnet-dns: cluster DNS per the Kubernetes DNS spec 1.1.0 (see docs/dns.md).

views -> sync (informers, change tracker) -> zone.ZoneIndex (per source) -> server.table;
server -> protocol (wire rules) + answer (zone lookups) + forward/cache (everything else).
"""
