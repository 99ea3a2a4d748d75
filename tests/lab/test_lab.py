"""netns-lab end to end: `netns-lab/demo`, then issue 7's acceptance 1-4 on a lab of 3
workers, 3 API servers and a 3-member etcd, built by the real `netns-lab/` scripts (4: backup,
the whole control plane and its store destroyed, `netns-lab/restore`); then a crashed lab is
recovered and removed without a trace.

One lab for the module, on a /24 no address or route of the host touches, under a unique
name; `netns-lab/down` always runs. The test drives the cluster the way a user would: meshctl
(and a failover RestClient) from the host with the lab kubeconfig, `meshctl exec` into a client
pod, curl from the outside namespace. Figures (takeover time, write gap, recovery times) are
printed; run with -s to see them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netns import free_subnet, wait_for

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError, ConnectionFailed
from meshnet.client.kubeconfig import Kubeconfig
from meshnet.client.rest import RestClient

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "netns-lab"
MESHCTL = str(Path(sys.executable).parent / "meshctl")
CONFIGMAPS, LEASES = lookup("configmaps"), lookup("leases")
GRACE_S = 15  # node monitor grace: above the agent's 10 s lease renewal
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(name)s}
spec:
  replicas: %(replicas)d
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      nodeSelector: %(selector)s
      containers:
      - name: echo
        image: meshnet/echo
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
---
apiVersion: v1
kind: Service
metadata: {name: %(name)s}
spec:
  type: %(type)s
  selector: {app: %(name)s}
  ports: [{port: 80, targetPort: 8080}]
"""
INGRESS = """\
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: %(name)s}
spec:
  rules:
  - host: %(host)s
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: %(name)s, port: {number: %(port)d}}}}
"""
# Spread over every worker (by their cpu requests), a LoadBalancer, an ingress host.
WEB = DEPLOYMENT % {"name": "web", "replicas": 6, "selector": "{}", "type": "LoadBalancer"} + \
    INGRESS % {"name": "web", "host": "web.example", "port": 80}
# Only on the nodes labelled backend (w2, w3).
BACKEND = DEPLOYMENT % {"name": "backend", "replicas": 4, "type": "ClusterIP",
                        "selector": '{lab.meshnet.io/backend: "yes"}'}
CLIENT = """\
apiVersion: v1
kind: Pod
metadata: {name: %(name)s}
spec:
  nodeName: %(node)s
  containers:
  - {name: sh, image: busybox, command: [sleep, "3600"]}
"""


def host_snapshot(name: str, underlay: str) -> dict:
    """What of this lab the host holds (other labs and clusters come and go meanwhile)."""
    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    return {"links": sorted(line.split(":")[1].strip().split("@")[0]
                            for line in out("ip", "-o", "link").splitlines() if name in line),
            "routes": sorted(line for line in out("ip", "route", "show", "table", "all")
                             .splitlines() if name in line or underlay in line),
            "netns": sorted(line.split()[0] for line in out("ip", "netns", "list").splitlines()
                            if line.startswith(name)),
            "etc_netns": sorted(p.name for p in Path("/etc/netns").glob(f"{name}-*"))}


