"""LoadBalancer addresses from `--lb-pool`, written into `status.loadBalancer.ingress`.

Theory of operation
-------------------
This is the job a cloud provider's service controller (or MetalLB) does in kube, so it runs
after the Service is created, as a controller, and writes status — not in the admission hook,
where a Service could not be created at all while the pool is empty or exhausted. The Service
simply stays `<pending>`, with an Event saying why, until an address frees up.

An address is taken by creating `/registry/ranges/lbips/<ip>` (value: the owner Service's
namespace, name and uid) *before* it is written into the Service's status, so two Services can
never show the same address: the store refuses the second create. The key is deleted (with
compare-and-swap) only after the address has been removed from status, or when its Service is
gone. A crash between the two steps leaves a key that names its Service: the next reconcile of
that Service re-uses it, or releases it if the Service is gone or no longer a LoadBalancer.

Memory: `allocated` mirrors the range keys (value -> owner, mod_revision). It is loaded before
the first reconcile and updated by this controller's own writes; a single worker makes every
decision in order, so memory is exact while one API server runs the controller (with several,
leader election picks one; a stale view only costs a KeyExists and a reload).

Services with `spec.loadBalancerClass` belong to another implementation and are left alone.
"""

from __future__ import annotations

import ipaddress
import logging
import random

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.allocator import Pool, pick
from meshnet.control.controllers.base import Controller, Requeue, object_key, split_key
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.serviceips import owner_record, parse_owner, service_type
from meshnet.control.store.base import KeyExists, KeyNotFound, RevisionMismatch

log = logging.getLogger("meshnet.controllers.loadbalancer")

SERVICES = lookup("services")
LB_IPS_PREFIX = "/registry/ranges/lbips/"
COMPONENT = "meshnet-lb-controller"


