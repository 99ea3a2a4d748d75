"""meshnet-agent end to end, in network namespaces, with real processes.

The node namespace runs the API server (on its own loopback), meshnet-agent and a line-
protocol API client (e2e_api.py). A "peer" namespace at the other end of the node's uplink
plays a second node for host-gw routing. Pods are created through the API with spec.nodeName
set (the scheduler is not involved); everything a test checks inside a pod is done with
`exec` through the API server, which also covers the agent's exec path.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from meshnet.node.netconfig import pod_netns_name
from netns import Lab, ip, wait_for

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PY = sys.executable
API_PORT = 16444
NODE, NODE_IP, PEER_IP = "node-a", "192.168.88.2", "192.168.88.3"


class Cluster:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab, self.tmp = lab, tmp
        self._wire(lab)
        self._start(lab, tmp)

    def _wire(self, lab: Lab) -> None:
        """The node namespace and a peer namespace on one veth."""
        self.node = lab.netns("node")
        self.peer = lab.netns("peer")
        lab.veth(self.node, "uplink", self.peer, "eth0")
        lab.addr(self.node, "uplink", f"{NODE_IP}/24")
        lab.addr(self.peer, "eth0", f"{PEER_IP}/24")

    def _start(self, lab: Lab, tmp: Path, agent_args: tuple[str, ...] = ()) -> None:
        """The API server, a client inside the node namespace, then the agent."""
        self.data = tmp / "apiserver"
        self.data.mkdir()
        self.kubeconfig = self.data / "admin.kubeconfig"
        proc = lab.popen(self.node, [str(BIN / "meshnet-apiserver"), "--data-dir",
                                     str(self.data), "--listen", f"127.0.0.1:{API_PORT}"],
                         stdout=subprocess.PIPE, stderr=open(self.data / "apiserver.log", "ab"))
        for _ in range(50):
            line = proc.stdout.readline()
            if not line or b"ready on" in line:
                break
        assert b"ready on" in line, (self.data / "apiserver.log").read_text()[-2000:]
        self.client = lab.popen(self.node, [PY, str(HERE / "e2e_api.py"), str(self.kubeconfig)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.client.stdout.readline())["ok"]
        self.state = tmp / "agent"
        self.agent_log = tmp / "agent.log"
        self.agent_argv = [
            PY, "-m", "meshnet.node.main", "--kubeconfig", str(self.kubeconfig),
            "--node-name", NODE, "--node-ip", NODE_IP, *agent_args,
            "--state-dir", str(self.state), "--agent-listen", f"{NODE_IP}:10250",
            "--status-address", "127.0.0.1:10248"]
        self.agent = lab.popen(self.node, self.agent_argv, stdout=subprocess.PIPE,
                               stderr=open(self.agent_log, "ab"))
        line = self.agent.stdout.readline()
        assert b"ready" in line, self.agent_text()
        # No --pod-cidr: the API server's nodeipam controller assigns one (10.244.0.0/16, /24s).
        self.pod_cidr = self.ok(op="get", plural="nodes", name=NODE)["spec"]["podCIDR"]

    def agent_text(self) -> str:
        return self.agent_log.read_text(errors="replace")[-4000:]

    def call(self, **op):
        self.client.stdin.write(json.dumps(op) + "\n")
        self.client.stdin.flush()
        return json.loads(self.client.stdout.readline())

    def ok(self, **op):
        out = self.call(**op)
        assert out["ok"], out
        return out["result"]

    def create_pod(self, name, containers, **spec):
        return self.ok(op="create", plural="pods", body={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": NODE, "containers": containers, **spec}})

    def pod(self, name):
        return self.ok(op="get", plural="pods", name=name)

    def wait_pod(self, name, predicate, what, timeout=20.0):
        def check():
            out = self.call(op="get", plural="pods", name=name)
            return out["ok"] and predicate(out["result"]) and out["result"]
        try:
            return wait_for(check, f"pod {name}: {what}", timeout, interval=0.1)
        except AssertionError as exc:
            got = self.call(op="get", plural="pods", name=name)
            raise AssertionError(f"{exc}\npod: {json.dumps(got)[-3000:]}\nagent log:\n"
                                 f"{self.agent_text()}") from None

    def wait_ready(self, name, timeout=20.0):
        return self.wait_pod(name, is_ready, "Running and Ready", timeout)

    def exec(self, pod, *argv, container=None):
        params = [["command", a] for a in argv]
        if container:
            params.append(["container", container])
        out = self.ok(op="raw", method="POST", params=params,
                      path=f"/api/v1/namespaces/default/pods/{pod}/exec")
        assert out["status"] == 200, out
        return json.loads(out["body"])

    def logs(self, pod, **params):
        return self.ok(op="raw", method="GET", params=[[k, v] for k, v in params.items()],
                       path=f"/api/v1/namespaces/default/pods/{pod}/log")

    def node_links(self) -> str:
        return ip("-n", self.node, "-o", "link", "show").stdout


def pod_netns_names(agent_log: Path) -> set[str]:
    """The pod network namespace names of every pod the agent admitted that still exist on
    this host (/run/netns or /etc/netns). Only this agent's: other test runs and labs may run
    pods on the same host meanwhile."""
    uids = re.findall(r"pod \S+ \(([0-9a-f-]+)\) admitted", agent_log.read_text(errors="replace"))
    names = {pod_netns_name(uid) for uid in uids}
    return {n for n in names for d in ("/run/netns", "/etc/netns") if Path(d, n).exists()}


def is_ready(pod) -> bool:
    status = pod.get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conds.get("Ready") == "True"


def container_status(pod, name=None):
    statuses = pod["status"]["containerStatuses"]
    return statuses[0] if name is None else next(s for s in statuses if s["name"] == name)


ECHO = [{"name": "echo", "image": "meshnet/echo", "ports": [{"containerPort": 8080}]}]
SHELL = [{"name": "sh", "image": "busybox", "command": ["sleep", "3600"]}]
FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
TCP_UDP = ("import socket, sys, json; ip = sys.argv[1]; "
           "t = socket.create_connection((ip, 9000), timeout=5); t.sendall(b'ping\\n'); "
           "import time; time.sleep(0.2); tcp = t.recv(100).decode(); "
           "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5); "
           "u.sendto(b'hello', (ip, 9000)); udp = u.recv(100).decode(); "
           "print(json.dumps([tcp, udp]))")


@pytest.fixture(scope="module")
def cluster():
    lab = Lab()
    # Not pytest's tmp_path: pytest prunes old basetemp dirs, and another pytest run started
    # meanwhile would delete the agent's state (volumes, logs) under a running test.
    tmp = Path(tempfile.mkdtemp(prefix="meshnet-node-e2e-"))
    c = None
    try:
        c = Cluster(lab, tmp)
        yield c
        lab.stop(c.agent)  # the agent's own clean-up is under test: SIGTERM first
        assert c.agent.returncode == 0, c.agent_text()
        assert "mn-br0" not in c.node_links()
        assert "mnv" not in c.node_links()
        assert not pod_netns_names(c.agent_log)
        ipam = json.loads((c.state / "ipam.json").read_text())
        assert ipam["allocations"] == {}, ipam
        # Mount points the agent had to create are gone again (even across its crash).
        assert not Path("/etc/meshnet-e2e").exists() and \
            not Path("/var/meshnet-e2e-scratch").exists()
    finally:
        lab.cleanup()
        leftover = pod_netns_names(c.agent_log) if c is not None else set()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not leftover, f"pod namespaces left behind: {leftover}"


def test_echo_pod_gets_an_ip_and_becomes_ready(cluster):
    cluster.create_pod("web", ECHO)
    pod = cluster.wait_ready("web")
    status = pod["status"]
    network = ipaddress.ip_network(cluster.pod_cidr)
    assert network.subnet_of(ipaddress.ip_network("10.244.0.0/16"))
    assert ipaddress.ip_address(status["podIP"]) in network
    assert status["podIP"] != str(network.network_address + 1), "that is the bridge"
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == NODE_IP and status["startTime"]
    assert {c["type"] for c in status["conditions"]} == {
        "PodScheduled", "Initialized", "ContainersReady", "Ready"}
    cs = container_status(pod)
    assert "running" in cs["state"] and cs["ready"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("netns://")


def test_pods_reach_each_other_over_the_pod_network(cluster):
    cluster.create_pod("client", SHELL)
    cluster.wait_ready("client")
    web_ip = cluster.pod("web")["status"]["podIP"]
    out = cluster.exec("client", PY, "-c", FETCH, f"http://{web_ip}:8080/hello?x=1")
    assert out["exitCode"] == 0, out
    doc = json.loads(out["stdout"])
    assert (doc["pod"], doc["namespace"], doc["ip"], doc["path"], doc["method"]) == \
        ("web", "default", web_ip, "/hello", "GET")
    assert doc["host"] == f"{web_ip}:8080"
    client_ip = cluster.pod("client")["status"]["podIP"]
    assert client_ip != web_ip
    tcp_udp = cluster.exec("client", PY, "-c", TCP_UDP, web_ip)
    assert json.loads(tcp_udp["stdout"]) == ["web\nping\n", "web hello"], tcp_udp


def test_pod_dns_config_and_hostname(cluster):
    out = cluster.exec("client", "cat", "/etc/resolv.conf")
    assert out["stdout"] == ("nameserver 10.96.0.10\n"
                             "search default.svc.cluster.local svc.cluster.local cluster.local\n"
                             "options ndots:5\n")
    assert cluster.exec("client", "hostname")["stdout"].strip() == "client"


def test_configmap_and_secret_reach_the_container_and_no_one_else(cluster):
    cluster.ok(op="create", plural="configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
        "data": {"MODE": "blue", "app.properties": "color=blue\n"}})
    cluster.ok(op="create", plural="secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"},
        "stringData": {"password": "s3cret"}})
    cluster.create_pod("cfg", [{
        "name": "app", "image": "busybox", "command": ["sleep", "3600"],
        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret",
                                                                     "key": "password"}}},
                {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "GREETING", "value": "mode-$(MODE)"}],
        "envFrom": [{"configMapRef": {"name": "app-config"}}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/meshnet-e2e/config"},
                         {"name": "secret", "mountPath": "/etc/meshnet-e2e/secret"},
                         {"name": "scratch", "mountPath": "/var/meshnet-e2e-scratch"}]}],
        volumes=[{"name": "config", "configMap": {"name": "app-config"}},
                 {"name": "secret", "secret": {"secretName": "app-secret"}},
                 {"name": "scratch", "emptyDir": {}}])
    pod = cluster.wait_ready("cfg")
    env = dict(line.split("=", 1) for line in
               cluster.exec("cfg", "env")["stdout"].splitlines() if "=" in line)
    assert env["PASSWORD"] == "s3cret" and env["MODE"] == "blue"
    assert env["MY_POD"] == "cfg" and env["MY_IP"] == pod["status"]["podIP"]
    assert env["GREETING"] == "mode-blue"
    assert cluster.exec("cfg", "cat", "/etc/meshnet-e2e/config/app.properties")["stdout"] == \
        "color=blue\n"
    assert cluster.exec("cfg", "cat", "/etc/meshnet-e2e/secret/password")["stdout"] == "s3cret"
    # Another pod sees none of it: the mounts live in cfg's private mount namespace.
    other = cluster.exec("client", "ls", "-A", "/etc/meshnet-e2e/config", "/etc/meshnet-e2e/secret")
    assert "app.properties" not in other["stdout"] and "password" not in other["stdout"], other
    assert "PASSWORD" not in cluster.exec("client", "env")["stdout"]
    # A changed ConfigMap shows up in the mounted files.
    cluster.ok(op="patch", plural="configmaps", name="app-config",
               body={"data": {"app.properties": "color=green\n"}})
    wait_for(lambda: cluster.exec("cfg", "cat", "/etc/meshnet-e2e/config/app.properties")
             ["stdout"] == "color=green\n", "the configmap update in the mounted file")


def test_missing_configmap_keeps_the_pod_waiting_until_it_exists(cluster):
    cluster.create_pod("needs-cm", [{
        "name": "app", "image": "busybox", "command": ["sleep", "3600"],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "x"}}}]}])
    pod = cluster.wait_pod("needs-cm", lambda p: (container_status(p) or {}).get("state", {})
                           .get("waiting", {}).get("reason") == "CreateContainerConfigError"
                           if p.get("status", {}).get("containerStatuses") else False,
                           "CreateContainerConfigError")
    assert container_status(pod)["state"]["waiting"]["message"] == 'configmap "late" not found'
    assert pod["status"]["phase"] == "Pending"
    cluster.ok(op="create", plural="configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"},
        "data": {"x": "1"}})
    cluster.wait_ready("needs-cm")


def test_unknown_image_is_err_image_pull_then_back_off_with_an_event(cluster):
    cluster.create_pod("bad-image", [{"name": "app", "image": "example.com/nope:1"}])

    def reason(p):
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason")
    cluster.wait_pod("bad-image", lambda p: reason(p) == "ErrImagePull", "ErrImagePull")
    cluster.wait_pod("bad-image", lambda p: reason(p) == "ImagePullBackOff", "ImagePullBackOff")
    events = cluster.ok(op="list", plural="events")["items"]
    mine = [e for e in events if e["involvedObject"]["name"] == "bad-image"]
    assert any(e["reason"] == "Failed" and "example.com/nope:1" in e["message"] for e in mine)


def test_readiness_probe_failure_flips_ready(cluster):
    cluster.create_pod("probed", [{**ECHO[0], "readinessProbe": {
        "httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1,
        "failureThreshold": 1}}])
    cluster.wait_ready("probed")
    cluster.exec("probed", PY, "-c", FETCH, "http://127.0.0.1:8080/control/ready?ok=0")
    pod = cluster.wait_pod("probed", lambda p: not is_ready(p), "Ready=False")
    assert pod["status"]["phase"] == "Running"
    assert container_status(pod)["ready"] is False
    cluster.exec("probed", PY, "-c", FETCH, "http://127.0.0.1:8080/control/ready?ok=1")
    cluster.wait_ready("probed")


def test_status_someone_else_changed_is_written_again(cluster):
    """The node lifecycle controller marks the pods of a node it believes dead Ready=False
    (and the node Unknown); nothing but the agent puts them back. As kubelet's status
    manager, the agent compares the API's copy with its own on every update and writes its
    own again — and posts its node status at the next heartbeat, not a minute later."""
    cluster.create_pod("reassert", ECHO)
    before = cluster.wait_ready("reassert")["status"]
    conds = [dict(c) for c in before["conditions"]]
    for c in conds:
        if c["type"] == "Ready":
            c.update(status="False", reason="NodeNotReady", lastTransitionTime=None)
    marked = cluster.ok(op="patch", plural="pods", name="reassert", subresource="status",
                        body={"status": {"conditions": conds}})
    assert not is_ready(marked)
    after = cluster.wait_ready("reassert", timeout=5)["status"]
    assert after["conditions"] == before["conditions"]  # transition times included

    node = cluster.ok(op="get", plural="nodes", name=NODE)
    conds = [dict(c, status="Unknown", reason="NodeStatusUnknown")
             if c["type"] == "Ready" else c for c in node["status"]["conditions"]]
    cluster.ok(op="patch", plural="nodes", name=NODE, subresource="status",
               body={"status": {"conditions": conds}})

    def node_ready():
        node = cluster.ok(op="get", plural="nodes", name=NODE)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"]["conditions"])
    # LEASE_RENEW_S (10 s) at most, and the periodic status post is 60 s away.
    wait_for(node_ready, "node Ready again", timeout=15, interval=0.2)


def test_liveness_failure_restarts_with_back_off(cluster):
    cluster.create_pod("unlive", [{**ECHO[0], "livenessProbe": {
        "tcpSocket": {"port": 9999}, "initialDelaySeconds": 1, "periodSeconds": 1,
        "failureThreshold": 1}}],
        terminationGracePeriodSeconds=2)
    pod = cluster.wait_pod("unlive", lambda p: container_status(p)["restartCount"] >= 1
                           if p.get("status", {}).get("containerStatuses") else False,
                           "a restart", timeout=30)
    pod = cluster.wait_pod("unlive", lambda p: container_status(p)["state"].get("waiting", {})
                           .get("reason") == "CrashLoopBackOff", "CrashLoopBackOff", timeout=30)
    cs = container_status(pod)
    assert "back-off 10s" in cs["state"]["waiting"]["message"], cs
    # The echo server exits 0 on the agent's SIGTERM, as Kubernetes would report it.
    assert cs["lastState"]["terminated"]["reason"] == "Completed", cs
    previous = cluster.logs("unlive", previous="true")
    assert previous["status"] == 200 and "echo unlive" in previous["body"], previous


def test_logs_through_the_api_server(cluster):
    web_ip = cluster.pod("web")["status"]["podIP"]
    cluster.exec("client", PY, "-c", FETCH, f"http://{web_ip}:8080/logged")
    out = cluster.logs("web")
    assert out["status"] == 200
    assert "echo web: http :8080" in out["body"] and "GET /logged 200" in out["body"]
    tail = cluster.logs("web", tailLines="1")
    assert tail["body"].count("\n") == 1
    missing = cluster.logs("web", container="nope")
    assert missing["status"] == 400 and "container nope is not valid" in missing["body"]


def test_exec_reports_exit_code_and_stderr(cluster):
    out = cluster.exec("client", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert out == {"stdout": "out\n", "stderr": "err\n", "exitCode": 7}


def test_restart_policy_never_and_on_failure(cluster):
    cluster.create_pod("fails", [{"name": "app", "image": "busybox",
                                  "command": ["sh", "-c", "echo bye; exit 3"]}],
                       restartPolicy="Never")
    cluster.create_pod("succeeds", [{"name": "app", "image": "busybox",
                                     "command": ["true"]}], restartPolicy="OnFailure")
    pod = cluster.wait_pod("fails", lambda p: p["status"].get("phase") == "Failed", "Failed")
    term = container_status(pod)["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    pod = cluster.wait_pod("succeeds", lambda p: p["status"].get("phase") == "Succeeded",
                           "Succeeded")
    assert container_status(pod)["state"]["terminated"]["reason"] == "Completed"
    assert cluster.logs("fails")["body"] == "bye\n"


def test_node_registration_and_lease(cluster):
    node = cluster.ok(op="get", plural="nodes", name=NODE)
    assert node["spec"]["podCIDR"] == cluster.pod_cidr and node["spec"]["podCIDRs"]
    status = node["status"]
    assert {"type": "InternalIP", "address": NODE_IP} in status["addresses"]
    assert int(status["capacity"]["cpu"]) >= 1 and status["capacity"]["pods"] == "110"
    assert status["capacity"]["memory"].endswith("Ki")
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    lease = cluster.ok(op="get", plural="leases", namespace="kube-node-lease", name=NODE)
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["spec"]["leaseDurationSeconds"] == 40 and lease["spec"]["renewTime"]
    metrics = cluster.lab.run(cluster.node, ["curl", "-sf", "http://127.0.0.1:10248/metrics"])
    assert "meshnet_agent_container_starts_total" in metrics.stdout, metrics


def test_host_gw_routes_follow_other_nodes(cluster):
    cluster.ok(op="create", plural="nodes", body={
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"},
        "spec": {"podCIDR": "10.244.200.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": PEER_IP}]}})

    def route():
        return ip("-n", cluster.node, "route", "show", "10.244.200.0/24").stdout
    wait_for(lambda: f"via {PEER_IP}" in route(), "the host-gw route to node-b")
    cluster.ok(op="delete", plural="nodes", name="node-b")
    wait_for(lambda: route().strip() == "", "the route to go with node-b")


def test_graceful_termination_then_kill(cluster):
    cluster.create_pod("stubborn", [{"name": "app", "image": "busybox", "command": [
        "sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]}],
        terminationGracePeriodSeconds=2)
    pid = int(container_status(cluster.wait_ready("stubborn"))["containerID"]
              .removeprefix("netns://"))
    started = time.monotonic()
    cluster.ok(op="delete", plural="pods", name="stubborn")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "SIGKILL after the grace period", 10)
    assert time.monotonic() - started >= 1.8, "SIGTERM was ignored, so only SIGKILL ends it"


def test_meshctl_logs_and_exec(cluster):
    def meshctl(*argv):
        return cluster.lab.run(cluster.node, [PY, "-m", "meshnet.cli.main", "--kubeconfig",
                                              str(cluster.kubeconfig), *argv])
    out = meshctl("exec", "client", "--", "sh", "-c", "echo hi; exit 3")
    assert (out.returncode, out.stdout) == (3, "hi\n"), out
    assert "command terminated with exit code 3" in out.stderr
    logs = meshctl("logs", "web", "--tail", "1")
    assert logs.returncode == 0 and logs.stdout.count("\n") == 1, logs
    previous = meshctl("logs", "pod/unlive", "-p")
    assert previous.returncode == 0 and "echo unlive" in previous.stdout, previous
    follow = cluster.lab.popen(cluster.node, [PY, "-m", "meshnet.cli.main", "--kubeconfig",
                                              str(cluster.kubeconfig), "logs", "-f", "web"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert "echo web" in follow.stdout.readline()
        web_ip = cluster.pod("web")["status"]["podIP"]
        cluster.exec("client", PY, "-c", FETCH, f"http://{web_ip}:8080/followed")
        assert wait_for(lambda: "GET /followed" in follow.stdout.readline(), "a followed line")
    finally:
        cluster.lab.stop(follow)


def test_agent_crash_and_restart_keeps_addresses(cluster):
    before = {name: cluster.pod(name) for name in ("web", "client")}
    ips = {name: p["status"]["podIP"] for name, p in before.items()}
    pids = [int(container_status(p)["containerID"].removeprefix("netns://"))
            for p in before.values()]
    cluster.lab.stop(cluster.agent, signal.SIGKILL)
    cluster.agent = cluster.lab.popen(cluster.node, cluster.agent_argv,
                                      stdout=subprocess.PIPE, stderr=open(cluster.agent_log, "ab"))
    assert b"ready" in cluster.agent.stdout.readline(), cluster.agent_text()
    for pid in pids:  # the new agent stopped what the crashed one had started
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"old process {pid} to go")
    for name, old_ip in ips.items():
        pod = cluster.wait_ready(name)
        assert pod["status"]["podIP"] == old_ip, "IPAM state survives the crash"
    cluster.create_pod("after-crash", SHELL)
    assert cluster.wait_ready("after-crash")["status"]["podIP"] not in ips.values()
    web_ip = ips["web"]
    out = cluster.exec("after-crash", PY, "-c", FETCH, f"http://{web_ip}:8080/again")
    assert json.loads(out["stdout"])["pod"] == "web", out


def test_delete_cleans_up_interfaces_namespaces_processes_and_the_address(cluster):
    pod = cluster.pod("web")
    uid = pod["metadata"]["uid"].replace("-", "")
    pid = int(container_status(pod)["containerID"].removeprefix("netns://"))
    assert f"mnv{uid[:12]}" in cluster.node_links()
    cluster.ok(op="delete", plural="pods", name="web")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the echo process to exit")
    wait_for(lambda: f"mnv{uid[:12]}" not in cluster.node_links(), "the veth to go")
    wait_for(lambda: not Path(f"/etc/netns/mnpod-{uid[:16]}").exists(), "/etc/netns entry")

    def web_allocations():
        ipam = json.loads((cluster.state / "ipam.json").read_text())
        return [k for k in ipam["allocations"] if k.startswith("default/web/")]
    # The address is released after the netns teardown, so wait for it as for the rest.
    wait_for(lambda: not web_allocations(), "the address to return to the pool")
    assert not web_allocations()
