"""Pools of addresses and ports, and picking a free member of one (pure; no I/O).

Theory of operation
-------------------
A `Pool` is a finite set of integers — IP addresses as ints, or port numbers — kept as sorted,
disjoint, inclusive intervals, so that a /12 (a million addresses) costs two integers and
`nth(i)` is a short walk. `pick()` finds a free member for the allocators in `serviceips` and
`loadbalancer`: a few random probes first (cheap while the pool is mostly free, and spreads
allocations so that a freed address is not reused at once), then a linear scan from a random
start, which must meet a free member within `len(taken) + 1` steps — so a full pool is detected
without walking a million addresses, and a nearly full one still finds its last free member.

`RangeState` is what one process believes about one range: values known to be allocated in
the store (`used`), values handed to a transaction whose outcome is not known yet (`pending`:
the registry may still fail the write for an unrelated reason, e.g. the name exists), and
values whose release was handed to a transaction (`releasing`). Pending and releasing values
count as taken until `settle()` records what the store says, which its owner does once their
deadline passes (`expired()`). The store's create-if-absent on the range key is the real
guarantee against handing a value out twice; this state only makes collisions rare.
"""

from __future__ import annotations

import ipaddress
import random
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable

# Random probes before the linear scan; 32 misses in a row means the pool is > ~90% full
# with probability ~0.97, where the scan is the better tool anyway.
RANDOM_PROBES = 32
# How long a value handed to a create/delete transaction stays taken before the store is asked
# what became of it. A transaction takes milliseconds; this only bounds how long a failed
# create keeps its value out of circulation.
PENDING_TTL_S = 30.0
# A service range must hold the kubernetes Service (.1) and the cluster DNS Service (.10).
MIN_SERVICE_RANGE_ADDRESSES = 16


class PoolError(ValueError):
    """A pool, range or CIDR that cannot be parsed; the message says what is expected."""


