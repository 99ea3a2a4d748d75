"""Leader election over a coordination.k8s.io/v1 Lease, and each API server's identity Lease.

Theory of operation
-------------------
Any number of meshnet-apiservers share one store. Admission hooks run on every one of them
(allocation is safe through the store's transactions), but the controllers and the scheduler
must run on exactly one at a time. That one holds the Lease
`kube-system/meshnet-controller-manager`, as kube-controller-manager holds
`kube-system/kube-controller-manager` (client-go's leaderelection with a LeaseLock):

- `decide(lease, me, now)` is the whole policy and is pure: no lease, no holder, an expired
  lease (`renewTime + leaseDurationSeconds` has passed) -> ACQUIRE; held by me -> RENEW;
  held by someone else and fresh -> WAIT. It returns the spec to write.
- `LeaderElector` applies it every `renew_s`: it reads the Lease through the in-process
  Registry and writes with the resourceVersion it read (create when absent), so of two servers
  that both saw an expired lease exactly one write succeeds; the other gets 409 and stays a
  follower. A holder that cannot renew for `renew_deadline_s` (2/3 of the lease duration, as
  client-go's 10 s of 15 s) steps down *before* anyone else may take over, so two leaders never
  overlap while clocks agree.
- On a clean shutdown the holder releases the Lease (clears holderIdentity) after its
  controllers stopped, so a successor starts at once instead of after the lease duration.

Expiry is judged from the Lease's own renewTime against the local wall clock, so the servers'
clocks must agree to well within the lease duration (NTP). client-go judges from when it last
saw the record change instead; renewTime keeps the decision a pure function of the object.

`IdentityLease` is the heartbeat each API server keeps (`kube-system/apiserver-<identity>`,
labelled like kube-apiserver's identity leases); the bootstrap controller on the leader builds
the `kubernetes` Endpoints from the live ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.podutil import parse_time

log = logging.getLogger("meshnet.controllers.leader")

LEASES = lookup("leases")
LEASE_NAMESPACE = "kube-system"
LEADER_LEASE_NAME = "meshnet-controller-manager"
# client-go leaderelection defaults: LeaseDuration 15s, RenewDeadline 10s, RetryPeriod 2s.
DEFAULT_LEASE_DURATION_S = 15.0
RENEW_S = 2.0
RENEW_DEADLINE_FRACTION = 2 / 3
# kube-apiserver labels its identity leases so (k8s.io/apiserver/pkg/controlplane/apiserver).
IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
IDENTITY_LABEL_VALUE = "kube-apiserver"

ACQUIRE, RENEW, WAIT = "acquire", "renew", "wait"


def micro_time(epoch_s: float) -> str:
    """metav1.MicroTime's wire form: RFC 3339 with exactly six fractional digits."""
    whole = int(epoch_s)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + \
        f".{min(999_999, int((epoch_s - whole) * 1e6)):06d}Z"


def renew_interval_s(lease_duration_s: float) -> float:
    """RENEW_S, but at least three tries per lease duration (short test leases)."""
    return min(RENEW_S, lease_duration_s / 3)


@dataclass(frozen=True)
class LeaseView:
    """What the decision needs of a Lease."""
    holder: str = ""
    renew_time: float | None = None
    acquire_time: float | None = None
    duration_s: float = DEFAULT_LEASE_DURATION_S
    transitions: int = 0

    @classmethod
    def of(cls, lease: dict | None) -> "LeaseView | None":
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        return cls(spec.get("holderIdentity") or "", parse_time(spec.get("renewTime")),
                   parse_time(spec.get("acquireTime")),
                   float(spec.get("leaseDurationSeconds") or DEFAULT_LEASE_DURATION_S),
                   int(spec.get("leaseTransitions") or 0))

    def expires_at(self) -> float:
        return (self.renew_time or 0.0) + self.duration_s


@dataclass(frozen=True)
class Decision:
    action: str  # ACQUIRE | RENEW | WAIT
    spec: dict | None  # the Lease spec to write (None for WAIT)
    reason: str


