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

A save costs ~1 ms (ext4 flushes a file renamed over another), longer while the API server's
fsyncs fill the journal, so the agent does not save on its event loop: it allocates with
`save=False` and calls `save()` on the pod network's thread just before the address goes onto
the pod's interface. `save()` writes the newest state under a lock, and not at all when an
earlier call already wrote it: a burst of pods costs a few writes, not one each.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
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
        self._first = int(self.network.network_address) + 2  # .1 is the gateway
        self._count = self.network.num_addresses - 3
        self._changes = 0  # counts changes; `save()` writes when _saved is behind it
        self._saved = 0
        self._lock = threading.Lock()

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
        """Write the state if it changed since the last write; any thread."""
        if self.path is None:
            return
        with self._lock:
            changes = self._changes
            if changes == self._saved:
                return
            # dict() and the assignments it reads are atomic under the GIL: a consistent copy
            # even while the event loop allocates.
            doc = {"cidr": str(self.network), "last": self.last,
                   "allocations": dict(self.allocations)}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
            self._saved = changes

    def allocate(self, key: str, *, save: bool = True) -> str:
        """The key's address, a new one if it has none; saved before returning unless `save`
        is False (then the caller calls `save()` before the address is used)."""
        if key in self.allocations:
            return self.allocations[key]
        used = set(self.allocations.values())
        start = 0
        if self.last is not None:
            offset = int(ipaddress.IPv4Address(self.last)) - self._first
            start = offset + 1 if 0 <= offset < self._count else 0
        for i in range(self._count):
            candidate = str(ipaddress.IPv4Address(self._first + (start + i) % self._count))
            if candidate not in used:
                self.allocations[key] = candidate
                self.last = candidate
                self._changes += 1
                if save:
                    self.save()
                return candidate
        raise PoolExhausted(f"no free address in podCIDR {self.network} "
                            f"({self.capacity} in use); delete pods or give the node a larger CIDR")

    def release(self, key: str) -> str | None:
        ip = self.allocations.pop(key, None)
        if ip is not None:
            self._changes += 1
            self.save()
        return ip

    def keys(self) -> list[str]:
        return sorted(self.allocations)
