"""The lab's network: namespaces, the underlay switch, the host's veth and `unreachable` routes.

Every change is recorded in the lab state *before* it is made (`record` callback), so `down`
after a crash finds everything. Links are created inside lab namespaces (`ip -n SW link add
... peer ... netns MEMBER`), so the only interface ever in the host namespace is `<name>-h`.
Only what this lab created is removed; an `unreachable` route that already existed (another
lab's, `meshctl up`'s) is left to its owner.

`/etc/netns/<namespace>/resolv.conf` (no nameserver) is written for every member: `ip netns
exec` bind-mounts it over /etc/resolv.conf, so nothing in the lab ever reads the host's
resolver; meshnet-dns on the workers then has no upstream unless --dns-upstream names one.
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path
from typing import Callable

from meshnet.cluster import hostnet
from meshnet.cluster.hostnet import HostNetError, host_networks, ip, link_exists, netns_exists

from .plan import UNREACHABLE_METRIC, LabPlan, Member

BRIDGE = "br0"
HOST_PORT = "host"
ETC_NETNS = Path("/etc/netns")
RESOLV_CONF = "# meshnet lab: no resolver outside the lab (docs/lab.md)\noptions ndots:1\n"


def check_free(plan: LabPlan) -> None:
    """The underlay must be unused on the host, and the cluster ranges must not cover anything
    the host uses (an `unreachable` route over the host's own network would cut it off)."""
    underlay = ipaddress.ip_network(plan.underlay)
    for what, net in host_networks():
        if net.prefixlen == 0 or what.startswith("route unreachable"):
            continue
        if net.overlaps(underlay):
            raise HostNetError(f"--underlay {plan.underlay} is already used on this host "
                               f"({what}); pick a free range with --underlay")
        for cidr in plan.unreachable_ranges():
            if net.overlaps(ipaddress.ip_network(cidr)):
                raise HostNetError(f"the cluster range {cidr} overlaps {what} on this "
                                   f"host; the lab would make it unreachable")
    for ns in [plan.switch_netns, *(m.netns for m in plan.members())]:
        if netns_exists(ns):
            raise HostNetError(f"network namespace {ns} exists but is not in "
                               f"{plan.state_path}; another lab uses --name {plan.name}? "
                               f"Pick another --name, or `netns-lab/down --name {plan.name}`")
    if link_exists(plan.host_veth):
        raise HostNetError(f"interface {plan.host_veth} exists; another lab uses --name "
                           f"{plan.name}?")


def _netns(name: str, record: Callable[[str, str], None]) -> None:
    record("namespaces", name)
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    record("etc_netns", name)
    (ETC_NETNS / name).mkdir(parents=True, exist_ok=True)
    (ETC_NETNS / name / "resolv.conf").write_text(RESOLV_CONF)


def build(plan: LabPlan, record: Callable[[str, str], None]) -> None:
    """Switch, members, host veth. `record(kind, value)` saves each item before it exists."""
    sw = plan.switch_netns
    _netns(sw, record)
    ip("-n", sw, "link", "add", BRIDGE, "type", "bridge")
    ip("-n", sw, "link", "set", BRIDGE, "up")
    prefix = plan.prefixlen
    for m in plan.members():
        _netns(m.netns, record)
        ip("-n", sw, "link", "add", m.name, "type", "veth", "peer", "name", "eth0",
           "netns", m.netns)
        ip("-n", sw, "link", "set", m.name, "master", BRIDGE, "up")
        ip("-n", m.netns, "addr", "add", f"{m.ip}/{prefix}", "dev", "eth0")
        ip("-n", m.netns, "link", "set", "eth0", "up")
    record("host_veth", plan.host_veth)
    ip("link", "add", plan.host_veth, "type", "veth", "peer", "name", HOST_PORT, "netns", sw)
    ip("-n", sw, "link", "set", HOST_PORT, "master", BRIDGE, "up")
    ip("addr", "add", f"{plan.host_ip}/{prefix}", "dev", plan.host_veth)
    ip("link", "set", plan.host_veth, "up")


def add_routes(plan: LabPlan, record: Callable[[str, str], None]) -> None:
    """The service and pod ranges (unless another lab or cluster has them already), and the
    underlay under the veth's connected route (ours: check_free saw nobody else use it)."""
    for cidr in plan.unreachable_ranges():
        record("routes", cidr)
        if not hostnet.add_unreachable(cidr):
            record("foreign_routes", cidr)  # it existed: not ours to remove
    record("routes", plan.underlay)
    proc = ip("route", "add", "unreachable", plan.underlay, "metric",
              str(UNREACHABLE_METRIC), check=False)
    if proc.returncode and "File exists" not in proc.stderr:
        raise HostNetError(f"ip route add unreachable {plan.underlay} metric "
                           f"{UNREACHABLE_METRIC}: {proc.stderr.strip()}")


def set_link(plan: LabPlan, member: Member, up: bool) -> None:
    """Cut a member off the underlay (its switch port down: its eth0 loses carrier, its
    addresses and routes stay) or join it again."""
    ip("-n", plan.switch_netns, "link", "set", member.name, "up" if up else "down")


def link_up(plan: LabPlan, member: Member) -> bool | None:
    """Is the member's switch port up? None if the switch is gone."""
    proc = ip("-n", plan.switch_netns, "-o", "link", "show", member.name, check=False)
    if proc.returncode:
        return None
    flags = proc.stdout.split("<", 1)[-1].split(">", 1)[0].split(",")
    return "UP" in flags


def netns_pids(name: str) -> list[int]:
    proc = ip("netns", "pids", name, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def remove(namespaces: list[str], host_veth: str, routes: list[str],
           etc_netns: list[str]) -> list[str]:
    """Delete what `build` and `add_routes` made; returns the problems (goes on regardless).
    Member namespaces first, the switch (named first in `namespaces`) last; deleting the
    switch also destroys the host veth's peer, and so the veth."""
    problems = []
    for ns in [*namespaces[1:][::-1], *namespaces[:1]]:
        problems += hostnet.remove(ns, "", [])
    problems += hostnet.remove("", host_veth, routes)
    for ns in etc_netns:
        shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
    return problems
