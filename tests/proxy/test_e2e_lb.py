"""LoadBalancer announcement end to end: three nodes on one LAN, one owner, failover.

A "lan" namespace holds the bridge (192.168.50.0/24) and the API server (192.168.50.1, its
`--lb-pool` is 192.168.50.200/32). Three node namespaces (node-a/b/c, eth0 on the bridge) run
meshnet-proxy; a backend pod and an "outside" client hang off the same bridge. Nothing is
connected to the host namespace.

Checks: exactly one node carries the LB IP on its uplink and answers ARP for it (the client's
neighbour entry holds that node's MAC, and only that node's proxy counts the connections);
marking the owner's Node NotReady moves the IP, with a gratuitous ARP updating the client's
neighbour entry; stopping the new owner's proxy moves it again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netns import Lab, wait_for

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PY = sys.executable
API = "192.168.50.1"
API_PORT = 16443
LB_IP = "192.168.50.200"
BACKEND_IP = "192.168.50.50"
OUTSIDE_IP = "192.168.50.100"
NODES = {"node-a": "192.168.50.11", "node-b": "192.168.50.12", "node-c": "192.168.50.13"}
FAILOVER_S = 6.0  # "another takes over within a few seconds"
SERVICE = "default/lb:http/TCP"


class LanCluster:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab, self.tmp = lab, tmp
        self.lan = lab.netns("lan")
        lab.bridge(self.lan, "br0")
        lab.addr(self.lan, "br0", f"{API}/24")
        self.nodes = {name: lab.pod(self.lan, "br0", name, f"{ip}/24", API)
                      for name, ip in NODES.items()}
        self.outside = lab.pod(self.lan, "br0", "outside", f"{OUTSIDE_IP}/24", API)
        backend = lab.pod(self.lan, "br0", "web", f"{BACKEND_IP}/24", API)
        proc = lab.popen(backend, [PY, str(HERE / "e2e_backend.py"), "web", "8080"],
                         stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        self.data = tmp / "apiserver"
        self.data.mkdir()
        api = lab.popen(self.lan, [
            str(BIN / "meshnet-apiserver"), "--data-dir", str(self.data),
            "--listen", f"{API}:{API_PORT}", "--lb-pool", f"{LB_IP}/32"],
            stdout=subprocess.PIPE, stderr=open(tmp / "apiserver.log", "ab"))
        line = b""
        for _ in range(50):
            line = api.stdout.readline()
            if not line or b"ready on" in line:
                break
        assert b"ready on" in line, (tmp / "apiserver.log").read_text()[-2000:]
        self.kubeconfig = self.data / "admin.kubeconfig"
        ops = []
        for name in NODES:
            ops.append({"op": "create", "plural": "nodes", "namespace": None,
                        "body": {"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": name}}})
            ops.append(self.node_ready_op(name, True))
        ops += [
            {"op": "create", "plural": "pods", "body": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "echo"}]}}},
            {"op": "status", "plural": "pods", "name": "web", "body": {
                "phase": "Running", "podIP": BACKEND_IP, "podIPs": [{"ip": BACKEND_IP}],
                "conditions": [{"type": "Ready", "status": "True"}]}},
            {"op": "create", "plural": "services", "body": {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}},
        ]
        self.api(ops)
        self.proxies = {name: self.start_proxy(name) for name in NODES}

    def start_proxy(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"proxy-{name}.log", "ab")
        return self.lab.popen(self.nodes[name], [
            str(BIN / "meshnet-proxy"), "--kubeconfig", str(self.kubeconfig),
            "--node-name", name, "--status-address", "127.0.0.1:10256"],
            stdout=log, stderr=subprocess.STDOUT)

    def node_ready_op(self, name: str, ready: bool) -> dict:
        return {"op": "status", "plural": "nodes", "namespace": None, "name": name, "body": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "Test"}]}}

    def api(self, ops):
        out = self.lab.run(self.lan, [PY, str(HERE / "e2e_api.py"), str(self.kubeconfig)],
                           input=json.dumps(ops))
        assert out.returncode == 0, out.stderr[-2000:]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted(self.tmp.glob("proxy-*.log")))

    def announcers(self) -> list[str]:
        """Nodes that carry the LB IP on their uplink (and so answer ARP for it)."""
        return [name for name, ns in self.nodes.items()
                if f"{LB_IP}/32" in self.lab.run(ns, ["ip", "-o", "addr", "show", "dev",
                                                      "eth0"]).stdout]

    def mac(self, name: str) -> str:
        out = self.lab.run(self.nodes[name], ["cat", "/sys/class/net/eth0/address"])
        return out.stdout.strip()

    def neighbour_mac(self) -> str:
        out = self.lab.run(self.outside, ["ip", "neigh", "show", LB_IP]).stdout
        m = re.search(r"lladdr ([0-9a-f:]{17})", out)
        return m.group(1) if m else ""

    def connect(self, n: int = 1) -> list[str]:
        out = self.lab.run(self.outside, [PY, str(HERE / "e2e_client.py"), "tcp", LB_IP, "80",
                                          str(n)])
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    def metric(self, name: str, pattern: str) -> int:
        out = self.lab.run(self.nodes[name], ["curl", "-sf",
                                              "http://127.0.0.1:10256/metrics"])
        m = re.search(pattern + r" (\d+)", out.stdout) if out.returncode == 0 else None
        return int(m.group(1)) if m else 0

    def counted(self, name: str) -> int:
        """Connections the node's proxy accepted for the LB service port."""
        return self.metric(name, r'meshnet_proxy_connections_total\{service="%s"\}'
                           % re.escape(SERVICE))

    def settled(self, n: int) -> bool:
        """Every running proxy sees `n` candidate nodes: they all agree on the owner."""
        return all(self.metric(name, "meshnet_proxy_lb_candidate_nodes") == n
                   for name, proc in self.proxies.items() if proc.poll() is None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lab = Lab()
    try:
        yield LanCluster(lab, tmp_path_factory.mktemp("lb"))
    finally:
        lab.cleanup()


def one_announcer(cluster, exclude=()) -> str:
    def check():
        found = cluster.announcers()
        return found[0] if len(found) == 1 and found[0] not in exclude else None
    try:
        return wait_for(check, "exactly one node to announce the LB IP", timeout=FAILOVER_S)
    except AssertionError:
        raise AssertionError(f"announcers: {cluster.announcers()}\n{cluster.logs()}") from None


def test_one_node_answers_for_the_lb_ip_and_takes_the_traffic(cluster):
    wait_for(lambda: cluster.connect(1) == ["web"], "the LB IP to answer from outside",
             timeout=20)
    # At a cold start a proxy that has not yet seen the others' leases announces alone for a
    # moment; once all see all three, the owner's gratuitous ARP (sent again after 1 s and
    # 2 s) corrects the client's neighbour entry.
    wait_for(lambda: cluster.settled(3), "every proxy to see three candidate nodes")
    owner = one_announcer(cluster)
    wait_for(lambda: cluster.neighbour_mac() == cluster.mac(owner),
             f"the client's neighbour entry to name the owner {owner}", timeout=4)
    before = {n: cluster.counted(n) for n in NODES}
    assert cluster.connect(5) == ["web"] * 5
    after = {n: cluster.counted(n) for n in NODES}
    assert {n: after[n] - before[n] for n in NODES} == \
        {n: (5 if n == owner else 0) for n in NODES}
    assert cluster.announcers() == [owner]
    cluster.owner = owner


def test_owner_node_not_ready_moves_the_ip_with_gratuitous_arp(cluster):
    old = cluster.owner
    cluster.api([cluster.node_ready_op(old, False)])
    started = time.monotonic()
    new = one_announcer(cluster, exclude=(old,))
    took = time.monotonic() - started
    # No traffic from the client in between: only the gratuitous ARP can have updated it.
    wait_for(lambda: cluster.neighbour_mac() == cluster.mac(new),
             "the client's neighbour entry to follow the gratuitous ARP", timeout=3)
    assert took < FAILOVER_S
    before = cluster.counted(new)
    assert cluster.connect(3) == ["web"] * 3
    assert cluster.counted(new) - before == 3
    cluster.owner = new


def test_stopping_the_owners_proxy_moves_the_ip(cluster):
    old = cluster.owner
    assert cluster.lab.stop(cluster.proxies[old]) == 0, cluster.logs()
    new = one_announcer(cluster, exclude=(old,))
    wait_for(lambda: cluster.neighbour_mac() == cluster.mac(new),
             "the neighbour entry to move", timeout=3)
    before = cluster.counted(new)
    assert cluster.connect(3) == ["web"] * 3
    assert cluster.counted(new) - before == 3


def test_a_crashed_proxy_is_replaced_after_its_lease_expires(cluster):
    """Restart the stopped proxy, make every node Ready, then SIGKILL the owner's proxy: it
    cannot withdraw or delete its lease, so the others take over when the lease expires
    (4 s); the dead node's kernel still answers ARP, so the gratuitous ARP is what moves
    the client."""
    for name, proc in cluster.proxies.items():
        if proc.poll() is not None:
            cluster.proxies[name] = cluster.start_proxy(name)
    cluster.api([cluster.node_ready_op(n, True) for n in NODES])
    wait_for(lambda: cluster.connect(1) == ["web"], "traffic again", timeout=10)
    wait_for(lambda: cluster.settled(3), "every proxy to see three candidate nodes")
    owner = one_announcer(cluster)
    cluster.lab.stop(cluster.proxies[owner], sig=9)
    started = time.monotonic()

    def new_owner():
        others = [n for n in cluster.announcers() if n != owner]
        return others[0] if len(others) == 1 else None
    new = wait_for(new_owner, "a new owner after the lease expired", timeout=FAILOVER_S + 2)
    assert time.monotonic() - started < FAILOVER_S + 2
    wait_for(lambda: cluster.neighbour_mac() == cluster.mac(new),
             "the neighbour entry to move", timeout=3)
    assert cluster.connect(2) == ["web"] * 2