@dataclass(frozen=True)
class Pool:
    intervals: tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive
    version: int = 0  # 4 or 6 for address pools; 0 for port ranges

    size: int = field(init=False, default=0, compare=False)

    def __post_init__(self) -> None:
        starts = tuple(lo for lo, _ in self.intervals)
        object.__setattr__(self, "_starts", starts)
        offsets, total = [], 0
        for lo, hi in self.intervals:
            offsets.append(total)
            total += hi - lo + 1
        object.__setattr__(self, "_offsets", tuple(offsets))
        object.__setattr__(self, "size", total)

    @classmethod
    def of(cls, intervals: Iterable[tuple[int, int]], version: int = 0) -> "Pool":
        merged: list[list[int]] = []
        for lo, hi in sorted(intervals):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return cls(tuple((lo, hi) for lo, hi in merged), version)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self.intervals[i][1]

    def nth(self, index: int) -> int:
        """The index-th member in ascending order (0 <= index < size)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        i = bisect_right(self._offsets, index) - 1
        return self.intervals[i][0] + index - self._offsets[i]

    def index(self, value: int) -> int:
        i = bisect_right(self._starts, value) - 1
        if i < 0 or value > self.intervals[i][1]:
            raise ValueError(f"{self.format(value)} is not in the pool")
        return self._offsets[i] + value - self.intervals[i][0]

    def format(self, value: int) -> str:
        """A member as users write it: dotted/colon IP or port number."""
        if self.version == 4:
            return str(ipaddress.IPv4Address(value))
        if self.version == 6:
            return str(ipaddress.IPv6Address(value))
        return str(value)

    def parse(self, text: str) -> int:
        """A member's int from its text form; ValueError if it is not of this pool's kind."""
        if self.version:
            addr = ipaddress.ip_address(text)
            if addr.version != self.version:
                raise ValueError(f"{text} is an IPv{addr.version} address; this range is "
                                 f"IPv{self.version}")
            return int(addr)
        return int(text)

    def describe(self) -> str:
        parts = []
        for lo, hi in self.intervals:
            parts.append(self.format(lo) if lo == hi else f"{self.format(lo)}-{self.format(hi)}")
        return ",".join(parts) or "(empty)"

    def __repr__(self) -> str:
        return f"<Pool {self.describe()} size={self.size}>"


def pick(pool: Pool, taken: Collection[int], rng: random.Random) -> int | None:
    """A free member of pool (not in taken), or None when there is none. See the module doc."""
    size = pool.size
    if size == 0:
        return None
    for _ in range(min(RANDOM_PROBES, size)):
        value = pool.nth(rng.randrange(size))
        if value not in taken:
            return value
    start = rng.randrange(size)
    # Each taken value blocks at most one step, so a free member turns up within len+1 steps.
    for step in range(min(size, len(taken) + 1)):
        value = pool.nth((start + step) % size)
        if value not in taken:
            return value
    return None


# -- parsing ------------------------------------------------------------------------------------


def parse_service_cidr(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Pool]:
    """`10.96.0.0/12` -> (network, pool of its addresses without network and broadcast).

    kube-apiserver never hands out the network address nor (IPv4) the broadcast address; we
    drop the last address for IPv6 too, so that both families behave alike.
    """
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise PoolError(f"not a CIDR ({exc}); expected e.g. 10.96.0.0/12") from None
    if net.num_addresses < MIN_SERVICE_RANGE_ADDRESSES:
        raise PoolError(f"too small: {net} has {net.num_addresses} addresses; the service range "
                        f"needs at least {MIN_SERVICE_RANGE_ADDRESSES} (the kubernetes Service "
                        f"takes the 1st, cluster DNS the 10th), e.g. a /28 or larger")
    first, last = int(net.network_address), int(net.broadcast_address)
    return net, Pool.of([(first + 1, last - 1)], net.version)


def parse_port_range(text: str) -> Pool:
    """`30000-32767` (inclusive) or a single port `30080`."""
    lo_text, sep, hi_text = text.strip().partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        raise PoolError("expected FIRST-LAST, e.g. 30000-32767") from None
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise PoolError("ports must be between 1 and 65535")
    if lo > hi:
        raise PoolError(f"the first port ({lo}) is above the last ({hi})")
    return Pool.of([(lo, hi)])


def parse_lb_pool(entries: str | Iterable[str]) -> Pool:
    """LoadBalancer addresses: IPs, CIDRs and FIRST-LAST ranges, comma or space separated.

    A CIDR contributes its `hosts()` (no network or IPv4 broadcast address: many clients treat
    .0 and .255 as special — MetalLB's avoid-buggy-ips), a range every address from FIRST to
    LAST. One pool holds one address family.
    """
    if isinstance(entries, str):
        entries = entries.replace(",", " ").split()
    intervals: list[tuple[int, int]] = []
    version = 0
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            if "/" in entry:
                net = ipaddress.ip_network(entry, strict=False)
                if net.num_addresses <= 2:  # /31, /32, /127, /128: every address
                    lo, hi = int(net.network_address), int(net.broadcast_address)
                else:
                    lo, hi = int(net.network_address) + 1, int(net.broadcast_address)
                    if net.version == 4:
                        hi -= 1
                fam = net.version
            elif "-" in entry:
                a_text, _, b_text = entry.partition("-")
                a, b = ipaddress.ip_address(a_text.strip()), ipaddress.ip_address(b_text.strip())
                if a.version != b.version:
                    raise PoolError(f"{entry!r}: both ends of a range must be the same family")
                if int(a) > int(b):
                    raise PoolError(f"{entry!r}: the first address is above the last")
                lo, hi, fam = int(a), int(b), a.version
            else:
                a = ipaddress.ip_address(entry)
                lo, hi, fam = int(a), int(a), a.version
        except PoolError:
            raise
        except ValueError:
            raise PoolError(f"{entry!r} is not an IP, a CIDR or a FIRST-LAST range "
                            f"(e.g. 172.18.255.200-172.18.255.250)") from None
        if version and fam != version:
            raise PoolError(f"{entry!r} is IPv{fam} but earlier entries are IPv{version}; "
                            f"one pool holds one address family")
        version = fam
        intervals.append((lo, hi))
    return Pool.of(intervals, version)


# -- what this process believes about one range ------------------------------------------------


class RangeState:
    """Allocated values of one range as far as this process knows; see the module doc."""

    def __init__(self, name: str, pool: Pool, reserved: Collection[int] = frozenset(), *,
                 clock: Callable[[], float] = time.monotonic,
                 pending_ttl_s: float = PENDING_TTL_S, rng: random.Random | None = None):
        self.name = name
        self.pool = pool
        self.reserved = frozenset(reserved)
        self.clock = clock
        self.pending_ttl_s = pending_ttl_s
        self.rng = rng or random.Random()
        self.used: dict[int, str] = {}  # value -> owner uid, as the store last said
        self.pending: dict[int, tuple[str, float]] = {}  # value -> (owner uid, deadline)
        self.releasing: dict[int, float] = {}  # value -> deadline

    def __repr__(self) -> str:
        return (f"<RangeState {self.name} {self.pool.describe()} used={len(self.used)} "
                f"pending={len(self.pending)} releasing={len(self.releasing)}>")

    def load(self, allocated: dict[int, str]) -> None:
        """Replace what we know with the store's view (value -> owner uid)."""
        self.used = {v: o for v, o in allocated.items() if v in self.pool}
        now = self.clock()
        # A transaction handed out before the reload may still be in flight: keep it taken.
        self.pending = {v: p for v, p in self.pending.items() if p[1] > now}
        self.releasing = {v: d for v, d in self.releasing.items() if d > now}

    def is_taken(self, value: int) -> bool:
        return value in self.used or value in self.pending or value in self.reserved

    def take_next(self, owner: str) -> int | None:
        """Pick a free value and hold it for owner's transaction; None when the range is full."""
        value = pick(self.pool, _Taken(self), self.rng)
        if value is not None:
            self.hold(value, owner)
        return value

    def hold(self, value: int, owner: str) -> None:
        self.pending[value] = (owner, self.clock() + self.pending_ttl_s)

    def release(self, value: int) -> None:
        self.releasing[value] = self.clock() + self.pending_ttl_s

    def held_by(self, owner: str) -> list[int]:
        return [v for v, (o, _) in self.pending.items() if o == owner]

    def expired(self) -> list[int]:
        now = self.clock()
        return ([v for v, (_, d) in self.pending.items() if d <= now]
                + [v for v, d in self.releasing.items() if d <= now])

    def settle(self, value: int, owner: str | None) -> None:
        """Record what the store says of value: allocated to owner, or free (None)."""
        self.pending.pop(value, None)
        self.releasing.pop(value, None)
        if owner is None:
            self.used.pop(value, None)
        elif value in self.pool:
            self.used[value] = owner


class _Taken:
    """used ∪ pending ∪ reserved as one read-only collection for pick()."""

    __slots__ = ("_s",)

    def __init__(self, state: RangeState):
        self._s = state

    def __contains__(self, value: object) -> bool:
        return self._s.is_taken(value)  # type: ignore[arg-type]

    def __len__(self) -> int:
        s = self._s
        return len(s.used) + len(s.pending) + len(s.reserved)

    def __iter__(self):
        s = self._s
        return iter({*s.used, *s.pending, *s.reserved})
