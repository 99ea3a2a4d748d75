"""The pod network, programmed with pyroute2 in the node's network namespace.

Theory of operation
-------------------
One Linux bridge `mn-br0` holds the podCIDR's first address (every pod's default gateway).
Each pod gets a network namespace `mnpod-<uid>` (under /run/netns, so `ip netns exec` works and
applies `/etc/netns/<name>/resolv.conf`), a veth pair `mnv<uid>` (bridge port) / `eth0` (in the
pod) with its IP, `lo` up and a default route via the bridge. Other nodes' podCIDRs are routed
host-gw style via their InternalIP; those routes carry protocol ROUTE_PROTO, which is how the
agent finds (and removes) exactly the routes it made and never anyone else's.

All operations are idempotent (`setup_pod` on a half-built pod finishes it; `teardown_pod` on a
missing one does nothing), because they run again after an agent restart. Every call here is
blocking netlink I/O; the agent runs them in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import shutil
from pathlib import Path

from pyroute2 import IPRoute, config as pyroute2_config, netns
from pyroute2.netlink.exceptions import NetlinkError

from meshnet.node.errors import NetworkError
from meshnet.node.netconfig import BRIDGE, NETNS_PREFIX, Route, host_veth_name, pod_netns_name

log = logging.getLogger("meshnet.agent.podnet")

# pyroute2 enters a namespace from a forked child, and stops it with SIGTERM. The child inherits
# the event loop's signal handlers (and their wakeup fd), so without this the agent would read
# its helper's SIGTERM as its own and shut down. Children get the default dispositions instead.
pyroute2_config.disable_mp_signal = True

ROUTE_PROTO = 77  # an unassigned rtnetlink protocol number: "made by meshnet-agent"
ETC_NETNS = Path("/etc/netns")


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


class PodNetwork:
    def __init__(self, pod_cidr: str, etc_netns: Path = ETC_NETNS):
        self.network = ipaddress.ip_network(pod_cidr, strict=False)
        self.gateway = str(self.network.network_address + 1)
        self.prefixlen = self.network.prefixlen
        self.etc_netns = etc_netns

    def __repr__(self) -> str:
        return f"<PodNetwork {self.network} via {BRIDGE} {self.gateway}>"

    @_wrap("setting up the pod bridge " + BRIDGE)
    def ensure_bridge(self) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=BRIDGE)
            if not found:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
                found = ipr.link_lookup(ifname=BRIDGE)
            index = found[0]
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
            if self.gateway not in have:
                ipr.addr("add", index=index, address=self.gateway, prefixlen=self.prefixlen)
            ipr.link("set", index=index, state="up")
        # Routing between pods on other nodes needs forwarding in *this* namespace (the node's).
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    @_wrap("deleting the pod bridge " + BRIDGE)
    def remove_bridge(self) -> None:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=BRIDGE):
                ipr.link("del", index=index)

    def setup_pod(self, uid: str, ip: str, resolv_conf: str) -> str:
        """Create (or finish) the pod's namespace and veth; returns the netns name."""
        name = pod_netns_name(uid)
        veth = host_veth_name(uid)
        try:
            self._write_resolv(name, resolv_conf)
            if name not in netns.listnetns():
                netns.create(name)
            with IPRoute() as ipr:
                bridge = ipr.link_lookup(ifname=BRIDGE)
                if not bridge:
                    raise NetworkError(f"bridge {BRIDGE} is missing")
                if not ipr.link_lookup(ifname=veth):
                    with IPRoute(netns=name) as pod:
                        for index in pod.link_lookup(ifname="eth0"):
                            pod.link("del", index=index)  # a half-built earlier attempt
                    ipr.link("add", ifname=veth, kind="veth",
                             peer={"ifname": "eth0", "net_ns_fd": name})
                index = ipr.link_lookup(ifname=veth)[0]
                ipr.link("set", index=index, master=bridge[0], state="up")
            with IPRoute(netns=name) as pod:
                lo = pod.link_lookup(ifname="lo")[0]
                pod.link("set", index=lo, state="up")
                eth0 = pod.link_lookup(ifname="eth0")[0]
                have = {a.get_attr("IFA_ADDRESS") for a in pod.get_addr(index=eth0, family=2)}
                for stale in have - {ip}:
                    pod.addr("del", index=eth0, address=stale, prefixlen=self.prefixlen)
                if ip not in have:
                    pod.addr("add", index=eth0, address=ip, prefixlen=self.prefixlen)
                pod.link("set", index=eth0, state="up")
                try:
                    pod.route("add", dst="0.0.0.0/0", gateway=self.gateway)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
        except (NetlinkError, OSError) as exc:
            raise NetworkError(f"pod network for {name} ({ip}): {exc}") from None
        return name

    def teardown_pod(self, uid: str) -> None:
        name = pod_netns_name(uid)
        veth = host_veth_name(uid)
        try:
            with IPRoute() as ipr:
                for index in ipr.link_lookup(ifname=veth):
                    ipr.link("del", index=index)  # takes the pod's eth0 with it
        except NetlinkError as exc:
            log.warning("deleting %s: %s", veth, exc)
        if name in netns.listnetns():
            try:
                netns.remove(name)
            except OSError as exc:
                log.warning("removing netns %s: %s", name, exc)
            # A name whose mount died with an earlier agent's mount namespace is a plain file.
            (Path(netns.NETNS_RUN_DIR) / name).unlink(missing_ok=True)
        shutil.rmtree(self.etc_netns / name, ignore_errors=True)

    def _write_resolv(self, name: str, text: str) -> None:
        d = self.etc_netns / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(text)

    # -- host-gw routes -----------------------------------------------------------------------

    @_wrap("reading pod routes")
    def current_routes(self) -> frozenset[Route]:
        routes = set()
        with IPRoute() as ipr:
            for r in ipr.get_routes(family=2, proto=ROUTE_PROTO):
                if r.get("proto") != ROUTE_PROTO:
                    continue
                dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                routes.add(Route(dst, r.get_attr("RTA_GATEWAY") or ""))
        return frozenset(routes)

    def apply_routes(self, delete: list[Route], add: list[Route]) -> list[str]:
        """Carry out a route plan; returns one error text per route that failed."""
        failures = []
        with IPRoute() as ipr:
            for r in delete:
                try:
                    ipr.route("del", dst=r.dst, gateway=r.gateway, proto=ROUTE_PROTO)
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:
                        failures.append(f"delete {r}: {exc}")
            for r in add:
                try:
                    ipr.route("replace", dst=r.dst, gateway=r.gateway, proto=ROUTE_PROTO)
                except NetlinkError as exc:
                    failures.append(f"route {r.dst} via {r.gateway} (node {r.node}): {exc}; "
                                    f"host-gw needs the node's InternalIP on a shared network")
        return failures


def leftover_pod_netns() -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(NETNS_PREFIX)]