class Lab:
    def __init__(self, tmp: Path, *up_args: str):
        self.tmp = tmp
        self.name = f"mnl{secrets.token_hex(3)}"
        self.data = tmp / "lab"
        self.underlay = free_subnet("172.29.0.0/16", 24)
        self.up_args = up_args
        self.kubeconfig = self.data / "admin.kubeconfig"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.before = host_snapshot(self.name, self.underlay)
        net = ipaddress.ip_network(self.underlay)
        self.ip = lambda offset: str(net.network_address + offset)

    def lab(self, verb: str, *args: str, check: bool = True, timeout: float = 180):
        proc = subprocess.run([str(LAB / verb), "--name", self.name, "--data-dir",
                               str(self.data), *args], capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode:
            raise AssertionError(f"netns-lab/{verb} {' '.join(args)} failed:\n{proc.stdout}\n"
                                 f"{proc.stderr}\n{self.logs()}")
        return proc

    def up(self):
        return self.lab("up", "--underlay", self.underlay, *self.up_args)

    def state(self) -> dict:
        return json.loads((self.data / "state.json").read_text())

    def logs(self, lines: int = 15) -> str:
        out = []
        for log in sorted((self.data / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)[-12000:]

    def meshctl(self, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        proc = subprocess.run([MESHCTL, *argv], capture_output=True, text=True, env=self.env,
                              input=stdin, timeout=60)
        if check and proc.returncode:
            raise AssertionError(f"meshctl {' '.join(argv)}: {proc.stderr}")
        return proc.stdout

    def json(self, *argv: str):
        return json.loads(self.meshctl(*argv, "-o", "json"))

    def outside(self, url: str, host: str = "") -> dict | None:
        """curl from the outside namespace; the echo pod's JSON or None."""
        argv = ["curl", "-sS", "--max-time", "3", url] + (["-H", f"Host: {host}"] if host else [])
        proc = self.lab("exec", "out", "--", *argv, check=False, timeout=30)
        try:
            return json.loads(proc.stdout) if proc.returncode == 0 else None
        except ValueError:
            return None

    def pod_curl(self, pod: str, url: str) -> dict | None:
        proc = subprocess.run([MESHCTL, "exec", pod, "--", "curl", "-sS", "--max-time", "3",
                               url], capture_output=True, text=True, env=self.env, timeout=30)
        try:
            return json.loads(proc.stdout) if proc.returncode == 0 else None
        except ValueError:
            return None

    def client(self, timeout: float = 10) -> RestClient:
        return RestClient(Kubeconfig.load(str(self.kubeconfig), {}).connection(None),
                          timeout=timeout)

    def ready_pods(self, app: str) -> list[dict]:
        pods = self.json("get", "pods", "-l", f"app={app}")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or [])]

    def wait_running(self, pod: str, node: str) -> None:
        try:
            wait_for(lambda: self.json("get", "pod", pod)["status"].get("phase") == "Running",
                     f"pod {pod} on {node} Running", timeout=30, interval=0.5)
        except AssertionError as exc:
            status = self.meshctl("get", "pod", pod, "-o", "yaml", check=False)
            log = (self.data / "logs" / f"{node}-agent.log").read_text(errors="replace")
            raise AssertionError(f"{exc}\n{status}\n{node}'s agent:\n{log[-5000:]}") from None

    def node_ready(self, node: str) -> bool:
        conds = self.json("get", "node", node)["status"]["conditions"]
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def lb_holder(self, lb_ip: str) -> list[str]:
        """The workers that carry the LoadBalancer IP on their uplink (they answer ARP)."""
        holders = []
        for i in range(1, 4):
            out = subprocess.run(["ip", "-n", f"{self.name}-w{i}", "-o", "addr", "show", "dev",
                                  "eth0"], capture_output=True, text=True).stdout
            if f" {lb_ip}/32 " in out:
                holders.append(f"w{i}")
        return holders


FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        raise RuntimeError("the lab needs root (network namespaces, veths, routes)")
    the_lab = Lab(tmp_path_factory.mktemp("lab"), "--control-planes", "3", "--workers", "3",
                  "--etcd", "3", f"--apiserver-arg=--node-monitor-grace-period={GRACE_S}s",
                  "--apiserver-arg=--pod-eviction-timeout=2s")
    try:
        t0 = time.monotonic()
        out = the_lab.up().stdout
        FIGURES["lab up (3 etcd, 3 API servers, 3 workers)"] = f"{time.monotonic() - t0:.1f} s"
        assert f"lab {the_lab.name} is up" in out, out
        yield the_lab
    finally:
        down = the_lab.lab("down", check=False, timeout=300)
        print("\nfigures:\n" + "\n".join(f"  {k}: {v}" for k, v in FIGURES.items()))
        assert down.returncode == 0, down.stdout + down.stderr
        assert host_snapshot(the_lab.name, the_lab.underlay) == the_lab.before


def test_status_lists_every_member_and_api_server(lab):
    assert f"lab {lab.name} is already up" in lab.up().stdout  # up is a reconcile
    status = lab.lab("status")
    text = status.stdout
    for member in ("cp1", "cp2", "cp3", "w1", "w2", "w3", "out"):
        assert f"  {member} " in text
    assert "Nodes: w1 Ready, w2 Ready, w3 Ready" in text
    apis = ", ".join(lab.ip(o) for o in (11, 12, 13))
    assert f"live API servers (kubernetes Endpoints): {apis}" in text, text


def test_demo_tells_the_cheat_sheet_story_across_the_nodes(lab):
    # First on the empty cluster: its three replicas (100m each) land one per worker, which
    # keeps the later spreads even.
    t0 = time.monotonic()
    out = lab.lab("demo", timeout=240).stdout
    FIGURES["netns-lab/demo on the running lab"] = f"{time.monotonic() - t0:.1f} s"
    assert "$ meshctl apply -f - <<EOF" in out and "host: myapp.com" in out
    pods = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in lab.ready_pods("myapp")}
    assert sorted(pods.values()) == ["w1", "w2", "w3"], pods
    answers = [line for line in out.splitlines() if "curl --resolve myapp.com:80:" in line]
    assert len(answers) == 9, out
    for i, line in enumerate(answers):  # round robin over the workers' ingresses
        pod, node = line.split("  ->  ")[1].split(" (")[0].split(" on ")
        assert f"myapp.com:80:{lab.ip(21 + i % 3)} " in line and pods[pod] == node, line
    assert "9 of 9 requests answered, by 3 pod(s) on w1 (" in out, out
    # The app stays; it answers as the demo said.
    doc = lab.outside(f"http://{lab.ip(22)}/", host="myapp.com")
    assert doc["pod"] in pods and doc["host"] == "myapp.com"


