"""The ingress controller's I/O shell: informers -> change tracker -> coalesced sync -> publish.

Theory of operation
-------------------
Five informers (Ingresses, IngressClasses, Services, Endpoints, Secrets) keep trimmed views;
their callbacks only mark the controller dirty. `run` waits until every informer has
delivered its first full list (before that the proxy has no table and answers 503), then syncs:
`compile_routes` and `compile_certificates` (pure) build the new tables, the TLS store takes
the certificates, and one attribute assignment publishes the route table. Requests already
matched keep their route; the next one sees the new table. Syncs are coalesced: at most one
per `MIN_SYNC_INTERVAL_S`, so an Endpoints storm costs one compile, not hundreds.

After a sync, in the background: problems not reported at the previous sync become Events
(an Event that exists already, because the problem came back or we restarted, has its count
bumped), and served Ingresses whose `status.loadBalancer.ingress` is not our address get it.
Ingresses of other classes are never written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ClientError
from meshnet.client.informer import Informer
from meshnet.ingress.certs import TLSStore, check_secret, compile_certificates
from meshnet.ingress.proxy import Proxy
from meshnet.ingress.routes import CONTROLLER_NAME, Problem, RoutingConfig, compile_routes
from meshnet.ingress.views import view_endpoints, view_ingress, view_ingress_class, \
    view_secret, view_service

log = logging.getLogger("meshnet.ingress.controller")

INGRESSES = lookup("ingresses")
INGRESS_CLASSES = lookup("ingressclasses")
SERVICES = lookup("services")
ENDPOINTS = lookup("endpoints")
SECRETS = lookup("secrets")
EVENTS = lookup("events")

MIN_SYNC_INTERVAL_S = 0.05
COMPONENT = "meshnet-ingress"


class IngressController:
    def __init__(self, client: AsyncClient, proxy: Proxy, tls: TLSStore, config: RoutingConfig,
                 *, publish_address: str = "", default_certificate: str = "",
                 writer: bool = True):
        """writer: this controller writes the IngressClass, Ingress statuses and Events
        (with --workers, worker 0 only: the others watch and serve)."""
        self.client = client
        self.proxy = proxy
        self.tls = tls
        self.config = config
        self.publish_address = publish_address
        self.default_certificate = default_certificate
        self.writer = writer
        self.dirty = asyncio.Event()
        self.syncs = 0
        self._reported: set[Problem] = set()
        self._background: set[asyncio.Task] = set()

        def informer(info, transform):
            return Informer(client, info, transform=transform, on_add=self._changed,
                            on_update=self._changed, on_delete=self._changed)

        self.ingresses = informer(INGRESSES, view_ingress)
        self.classes = informer(INGRESS_CLASSES, view_ingress_class)
        self.services = informer(SERVICES, view_service)
        self.endpoints = informer(ENDPOINTS, view_endpoints)
        self.secrets = informer(SECRETS, view_secret)
        self.informers = (self.ingresses, self.classes, self.services, self.endpoints,
                          self.secrets)

    def __repr__(self) -> str:
        return f"<IngressController class={self.config.ingress_class} syncs={self.syncs}>"

    def _changed(self, *_args) -> None:
        self.dirty.set()

    @property
    def synced(self) -> bool:
        return self.syncs > 0

    async def run(self, stop: asyncio.Event) -> None:
        if self.writer:
            await self.ensure_ingress_class()
        for inf in self.informers:
            inf.start()
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
            while not stop.is_set():
                self.dirty.clear()
                self.sync()
                await asyncio.sleep(MIN_SYNC_INTERVAL_S)
                waiter = asyncio.ensure_future(self.dirty.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
        finally:
            for inf in self.informers:
                await inf.stop()
            for task in list(self._background):
                task.cancel()

    def sync(self) -> None:
        ingresses = self.ingresses.cache.values()
        table, problems = compile_routes(ingresses, self.classes.cache.values(),
                                         self.services.cache, self.endpoints.cache, self.config)
        served = sorted((self.ingresses.cache[k] for k in table.served),
                        key=lambda i: (i.created, i.namespace, i.name))
        certs, cert_problems = compile_certificates(served, self.secrets.cache)
        if self.default_certificate:
            secret = self.secrets.cache.get(self.default_certificate)
            message = check_secret(secret, self.default_certificate)
            if message:
                log.warning("--default-ssl-certificate %s: %s; using the generated one",
                            self.default_certificate, message)
            else:
                self.tls.set_default(secret.cert, secret.key)
        self.tls.update(certs)  # certificates first: a redirect must land on a working one
        self.proxy.table = table
        self.syncs += 1
        new = [p for p in problems + cert_problems if p not in self._reported]
        self._reported = set(problems + cert_problems)
        if self.writer:
            self._spawn(self._report(new))
            self._spawn(self._write_statuses([self.ingresses.cache[k] for k in table.served]))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def ensure_ingress_class(self) -> None:
        name = self.config.ingress_class
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": name}, "spec": {"controller": CONTROLLER_NAME}}
        try:
            await self.client.create(INGRESS_CLASSES, None, body)
            log.info("created IngressClass %s (controller %s)", name, CONTROLLER_NAME)
        except ApiError as exc:
            if exc.code != 409:
                log.warning("could not create IngressClass %s: %s", name, exc)
        except ClientError as exc:
            log.warning("could not create IngressClass %s: %s", name, exc)

    async def _write_statuses(self, served) -> None:
        if not self.publish_address:
            return
        want = (self.publish_address,)
        for ing in served:
            if ing.lb_ips == want:
                continue
            patch = {"status": {"loadBalancer": {"ingress": [{"ip": self.publish_address}]}}}
            try:
                await self.client.patch(INGRESSES, ing.namespace, ing.name, patch,
                                        subresource="status")
            except ClientError as exc:
                log.warning("status of Ingress %s not written: %s", ing.key, exc)

    async def _report(self, problems) -> None:
        for p in problems:
            log.warning("%s %s/%s: %s: %s", p.kind, p.namespace, p.name, p.reason, p.message)
            event = build_event(p)
            try:
                try:
                    await self.client.create(EVENTS, p.namespace, event)
                except ApiError as exc:
                    if exc.code != 409:
                        raise
                    # The same event exists (the problem came back, or we restarted): count
                    # it again, as kube's EventCorrelator does, instead of a second Event.
                    name = event["metadata"]["name"]
                    old = await self.client.get(EVENTS, p.namespace, name)
                    await self.client.patch(EVENTS, p.namespace, name, {
                        "count": int(old.get("count") or 1) + 1,
                        "lastTimestamp": event["lastTimestamp"]})
            except ClientError as exc:  # ApiError included
                log.info("event for %s/%s not recorded: %s", p.namespace, p.name, exc)


def build_event(p: Problem, now: float | None = None) -> dict:
    """A core/v1 Event; the name is a digest of what makes it "the same" event, as kube's
    EventCorrelator keys them, so a restart does not record it twice."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None
                                                            else time.time()))
    digest = hashlib.sha256("\0".join((p.kind, p.namespace, p.name, p.uid, p.reason,
                                       p.message)).encode()).hexdigest()[:16]
    involved = p.involved()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{p.name[:236]}.{digest}", "namespace": p.namespace},
        "involvedObject": {"apiVersion": involved["apiVersion"], "kind": p.kind,
                           "namespace": p.namespace, "name": p.name, "uid": p.uid},
        "reason": p.reason, "message": p.message[:1024], "type": p.type,
        "source": {"component": COMPONENT}, "firstTimestamp": stamp, "lastTimestamp": stamp,
        "count": 1, "reportingComponent": COMPONENT, "reportingInstance": "",
    }
