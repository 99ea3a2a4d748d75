"""ClusterIP and NodePort allocation: the Service admission hook and its repair pass.

Theory of operation
-------------------
Every allocated value is a store key whose value names its owner Service (namespace, name, uid):

    /registry/ranges/serviceips/<ip>          a ClusterIP
    /registry/ranges/servicenodeports/<port>  a NodePort or healthCheckNodePort

`ServiceAllocators.admit` is the registry's admission hook for Services. On create and update
it fills in what the Service needs (spec.clusterIP/clusterIPs, ports[].nodePort,
healthCheckNodePort) and returns `Op("create", key)` for each value newly taken and
`Op("delete", key)` for each value given up; the registry commits them in the same transaction
as the Service, so a key and the Service that owns it appear and vanish together. Nothing is
ever handed out twice because the store refuses a second create of a key: if a concurrent
writer (another Service, another API server) got there first, the transaction fails with
KeyExists and the registry runs the hook again on a fresh copy of the object; the hook then
learns from the store which of its previous picks were taken and picks again. A value the user
asked for (spec.clusterIP, nodePort) is checked against the store, not memory, and refused with
422 when taken or outside the range.

Memory (`RangeState`, one per range) only makes automatic picks collide rarely: it is rebuilt
from the range keys at first use and by every repair pass, and values handed to a transaction
stay taken until the store confirms what happened to them (see `allocator`).

The repair pass (at start and every `REPAIR_INTERVAL_S`, as kube-apiserver's ipallocator and
portallocator repair controllers) lists the range keys first and the Services second — a key
created with its Service after the first list is simply not looked at — then deletes keys whose
Service is gone or no longer holds the value (compare-and-swap, so a key re-used meanwhile is
left alone), and writes missing keys for Services that hold a value without one (e.g. created
before the hook was installed). Conflicts it cannot fix are reported as Events.

LoadBalancer addresses are not allocated here but by `loadbalancer.LoadBalancerController`,
after create (they live in status, which kube treats as the controller's to write).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.allocator import RangeState
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.events import record_event
from meshnet.control.store.base import KeyExists, KeyNotFound, Op, RevisionMismatch

log = logging.getLogger("meshnet.controllers.serviceips")

SERVICES = lookup("services")
SERVICE_IPS_PREFIX = "/registry/ranges/serviceips/"
NODE_PORTS_PREFIX = "/registry/ranges/servicenodeports/"
# kube-apiserver's --repair-interval... is not a flag there; its repair loops run every 3 minutes.
REPAIR_INTERVAL_S = 180.0
# Bound the store reads one admission spends confirming earlier picks.
MAX_SETTLE_PER_ADMIT = 64
REPAIR_COMPONENT = "ipallocator-repair-controller"


# -- pure views of a Service --------------------------------------------------------------------


def service_type(svc: dict) -> str:
    return (svc.get("spec") or {}).get("type") or "ClusterIP"


def needs_cluster_ip(svc: dict) -> bool:
    return service_type(svc) != "ExternalName"


def needs_node_ports(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    kind = service_type(svc)
    if kind == "NodePort":
        return True
    return kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False


def needs_health_check_port(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return service_type(svc) == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def cluster_ips(svc: dict) -> list[str]:
    """The Service's real cluster IPs (not "" nor "None")."""
    spec = svc.get("spec") or {}
    ips = list(spec.get("clusterIPs") or ())
    if spec.get("clusterIP") and spec["clusterIP"] not in ips:
        ips.insert(0, spec["clusterIP"])
    return [ip for ip in ips if ip and ip != "None"]


def held_node_ports(svc: dict) -> set[int]:
    """NodePorts (and healthCheckNodePort) this Service holds range keys for."""
    spec = svc.get("spec") or {}
    held: set[int] = set()
    if needs_node_ports(svc):
        held.update(p["nodePort"] for p in spec.get("ports") or () if p.get("nodePort"))
    if needs_health_check_port(svc) and spec.get("healthCheckNodePort"):
        held.add(spec["healthCheckNodePort"])
    return held


def held_cluster_ips(svc: dict) -> set[str]:
    return set(cluster_ips(svc)) if needs_cluster_ip(svc) else set()


def owner_record(svc: dict) -> bytes:
    meta = svc.get("metadata") or {}
    return json.dumps({"kind": "Service", "namespace": meta.get("namespace", ""),
                       "name": meta.get("name", ""), "uid": meta.get("uid", "")},
                      separators=(",", ":")).encode()