def wants_address(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return service_type(svc) == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_ips(svc: dict) -> list[str]:
    lb = ((svc.get("status") or {}).get("loadBalancer") or {})
    return [i["ip"] for i in lb.get("ingress") or () if i.get("ip")]


class LoadBalancerController(Controller):
    name = "loadbalancer"
    workers = 1  # allocation decisions are made one at a time; see the module doc

    def __init__(self, registry, config: ControllerConfig, *, rng: random.Random | None = None):
        super().__init__(registry)
        self.config = config
        self.pool: Pool = config.lb_address_pool
        self.rng = rng or random.Random()
        self.store = registry.store
        self.allocated: dict[int, tuple[dict, int]] = {}  # value -> (owner, mod_revision)
        self.services = self.informer(SERVICES)
        self.services.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                   on_update=lambda old, new: self.enqueue(new))

    def __repr__(self) -> str:
        return (f"<LoadBalancerController pool={self.pool.describe()} "
                f"allocated={len(self.allocated)}/{self.pool.size} {self.queue!r}>")

    def key(self, value: int) -> str:
        return LB_IPS_PREFIX + self._fmt(value)

    async def load(self) -> None:
        kvs, _ = await self.store.list(LB_IPS_PREFIX)
        self.allocated = {}
        for kv in kvs:
            text = kv.key[len(LB_IPS_PREFIX):]
            value = _ip_value(text)
            if value is None:
                log.warning("ignoring range key %s: not an IP address", kv.key)
                continue
            self.allocated[value] = (parse_owner(kv.value), kv.mod_revision)

    async def prepare(self) -> None:
        await self.load()
        for owner, _ in self.allocated.values():
            # Keys whose Service is gone get no informer event: look at them once now.
            self.queue.add(f"{owner.get('namespace')}/{owner.get('name')}")

    def _owned(self, key: str) -> dict[int, tuple[dict, int]]:
        ns, name = split_key(key)
        return {v: a for v, a in self.allocated.items()
                if (a[0].get("namespace"), a[0].get("name")) == (ns, name)}

    async def reconcile(self, key: str) -> None:
        svc = self.services.get(key)
        owned = self._owned(key)
        if svc is None or not wants_address(svc):
            if svc is not None and set(ingress_ips(svc)) & {self._fmt(v) for v in owned}:
                await self._write_ingress(svc, [])
            await self._release(owned)
            return
        uid = svc["metadata"].get("uid", "")
        mine = {v: a for v, a in owned.items() if a[0].get("uid") == uid}
        await self._release({v: a for v, a in owned.items() if v not in mine})  # old incarnation

        value, fresh = await self._choose(svc, mine)
        if value is None:
            return  # an Event says why; whatever the Service had, it keeps
        ip = self._fmt(value)
        if ingress_ips(svc) != [ip]:
            await self._write_ingress(svc, [{"ip": ip}])
        if fresh:
            await record_event(self.registry, svc, "Normal", "IPAllocated",
                               f"Assigned IP [\"{ip}\"] from the LoadBalancer pool", COMPONENT)
        await self._release({v: a for v, a in mine.items() if v != value})

    def _fmt(self, value: int) -> str:
        return str(ipaddress.ip_address(value)) if not self.pool.version else \
            self.pool.format(value)

    async def _choose(self, svc: dict, mine: dict[int, tuple[dict, int]]) -> tuple[int | None, bool]:
        """(address for svc, whether it was taken just now); None when there is none (an
        Event says why)."""
        spec = svc.get("spec") or {}
        requested = spec.get("loadBalancerIP") or ""
        if requested:
            try:
                value = self.pool.parse(requested)
            except ValueError:
                value = None
            if value is None or value not in self.pool:
                await self._warn(svc, f"spec.loadBalancerIP {requested} is not in the "
                                      f"LoadBalancer pool ({self.pool.describe()}); set it to an "
                                      f"address of --lb-pool or remove it")
                return None, False
            if value in mine:
                return value, False
            if value in self.allocated:
                owner = self.allocated[value][0]
                await self._warn(svc, f"spec.loadBalancerIP {requested} is already allocated to "
                                      f"{owner.get('namespace')}/{owner.get('name')}")
                return None, False
            return (value, True) if await self._take(value, svc) else (None, False)
        if mine:
            for ip in ingress_ips(svc):
                if _ip_value(ip) in mine:
                    return _ip_value(ip), False
            return min(mine), False
        if self.pool.size == 0:
            await self._warn(svc, "no LoadBalancer address pool is configured (--lb-pool is "
                                  "empty); the Service stays <pending>")
            return None, False
        value = pick(self.pool, self.allocated.keys(), self.rng)
        if value is None:
            await self._warn(svc, f"the LoadBalancer pool is exhausted: all {self.pool.size} "
                                  f"addresses of {self.pool.describe()} are allocated; the "
                                  f"Service stays <pending> until one is released")
            return None, False
        if not await self._take(value, svc):
            raise Requeue("address taken concurrently", after_s=0)
        return value, True

    async def _take(self, value: int, svc: dict) -> bool:
        try:
            kv = await self.store.create(self.key(value), owner_record(svc))
        except KeyExists:
            await self.load()  # someone else (another API server?) has it: refresh our view
            return False
        self.allocated[value] = (parse_owner(kv.value), kv.mod_revision)
        return True

    async def _write_ingress(self, svc: dict, ingress: list[dict]) -> None:
        new = dict(svc)
        status = dict(svc.get("status") or {})
        status["loadBalancer"] = {"ingress": ingress} if ingress else {}
        new["status"] = status
        ns, name = svc["metadata"].get("namespace"), svc["metadata"]["name"]
        try:
            await self.registry.update(SERVICES, ns, name, new, subresource="status")
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                raise Requeue(f"status write: {exc.message}") from None
            raise

    async def _release(self, owned: dict[int, tuple[dict, int]]) -> None:
        released = False
        for value, (_, mod_rev) in owned.items():
            try:
                await self.store.delete(self.key(value), mod_rev)
            except KeyNotFound:
                pass
            except RevisionMismatch:
                await self.load()
                continue
            self.allocated.pop(value, None)
            released = True
        if released:
            self._kick_waiting()

    def _kick_waiting(self) -> None:
        """An address freed up: look again at Services still waiting for one."""
        for svc in self.services.list():
            if wants_address(svc) and not ingress_ips(svc):
                self.queue.add(object_key(svc))

    async def _warn(self, svc: dict, message: str) -> None:
        log.info("%s: %s", object_key(svc), message)
        await record_event(self.registry, svc, "Warning", "AllocationFailed", message, COMPONENT)


def _ip_value(text: str) -> int | None:
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        return None
