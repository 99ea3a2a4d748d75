"""meshnet-dns: cluster DNS per the Kubernetes DNS spec 1.1.0 (see docs/dns.md).

views -> sync (informers, change tracker) -> zone.compile_zone -> server.table;
server -> protocol (wire rules) + answer (zone lookups) + forward/cache (everything else).
"""
