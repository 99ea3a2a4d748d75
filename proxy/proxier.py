"""The proxy's sync loop: informers -> change tracker -> compile -> diff -> apply -> publish.

Theory of operation
-------------------
Two informers (Services, Endpoints) keep trimmed views and tell the ChangeTracker which keys
changed. Nothing is programmed until both have delivered their first full list; the first
sync is then a full one (compile everything, diff against the empty table), and so is one
every `full_interval_s`. In between, a sync recompiles only the keys that changed and diffs
only their listeners, so its cost follows the size of the change, not of the cluster.

While the API server is unreachable the informers retry on their own and the last table keeps
forwarding; when they relist, what changed meanwhile arrives as ordinary changes.

Network programming latency is measured per changed key, from the moment the change reached
the proxy to the swap that publishes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.informer import Informer
from meshnet.proxy.apply import DataPlane
from meshnet.proxy.forwarding import Forwarding
from meshnet.proxy.plan import Plan, diff_table
from meshnet.proxy.table import (NodeInfo, ProxyTable, compile_service, compile_table,
                                 update_table)
from meshnet.proxy.tracker import ChangeTracker, sync_delay
from meshnet.proxy.views import endpoints_view, service_view

log = logging.getLogger("meshnet.proxy")

SERVICES = lookup("services")
ENDPOINTS = lookup("endpoints")
MIN_SYNC_INTERVAL_S = 0.02
FULL_SYNC_INTERVAL_S = 30.0
SLOW_PROGRAMMING_S = 0.1  # the programming-latency target (issue 3): worth a log line


class Proxier:
    def __init__(self, client: AsyncClient, node: NodeInfo, fwd: Forwarding,
                 dataplane: DataPlane, *, min_interval_s: float = MIN_SYNC_INTERVAL_S,
                 full_interval_s: float = FULL_SYNC_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.node = node
        self.fwd = fwd
        self.dataplane = dataplane
        self.min_interval_s = min_interval_s
        self.full_interval_s = full_interval_s
        self.clock = clock
        t = self.tracker = ChangeTracker(clock)
        self.services = Informer(client, SERVICES, transform=service_view,
                                 on_add=t.on_service_add, on_update=t.on_service_update,
                                 on_delete=t.on_service_delete)
        self.endpoints = Informer(client, ENDPOINTS, transform=endpoints_view,
                                  on_add=t.on_endpoints_add, on_update=t.on_endpoints_update,
                                  on_delete=t.on_endpoints_delete)
        self.syncs = 0
        self.last_sync = self.last_full = float("-inf")
        self.first_synced = asyncio.Event()
        self.on_first_sync: Callable[[ProxyTable], Awaitable[None]] | None = None
        # Called after each swap with the keys synced (None: a full sync); the LoadBalancer
        # announcer follows LB IPs this way, once their listeners are bound.
        self.on_synced: list[Callable[[Iterable[str] | None, dict], None]] = []

    def __repr__(self) -> str:
        return (f"<Proxier node={self.node.name} syncs={self.syncs} {self.fwd.table!r} "
                f"pending={len(self.tracker.pending)}>")

    def start_informers(self) -> None:
        """Start listing (run() does it too): a caller may overlap the lists with its set-up."""
        self.services.start()
        self.endpoints.start()

    async def stop_informers(self) -> None:
        await self.services.stop()
        await self.endpoints.stop()

    async def run(self, stop: asyncio.Event) -> None:
        informers = [self.services, self.endpoints]
        self.start_informers()
        try:
            waits = [asyncio.ensure_future(i.synced.wait()) for i in informers]
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([asyncio.gather(*waits), stopping],
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            while not stop.is_set():
                now = self.clock()
                delay = sync_delay(now=now, last_sync=self.last_sync, last_full=self.last_full,
                                   pending=bool(self.tracker.pending),
                                   min_interval_s=self.min_interval_s,
                                   full_interval_s=self.full_interval_s)
                if delay > 0:
                    await self._wait(stop, delay)
                    continue
                await self.sync(full=self.clock() >= self.last_full + self.full_interval_s)
            stopping.cancel()
        finally:
            await self.stop_informers()

    async def _wait(self, stop: asyncio.Event, delay: float) -> None:
        """Sleep for `delay`, or until a change arrives (if nothing was pending) or stop."""
        events = [asyncio.ensure_future(stop.wait())]
        if not self.tracker.pending:
            events.append(asyncio.ensure_future(self.tracker.wakeup.wait()))
        done, pending = await asyncio.wait(events, timeout=delay,
                                           return_when=asyncio.FIRST_COMPLETED)
        for f in pending:
            f.cancel()

    async def sync(self, *, full: bool = False) -> Plan:
        start = self.clock()
        changed = self.tracker.take()
        current = self.fwd.table
        services, endpoints = self.services.cache, self.endpoints.cache
        if full:
            desired = compile_table(services.values(), endpoints, self.node)
            plan = diff_table(current, desired)
            opening = set(plan.open)  # a set: a tuple made this O(n²), 8 s at 10,000 services
            missing = tuple(k for k in desired.listeners
                            if k not in self.dataplane.listeners and k not in opening)
            if missing:  # binds that failed before: retry them
                plan = Plan(plan.add_addresses, plan.remove_addresses,
                            tuple(sorted(plan.open + missing)), plan.close, plan.rerouted)
        else:
            compiled = [compile_service(services.get(k), endpoints.get(k), self.node, key=k)
                        for k in changed]
            desired = update_table(current, compiled)
            plan = diff_table(current, desired, changed)
        errors = await self.dataplane.apply_plan(plan, desired)
        swapped = self.clock()
        metrics = self.fwd.metrics
        for first_seen in changed.values():
            metrics.programming_latency.observe(max(0.0, swapped - first_seen))
        if changed and not full:
            slowest = min(changed, key=changed.get)
            waited = swapped - changed[slowest]
            if waited > SLOW_PROGRAMMING_S:
                log.warning("sync: %d changes published in %.1f ms; %s waited %.0f ms since "
                            "its change arrived", len(changed), (swapped - start) * 1000,
                            slowest, waited * 1000)
        metrics.sync_duration.observe(swapped - start)
        for _ in errors:
            metrics.sync_errors.inc("apply")
        self._log_table_errors(current, desired, None if full else changed)
        for hook in self.on_synced:
            hook(None if full else changed.keys(), services)
        if full:
            self.fwd.forget_balancers({r.balancer_key for r in desired.listeners.values()})
            self.last_full = swapped
        self.last_sync = swapped
        self.syncs += 1
        if not self.first_synced.is_set():
            self.first_synced.set()
            if self.on_first_sync is not None:
                await self.on_first_sync(desired)
            log.info("first sync: %d services, %d listeners in %.1f ms", len(desired.services),
                     len(desired.listeners), (swapped - start) * 1000)
        elif plan:
            log.info("sync: %r in %.1f ms", plan, (swapped - start) * 1000)
        return plan

    def _log_table_errors(self, current: ProxyTable, desired: ProxyTable, keys) -> None:
        for key in (desired.errors if keys is None else keys):
            problems = desired.errors.get(key)
            if problems and problems != current.errors.get(key):
                self.fwd.metrics.sync_errors.inc("invalid")
                for problem in problems:
                    log.warning("service %s: %s", key, problem)
