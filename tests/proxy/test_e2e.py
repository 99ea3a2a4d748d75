"""meshnet-proxy end to end, in network namespaces, with real processes and sockets.

One node namespace runs the API server (on its own loopback) and meshnet-proxy. Three backend
pods and a client pod hang off the node's bridge (10.244.1.0/24); an "outside" namespace
reaches the node's second address (192.168.77.2). Backends are registered as Pods (spec.nodeName,
status.podIP, Ready) and the API server's endpoints controller writes the Endpoints.
Nothing is connected to the host namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from netns import Lab, wait_for

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PY = sys.executable
API_PORT = 16443
NODE = "node-a"
GATEWAY = "10.244.1.1"
OUTSIDE_NODE_IP = "192.168.77.2"
BACKENDS = {"b1": "10.244.1.11", "b2": "10.244.1.12", "b3": "10.244.1.13"}
WEB, STICKY, LC, BULK = "10.96.0.50", "10.96.0.51", "10.96.0.52", "10.96.0.53"


def service(name, ip, *, annotations=None, **spec):
    return {"op": "create", "plural": "services", "body": {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"selector": {"app": "web"}, "clusterIP": ip, **spec,
                 "ports": spec.get("ports") or [
                     {"name": "tcp", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                     {"name": "udp", "port": 80, "targetPort": 8080, "protocol": "UDP"}]}}}


class Cluster:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.node = lab.netns("node")
        lab.bridge(self.node, "br0")
        lab.addr(self.node, "br0", f"{GATEWAY}/24")
        self.outside = lab.netns("outside")
        lab.veth(self.node, "uplink", self.outside, "eth0")
        lab.addr(self.node, "uplink", f"{OUTSIDE_NODE_IP}/24")
        lab.addr(self.outside, "eth0", "192.168.77.1/24")
        self.client = lab.pod(self.node, "br0", "client", "10.244.1.10/24", GATEWAY)
        self.backends = {}
        for name, ip in BACKENDS.items():
            ns = lab.pod(self.node, "br0", name, f"{ip}/24", GATEWAY)
            proc = lab.popen(ns, [PY, str(HERE / "e2e_backend.py"), name, "8080"],
                             stdout=subprocess.PIPE)
            assert proc.stdout.readline().strip() == b"ready"
            self.backends[name] = proc
        self.data = tmp / "apiserver"
        self.data.mkdir()
        self.apiserver = None
        self.start_apiserver()
        self.kubeconfig = self.data / "admin.kubeconfig"
        pods = []
        for name, ip in BACKENDS.items():
            pods.append({"op": "create", "plural": "pods", "body": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "echo"}]}}})
            pods.append(self.ready_op(name, ip, True))
        self.api(pods + [
            service("web", WEB, type="NodePort", ports=[
                {"name": "tcp", "port": 80, "targetPort": 8080, "protocol": "TCP",
                 "nodePort": 30080},
                {"name": "udp", "port": 80, "targetPort": 8080, "protocol": "UDP",
                 "nodePort": 30080}]),
            service("sticky", STICKY, sessionAffinity="ClientIP"),
            service("lc", LC, annotations={"meshnet.io/lb-policy": "least-conn"}),
            service("bulk", BULK, ports=[{"name": "sink", "port": 81, "targetPort": 8081,
                                          "protocol": "TCP"}]),
        ])
        self.proxy_log = open(tmp / "proxy.log", "wb")
        self.proxy = lab.popen(self.node, [
            str(BIN / "meshnet-proxy"), "--kubeconfig", str(self.kubeconfig),
            "--node-name", NODE, "--status-address", "127.0.0.1:10256"],
            stdout=self.proxy_log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proxy.poll() is None and
                 not self.tcp(WEB, 80, 1)[0].startswith("ERR"),
                 "the proxy to serve the ClusterIP")
        assert self.proxy.poll() is None, self.proxy_output()[-3000:]

    def ready_op(self, name, ip, ready):
        return {"op": "status", "plural": "pods", "name": name, "body": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}

    def start_apiserver(self):
        proc = self.lab.popen(self.node, [
            str(BIN / "meshnet-apiserver"), "--data-dir", str(self.data),
            "--listen", f"127.0.0.1:{API_PORT}"],
            stdout=subprocess.PIPE, stderr=open(self.data / "apiserver.log", "ab"))
        for _ in range(50):
            line = proc.stdout.readline()
            if not line or b"ready on" in line:
                break
        assert b"ready on" in line, (self.data / "apiserver.log").read_text()[-2000:]
        self.apiserver = proc

    def api(self, ops):
        out = self.lab.run(self.node, [PY, str(HERE / "e2e_api.py"), str(self.kubeconfig)],
                           input=json.dumps(ops))
        assert out.returncode == 0, out.stderr[-2000:]

    def client_run(self, ns, *args):
        out = self.lab.run(ns, [PY, str(HERE / "e2e_client.py"), *map(str, args)])
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    def tcp(self, ip, port, n, ns=None):
        return self.client_run(ns or self.client, "tcp", ip, port, n)

    def proxy_output(self) -> str:
        return (self.tmp / "proxy.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lab = Lab()
    try:
        yield Cluster(lab, tmp_path_factory.mktemp("e2e"))
    finally:
        lab.cleanup()


def test_clusterip_tcp_round_robin_reaches_every_backend(cluster):
    got = cluster.tcp(WEB, 80, 9)
    assert sorted(set(got)) == ["b1", "b2", "b3"], got
    assert got[:3] * 3 == got, "a rotation"


def test_clusterip_udp_flows_round_robin_and_reply_from_vip(cluster):
    got = cluster.client_run(cluster.client, "udp", WEB, 80, 6)
    assert sorted({name for name, _ in got}) == ["b1", "b2", "b3"], got
    assert {src for _, src in got} == {f"{WEB}:80"}
    same = cluster.client_run(cluster.client, "udp-same", WEB, 80, 4)
    assert len({name for name, _ in same}) == 1, "one flow, one backend"


def test_client_ip_affinity_pins_the_client(cluster):
    got = cluster.tcp(STICKY, 80, 6)
    assert len(set(got)) == 1 and not got[0].startswith("ERR"), got


def test_least_conn_avoids_the_busy_backend(cluster):
    got = cluster.client_run(cluster.client, "leastconn", LC, 80, 6)
    assert got["busy"] in BACKENDS
    assert got["busy"] not in got["then"], got
    assert set(got["then"]) == set(BACKENDS) - {got["busy"]}


def test_nodeport_on_every_node_address(cluster):
    assert not cluster.tcp(GATEWAY, 30080, 1)[0].startswith("ERR")
    assert not cluster.tcp(OUTSIDE_NODE_IP, 30080, 1, ns=cluster.outside)[0].startswith("ERR")
    assert not cluster.tcp("127.0.0.1", 30080, 1, ns=cluster.node)[0].startswith("ERR")
    got = cluster.client_run(cluster.outside, "udp", OUTSIDE_NODE_IP, 30080, 3)
    assert {src for _, src in got} == {f"{OUTSIDE_NODE_IP}:30080"}
    assert all(name in BACKENDS for name, _ in got), got


def test_status_endpoints(cluster):
    out = cluster.lab.run(cluster.node, ["curl", "-sf", "http://127.0.0.1:10256/metrics"])
    assert out.returncode == 0, out.stderr
    assert 'meshnet_proxy_connections_total{service="default/web:tcp/TCP"}' in out.stdout
    assert "meshnet_proxy_network_programming_latency_seconds_count" in out.stdout
    ready = cluster.lab.run(cluster.node, ["curl", "-sf", "http://127.0.0.1:10256/ready"])
    assert ready.stdout == "ok"


def test_no_vip_interface_starts_and_leaves_addresses_alone(cluster):
    """--no-vip-interface reads the node's addresses at start-up (pyroute2, off the event
    loop: on it, the start failed) and manages none: a second proxy beside the first gets
    ready, and stopping it leaves the first one's service addresses in place."""
    log = cluster.tmp / "proxy-no-vip.log"
    second = cluster.lab.popen(cluster.node, [
        str(BIN / "meshnet-proxy"), "--kubeconfig", str(cluster.kubeconfig), "--node-name",
        NODE, "--status-address", "127.0.0.1:10257", "--no-vip-interface", "--no-lb-announce"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: second.poll() is None and cluster.lab.run(cluster.node, [
        "curl", "-sf", "http://127.0.0.1:10257/ready"]).stdout == "ok",
        "the second proxy to be ready", timeout=30)
    assert cluster.lab.stop(second) == 0, log.read_text()[-3000:]
    assert sorted(set(cluster.tcp(WEB, 80, 9))) == ["b1", "b2", "b3"]


def test_one_gib_upload_with_half_close_arrives_intact(cluster):
    """1 GiB through the ClusterIP; the client then shuts down its write side and still gets
    the backend's byte count and CRC back over the half-closed connection."""
    got = cluster.client_run(cluster.client, "bulk", BULK, 81, 1024)
    assert got["received"] == got["sent"] == 1 << 30, got
    assert got["their_crc"] == got["crc"], got
    assert got["seconds"] < 20, got


def test_api_server_restart_mid_stream(cluster):
    stream = cluster.lab.popen(cluster.client, [PY, str(HERE / "e2e_client.py"), "stream",
                                                WEB, "80", "3"], stdout=subprocess.PIPE)
    cluster.lab.stop(cluster.apiserver)
    counts = json.loads(stream.communicate(timeout=30)[0])
    cluster.start_apiserver()
    assert not [k for k in counts if k.startswith("ERR")], counts
    assert sum(counts.values()) > 50, counts


def test_kill_a_backend_under_new_connections_then_scale_to_zero(cluster):
    stream = cluster.lab.popen(cluster.client, [PY, str(HERE / "e2e_client.py"), "stream",
                                                WEB, "80", "3"], stdout=subprocess.PIPE)
    wait_for(lambda: cluster.tcp(WEB, 80, 1), "traffic")
    cluster.lab.stop(cluster.backends["b2"], signal.SIGKILL)
    counts = json.loads(stream.communicate(timeout=30)[0])
    # The stream is sequential, so at most the one connection that was on b2 when it died can
    # drop (ConnectionError: closed after connecting); no new connection may fail.
    failures = {k: v for k, v in counts.items() if k.startswith("ERR")}
    assert set(failures) <= {"ERR:ConnectionError"} and sum(failures.values()) <= 1, counts
    assert counts.get("b1") and counts.get("b3"), counts

    cluster.api([cluster.ready_op(n, ip, False) for n, ip in BACKENDS.items()])
    wait_for(lambda: cluster.tcp(WEB, 80, 1)[0].startswith("ERR"), "no ready endpoints")
    refused = cluster.tcp(WEB, 80, 3)
    for answer in refused:
        _, exc, seconds = answer.split(":")
        assert exc in ("ConnectionResetError", "ConnectionRefusedError"), answer
        assert float(seconds) < 0.5, answer


def test_sigterm_removes_what_it_added(cluster):
    """Service addresses go on meshnet0, or on lo where the kernel has no dummy links."""
    def addresses():
        return cluster.lab.run(cluster.node, ["ip", "-o", "addr", "show"]).stdout

    assert f"{WEB}/32" in addresses()
    assert cluster.lab.stop(cluster.proxy) == 0, cluster.proxy_output()[-3000:]
    after = addresses()
    assert f"{WEB}/32" not in after and f"{STICKY}/32" not in after
    assert "127.0.0.1/8" in after, "loopback untouched"
    links = cluster.lab.run(cluster.node, ["ip", "-o", "link", "show"])
    assert "meshnet0" not in links.stdout