def decide(lease: LeaseView | None, me: str, now: float,
           duration_s: float = DEFAULT_LEASE_DURATION_S) -> Decision:
    """Acquire, renew or wait; the spec to write for the first two."""
    def spec(acquired: float, transitions: int) -> dict:
        return {"holderIdentity": me, "leaseDurationSeconds": max(1, round(duration_s)),
                "acquireTime": micro_time(acquired), "renewTime": micro_time(now),
                "leaseTransitions": transitions}

    if lease is None:
        return Decision(ACQUIRE, spec(now, 0), "no lease")
    if lease.holder == me:
        return Decision(RENEW, spec(lease.acquire_time or now, lease.transitions), "held by me")
    if not lease.holder:
        return Decision(ACQUIRE, spec(now, lease.transitions + 1), "released")
    if now >= lease.expires_at():
        return Decision(ACQUIRE, spec(now, lease.transitions + 1),
                        f"{lease.holder} expired {now - lease.expires_at():.1f}s ago")
    return Decision(WAIT, None, f"held by {lease.holder} for {lease.expires_at() - now:.1f}s more")


def _lease_object(name: str, spec: dict, labels: dict | None = None,
                  resource_version: str | None = None) -> dict:
    meta: dict = {"name": name, "namespace": LEASE_NAMESPACE}
    if labels:
        meta["labels"] = labels
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": spec}


class LeaderElector:
    """Runs `decide` every renew interval; `is_leader` and `on_change(leading)` report it."""

    def __init__(self, registry, identity: str, *,
                 lease_duration_s: float = DEFAULT_LEASE_DURATION_S,
                 name: str = LEADER_LEASE_NAME, clock: Callable[[], float] = time.time):
        self.registry = registry
        self.identity = identity
        self.name = name
        self.lease_duration_s = lease_duration_s
        self.renew_s = renew_interval_s(lease_duration_s)
        self.renew_deadline_s = lease_duration_s * RENEW_DEADLINE_FRACTION
        self.clock = clock
        self.is_leader = False
        self.on_change: Callable[[bool], None] | None = None
        self._last_renew = 0.0
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        state = "leader" if self.is_leader else "follower"
        return f"<LeaderElector {LEASE_NAMESPACE}/{self.name} {self.identity} {state}>"

    def _set(self, leading: bool, why: str) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        log.info("%s %s leadership of %s/%s: %s", self.identity,
                 "acquired" if leading else "lost", LEASE_NAMESPACE, self.name, why)
        if self.on_change is not None:
            self.on_change(leading)

    async def try_once(self) -> None:
        """One election round: read, decide, write with CAS."""
        now = self.clock()
        try:
            lease = await self.registry.get(LEASES, LEASE_NAMESPACE, self.name)
        except errors.StatusError as exc:
            if exc.reason != "NotFound":
                raise
            lease = None
        decision = decide(LeaseView.of(lease), self.identity, now, self.lease_duration_s)
        if decision.action == WAIT:
            self._set(False, decision.reason)
            return
        try:
            if lease is None:
                await self.registry.create(LEASES, LEASE_NAMESPACE,
                                           _lease_object(self.name, decision.spec))
            else:
                await self.registry.update(LEASES, LEASE_NAMESPACE, self.name, _lease_object(
                    self.name, decision.spec, lease["metadata"].get("labels"),
                    lease["metadata"]["resourceVersion"]))
        except errors.StatusError as exc:
            if exc.reason in ("Conflict", "AlreadyExists"):
                self._set(False, f"another server wrote the lease first ({exc.reason})")
                return
            raise
        self._last_renew = now
        self._set(True, decision.reason)

    async def _run(self) -> None:
        while True:
            try:
                await self.try_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%r: election round failed: %s", self, exc)
            if self.is_leader and self.clock() - self._last_renew > self.renew_deadline_s:
                self._set(False, f"could not renew for {self.renew_deadline_s:.1f}s")
            await asyncio.sleep(self.renew_s)

    async def start(self) -> None:
        """First round now (so a lone server leads before it reports ready), then a loop."""
        try:
            await self.try_once()
        except Exception as exc:
            log.warning("%r: first election round failed: %s", self, exc)
        self._task = asyncio.create_task(self._run(), name=f"leader:{self.name}")

    async def stop(self) -> None:
        """Stop campaigning; the caller stops its controllers, then calls `release()`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def release(self) -> None:
        """Clear holderIdentity if we still hold the lease (CAS: never clears a successor)."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.registry.get(LEASES, LEASE_NAMESPACE, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {k: v for k, v in lease["spec"].items() if k != "holderIdentity"}
            spec["leaseDurationSeconds"] = 1
            await self.registry.update(LEASES, LEASE_NAMESPACE, self.name, {**lease,
                                                                             "spec": spec})
            log.info("%s released %s/%s", self.identity, LEASE_NAMESPACE, self.name)
        except errors.StatusError as exc:
            log.warning("%r: could not release the lease: %s", self, exc.message)


