"""Network-namespace labs for end-to-end tests: namespaces, veths, bridges, processes.

Every name carries a unique prefix (`mn-<6 hex>-`), so a lab never touches anything it did not
create, and teardown deletes by that name — also when the test failed. Nothing here connects
a namespace to the host's own network: links are created *inside* a lab namespace
(`ip -n NS link add ... peer ... netns OTHER`), so no interface ever appears in the host
namespace, and each namespace has its own loopback, so an API server can listen on
127.0.0.1 inside a node.

Processes run with `ip netns exec`, in their own session; teardown stops them by PID
(SIGTERM, then SIGKILL) before deleting the namespaces.

    def test_x(lab):
        node = lab.netns("node")
        pod = lab.netns("pod")
        lab.veth(node, "veth-pod", pod, "eth0")
        lab.addr(pod, "eth0", "10.244.1.10/24")
        lab.popen(pod, ["python3", "-m", "http.server"])
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

STOP_TIMEOUT_S = 10.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Lab:
    def __init__(self, tmp: Path | None = None):
        self.prefix = f"mn-{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.tmp = tmp

    def __repr__(self) -> str:
        return f"<Lab {self.prefix} netns={len(self.namespaces)} procs={len(self.procs)}>"

    def netns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        ip("netns", "add", full)
        self.namespaces.append(full)
        ip("-n", full, "link", "set", "lo", "up")
        return full

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """A veth pair between two lab namespaces, both ends up."""
        ip("-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b,
           "netns", ns_b)
        ip("-n", ns_a, "link", "set", if_a, "up")
        ip("-n", ns_b, "link", "set", if_b, "up")

    def bridge(self, ns: str, name: str) -> None:
        ip("-n", ns, "link", "add", name, "type", "bridge")
        ip("-n", ns, "link", "set", name, "up")

    def attach(self, ns: str, ifname: str, bridge: str) -> None:
        ip("-n", ns, "link", "set", ifname, "master", bridge)

    def addr(self, ns: str, ifname: str, cidr: str) -> None:
        ip("-n", ns, "addr", "add", cidr, "dev", ifname)

    def route(self, ns: str, *spec: str) -> None:
        ip("-n", ns, "route", "add", *spec)

    def pod(self, node: str, bridge: str, name: str, cidr: str, gateway: str) -> str:
        """A namespace wired to a node's bridge like a pod: eth0 with `cidr`, default via
        `gateway`."""
        ns = self.netns(name)
        host_if = f"v{secrets.token_hex(3)}"
        self.veth(node, host_if, ns, "eth0")
        self.attach(node, host_if, bridge)
        self.addr(ns, "eth0", cidr)
        self.route(ns, "default", "via", gateway)
        return ns

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.exec_argv(ns, argv), start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: list[str], *, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec_argv(ns, argv), capture_output=True, text=True,
                              timeout=timeout, **kwargs)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        return proc.returncode

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception:  # keep cleaning up
                pass
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
        self.namespaces.clear()
        leftovers = [n for n in ip("netns", "list").stdout.split() if n.startswith(self.prefix)]
        assert not leftovers, f"namespaces left behind: {leftovers}"


def wait_for(predicate, what: str, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        raise RuntimeError("network namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
    the_lab = Lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


def free_subnet(supernet: str, prefixlen: int) -> str:
    """A random subnet of `supernet` that no address or route of the host touches (labs
    running side by side each get their own)."""
    import ipaddress
    import secrets

    used = ip("-4", "route", "show", "table", "all").stdout + ip("-o", "-4", "addr").stdout
    nets = []
    for word in used.split():
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    candidates = list(ipaddress.ip_network(supernet).subnets(new_prefix=prefixlen))
    for _ in range(100):
        cand = candidates[secrets.randbelow(len(candidates))]
        if not any(cand.overlaps(n) for n in nets if n.prefixlen):
            return str(cand)
    raise AssertionError(f"no free /{prefixlen} in {supernet}")
