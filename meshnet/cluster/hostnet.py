"""The host side of `meshctl up`: the node namespace, its veth, the `unreachable` routes.

Every change is recorded in the state (`state.py`) *before* it is made, so a crash half-way
leaves nothing `down` cannot find. Only what this module created is ever removed: an
`unreachable` route that already existed (another lab's) is left to its owner. Nothing here
touches another interface or route of the host.
"""

from __future__ import annotations

import ipaddress
import subprocess

from .plan import ClusterPlan


FAIL_CLOSED = ("route unreachable ", "route blackhole ", "route prohibit ")


class HostNetError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise HostNetError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def host_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """Every IPv4 network the host has an address in or a route to (any table)."""
    out = []
    for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            cidr = parts[parts.index("inet") + 1]
            out.append((f"address {cidr} on {parts[1]}",
                        ipaddress.ip_interface(cidr).network))
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if not words:
            continue
        dst = words[1] if words[0] in ("unreachable", "local", "broadcast", "blackhole",
                                       "prohibit", "throw", "multicast", "unicast") else words[0]
        if dst == "default":
            continue
        try:
            out.append((f"route {line.strip()}", ipaddress.ip_network(dst, strict=False)))
        except ValueError:
            continue
    return out


def check_free(plan: ClusterPlan) -> None:
    """The link /30 must be unused, and the cluster ranges must not cover anything the host
    uses (an `unreachable` route over the host's own network would cut it off)."""
    link = ipaddress.ip_network(plan.link_cidr)
    ranges = [ipaddress.ip_network(r) for r in plan.unreachable_ranges()]
    for what, net in host_networks():
        if net.prefixlen == 0:
            continue
        if net.overlaps(link):
            raise HostNetError(f"--link-cidr {plan.link_cidr} is already used on this host "
                               f"({what}); pick a free /30 with --link-cidr")
        for r in ranges:
            # Another lab's `unreachable` route already fails closed: ours changes nothing.
            if net.overlaps(r) and not what.startswith(FAIL_CLOSED):
                raise HostNetError(f"the cluster range {r} overlaps {what} on this host; "
                                   f"meshctl up would make it unreachable")


def netns_exists(name: str) -> bool:
    return name in ip("netns", "list").stdout.split()


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def create_link(plan: ClusterPlan) -> None:
    ns, veth = plan.netns, plan.host_veth
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    # The peer is created directly inside the namespace: no second interface in the host.
    ip("link", "add", veth, "type", "veth", "peer", "name", plan.node_veth, "netns", ns)
    ip("addr", "add", f"{plan.host_ip}/{plan.prefixlen}", "dev", veth)
    ip("link", "set", veth, "up")
    ip("-n", ns, "addr", "add", f"{plan.node_ip}/{plan.prefixlen}", "dev", plan.node_veth)
    ip("-n", ns, "link", "set", plan.node_veth, "up")


def add_unreachable(cidr: str) -> bool:
    """True if this call added the route (False: it existed already and is not ours)."""
    proc = ip("route", "add", "unreachable", cidr, check=False)
    if proc.returncode == 0:
        return True
    if "File exists" in proc.stderr:
        return False
    raise HostNetError(f"ip route add unreachable {cidr}: {proc.stderr.strip()}")


def remove(netns: str, host_veth: str, routes: list[str]) -> list[str]:
    """Delete what `up` made; returns the problems (teardown goes on regardless)."""
    problems = []
    if host_veth and link_exists(host_veth):
        proc = ip("link", "del", host_veth, check=False)
        if proc.returncode:
            problems.append(f"ip link del {host_veth}: {proc.stderr.strip()}")
    if netns and netns_exists(netns):
        proc = ip("netns", "del", netns, check=False)
        if proc.returncode:
            problems.append(f"ip netns del {netns}: {proc.stderr.strip()}")
    for cidr in routes:
        proc = ip("route", "del", "unreachable", cidr, check=False)
        if proc.returncode and "No such process" not in proc.stderr:
            problems.append(f"ip route del unreachable {cidr}: {proc.stderr.strip()}")
    return problems