def test_acceptance_1_spread_clusterip_dns_nodeport_lb_ingress(lab):
    for node in ("w2", "w3"):
        lab.meshctl("label", "node", node, "lab.meshnet.io/backend=yes")
    lab.meshctl("apply", "-f", "-", stdin=WEB)
    wait_for(lambda: len(lab.ready_pods("web")) == 6, "6 web pods Ready", timeout=60,
             interval=0.5)
    web_nodes = sorted(p["spec"]["nodeName"] for p in lab.ready_pods("web"))
    assert web_nodes == ["w1", "w1", "w2", "w2", "w3", "w3"]  # spread by their requests
    lab.meshctl("apply", "-f", "-", stdin=BACKEND)
    lab.meshctl("apply", "-f", "-", stdin=CLIENT % {"name": "client", "node": "w1"})
    wait_for(lambda: len(lab.ready_pods("backend")) == 4, "4 backend pods Ready", timeout=60,
             interval=0.5)
    assert {p["spec"]["nodeName"] for p in lab.ready_pods("backend")} == {"w2", "w3"}
    lab.wait_running("client", "w1")

    # From a pod on w1 to a Service whose endpoints are on w2 and w3: ClusterIP, DNS names.
    cluster_ip = lab.json("get", "svc", "backend")["spec"]["clusterIP"]
    seen = set()
    for url in [f"http://{cluster_ip}/"] * 8 + ["http://backend.default.svc.cluster.local/",
                                                 "http://backend/"]:
        doc = wait_for(lambda u=url: lab.pod_curl("client", u), f"client -> {url}",
                       timeout=20, interval=0.5)
        seen.add(doc["node"])
    assert seen == {"w2", "w3"}

    svc = lab.json("get", "svc", "web")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    lb_ip = wait_for(lambda: (lab.json("get", "svc", "web")["status"].get("loadBalancer") or {})
                     .get("ingress"), "a LoadBalancer IP", timeout=20)[0]["ip"]
    assert ipaddress.ip_address(lb_ip) in ipaddress.ip_network(lab.underlay)
    workers = {f"w{i}": lab.ip(20 + i) for i in (1, 2, 3)}
    for node, ip in workers.items():  # NodePort and the ingress on every worker, from outside
        assert wait_for(lambda ip=ip: lab.outside(f"http://{ip}:{node_port}/"),
                        f"NodePort on {node}", timeout=20, interval=0.5)["pod"].startswith("web-")
        doc = wait_for(lambda ip=ip: lab.outside(f"http://{ip}/", host="web.example"),
                       f"ingress on {node}", timeout=20, interval=0.5)
        assert doc["host"] == "web.example" and doc["pod"].startswith("web-")
    doc = wait_for(lambda: lab.outside(f"http://{lb_ip}/"), "the LoadBalancer IP from outside",
                   timeout=20, interval=0.5)
    assert doc["pod"].startswith("web-")
    assert len(lab.lb_holder(lb_ip)) == 1


