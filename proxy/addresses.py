"""The VIP interface: service addresses as /32 (/128) on a dummy link, via netlink (pyroute2).

Theory of operation
-------------------
An address on any interface is local to the whole host, so once a ClusterIP sits on the dummy
`meshnet0`, the kernel delivers packets for it to sockets bound to it — that is all a listener
needs (IPVS mode does the same with `kube-ipvs0`). The link stays down-free of routes of its
own: /32 host addresses add only a local route.

Because those addresses are host-local, the node would also answer ARP for them on its uplink
(Linux answers for any local address on any interface by default). `arp_ignore=1` (answer only
for addresses on the receiving interface) and `arp_announce=2` (use the best local source in
ARP requests) stop that, as IPVS mode and MetalLB document; the LoadBalancer announcer (later
work) puts an LB IP on the uplink of the one node that owns it.

pyroute2's synchronous IPRoute runs an event loop of its own, which cannot run inside the
proxy's; `AsyncVip` therefore drives one VipInterface on a single worker thread. Service
addresses are added and removed in batches over a raw rtnetlink socket (`rtnl.py`): through
pyroute2, one request at a time, 10,000 of them took 14 s. The kernel's own cost remains and
grows faster than linearly (each new IPv4 address walks the interface's address list): about
0.1 s for 2,500 addresses, 3 s for 10,000.

This object remembers what it added: on exit it removes only those addresses, and deletes the
link only if it created it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meshnet.proxy.errors import NetlinkError
from meshnet.proxy.rtnl import AddressSocket, describe

log = logging.getLogger("meshnet.proxy.addresses")

ARP_SYSCTLS = {"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2"}


def _iproute():
    from pyroute2 import IPRoute  # imported late: only the daemon needs netlink

    return IPRoute()


class VipInterface:
    def __init__(self, name: str = "meshnet0", *, sysctl_root: Path = Path("/proc/sys")):
        self.name = name
        self.sysctl_root = sysctl_root
        self.index = 0
        self.created = False
        self.added: set[str] = set()
        self._ipr = None
        self._rtnl: AddressSocket | None = None

    def __repr__(self) -> str:
        return f"<VipInterface {self.name} index={self.index} addresses={len(self.added)}>"

    def ensure(self) -> None:
        """Create the dummy link if missing, bring it up, set the ARP sysctls."""
        ipr = self._ipr = self._ipr or _iproute()
        try:
            self._rtnl = self._rtnl or AddressSocket()
            found = ipr.link_lookup(ifname=self.name)
            if not found:
                try:
                    ipr.link("add", ifname=self.name, kind="dummy")
                    self.created = True
                    found = ipr.link_lookup(ifname=self.name)
                except Exception as exc:
                    if getattr(exc, "code", None) != errno.EOPNOTSUPP:
                        raise
                    # A kernel without the dummy module: host addresses on `lo` deliver
                    # locally the same way, and arp_ignore keeps them off the wire.
                    log.warning("kernel has no dummy links; putting service addresses on lo")
                    self.name = "lo"
                    found = ipr.link_lookup(ifname="lo")
            self.index = found[0]
            ipr.link("set", index=self.index, state="up")
        except Exception as exc:  # pyroute2's NetlinkError and OSError
            raise NetlinkError(f"cannot set up VIP interface {self.name}: {exc} (needs "
                               f"CAP_NET_ADMIN; choose another with --vip-interface)") from None
        for key, value in ARP_SYSCTLS.items():
            path = self.sysctl_root / key
            try:
                path.write_text(value)
            except OSError as exc:
                log.warning("cannot set %s=%s: %s", key.replace("/", "."), value, exc)

    def existing(self) -> set[str]:
        """Host addresses (/32, /128) on the interface that could be ours: never loopback
        ones (with the `lo` fallback, 127.0.0.1 lives here too)."""
        try:
            listed = self._rtnl.dump(self.index)
        except OSError as exc:
            raise NetlinkError(f"cannot list the addresses on {self.name}: "
                               f"{exc.strerror or exc}") from None
        return {ip for ip, prefix in listed
                if prefix in (32, 128) and not ipaddress.ip_address(ip).is_loopback}

    def add(self, ips) -> list[str]:
        """Add host addresses (one that exists already counts as added); returns what the
        kernel refused, as messages."""
        return self._change("add", ips, ignore=errno.EEXIST)

    def remove(self, ips) -> list[str]:
        """Remove host addresses (one already gone counts as removed); returns what the
        kernel refused, as messages."""
        return self._change("del", ips, ignore=errno.EADDRNOTAVAIL)

    def _change(self, op: str, ips, *, ignore: int) -> list[str]:
        ips = list(ips)
        if not ips:
            return []
        verb, where = ("add", "to") if op == "add" else ("remove", "from")
        try:
            refused = self._rtnl.change(op, self.index, ips)
        except OSError as exc:  # the socket itself failed: nothing is known to be done
            raise NetlinkError(f"cannot {verb} {len(ips)} addresses {where} {self.name}: "
                               f"{exc.strerror or exc}") from None
        done = [ip for ip in ips if refused.get(ip, ignore) == ignore]
        if op == "add":
            self.added.update(done)
        else:
            self.added.difference_update(done)
        return [f"cannot {verb} {ip}/{128 if ':' in ip else 32} {where} {self.name}: "
                f"{describe(code)}" for ip, code in refused.items() if code != ignore]

    def remove_stale(self, keep: set[str]) -> list[str]:
        """Addresses left by an earlier run (a crash, --keep-on-exit) that no service uses."""
        stale = sorted(self.existing() - keep)
        refused = self.remove(stale)
        for message in refused:
            log.warning("%s", message)
        return sorted(set(stale) - self.existing()) if refused else stale

    def cleanup(self) -> None:
        if self._ipr is None:
            return
        try:
            if self.created:
                self._ipr.link("del", index=self.index)
            else:
                for message in self.remove(sorted(self.added)):
                    log.warning("%s", message)
        finally:
            self.added.clear()
            self._ipr.close()
            self._ipr = None
            if self._rtnl is not None:
                self._rtnl.close()
                self._rtnl = None


class AsyncVip:
    """A VipInterface driven from asyncio: every netlink call on one dedicated thread."""

    def __init__(self, vip: VipInterface):
        self.vip = vip
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")

    def __repr__(self) -> str:
        return repr(self.vip)

    @property
    def name(self) -> str:
        return self.vip.name

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def ensure(self) -> None:
        await self._call(self.vip.ensure)

    async def add(self, ips) -> list[str]:
        return await self._call(self.vip.add, ips)

    async def remove(self, ips) -> list[str]:
        return await self._call(self.vip.remove, ips)

    async def remove_stale(self, keep: set[str]) -> list[str]:
        return await self._call(self.vip.remove_stale, keep)

    def remove_stale_soon(self, keep: set[str]) -> asyncio.Future:
        """Queue the stale-address sweep now, without waiting for it (listing thousands of
        addresses and removing stale ones can take a second). Safe because every netlink
        call runs in order on the one worker thread: the sweep, queued first, lists only
        addresses added before it; an address a later sync adds is added after it."""
        return asyncio.get_running_loop().run_in_executor(self._executor,
                                                          self.vip.remove_stale, keep)

    async def cleanup(self) -> None:
        try:
            await self._call(self.vip.cleanup)
        finally:
            self._executor.shutdown(wait=False)

    async def node_addresses(self, cidrs: list[str]) -> tuple[str, ...]:
        exclude = "" if self.vip.name == "lo" else self.vip.name
        return await self._call(node_addresses, cidrs, exclude, self.vip.added)


def node_addresses(cidrs: list[str], exclude: str, vips=()) -> tuple[str, ...]:
    """The node's IPv4 addresses (all but those on the VIP interface and the VIPs
    themselves), filtered by CIDRs."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    with _iproute() as ipr:
        skip = set(ipr.link_lookup(ifname=exclude)) if exclude else set()
        found = []
        for a in ipr.get_addr(family=socket.AF_INET):
            ip = a.get_attr("IFA_ADDRESS")
            if a["index"] in skip or ip in vips:
                continue
            if not nets or any(ipaddress.ip_address(ip) in n for n in nets):
                found.append(ip)
    return tuple(sorted(set(found), key=ipaddress.ip_address))