def parse_owner(value: bytes) -> dict:
    try:
        owner = json.loads(value)
        return owner if isinstance(owner, dict) else {}
    except ValueError:
        return {}


def owned_by(owner: dict, svc: dict) -> bool:
    meta = svc.get("metadata") or {}
    if owner.get("uid") and meta.get("uid"):
        return owner["uid"] == meta["uid"]
    return (owner.get("namespace"), owner.get("name")) == (meta.get("namespace"), meta.get("name"))


# -- the hook -----------------------------------------------------------------------------------


class ServiceAllocators:
    """Admission hook + repair for ClusterIPs and NodePorts; see the module doc."""

    def __init__(self, registry, config: ControllerConfig, *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.registry = registry
        self.store = registry.store
        self.config = config
        rng = rng or random.Random()
        self.ips = RangeState("serviceips", config.service_pool, config.reserved_service_ips,
                              clock=clock, rng=rng)
        self.ports = RangeState("servicenodeports", config.node_port_pool, clock=clock, rng=rng)
        self._prefix = {id(self.ips): SERVICE_IPS_PREFIX, id(self.ports): NODE_PORTS_PREFIX}
        self._loaded = False
        self._load_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<ServiceAllocators {self.ips!r} {self.ports!r}>"

    # -- store views --

    def key(self, state: RangeState, value: int) -> str:
        return self._prefix[id(state)] + state.pool.format(value)

    async def _read_range(self, state: RangeState) -> dict[int, tuple[dict, int, str]]:
        """value -> (owner, mod_revision, key) for every key of the range (in the pool or not)."""
        kvs, _ = await self.store.list(self._prefix[id(state)])
        out: dict[int, tuple[dict, int, str]] = {}
        for kv in kvs:
            text = kv.key[len(self._prefix[id(state)]):]
            try:
                value = state.pool.parse(text)
            except ValueError:
                log.warning("ignoring range key %s: %r is not a %s value", kv.key, text,
                            state.name)
                continue
            out[value] = (parse_owner(kv.value), kv.mod_revision, kv.key)
        return out

    async def load(self) -> None:
        for state in (self.ips, self.ports):
            allocated = await self._read_range(state)
            state.load({v: o.get("uid", "") for v, (o, _, _) in allocated.items()})
        self._loaded = True
        log.debug("loaded %r", self)

    async def ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if not self._loaded:
                await self.load()

    async def _settle(self, state: RangeState, values: list[int]) -> None:
        for value in values[:MAX_SETTLE_PER_ADMIT]:
            kv = await self.store.get(self.key(state, value))
            state.settle(value, parse_owner(kv.value).get("uid", "") if kv else None)

    async def _settle_before_admit(self, uid: str) -> None:
        # Values held for this uid come from an earlier run of this hook whose transaction
        # failed (the registry runs us again) or is unknown: ask the store now.
        for state in (self.ips, self.ports):
            await self._settle(state, state.held_by(uid) + state.expired())

    # -- admission --

    async def admit(self, op: str, obj: dict | None, old: dict | None) -> list[Op]:
        await self.ensure_loaded()
        if op == "create" and obj is not None:
            return await self._admit_write(obj, None)
        if op == "update" and obj is not None and old is not None:
            # kube's patchAllocatedValues/dropTypeDependentFields already ran in validation
            # (meshnet.api.validation_service.prepare_service_update), before this hook.
            return await self._admit_write(obj, old)
        if op == "delete" and old is not None:
            ops: list[Op] = []
            for ip in held_cluster_ips(old):
                await self._release(self.ips, ip, old, ops)
            for port in held_node_ports(old):
                await self._release(self.ports, str(port), old, ops)
            return ops
        return []

    async def _admit_write(self, svc: dict, old: dict | None) -> list[Op]:
        meta = svc.get("metadata") or {}
        uid = meta.get("uid", "")
        await self._settle_before_admit(uid)
        spec = svc.setdefault("spec", {})
        ops: list[Op] = []
        causes: list[errors.Cause] = []
        before = old or {}

        # ClusterIP
        picked: set[str] = set()
        if needs_cluster_ip(svc):
            requested = spec.get("clusterIP") or ""
            if requested == "None":
                spec.setdefault("clusterIPs", ["None"])
            elif not requested:
                value = self.ips.take_next(uid)
                if value is None:
                    self._forget_holds(uid)
                    raise errors.internal(
                        f"failed to allocate a serviceIP: range is full ({self.config.service_cidr}"
                        f" has no free address); delete unused Services or widen --service-cidr")
                ip = self.ips.pool.format(value)
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                picked.add(ip)
                ops.append(Op("create", self.key(self.ips, value), owner_record(svc)))
            elif not spec.get("clusterIPs"):
                spec["clusterIPs"] = [requested]
            if not held_cluster_ips(before) and spec.get("clusterIP") not in (None, "", "None"):
                family = "IPv6" if ":" in spec["clusterIP"] else "IPv4"
                spec.setdefault("ipFamilies", [family])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        held_before = held_cluster_ips(before)
        for ip in sorted(held_cluster_ips(svc) - held_before - picked):
            await self._claim(self.ips, ip, "spec.clusterIP", svc, causes, ops)
        for ip in sorted(held_before - held_cluster_ips(svc)):
            await self._release(self.ips, ip, before, ops)

        # NodePorts
        ports = spec.get("ports") or []
        old_ports = held_node_ports(before)
        seen: set[int] = set()
        if needs_node_ports(svc):
            for i, port in enumerate(ports):
                value = port.get("nodePort")
                if value:
                    if value not in old_ports and value not in seen:
                        await self._claim(self.ports, str(value), f"spec.ports[{i}].nodePort",
                                          svc, causes, ops)
                    seen.add(value)
                    continue
                chosen = self._pick_port(uid, svc)
                port["nodePort"] = chosen
                seen.add(chosen)
                ops.append(Op("create", self.key(self.ports, chosen), owner_record(svc)))
        if needs_health_check_port(svc):
            value = spec.get("healthCheckNodePort")
            if value and value in seen:
                # kube: the health check port must not double as a traffic port.
                causes.append(errors.field_invalid("spec.healthCheckNodePort", value,
                                                   "provided port is already allocated"))
            elif value and value not in old_ports:
                await self._claim(self.ports, str(value), "spec.healthCheckNodePort", svc,
                                  causes, ops)
            elif not value:
                chosen = self._pick_port(uid, svc)
                spec["healthCheckNodePort"] = chosen
                ops.append(Op("create", self.key(self.ports, chosen), owner_record(svc)))
        if not needs_health_check_port(svc) and spec.get("healthCheckNodePort") and \
                spec["healthCheckNodePort"] == (before.get("spec") or {}).get("healthCheckNodePort"):
            # kube's dropTypeDependentFields: the port is released below, so it leaves the spec.
            del spec["healthCheckNodePort"]
        for port in sorted(old_ports - held_node_ports(svc)):
            await self._release(self.ports, str(port), before, ops)

        if causes:
            self._forget_holds(uid)
            raise errors.invalid("Service", meta.get("name", ""), causes)
        return ops

    def _pick_port(self, uid: str, svc: dict) -> int:
        value = self.ports.take_next(uid)
        if value is None:
            self._forget_holds(uid)
            raise errors.internal(
                f"failed to allocate a nodePort: range is full ({self.config.node_port_range} "
                f"has no free port); delete unused NodePort Services or widen --node-port-range")
        return value

    def _forget_holds(self, uid: str) -> None:
        """The write is refused: what this admission picked goes back at once."""
        for state in (self.ips, self.ports):
            for value in state.held_by(uid):
                state.pending.pop(value, None)

    async def _claim(self, state: RangeState, text: str, field: str, svc: dict,
                     causes: list[errors.Cause], ops: list[Op]) -> None:
        """A value the user asked for: in range and free in the store, else a cause."""
        shown: object = text if state is self.ips else int(text)
        try:
            value = state.pool.parse(text)
        except ValueError:
            causes.append(errors.field_invalid(field, shown, "must be a valid IP address"))
            return
        if value not in state.pool:
            if state is self.ips:
                causes.append(errors.field_invalid(
                    field, shown, f"provided IP is not in the valid range. The range of valid "
                                  f"IPs is {self.config.service_network}"))
            else:
                causes.append(errors.field_invalid(
                    field, shown, f"provided port is not in the valid range. The range of "
                                  f"valid ports is {state.pool.describe()}"))
            return
        key = self.key(state, value)
        kv = await self.store.get(key)
        if kv is not None:
            owner = parse_owner(kv.value)
            state.settle(value, owner.get("uid", ""))
            if not owned_by(owner, svc):
                what = "IP" if state is self.ips else "port"
                causes.append(errors.field_invalid(field, shown,
                                                   f"provided {what} is already allocated"))
            return
        state.hold(value, (svc.get("metadata") or {}).get("uid", ""))
        ops.append(Op("create", key, owner_record(svc)))

    async def _release(self, state: RangeState, text: str, svc: dict, ops: list[Op]) -> None:
        try:
            value = state.pool.parse(text)
        except ValueError:
            return
        key = self.key(state, value)
        kv = await self.store.get(key)
        if kv is None or not owned_by(parse_owner(kv.value), svc):
            return  # never allocated through us, or repaired away: nothing to give back
        state.release(value)
        ops.append(Op("delete", key, b"", kv.mod_revision))

    # -- repair --

    async def repair(self) -> dict[str, int]:
        """One repair pass (see the module doc); returns counts for logs and tests."""
        stats = {"released": 0, "restored": 0, "conflicts": 0}
        ranges = [(self.ips, await self._read_range(self.ips)),
                  (self.ports, await self._read_range(self.ports))]
        services, _ = await self.registry.list(SERVICES)
        by_uid = {(s.get("metadata") or {}).get("uid"): s for s in services}
        for state, allocated in ranges:
            holders = self._holders(state, services)
            for value, (owner, mod_rev, key) in allocated.items():
                svc = by_uid.get(owner.get("uid"))
                if svc is not None and value in {v for v, s in holders if s is svc}:
                    continue
                try:
                    await self.store.delete(key, mod_rev)
                    stats["released"] += 1
                    log.info("repair: released %s (its Service %s/%s is gone or no longer "
                             "holds it)", key, owner.get("namespace"), owner.get("name"))
                except (KeyNotFound, RevisionMismatch):
                    pass  # released or re-allocated meanwhile: not ours to touch
            for value, svc in holders:
                if value in allocated and owned_by(allocated[value][0], svc):
                    continue
                await self._restore(state, value, svc, stats)
        await self.load()
        if any(stats.values()):
            log.info("repair pass: %s", stats)
        return stats

    def _holders(self, state: RangeState, services: list[dict]) -> list[tuple[int, dict]]:
        out: list[tuple[int, dict]] = []
        for svc in services:
            texts = held_cluster_ips(svc) if state is self.ips else \
                {str(p) for p in held_node_ports(svc)}
            for text in texts:
                try:
                    out.append((state.pool.parse(text), svc))
                except ValueError:
                    continue
        return out

    async def _restore(self, state: RangeState, value: int, svc: dict,
                       stats: dict[str, int]) -> None:
        key = self.key(state, value)
        text = state.pool.format(value)
        if value not in state.pool:
            what = "ClusterIPOutOfRange" if state is self.ips else "PortOutOfRange"
            limits = self.config.service_network if state is self.ips else \
                state.pool.describe()
            await record_event(self.registry, svc, "Warning", what,
                               f"{'Cluster IP' if state is self.ips else 'Port'} {text} is not "
                               f"within the configured range {limits}; it stays reserved for "
                               f"this Service", REPAIR_COMPONENT)
        try:
            await self.store.create(key, owner_record(svc))
            stats["restored"] += 1
        except KeyExists:
            kv = await self.store.get(key)
            if kv is not None and owned_by(parse_owner(kv.value), svc):
                return  # created with the Service after our list
            stats["conflicts"] += 1
            other = parse_owner(kv.value) if kv else {}
            what = "ClusterIPAlreadyAllocated" if state is self.ips else "PortAlreadyAllocated"
            await record_event(
                self.registry, svc, "Warning", what,
                f"{'Cluster IP' if state is self.ips else 'Port'} {text} was assigned to more "
                f"than one Service (also {other.get('namespace')}/{other.get('name')}); "
                f"recreate this Service to get a new one", REPAIR_COMPONENT)


class RepairLoop:
    """Runs `ServiceAllocators.repair()` every `interval_s` until stopped."""

    def __init__(self, allocators: ServiceAllocators, interval_s: float = REPAIR_INTERVAL_S):
        self.allocators = allocators
        self.interval_s = interval_s
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"<RepairLoop every {self.interval_s:.0f}s running={self._task is not None}>"

    async def start(self) -> None:
        await self.allocators.repair()
        self._task = asyncio.create_task(self._run(), name="serviceips-repair")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.allocators.repair()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service IP/port repair pass failed; next in %.0fs",
                              self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