class Writer(threading.Thread):
    """A stream of writes (and reads) through one failover client, as a controller would
    issue them: a failed write is retried; AlreadyExists on a retry means it was applied."""

    def __init__(self, lab: Lab, prefix: str):
        super().__init__(daemon=True)
        self.client = lab.client(timeout=10)
        self.prefix = prefix
        self.acked: list[tuple[str, float]] = []
        self.failed_attempts = 0
        self.reads = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            name = f"{self.prefix}-{i}"
            retried = False
            while not self.stop.is_set():
                try:
                    self.client.create(CONFIGMAPS, {"metadata": {"name": name}}, "default")
                except (ConnectionFailed, ApiError) as exc:
                    if isinstance(exc, ConnectionFailed) or exc.code >= 500:
                        # No answer, or the store could not tell whether it was applied.
                        self.failed_attempts += 1
                        retried = True
                        continue
                    if not (retried and exc.reason == "AlreadyExists"):
                        self.errors.append(repr(exc))
                        return
                self.acked.append((name, time.monotonic()))
                try:
                    self.client.get(CONFIGMAPS, name, "default")
                    self.reads += 1
                except (ConnectionFailed, ApiError) as exc:
                    self.errors.append(f"read {name}: {exc!r}")
                break
            i += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        self.client.close()

    def max_gap_s(self) -> float:
        times = [t for _, t in self.acked]
        return max(b - a for a, b in zip(times, times[1:]))


def _holder(lab: Lab) -> str:
    client = lab.client(timeout=5)
    try:
        lease = client.get(LEASES, "meshnet-controller-manager", "kube-system")
    finally:
        client.close()
    return (lease.get("spec") or {}).get("holderIdentity") or ""


def _api_endpoints(lab: Lab) -> list[str]:
    ep = lab.json("get", "endpoints", "kubernetes")
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s["addresses"])


def test_acceptance_2_leading_api_server_dies_under_writes_and_reads(lab):
    cp1 = f"{lab.ip(11)}:6443"
    assert _holder(lab) == cp1  # the first API server started alone: it leads
    writer = Writer(lab, "stream")
    writer.start()
    wait_for(lambda: len(writer.acked) >= 20, "writes flowing", timeout=20)
    t_kill = time.monotonic()
    lab.lab("stop", "cp1", "apiserver", "--kill")
    acked_at_kill = len(writer.acked)
    new = wait_for(lambda: (h := _holder(lab)) not in ("", cp1) and h, "a new leader",
                   timeout=15, interval=0.1)
    takeover_s = time.monotonic() - t_kill
    wait_for(lambda: len(writer.acked) >= acked_at_kill + 20, "writes after the kill",
             timeout=20)
    writer.finish()
    assert not writer.errors, writer.errors
    FIGURES["leader takeover after SIGKILL (lease 5 s)"] = f"{takeover_s:.1f} s -> {new}"
    FIGURES["acknowledged writes / longest gap / failed attempts"] = (
        f"{len(writer.acked)} / {writer.max_gap_s():.2f} s / {writer.failed_attempts}")
    assert takeover_s < 10
    assert writer.client.servers.failovers >= 1 and writer.client.server != f"https://{cp1}"
    assert writer.failed_attempts <= 1  # at most the write in flight on the dead connection

    # No acknowledged write lost.
    client = lab.client()
    names = {o["metadata"]["name"] for o in client.list(CONFIGMAPS, "default")["items"]}
    client.close()
    assert {n for n, _ in writer.acked} <= names

    # The cluster keeps working: controllers on the new leader allocate and fill a new
    # Service, and every worker's proxy (which followed cp1 until it died) programs it.
    lab.meshctl("expose", "deployment", "web", "--name", "after", "--port", "81",
                "--target-port", "8080", "--type", "NodePort")
    port = lab.json("get", "svc", "after")["spec"]["ports"][0]["nodePort"]
    for i in (1, 2, 3):
        wait_for(lambda i=i: lab.outside(f"http://{lab.ip(20 + i)}:{port}/"),
                 f"the new NodePort on w{i}", timeout=20, interval=0.5)
    wait_for(lambda: _api_endpoints(lab) == [lab.ip(12), lab.ip(13)],
             "the dead API server out of the kubernetes Endpoints", timeout=20, interval=0.5)
    for i in (1, 2, 3):
        log = (lab.data / "logs" / f"w{i}-proxy.log").read_text()
        assert "watching again from" in log  # resumed its watches on another server
    lab.lab("start", "cp1", "apiserver")
    wait_for(lambda: _api_endpoints(lab) == [lab.ip(o) for o in (11, 12, 13)],
             "cp1 back in the kubernetes Endpoints", timeout=30, interval=0.5)


