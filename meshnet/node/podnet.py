"""The pod network, programmed with pyroute2 in the node's network namespace.

Theory of operation
-------------------
One Linux bridge `mn-br0` holds the podCIDR's first address (every pod's default gateway)
and a fixed hardware address (`bridge_mac`), so the gateway's MAC never moves with its ports.
Each pod gets a network namespace `mnpod-<uid>` (under /run/netns, so `nsenter`/`ip netns`
find it and `/etc/netns/<name>/resolv.conf` is applied), a veth pair `mnv<uid>` (bridge port) /
`eth0` (in the pod) with its IP, `lo` up and a default route via the bridge. Other nodes'
podCIDRs are routed host-gw style via their InternalIP; those routes carry protocol
ROUTE_PROTO, which is how the agent finds (and removes) exactly the routes it made and never
anyone else's.

Cost: a new pod is three netlink round trips and no process (~2 ms of CPU; it was ~35 ms with
pyroute2's own netns support, which forks a helper process per socket and per `netns.create`,
and ~6 ms through `IPRoute`, whose requests each run an asyncio loop). Everything goes through
`rtnl` (pyroute2's message classes on a plain socket; not `IPRoute`, whose import alone is
~11 MiB more in the agent). Every call runs on ONE
thread of the network's own (`await net.run(net.setup_pod, ...)`), which keeps long-lived
netlink sockets in the node's namespace. A pod's namespace is entered by that thread alone:
`unshare(NEWNET)` (new pod) or `setns()` (existing one), open a netlink socket there (a socket
stays in the namespace it was made in), then `setns()` straight back. A fresh pod is wired with
`rtnl`'s batched requests: the veth (its bridge port up, `eth0` in the pod) from the node,
then `lo` up, the address, `eth0` up and the default route in one send from the pod. A pod
namespace that exists already (a docker sandbox, a half-built pod) looks before it acts. Invariant: the thread is back in the node's namespace whenever it is not
inside `_pod_socket`; if it could not get back, the thread is retired and the next call gets a
fresh one.

All operations are idempotent (`setup_pod` on a half-built pod finishes it; `teardown_pod` on a
missing one does nothing), because they run again after an agent restart.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from meshnet.node import rtnl  # before any pyroute2 import: see rtnl's docstring
from meshnet.node.errors import NetworkError
from meshnet.node.netconfig import (BRIDGE, ETC_NETNS, NETNS_PREFIX, NETNS_RUN_DIR,
                                    VETH_PREFIX, Route, host_veth_name, pod_netns_name)
from meshnet.node.rtnl import NetlinkError, Rtnl
from pyroute2 import config as pyroute2_config, netns

log = logging.getLogger("meshnet.agent.podnet")

# pyroute2 enters a namespace from a forked child, and stops it with SIGTERM. The child inherits
# the event loop's signal handlers (and their wakeup fd), so without this the agent would read
# its helper's SIGTERM as its own and shut down. Children get the default dispositions instead.
# (podnet itself no longer forks; other pyroute2 users in the agent may.)
pyroute2_config.disable_mp_signal = True

ROUTE_PROTO = 77  # an unassigned rtnetlink protocol number: "made by meshnet-agent"
CLONE_NEWNET = 0x40000000
LOOPBACK_INDEX = 1  # `lo` is ifindex 1 in every network namespace

_libc = ctypes.CDLL(None, use_errno=True)


def _wrap(what: str):
    def deco(fn):
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (NetlinkError, OSError) as exc:
                raise NetworkError(f"{what}: {exc}") from None
        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner
    return deco


class _Homeless(Exception):
    """The netlink thread could not return to the node's namespace."""