def identity_lease_name(identity: str) -> str:
    """`apiserver-<identity>` as a DNS-1123 name: `127.0.0.1:6443` -> `apiserver-127-0-0-1-6443`."""
    return "apiserver-" + re.sub(r"[^a-z0-9]+", "-", identity.lower()).strip("-")


def parse_identity(identity: str) -> tuple[str, int] | None:
    """`10.0.0.1:6443` / `[::1]:6443` -> (ip, port); None when it is not host:port."""
    host, sep, port = identity.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class IdentityLease:
    """This API server's heartbeat Lease; deleted on a clean shutdown."""

    def __init__(self, registry, identity: str, *,
                 lease_duration_s: float = DEFAULT_LEASE_DURATION_S,
                 clock: Callable[[], float] = time.time):
        self.registry = registry
        self.identity = identity
        self.name = identity_lease_name(identity)
        self.lease_duration_s = lease_duration_s
        self.renew_s = renew_interval_s(lease_duration_s)
        self.clock = clock
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"<IdentityLease {LEASE_NAMESPACE}/{self.name} {self.identity}>"

    async def renew(self) -> None:
        now = micro_time(self.clock())
        spec = {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
                "acquireTime": now, "renewTime": now}
        labels = {IDENTITY_LABEL: IDENTITY_LABEL_VALUE}
        try:
            lease = await self.registry.get(LEASES, LEASE_NAMESPACE, self.name)
        except errors.StatusError as exc:
            if exc.reason != "NotFound":
                raise
            await self.registry.create(LEASES, LEASE_NAMESPACE,
                                       _lease_object(self.name, spec, labels))
            return
        spec["acquireTime"] = lease["spec"].get("acquireTime") or now
        # Only this server writes its own lease: no resourceVersion needed.
        await self.registry.update(LEASES, LEASE_NAMESPACE, self.name,
                                   _lease_object(self.name, spec, labels))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%r: renew failed: %s", self, exc)

    async def start(self) -> None:
        await self.renew()
        self._task = asyncio.create_task(self._run(), name=f"lease:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.registry.delete(LEASES, LEASE_NAMESPACE, self.name)
        except errors.StatusError as exc:
            if exc.reason != "NotFound":
                log.warning("%r: could not delete: %s", self, exc.message)


def live_identities(leases, now: float) -> tuple[tuple[str, int, float], ...]:
    """(ip, port, expires_at) of API servers whose identity lease has not expired, sorted."""
    out = []
    for lease in leases:
        if (lease.get("metadata", {}).get("labels") or {}).get(IDENTITY_LABEL) \
                != IDENTITY_LABEL_VALUE:
            continue
        view = LeaseView.of(lease)
        parsed = parse_identity(view.holder)
        if parsed is None or view.renew_time is None or now >= view.expires_at():
            continue
        out.append((*parsed, view.expires_at()))
    return tuple(sorted(out))
