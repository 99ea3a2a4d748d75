"""The LoadBalancer announcer: this node's proxy lease, and its share of LB IPs on the uplink.

Theory of operation
-------------------
The I/O shell around `announce.py`. Two informers (Nodes; this kind of proxy's Leases) and the
proxier's Service cache feed it; after every change, and when a watched lease is due to
expire, it recomputes the IPs this node must announce and applies the difference: an IP it
takes over is added as a /32 on the uplink (the kernel then answers ARP for it) and announced
with gratuitous ARP, now and again 1 s and 2 s later: a client that had no neighbour entry
yet ignores the first one (arp_accept=0), and may then have resolved the IP to a node that
announced it a moment earlier (at a cold start, a proxy that has not yet seen the other
proxies' leases announces alone until it does); an IP it gives up is removed from the uplink
(it stays on the VIP interface, where `arp_ignore` hides it).

A renew loop keeps the Lease `kube-node-lease/meshnet-proxy-<node>` fresh. Stopping withdraws
every announcement first and then deletes the lease, so the other proxies take over at once
rather than after a lease duration.

LB IPs are taken from the proxier's Service views after each sync (`services_changed`), so an
IP is announced only once its listener is bound, and the cost per sync follows the change.

Netlink (pyroute2) and the packet socket run on one worker thread: pyroute2's IPRoute cannot
run inside the proxy's event loop. Nothing here is needed for forwarding: a failure is logged
and retried on the next evaluation, never raised into the proxy.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Mapping

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ClientError
from meshnet.client.informer import Informer
from meshnet.proxy.announce import (LEASE_DURATION_S, LEASE_LABEL, LEASE_NAMESPACE,
                                    RENEW_INTERVAL_S, Observed, announced, candidates,
                                    garp_frames, lease_body, lease_name, lease_view,
                                    live_nodes, next_expiry, node_view, observe,
                                    pick_interface)
from meshnet.proxy.forwarding import ProxyMetrics
from meshnet.proxy.views import ServiceView

log = logging.getLogger("meshnet.proxy.announcer")

NODES = lookup("nodes")
LEASES = lookup("leases")
NAMESPACES = lookup("namespaces")
GARP_REPEAT_S = (1.0, 2.0)  # after the first one; see the module doc
RETRY_S = 1.0  # after a failed netlink call


def _iproute():
    from pyroute2 import IPRoute  # imported late: only the daemon needs netlink

    return IPRoute()


def micro_time(wall: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    stamp = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Uplink:
    """Netlink and packet-socket work for the announcer; every method runs on one thread."""

    def __init__(self, interface: str = ""):
        self.interface = interface  # "" : choose per IP from the routes

    def __repr__(self) -> str:
        return f"<Uplink {self.interface or 'auto'}>"

    def choose(self, ip: str) -> str:
        if self.interface:
            return self.interface
        with _iproute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            connected, default = [], ""
            for r in ipr.get_routes(family=socket.AF_INET, table=254):
                ifname = names.get(r.get_attr("RTA_OIF"), "")
                if not ifname or ifname == "lo":
                    continue
                if r["dst_len"] == 0:
                    default = default or ifname
                elif r["scope"] == 253:  # RT_SCOPE_LINK: an on-link (connected) network
                    connected.append((f"{r.get_attr('RTA_DST')}/{r['dst_len']}", ifname))
        return pick_interface(ip, connected, default)

    def existing(self, ips: set[str]) -> dict[str, str]:
        """Which of `ips` sit as /32 on an interface other than lo (left by an earlier run)."""
        found = {}
        with _iproute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for a in ipr.get_addr(family=socket.AF_INET):
                ip, ifname = a.get_attr("IFA_ADDRESS"), names.get(a["index"], "")
                if a["prefixlen"] == 32 and ip in ips and ifname not in ("lo", "meshnet0"):
                    found[ip] = ifname
        return found

    def add(self, ip: str, ifname: str) -> None:
        with _iproute() as ipr:
            index = ipr.link_lookup(ifname=ifname)
            if not index:
                raise OSError(f"no interface {ifname!r} to announce {ip} on")
            try:
                ipr.addr("add", index=index[0], address=ip, prefixlen=32)
            except Exception as exc:
                if "exists" not in str(exc).lower():
                    raise
        self.send_garp(ip, ifname)

    def remove(self, ip: str, ifname: str) -> None:
        with _iproute() as ipr:
            index = ipr.link_lookup(ifname=ifname)
            if not index:
                return  # the interface is gone, and the address with it
            try:
                ipr.addr("del", index=index[0], address=ip, prefixlen=32)
            except Exception as exc:
                if "cannot assign" not in str(exc).lower():
                    raise

    def send_garp(self, ip: str, ifname: str) -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((ifname, 0))
            mac = sock.getsockname()[4][:6]
            for frame in garp_frames(mac, ip):
                sock.send(frame)


class Announcer:
    def __init__(self, client: AsyncClient, node_name: str, *, uplink: Uplink | None = None,
                 lease_duration_s: int = LEASE_DURATION_S,
                 renew_interval_s: float = RENEW_INTERVAL_S,
                 metrics: ProxyMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.client = client
        self.metrics = metrics or ProxyMetrics()
        self.me = node_name
        self.uplink = uplink or Uplink()
        self.lease_duration_s = lease_duration_s
        self.renew_interval_s = renew_interval_s
        self.clock = clock
        self.wall = wall
        self.observed: dict[str, Observed] = {}
        self.lb_ips: dict[str, tuple[str, ...]] = {}  # service key -> its LB IPs
        self.current: dict[str, str] = {}  # announced IP -> interface
        self.last_renewed = float("-inf")
        self.wakeup = asyncio.Event()
        self._adopted = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="announce")
        self._garp_tasks: set[asyncio.Task] = set()
        self.nodes = Informer(client, NODES, transform=node_view, on_add=self._changed,
                              on_update=self._changed, on_delete=self._changed)
        self.leases = Informer(client, LEASES, namespace=LEASE_NAMESPACE,
                               label_selector="=".join(LEASE_LABEL), transform=lease_view,
                               on_add=self.on_lease_add, on_update=self.on_lease_update,
                               on_delete=self.on_lease_delete)

    def __repr__(self) -> str:
        return (f"<Announcer {self.me} announcing={sorted(self.current)} "
                f"live={sorted(live_nodes(self.observed, self.clock()))}>")

    # Informer handlers: record, nothing else.
    def _changed(self, *_args) -> None:
        self.wakeup.set()

    def on_lease_add(self, key, lease) -> None:
        self.observed[lease.node] = observe(self.observed.get(lease.node), lease, self.clock())
        self.wakeup.set()

    def on_lease_update(self, key, old, lease) -> None:
        self.on_lease_add(key, lease)

    def on_lease_delete(self, key, lease) -> None:
        self.observed.pop(lease.node, None)
        self.wakeup.set()

    def services_changed(self, keys: Iterable[str] | None,
                         services: Mapping[str, ServiceView]) -> None:
        """After a proxier sync: these services' LB IPs (None: all services) are now bound."""
        if keys is None:
            self.lb_ips = {k: s.lb_ips for k, s in services.items() if s.lb_ips and s.proxied}
            self.wakeup.set()
            return
        for key in keys:
            svc = services.get(key)
            ips = svc.lb_ips if svc is not None and svc.proxied else ()
            if ips != self.lb_ips.get(key, ()):
                if ips:
                    self.lb_ips[key] = ips
                else:
                    self.lb_ips.pop(key, None)
                self.wakeup.set()

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Announce until `stop`; `ready` (the proxier's first sync) gates the first look."""
        informers = [self.nodes, self.leases]
        for inf in informers:
            inf.start()
        renew = asyncio.create_task(self._renew_loop(stop), name="lease-renew")
        try:
            gates = [i.synced.wait() for i in informers] + ([ready.wait()] if ready else [])
            await _until(stop, asyncio.gather(*gates))
            while not stop.is_set():
                self.wakeup.clear()
                wait_s = await self.evaluate()
                await _until(stop, self.wakeup.wait(), timeout=wait_s)
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            for inf in informers:
                await inf.stop()
            await self.withdraw_all()
            await self._delete_lease()
            for task in self._garp_tasks:
                task.cancel()
            self._executor.shutdown(wait=False)

    def desired(self, now: float) -> frozenset[str]:
        if now - self.last_renewed >= self.lease_duration_s:
            return frozenset()  # our lease may have expired for the others: stand down
        nodes = candidates(self.nodes.cache.values(), live_nodes(self.observed, now))
        self.metrics.lb_candidates.set(value=len(nodes))
        all_ips = {ip for ips in self.lb_ips.values() for ip in ips}
        return announced(all_ips, nodes, self.me)

    async def evaluate(self) -> float | None:
        """Apply the difference once; returns how long until something may change by itself
        (a lease expiring), or None."""
        now = self.clock()
        want = self.desired(now)
        if not self._adopted:  # addresses an earlier run left on an uplink
            all_ips = {ip for ips in self.lb_ips.values() for ip in ips}
            try:
                self.current.update(await self._call(self.uplink.existing, all_ips))
                self._adopted = True
            except OSError as exc:
                log.warning("cannot read uplink addresses: %s", exc)
        failed = False
        for ip in sorted(set(self.current) - want):
            failed |= not await self._withdraw(ip)
        for ip in sorted(want - set(self.current)):
            failed |= not await self._announce(ip)
        self.metrics.lb_announced.set(value=len(self.current))
        times = [t - now for t in (next_expiry(self.observed, now),
                                   self.last_renewed + self.lease_duration_s) if t and t > now]
        if failed:
            times.append(RETRY_S)
        return max(0.0, min(times)) + 0.001 if times else None

    async def _announce(self, ip: str) -> bool:
        try:
            ifname = await self._call(self.uplink.choose, ip)
            if not ifname:
                log.warning("cannot announce %s: no interface has a route to it (set "
                            "--lb-interface)", ip)
                return False
            await self._call(self.uplink.add, ip, ifname)
        except Exception as exc:  # pyroute2's NetlinkError and OSError
            log.warning("cannot announce %s: %s", ip, exc)
            return False
        self.current[ip] = ifname
        log.info("announcing LoadBalancer IP %s on %s", ip, ifname)
        task = asyncio.create_task(self._garp_again(ip, ifname))
        self._garp_tasks.add(task)
        task.add_done_callback(self._garp_tasks.discard)
        return True

    async def _garp_again(self, ip: str, ifname: str) -> None:
        waited = 0.0
        for at in GARP_REPEAT_S:
            await asyncio.sleep(at - waited)
            waited = at
            if self.current.get(ip) != ifname:
                return
            try:
                await self._call(self.uplink.send_garp, ip, ifname)
            except OSError as exc:
                log.warning("gratuitous ARP for %s on %s: %s", ip, ifname, exc)

    async def _withdraw(self, ip: str) -> bool:
        ifname = self.current[ip]
        try:
            await self._call(self.uplink.remove, ip, ifname)
        except Exception as exc:
            log.warning("cannot withdraw %s from %s: %s", ip, ifname, exc)
            return False
        del self.current[ip]
        log.info("withdrew LoadBalancer IP %s from %s", ip, ifname)
        return True

    async def withdraw_all(self) -> None:
        for ip in sorted(self.current):
            await self._withdraw(ip)

    # -- the lease -------------------------------------------------------------------------

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        healthy = True
        while not stop.is_set():
            started = self.clock()
            try:
                await self._renew()
                self.last_renewed = started
                if not healthy:
                    log.info("lease %s renewed again", lease_name(self.me))
                healthy = True
            except (ApiError, ClientError, OSError) as exc:
                if healthy:
                    log.warning("cannot renew lease %s/%s: %s", LEASE_NAMESPACE,
                                lease_name(self.me), exc)
                healthy = False
            await _until(stop, asyncio.sleep(self.renew_interval_s))

    async def _renew(self) -> None:
        body = lease_body(self.me, micro_time(self.wall()), self.lease_duration_s)
        try:
            await self.client.patch(LEASES, LEASE_NAMESPACE, lease_name(self.me),
                                    {"spec": body["spec"]})
            return
        except ApiError as exc:
            if exc.code != 404:
                raise
        try:
            await self.client.create(LEASES, LEASE_NAMESPACE, body)
        except ApiError as exc:
            if exc.code != 404:
                raise
            # The namespace is missing (a fresh cluster): create it, then the lease.
            try:
                await self.client.create(NAMESPACES, None, {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": LEASE_NAMESPACE}})
            except ApiError as exc2:
                if exc2.code != 409:
                    raise
            await self.client.create(LEASES, LEASE_NAMESPACE, body)

    async def _delete_lease(self) -> None:
        try:
            await asyncio.wait_for(self.client.delete(LEASES, LEASE_NAMESPACE,
                                                      lease_name(self.me)), 2.0)
        except (ApiError, ClientError, OSError, asyncio.TimeoutError) as exc:
            log.debug("lease %s not deleted: %s", lease_name(self.me), exc)

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


async def _until(stop: asyncio.Event, aw, timeout: float | None = None) -> None:
    """Wait for `aw`, `stop` or the timeout, whichever comes first."""
    main = asyncio.ensure_future(aw)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([main, stopping], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (main, stopping):
            f.cancel()
        await asyncio.gather(main, stopping, return_exceptions=True)