def bridge_mac(gateway: str) -> str:
    """The bridge's hardware address: 0a:58 and the gateway's four bytes (locally
    administered, unicast; distinct per node as podCIDRs are; ovn-kubernetes' convention)."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(gateway).packed)


class PodNetwork:
    def __init__(self, pod_cidr: str, etc_netns: Path = ETC_NETNS,
                 netns_dir: Path = NETNS_RUN_DIR):
        self.network = ipaddress.ip_network(pod_cidr, strict=False)
        self.gateway = str(self.network.network_address + 1)
        self.prefixlen = self.network.prefixlen
        self.etc_netns = etc_netns
        self.netns_dir = netns_dir
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="podnet")
        self._nl: Rtnl | None = None  # the node namespace's socket, made on the thread
        self._home = -1                   # fd of the node namespace, for setns() back
        self._bridge = 0                  # ifindex of mn-br0, once known

    def __repr__(self) -> str:
        return f"<PodNetwork {self.network} via {BRIDGE} {self.gateway}>"

    async def run(self, fn, *args):
        """Run one of the methods below on the network's thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except _Homeless as exc:
            # That thread is stuck in a pod's namespace: never use it again.
            self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="podnet")
            self._nl, self._home = None, -1
            raise NetworkError(str(exc)) from None

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None
        self._pool.shutdown(wait=True)
        if self._home >= 0:
            os.close(self._home)
            self._home = -1

    def _node(self) -> Rtnl:
        if self._nl is None:
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self._nl = Rtnl()
        return self._nl

    def _pod_socket(self, path: Path, create: bool, make=Rtnl):
        """`make()` (a netlink socket) run inside the pod's namespace, where the socket stays;
        `create` makes the namespace first (and binds it at `path`, as `ip netns add`)."""
        self._node()
        if create:
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"unshare(CLONE_NEWNET) for {path.name}")
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {path}")
            finally:
                os.close(fd)
        try:
            if create:
                netns.attach(str(path), "thread-self")  # a file bind-mounted to our namespace
            return make()
        finally:
            if _libc.setns(self._home, CLONE_NEWNET) != 0:
                raise _Homeless(f"cannot return to the node namespace from {path.name}: "
                                f"{os.strerror(ctypes.get_errno())}")

    @_wrap("setting up the pod bridge " + BRIDGE)
    def ensure_bridge(self) -> None:
        node = self._node()
        index = node.find_link(BRIDGE)
        if index is None:
            node.request(rtnl.bridge_add(BRIDGE))
            index = node.link_index(BRIDGE)
        if self.gateway not in {a for _i, a, _s in node.addresses(index)}:
            node.request(rtnl.addr_add(index, self.gateway, self.prefixlen))
        # A bridge whose address nobody set takes the lowest of its ports' addresses, so it
        # changes when a pod's veth comes or goes; the other pods' ARP entries for the gateway
        # then point nowhere until they expire (~30 s without the cluster DNS, the proxy,
        # other nodes). A fixed address, as the CNI bridge plugin sets, never moves.
        node.request(rtnl.link_set(index, mac=bridge_mac(self.gateway)))
        self._bridge = index
        # Routing between pods on other nodes needs forwarding in *this* namespace (the node's).
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    @_wrap("deleting the pod bridge " + BRIDGE)
    def remove_bridge(self) -> None:
        node = self._node()
        index = node.find_link(BRIDGE)
        if index is not None:
            node.request(rtnl.link_del(index))
        self._bridge = 0

    def setup_pod(self, uid: str, ip: str, resolv_conf: str) -> str:
        """Create (or finish) the pod's namespace and veth; returns the netns name."""
        name = pod_netns_name(uid)
        path = self.netns_dir / name
        try:
            self._write_resolv(name, resolv_conf)
            if not path.exists():  # the common case, in three round trips and no lookups
                pod = self._pod_socket(path, create=True, make=Rtnl)
                try:
                    self._wire_fresh(pod, path, host_veth_name(uid), ip)
                finally:
                    pod.close()
            else:  # a sandbox (docker) or a half-built pod: look at what is there first
                pod = self._pod_socket(path, create=False)
                try:
                    self._wire(pod, path, host_veth_name(uid), ip)
                finally:
                    pod.close()
        except (NetlinkError, OSError) as exc:
            self._bridge = 0  # looked up again next time (it may be what went wrong)
            raise NetworkError(f"pod network for {name} ({ip}): {exc}") from None
        return name

    def _bridge_index(self) -> int:
        if not self._bridge:
            found = self._node().find_link(BRIDGE)
            if found is None:
                raise NetworkError(f"bridge {BRIDGE} is missing")
            self._bridge = found
        return self._bridge

    def _add_veth(self, path: Path, veth: str) -> None:
        """The pair, its bridge port up, `eth0` in the pod's namespace: one request."""
        with open(path, "rb") as ns:
            add = partial(rtnl.veth_add, veth, self._bridge_index(), "eth0", ns.fileno())
            try:
                self._node().request(add())
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
                self._delete_veth(veth)  # an earlier namespace of this pod, still pinned
                self._node().request(add())

    def _wire_fresh(self, pod: Rtnl, path: Path, veth: str, ip: str) -> None:
        self._add_veth(path, veth)
        eth0 = pod.link_index("eth0")
        pod.request(rtnl.link_up(LOOPBACK_INDEX), rtnl.addr_add(eth0, ip, self.prefixlen),
                    rtnl.link_up(eth0), rtnl.default_route(self.gateway))

    def _wire(self, pod: Rtnl, path: Path, veth: str, ip: str) -> None:
        host = self._node().find_link(veth)
        if host is not None:
            self._node().request(rtnl.link_set(host, master=self._bridge_index()))
        else:
            stale = pod.find_link("eth0")
            if stale is not None:
                pod.request(rtnl.link_del(stale))  # a half-built earlier attempt
            self._add_veth(path, veth)
        pod.request(rtnl.link_up(LOOPBACK_INDEX))
        eth0 = pod.link_index("eth0")
        have = {a for _i, a, _s in pod.addresses(eth0)}
        for stale in have - {ip}:
            pod.request(rtnl.addr_del(eth0, stale, self.prefixlen))
        if ip not in have:
            pod.request(rtnl.addr_add(eth0, ip, self.prefixlen))
        pod.request(rtnl.link_up(eth0))
        try:
            pod.request(rtnl.default_route(self.gateway))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def teardown_pod(self, uid: str, *, delete_veth: bool = False) -> None:
        """Unmount the pod's namespace name. Its last process gone, the kernel destroys the
        namespace and the veth pair with it, batched in its own worker: deleting the veth
        here costs ~30 ms inside RTNL per pod (an RCU grace period), which stalls every
        other pod's setup meanwhile. `delete_veth` deletes it at once (after an agent restart,
        when something unknown may still pin the namespace)."""
        name = pod_netns_name(uid)
        if delete_veth:
            self._delete_veth(host_veth_name(uid))
        path = self.netns_dir / name
        if path.exists():
            try:
                netns.remove(str(path))
            except OSError as exc:
                log.warning("removing netns %s: %s", name, exc)
            # A name whose mount died with an earlier agent's mount namespace is a plain file.
            path.unlink(missing_ok=True)
        shutil.rmtree(self.etc_netns / name, ignore_errors=True)

    def _delete_veth(self, veth: str) -> None:
        try:
            node = self._node()
            index = node.find_link(veth)
            if index is not None:
                node.request(rtnl.link_del(index))  # takes the pod's eth0 with it
        except NetlinkError as exc:
            log.warning("deleting %s: %s", veth, exc)

    def pod_veths(self) -> list[str]:
        """The pods' veths still on the bridge (namespaces the kernel has yet to destroy)."""
        return [name for _index, name in self._node().links() if name.startswith(VETH_PREFIX)]

    def _write_resolv(self, name: str, text: str) -> None:
        d = self.etc_netns / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(text)

    # -- host-gw routes -----------------------------------------------------------------------

    @_wrap("reading pod routes")
    def current_routes(self) -> frozenset[Route]:
        return frozenset(Route(dst, gateway) for dst, gateway, proto in self._node().routes()
                         if proto == ROUTE_PROTO)

    def apply_routes(self, delete: list[Route], add: list[Route]) -> list[str]:
        """Carry out a route plan; returns one error text per route that failed."""
        failures = []
        node = self._node()
        for r in delete:
            try:
                node.request(rtnl.route("del", r.dst, r.gateway, ROUTE_PROTO))
            except NetlinkError as exc:
                if exc.code != errno.ESRCH:
                    failures.append(f"delete {r}: {exc}")
        for r in add:
            try:
                node.request(rtnl.route("replace", r.dst, r.gateway, ROUTE_PROTO))
            except NetlinkError as exc:
                failures.append(f"route {r.dst} via {r.gateway} (node {r.node}): {exc}; "
                                f"host-gw needs the node's InternalIP on a shared network")
        return failures


def leftover_pod_netns() -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(NETNS_PREFIX)]