def test_acceptance_3_a_worker_cut_off(lab):
    # The worker announcing the LoadBalancer IP is cut off.
    lb_ip = lab.json("get", "svc", "web")["status"]["loadBalancer"]["ingress"][0]["ip"]
    (cut,) = lab.lb_holder(lb_ip)
    alive = [f"w{i}" for i in (1, 2, 3) if f"w{i}" != cut]
    client_pod = f"client-{alive[0]}"
    lab.meshctl("apply", "-f", "-", stdin=CLIENT % {"name": client_pod, "node": alive[0]})
    lab.wait_running(client_pod, alive[0])
    t_cut = time.monotonic()
    lab.lab("cut", cut)

    moved = wait_for(lambda: (h := lab.lb_holder(lb_ip)) and cut not in h and h,
                     "the LoadBalancer IP to move", timeout=30, interval=0.2)
    wait_for(lambda: lab.outside(f"http://{lb_ip}/"), "the LoadBalancer IP to answer again",
             timeout=30, interval=0.2)
    lb_s = time.monotonic() - t_cut
    wait_for(lambda: not lab.node_ready(cut), f"{cut} NotReady", timeout=GRACE_S + 30,
             interval=0.5)
    not_ready_s = time.monotonic() - t_cut

    def recreated():
        pods = lab.ready_pods("web")
        return len(pods) == 6 and all(p["spec"]["nodeName"] != cut for p in pods)
    wait_for(recreated, f"web's pods recreated off {cut}", timeout=60, interval=0.5)
    recreated_s = time.monotonic() - t_cut

    def service_recovered():
        docs = [lab.pod_curl(client_pod, "http://web/") for _ in range(6)]
        return all(d and d["node"] != cut for d in docs)
    wait_for(service_recovered, "the Service answered by live nodes only", timeout=30,
             interval=0.5)
    FIGURES[f"cut {cut}: LB IP moved to {moved[0]} and answering"] = f"{lb_s:.1f} s"
    FIGURES[f"cut {cut}: NotReady (grace {GRACE_S} s) / pods recreated"] = (
        f"{not_ready_s:.1f} s / {recreated_s:.1f} s")
    for pod in lab.ready_pods("backend"):
        assert pod["spec"]["nodeName"] != cut

    lab.lab("reconnect", cut)
    wait_for(lambda: lab.node_ready(cut), f"{cut} Ready again", timeout=40, interval=0.5)


def test_acceptance_3_an_etcd_member_dies_under_writes(lab):
    # The etcd member every API server talks to (the first) dies under a stream of writes:
    # the servers move to the next member, writes go on, nothing acknowledged is lost.
    writer = Writer(lab, "quorum")
    writer.start()
    wait_for(lambda: len(writer.acked) >= 20, "writes flowing", timeout=20)
    acked_at_kill = len(writer.acked)
    lab.lab("stop", "cp1", "e1", "--kill")
    wait_for(lambda: len(writer.acked) >= acked_at_kill + 30,
             "writes with one etcd member down", timeout=30)
    writer.finish()
    assert not writer.errors, writer.errors
    FIGURES["etcd member killed: acknowledged writes / longest gap / failed attempts"] = (
        f"{len(writer.acked)} / {writer.max_gap_s():.2f} s / {writer.failed_attempts}")
    client = lab.client()
    names = {o["metadata"]["name"] for o in client.list(CONFIGMAPS, "default")["items"]}
    client.close()
    assert {n for n, _ in writer.acked} <= names
    lab.lab("start", "cp1", "e1")

    # The cluster still follows changes: a pod created now is started by its node (the
    # agent's watch goes through an API server whose etcd member went away).
    lab.meshctl("apply", "-f", "-", stdin=CLIENT % {"name": "after-etcd", "node": "w1"})
    lab.wait_running("after-etcd", "w1")


