"""The Services every cluster has: `kubernetes` (the API server) and `kube-dns`.

- `default/kubernetes`: ClusterIP = first address of the service range, port `https` 443 -> the
  API server's port, no selector; its Endpoints (written here, since no selector means the
  endpoints controller never touches them) list the advertise address and port, as
  kube-apiserver's endpoint reconciler does. With several API servers they list every live
  one: each keeps an identity Lease in kube-system (see leader.py) and this controller, running
  on the leader only, publishes the unexpired ones (plus itself), re-checking when the next
  one would expire (kube-apiserver's `--endpoint-reconciler-type=lease`).
- `kube-system/kube-dns`: ClusterIP = 10th address of the range, ports `dns` 53/UDP, `dns-tcp`
  53/TCP, `metrics` 9153/TCP, selecting `k8s-app: kube-dns` (what kubeadm installs for CoreDNS).

Level-triggered like everything else: each is checked at start and whenever an event touches
it; a missing one is created again. The Services are only created, never overwritten — a user
may edit them (as in kube, where only the `kubernetes` Service's Endpoints are enforced).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, object_key
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.endpoints import canonical_subsets
from meshnet.control.controllers.leader import LEASE_NAMESPACE, LEASES, live_identities

log = logging.getLogger("meshnet.controllers.bootstrap")

SERVICES = lookup("services")
ENDPOINTS = lookup("endpoints")
KUBERNETES_KEY = "default/kubernetes"
KUBE_DNS_KEY = "kube-system/kube-dns"
# Queue keys are "<plural>:<namespace>/<name>": one queue serves Services and Endpoints.
SERVICE_KEYS = (KUBERNETES_KEY, KUBE_DNS_KEY)


def kubernetes_service(config: ControllerConfig) -> dict:
    ip = config.kubernetes_service_ip
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                       "targetPort": config.advertise_port}],
            "sessionAffinity": "None",
        },
    }


def kubernetes_subsets(config: ControllerConfig, leases=(), now: float = 0.0) -> list[dict]:
    """This server and every API server with a live identity lease; one subset per port."""
    by_port: dict[int, set[str]] = {config.advertise_port: {config.advertise_address}}
    for ip, port, _ in live_identities(leases, now):
        by_port.setdefault(port, set()).add(ip)
    return [{"addresses": [{"ip": ip} for ip in sorted(ips)],
             "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
            for port, ips in sorted(by_port.items())]


def next_expiry_s(leases, now: float) -> float | None:
    """Seconds until the first live identity lease expires (the Endpoints change then)."""
    expiries = [expires for _, _, expires in live_identities(leases, now)]
    return min(expiries) - now if expiries else None


def kube_dns_service(config: ControllerConfig) -> dict:
    ip = config.dns_service_ip
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                "kubernetes.io/cluster-service": "true"},
                     "annotations": {"prometheus.io/port": "9153",
                                     "prometheus.io/scrape": "true"}},
        "spec": {
            "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
            "sessionAffinity": "None",
        },
    }


class BootstrapController(Controller):
    name = "bootstrap"

    def __init__(self, registry, config: ControllerConfig, *,
                 clock: Callable[[], float] = time.time):
        super().__init__(registry)
        self.config = config
        self.clock = clock
        self.default_services = self.informer(SERVICES, "default")
        self.system_services = self.informer(SERVICES, "kube-system")
        self.default_endpoints = self.informer(ENDPOINTS, "default")
        self.leases = self.informer(LEASES, LEASE_NAMESPACE)
        self.leases.add_handlers(on_add=self._lease_event,
                                 on_update=lambda old, new: self._lease_event(new),
                                 on_delete=self._lease_event)
        for inf in (self.default_services, self.system_services):
            inf.add_handlers(on_delete=self._service_event)
        self.default_endpoints.add_handlers(on_add=self._endpoints_event,
                                            on_update=lambda old, new: self._endpoints_event(new),
                                            on_delete=self._endpoints_event)

    def _service_event(self, svc: dict) -> None:
        key = object_key(svc)
        if key in SERVICE_KEYS:
            self.queue.add(f"services:{key}")

    def _endpoints_event(self, ep: dict) -> None:
        if object_key(ep) == KUBERNETES_KEY:
            self.queue.add(f"endpoints:{KUBERNETES_KEY}")

    def _lease_event(self, lease: dict) -> None:
        self.queue.add(f"endpoints:{KUBERNETES_KEY}")

    async def prepare(self) -> None:
        for key in SERVICE_KEYS:
            self.queue.add(f"services:{key}")
        self.queue.add(f"endpoints:{KUBERNETES_KEY}")

    async def reconcile(self, key: str) -> None:
        kind, _, obj_key = key.partition(":")
        if kind == "services":
            await self._ensure_service(obj_key)
        elif kind == "endpoints":
            await self._ensure_kubernetes_endpoints()

    async def _ensure_service(self, key: str) -> None:
        cache = self.default_services if key == KUBERNETES_KEY else self.system_services
        if cache.get(key) is not None:
            return
        obj = kubernetes_service(self.config) if key == KUBERNETES_KEY \
            else kube_dns_service(self.config)
        meta = obj["metadata"]
        try:
            await self.registry.create(SERVICES, meta["namespace"], obj)
        except errors.StatusError as exc:
            if exc.reason == "AlreadyExists":
                return
            raise
        log.info("created Service %s", key)

    async def _ensure_kubernetes_endpoints(self) -> None:
        now = self.clock()
        leases = self.leases.list()
        want = kubernetes_subsets(self.config, leases, now)
        expiry = next_expiry_s(leases, now)
        if expiry is not None:  # a silent server drops out when its lease expires
            self.queue.add_after(f"endpoints:{KUBERNETES_KEY}", expiry + 0.05)
        current = self.default_endpoints.get(KUBERNETES_KEY)
        if current is None:
            try:
                await self.registry.create(ENDPOINTS, "default", {
                    "apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "namespace": "default",
                                 "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": want})
            except errors.StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
            return
        if canonical_subsets(current.get("subsets")) == canonical_subsets(want):
            return
        await self.registry.update(ENDPOINTS, "default", "kubernetes",
                                   {**current, "subsets": want})
        log.info("Endpoints default/kubernetes set to %s",
                 [(a["ip"], s["ports"][0]["port"]) for s in want for a in s["addresses"]])
