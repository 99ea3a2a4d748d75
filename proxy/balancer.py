"""Choosing an endpoint for a new connection. Pure: the clock and the randomness are injected.

Theory of operation
-------------------
One `Balancer` per (ServicePortName, scope) lives across table swaps, so round-robin position,
connection counts, affinity and backoff survive endpoint changes. It is handed the route's
endpoints on every pick and notices when they changed (a new tuple): it then reshuffles — each
node starts its rotation somewhere else, so N proxies do not all hit the first backend first
(kube-proxy's userspace LoadBalancerRR shuffles for the same reason) — and forgets state of
endpoints that are gone.

`candidates()` returns every endpoint in the order to try: the affinity endpoint of the client
first (sessionAffinity: ClientIP, while not expired), then by policy — round robin from the
rotation pointer, or least connections (ties in rotation order) — and endpoints in passive-
health backoff last, as a last resort rather than a refusal. The caller tries them in order
within its retry budget and reports back with `connected`, `failed` and `released`.

Backoff after a failed connect doubles per consecutive failure from BACKOFF_MIN_S to
BACKOFF_MAX_S and is cleared by a successful connect (Envoy's outlier detection, much reduced).
"""

from __future__ import annotations

import random
from meshnet.proxy.views import LEAST_CONN, EndpointView

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
# Forget expired affinity entries once the table holds this many (bounded memory per service).
AFFINITY_SWEEP_AT = 4096


class Balancer:
    def __init__(self, rng: random.Random | None = None, *,
                 backoff_min_s: float = BACKOFF_MIN_S, backoff_max_s: float = BACKOFF_MAX_S):
        self.rng = rng or random.Random()
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.endpoints: tuple[EndpointView, ...] = ()
        self.order: list[EndpointView] = []
        self.next = 0
        self.conns: dict[EndpointView, int] = {}
        self.affinity: dict[str, tuple[EndpointView, float]] = {}  # client ip -> (ep, last use)
        self.failures: dict[EndpointView, tuple[int, float]] = {}  # ep -> (count, until)

    def __repr__(self) -> str:
        return (f"<Balancer endpoints={len(self.endpoints)} conns={sum(self.conns.values())} "
                f"affinity={len(self.affinity)} backoff={len(self.failures)}>")

    def _refresh(self, endpoints: tuple[EndpointView, ...]) -> None:
        if endpoints == self.endpoints:
            self.endpoints = endpoints  # the same content: keep the rotation
            return
        self.endpoints = endpoints
        alive = set(endpoints)
        self.order = list(endpoints)
        self.rng.shuffle(self.order)
        self.next = 0
        self.conns = {e: n for e, n in self.conns.items() if e in alive or n > 0}
        self.affinity = {c: v for c, v in self.affinity.items() if v[0] in alive}
        self.failures = {e: v for e, v in self.failures.items() if e in alive}

    def _healthy(self, ep: EndpointView, now: float) -> bool:
        failure = self.failures.get(ep)
        return failure is None or failure[1] <= now

    def candidates(self, endpoints: tuple[EndpointView, ...], *, policy: str,
                   affinity_timeout_s: float, client_ip: str, now: float
                   ) -> list[EndpointView]:
        """All endpoints in the order to try them; advances the rotation by one."""
        if endpoints is not self.endpoints:  # (the same tuple: nothing to refresh)
            self._refresh(endpoints)
        order = self.order
        n = len(order)
        if not n:
            return []
        start = self.next % n
        self.next = (start + 1) % n
        rotation = order[start:] + order[:start] if start else order.copy()
        if policy != LEAST_CONN and not affinity_timeout_s and not self.failures:
            return rotation  # the common case: plain round robin, nobody backing off
        if policy == LEAST_CONN:
            rotation.sort(key=lambda e: self.conns.get(e, 0))  # stable: ties keep rotation
        first: list[EndpointView] = []
        if affinity_timeout_s:
            pinned = self.affinity.get(client_ip)
            if pinned is not None and now - pinned[1] < affinity_timeout_s \
                    and self._healthy(pinned[0], now):
                first = [pinned[0]]
                rotation.remove(pinned[0])
        healthy = [e for e in rotation if self._healthy(e, now)]
        backing_off = [e for e in rotation if not self._healthy(e, now)]
        backing_off.sort(key=lambda e: self.failures[e][1])  # soonest to recover first
        return first + healthy + backing_off

    def connected(self, ep: EndpointView, *, client_ip: str, now: float,
                  affinity_timeout_s: float) -> None:
        self.conns[ep] = self.conns.get(ep, 0) + 1
        if self.failures:
            self.failures.pop(ep, None)
        if affinity_timeout_s:
            self.affinity[client_ip] = (ep, now)
            if len(self.affinity) >= AFFINITY_SWEEP_AT:
                self.expire(now, affinity_timeout_s)

    def released(self, ep: EndpointView) -> None:
        conns = self.conns
        n = conns.get(ep, 0) - 1
        if n > 0:
            conns[ep] = n
        elif ep in self.endpoints:
            conns[ep] = 0
        else:
            conns.pop(ep, None)

    def failed(self, ep: EndpointView, *, now: float) -> None:
        count = self.failures.get(ep, (0, 0.0))[0] + 1
        delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** (count - 1))
        self.failures[ep] = (count, now + delay)
        for client, (pinned, _) in list(self.affinity.items()):
            if pinned == ep:
                del self.affinity[client]

    def expire(self, now: float, affinity_timeout_s: float) -> None:
        self.affinity = {c: v for c, v in self.affinity.items()
                         if now - v[1] < affinity_timeout_s}

