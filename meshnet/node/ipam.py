"""IP address management for the node's podCIDR.

Theory of operation
-------------------
`Ipam` hands out host addresses of one CIDR to pod keys (`<namespace>/<name>/<uid>`): the
first address is the bridge (gateway), the network and broadcast addresses are never used.
Allocation is the lowest free address after the last one given out (wrapping), so a freed
address is not reused at once — a just-deleted pod's IP lingers in Endpoints and conntrack-like
caches for a moment, and immediate reuse would send its traffic to a stranger (host-local IPAM
does the same with its `last_reserved_ip`).

The state is a plain dict, saved to `<state-dir>/ipam.json` atomically (write + rename) after
every change and before the address is used, so an agent that restarts (or crashes) never
hands one address to two pods. Allocating for a key that already has an address returns it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from meshnet.node.errors import PoolExhausted


class Ipam:
    def __init__(self, cidr: str, allocations: dict[str, str] | None = None,
                 last: str | None = None, path: Path | None = None):
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.version != 4 or self.network.prefixlen > 30:
            raise ValueError(f"podCIDR {cidr}: need an IPv4 network of /30 or larger")
        self.gateway = str(self.network.network_address + 1)
        self.allocations = dict(allocations or {})  # key -> ip
        self.last = last
        self.path = path

    def __repr__(self) -> str:
        return f"<Ipam {self.network} used={len(self.allocations)}/{self.capacity}>"

    @property
    def capacity(self) -> int:
        return self.network.num_addresses - 3  # network, gateway, broadcast

    @classmethod
    def load(cls, path: Path, cidr: str) -> "Ipam":
        """The saved state for `cidr`; a file for another CIDR (the node was re-assigned) starts
        over, since none of its addresses can be valid any more."""
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {}
        if doc.get("cidr") != str(ipaddress.ip_network(cidr, strict=False)):
            doc = {}
        return cls(cidr, doc.get("allocations"), doc.get("last"), path)

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cidr": str(self.network), "last": self.last,
                                   "allocations": self.allocations}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def _hosts(self) -> list[ipaddress.IPv4Address]:
        return list(self.network.hosts())[1:]  # hosts()[0] is the gateway

    def allocate(self, key: str) -> str:
        if key in self.allocations:
            return self.allocations[key]
        used = set(self.allocations.values())
        hosts = self._hosts()
        start = 0
        if self.last is not None:
            last = ipaddress.ip_address(self.last)
            start = next((i + 1 for i, h in enumerate(hosts) if h == last), 0)
        for i in range(len(hosts)):
            candidate = str(hosts[(start + i) % len(hosts)])
            if candidate not in used:
                self.allocations[key] = candidate
                self.last = candidate
                self.save()
                return candidate
        raise PoolExhausted(f"no free address in podCIDR {self.network} "
                            f"({self.capacity} in use); delete pods or give the node a larger CIDR")

    def release(self, key: str) -> str | None:
        ip = self.allocations.pop(key, None)
        if ip is not None:
            self.save()
        return ip

    def keys(self) -> list[str]:
        return sorted(self.allocations)