def read_snapshot(path: Path) -> tuple[int, dict[str, dict]]:
    """(revision, {key: record}) of a `meshctl backup` file."""
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines[1:-1]]
    return json.loads(lines[0])["revision"], {r["key"]: r for r in records}


def object_keys(records: dict[str, dict]) -> dict[str, str]:
    """{key: uid} of the API objects (not the range keys) in a snapshot."""
    return {k: json.loads(r["value"])["metadata"]["uid"] for k, r in records.items()
            if not k.startswith("/registry/ranges/")}


def served_uids(lab: Lab, keys) -> dict[str, str]:
    """{store key: uid} of what the API serves, for the kinds among `keys`: one list each."""
    client = lab.client()
    out = {}
    try:
        for group, plural in sorted({tuple(k.split("/")[2:4]) for k in keys}):
            for obj in client.list(lookup(plural))["items"]:
                meta = obj["metadata"]
                where = [meta["namespace"]] if meta.get("namespace") else []
                out["/".join(["", "registry", group, plural, *where, meta["name"]])] = \
                    meta["uid"]
    finally:
        client.close()
    return out


def test_acceptance_4_backup_destroy_the_control_plane_restore(lab):
    # A pod whose containers live through the disaster, to ask the Services from.
    lab.meshctl("apply", "-f", "-", stdin=CLIENT % {"name": "survivor", "node": "w1"})
    lab.wait_running("survivor", "w1")
    web = lab.json("get", "svc", "web")
    backend_ip = lab.json("get", "svc", "backend")["spec"]["clusterIP"]
    lb_ip = web["status"]["loadBalancer"]["ingress"][0]["ip"]

    # The backup, and the credentials kept with it (files, not store keys).
    backup = lab.tmp / "lab.snapshot"
    assert "written to" in lab.meshctl("backup", str(backup))
    kept = lab.tmp / "credentials"
    kept.mkdir()
    for name in ("ca.crt", "ca.key", "tokens.csv"):
        (kept / name).write_bytes((lab.data / "cp1" / "apiserver" / name).read_bytes())
    revision, records = read_snapshot(backup)
    objects = object_keys(records)
    ranges = {k: r["value"] for k, r in records.items() if k.startswith("/registry/ranges/")}
    assert len(objects) > 50 and any("/serviceips/" in k for k in ranges)

    # The disaster: every API server and etcd member dies, and their data with them.
    t_kill = time.monotonic()
    for cp in ("cp1", "cp2", "cp3"):
        lab.lab("stop", cp, "--kill")
        shutil.rmtree(lab.data / cp)
    gone = subprocess.run([MESHCTL, "get", "ns"], capture_output=True, text=True, env=lab.env,
                          timeout=60)
    assert gone.returncode and "Unable to connect to any of 3 API servers" in gone.stderr
    # The data plane does not need the control plane: the ingress still answers.
    doc = lab.outside(f"http://{lab.ip(22)}/", host="web.example")
    assert doc and doc["pod"].startswith("web-")

    # A new control plane from the backup (with the module's 15 s node grace period: the node
    # lifecycle controller counts it from when it first sees each node's Lease, not from the
    # restored renewTime).
    t0 = time.monotonic()
    out = lab.lab("restore", str(backup), "--credentials", str(kept)).stdout
    restore_s = time.monotonic() - t0
    assert f"restored {len(records)} keys" in out, out
    # Right away, a new Service and Ingress: every worker's proxy programs the Service once
    # its informers are back (they backed off while no API server answered).
    lab.meshctl("expose", "deployment", "web", "--name", "restored", "--port", "83",
                "--target-port", "8080", "--type", "NodePort")
    lab.meshctl("apply", "-f", "-", stdin=INGRESS % {"name": "restored", "port": 83,
                                                      "host": "restored.example"})
    port = lab.json("get", "svc", "restored")["spec"]["ports"][0]["nodePort"]
    for i in (1, 2, 3):
        wait_for(lambda i=i: lab.outside(f"http://{lab.ip(20 + i)}:{port}/"),
                 f"the new NodePort on w{i}", timeout=40, interval=0.2)
    reconnect_s = time.monotonic() - t0 - restore_s

    # Every object is back, with its uid, and served by the API servers; every allocated
    # address is back; resourceVersions moved past the old store's.
    second = lab.tmp / "after.snapshot"
    lab.meshctl("backup", str(second))
    _, after = read_snapshot(second)
    back = object_keys(after)
    assert {k: back.get(k) for k in objects} == objects
    assert {k: after[k]["value"] for k in ranges if k in after} == ranges
    assert {k: v for k, v in served_uids(lab, objects).items() if k in objects} == objects
    assert min(r["modRevision"] for r in after.values()) > revision
    svc = lab.json("get", "svc", "web")
    assert svc["metadata"]["uid"] == web["metadata"]["uid"]
    assert svc["spec"]["clusterIP"] == web["spec"]["clusterIP"]
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == lb_ip

    # The data plane: the Service by ClusterIP and by name from the pod that lived through
    # it, the LoadBalancer IP and the ingress from outside.
    for url in (f"http://{backend_ip}/", "http://backend/"):
        doc = wait_for(lambda u=url: lab.pod_curl("survivor", u), f"survivor -> {url}",
                       timeout=30, interval=0.5)
        assert doc["pod"].startswith("backend-")
    wait_for(lambda: lab.outside(f"http://{lb_ip}/"), "the LoadBalancer IP", timeout=30,
             interval=0.5)

    # Every worker's daemons reconnected by themselves: the new Service is named by every
    # DNS, the new Ingress host routed by every ingress, a new pod started by its agent.
    for i in (1, 2, 3):
        wait_for(lambda i=i: lab.outside(f"http://{lab.ip(20 + i)}/", host="restored.example"),
                 f"the new ingress host on w{i}", timeout=40, interval=0.5)
    for node in ("w2", "w3"):
        lab.meshctl("apply", "-f", "-", stdin=CLIENT % {"name": f"after-{node}", "node": node})
    for pod, node in (("survivor", "w1"), ("after-w2", "w2"), ("after-w3", "w3")):
        lab.wait_running(pod, node)
        doc = wait_for(lambda p=pod: lab.pod_curl(p, "http://restored:83/"),
                       f"{pod} -> restored:83 (DNS on {node})", timeout=30, interval=0.5)
        assert doc["pod"].startswith("web-")
    recovered_s = time.monotonic() - t_kill
    assert all(lab.node_ready(f"w{i}") for i in (1, 2, 3))
    assert lab.lab("status").returncode == 0
    FIGURES["restore: netns-lab/restore (check, new etcd, restore, 3 API servers)"] = \
        f"{restore_s:.1f} s, {len(records)} keys"
    FIGURES["restore: restored -> a new NodePort answers on every worker"] = \
        f"{reconnect_s:.1f} s"
    FIGURES["restore: kill -> every check passed"] = f"{recovered_s:.1f} s"


def test_a_crashed_lab_comes_back_and_goes_without_a_trace(tmp_path):
    lab = Lab(tmp_path, "--store", "sqlite", "--workers", "1")
    try:
        lab.up()
        lab.meshctl("create", "deployment", "survivor", "--image=meshnet/echo")
        wait_for(lambda: lab.ready_pods("survivor"), "a pod", timeout=60, interval=0.5)
        for rec in lab.state()["processes"].values():
            os.killpg(rec["pid"], signal.SIGKILL)
        status = lab.lab("status", check=False)
        assert status.returncode == 1 and "STOPPED" in status.stdout
        again = lab.up().stdout
        assert "leftovers of an earlier run" in again and f"lab {lab.name} is up" in again
        wait_for(lambda: lab.ready_pods("survivor"), "the pod again (same store)",
                 timeout=60, interval=0.5)
        for rec in lab.state()["processes"].values():
            os.killpg(rec["pid"], signal.SIGKILL)
    finally:
        down = lab.lab("down", check=False, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert host_snapshot(lab.name, lab.underlay) == lab.before
    leftover = subprocess.run(["pgrep", "-f", str(lab.data)], capture_output=True,
                              text=True).stdout.split()
    assert not leftover, f"processes of the lab still run: {leftover}"
    assert not (lab.data / "state.json").exists()
