"""`meshctl up` / `meshctl down` end to end: the cheat-sheet walkthrough on a real cluster.

One cluster for the module, started with the installed `meshctl` on free loopback ports, a
unique name and a /30 no other lab uses, in a fresh data dir. The DNS upstream is a server
this test runs on loopback (it answers REFUSED), so no question ever leaves the host. The
last test SIGKILLs everything, checks `up` recovers, then `meshctl down` and compares the
host's links, routes, namespaces and processes with what they were before `up`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from netns import free_subnet, wait_for

BIN = Path(sys.executable).parent
MESHCTL = str(BIN / "meshctl")
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp}
spec:
  replicas: 2
  selector: {matchLabels: {app: myapp}}
  template:
    metadata: {labels: {app: myapp}}
    spec:
      containers:
      - {name: echo, image: meshnet/echo, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: myapp}
spec:
  selector: {app: myapp}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: myapp}
spec:
  rules:
  - host: myapp.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: myapp, port: {number: 80}}}
"""
DB = """\
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: echo, image: meshnet/echo, ports: [{containerPort: 8080}]}
"""


def sleeper(name: str) -> str:
    """A busybox pod that just sleeps (for exec), labelled app=<name>."""
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: sh, image: busybox, command: [sleep, "3600"]}}
"""


SHELL, CLIENT = sleeper("shell"), sleeper("client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_link_cidr() -> str:
    """A /30 in 172.31.0.0/16 that no address or route of the host touches."""
    return free_subnet("172.31.0.0/16", 30)


class RefusingDNS:
    """The test's own upstream on loopback: every question gets REFUSED."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(data) >= 12:
                self.questions += 1
                self.sock.sendto(data[:2] + bytes([data[2] | 0x80, (data[3] & 0xF0) | 5]) +
                                 data[4:], addr)


def host_snapshot(name: str, link_cidr: str) -> dict:
    """What of the host's network this cluster could have touched: links, routes and
    namespaces named after it, routes through its /30, and the `unreachable` routes. Other
    labs may run on the host meanwhile, so nothing else is compared."""
    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    link_net = ipaddress.ip_network(link_cidr)
    link_ips = {str(a) for a in link_net} | {str(link_net)}
    return {"links": sorted(n for l in out("ip", "-o", "link").splitlines()
                            if (n := l.split(":")[1].strip().split("@")[0]).startswith(name)),
            "routes": sorted(l for l in out("ip", "route", "show", "table", "all").splitlines()
                             if name in l or "unreachable" in l or
                             link_ips & set(l.split())),
            "netns": sorted(l.split()[0] for l in out("ip", "netns", "list").splitlines()
                            if l.startswith(name))}


class Up:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.data = tmp / "data"
        self.name = f"mnup{secrets.token_hex(3)}"
        self.api_port, self.http_port, self.https_port = free_port(), free_port(), free_port()
        self.link = free_link_cidr()
        self.dns = RefusingDNS()
        self.kubeconfig = self.data / "admin.kubeconfig"

    def up_argv(self):
        return [MESHCTL, "up", "--data-dir", str(self.data), "--name", self.name,
                "--api-port", str(self.api_port), "--ingress-http-port", str(self.http_port),
                "--ingress-https-port", str(self.https_port), "--link-cidr", self.link,
                "--dns-upstream", f"127.0.0.1:{self.dns.port}"]

    def run(self, *argv, timeout=120, check=True, stdin=None, env=None):
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=stdin, cwd=self.tmp, env=env)
        if check:
            assert proc.returncode == 0, f"{argv}: rc={proc.returncode}\n{proc.stdout}\n" \
                                         f"{proc.stderr}\n{self.logs()}"
        return proc

    def meshctl(self, *argv, **kw):
        return self.run(MESHCTL, "--kubeconfig", str(self.kubeconfig), *argv, **kw)

    def apply(self, name: str, text: str) -> Path:
        """Write a manifest to the test's directory and `meshctl apply -f` it."""
        path = self.tmp / name
        path.write_text(text)
        self.meshctl("apply", "-f", str(path))
        return path

    def json(self, *argv):
        return json.loads(self.meshctl(*argv, "-o", "json").stdout)

    def state(self) -> dict:
        return json.loads((self.data / "up" / "state.json").read_text())

    def logs(self) -> str:
        out = []
        for log in sorted((self.data / "up" / "logs").glob("*.log")) if self.data.exists() \
                else []:
            out.append(f"== {log.name}\n" + "\n".join(log.read_text(errors="replace")
                                                       .splitlines()[-20:]))
        return "\n".join(out)

    def curl(self, host="myapp.com", path="/"):
        proc = subprocess.run(["curl", "-sS", "--max-time", "5", "--resolve",
                               f"{host}:{self.http_port}:127.0.0.1",
                               f"http://{host}:{self.http_port}{path}"],
                              capture_output=True, text=True)
        return proc.returncode == 0 and proc.stdout.startswith("{") and json.loads(proc.stdout)

    def pods(self, selector) -> list[dict]:
        return self.json("get", "pods", "-l", selector)["items"]

    def ready_pods(self, selector, n):
        def check():
            items = [p for p in self.pods(selector)
                     if not p["metadata"].get("deletionTimestamp")
                     and any(c["type"] == "Ready" and c["status"] == "True"
                             for c in p["status"].get("conditions") or [])]
            return len(items) == n and items
        return wait_for(check, f"{n} ready pods {selector}", timeout=60, interval=0.3)


@contextlib.contextmanager
def running(cls=Up):
    """`meshctl up` in a fresh temporary data dir; `down` (and removal by hand of whatever it
    could not remove) on the way out, also after a failure."""
    if os.geteuid() != 0:
        raise RuntimeError("meshctl up needs root (network namespaces, veth, routes)")
    tmp = Path(tempfile.mkdtemp(prefix="meshnet-up-e2e-"))
    c = cls(tmp)
    c.before = host_snapshot(c.name, c.link)
    try:
        out = c.run(*c.up_argv())
        assert f"meshnet cluster {c.name} is up" in out.stdout, out.stdout
        yield c
    finally:
        if (c.data / "up" / "state.json").exists():
            c.run(MESHCTL, "down", "--data-dir", str(c.data), check=False)
        subprocess.run(["ip", "link", "del", f"{c.name}-h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", f"{c.name}-node-1"], capture_output=True)
        c.dns.sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    with running(Up) as c:
        yield c


def test_up_reports_and_is_idempotent(cluster):
    again = cluster.run(*cluster.up_argv())
    assert "is already up" in again.stdout, again.stdout
    status = cluster.run(MESHCTL, "status", "--data-dir", str(cluster.data))
    assert f"{cluster.name}-node-1: Ready" in status.stdout, status.stdout
    assert "NOT RUNNING" not in status.stdout
    node = cluster.json("get", "node", f"{cluster.name}-node-1")
    assert {"type": "InternalIP", "address": cluster.state()["node_ip"]} in \
        node["status"]["addresses"]
    # The only address up added to the host is the /30's host end.
    link = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", f"{cluster.name}-h"],
                          capture_output=True, text=True).stdout
    assert cluster.state()["host_ip"] in link


def _replicasets(cluster, selector: str) -> dict[str, dict]:
    return {rs["metadata"]["name"]: rs for rs in cluster.json("get", "rs", "-l", selector)["items"]}


def test_create_deployment_then_edit_its_image_replaces_the_pod(cluster):
    # The cheat sheet: `create deployment nginx-depl --image=nginx` (the host's nginx).
    cluster.meshctl("create", "deployment", "nginx-depl", "--image=nginx")
    first = cluster.ready_pods("app=nginx-depl", 1)[0]
    (rs_name, rs), = _replicasets(cluster, "app=nginx-depl").items()
    assert rs_name.startswith("nginx-depl-")
    assert first["metadata"]["name"].startswith(rs_name + "-")
    assert first["metadata"]["ownerReferences"][0]["name"] == rs_name
    page = cluster.meshctl("exec", first["metadata"]["name"], "--", "curl", "-sS",
                           "--max-time", "5", "http://127.0.0.1/")
    assert "Welcome to nginx" in page.stdout, page.stdout

    # `meshctl edit deployment nginx-depl`, the editor changing the image (as a person would
    # in vi): a new ReplicaSet, and the nginx pod replaced by one running the new image.
    editor = cluster.tmp / "edit-image.sh"
    editor.write_text("#!/bin/sh\nsed -i 's#image: nginx$#image: meshnet/echo#' \"$1\"\n")
    editor.chmod(0o755)
    cluster.run(MESHCTL, "--kubeconfig", str(cluster.kubeconfig), "edit", "deployment",
                "nginx-depl", env={**os.environ, "EDITOR": str(editor)})

    def replaced():
        pods = cluster.ready_pods("app=nginx-depl", 1)
        return first["metadata"]["name"] not in {p["metadata"]["name"] for p in pods} and \
            len(cluster.pods("app=nginx-depl")) == 1 and pods[0]
    pod = wait_for(replaced, "the edited Deployment's pod to replace the nginx one",
                   timeout=60, interval=0.5)
    sets = _replicasets(cluster, "app=nginx-depl")
    new_rs = pod["metadata"]["ownerReferences"][0]["name"]
    assert new_rs != rs_name and set(sets) == {rs_name, new_rs}, sorted(sets)
    assert sets[rs_name]["spec"]["replicas"] == 0
    assert sets[new_rs]["spec"]["template"]["spec"]["containers"][0]["image"] == "meshnet/echo"
    status = pod["status"]["containerStatuses"][0]
    assert status["image"] == "meshnet/echo" and status["restartCount"] == 0

    # logs, exec and describe on the new pod: the echo image runs now.
    name = pod["metadata"]["name"]
    logs = cluster.meshctl("logs", name)
    assert f"echo {name}" in logs.stdout
    ex = cluster.meshctl("exec", name, "--", "sh", "-c", "echo hi; hostname")
    assert ex.stdout == f"hi\n{name}\n"
    desc = cluster.meshctl("describe", "pod", name)
    assert "Status:" in desc.stdout and "Running" in desc.stdout
    assert f"Controlled By:  ReplicaSet/{new_rs}" in desc.stdout, desc.stdout
    assert re.search(r"^\s+Image:\s+meshnet/echo$", desc.stdout, re.M), desc.stdout
    cluster.meshctl("delete", "deployment", "nginx-depl")


def test_deployment_service_ingress_walkthrough(cluster):
    app = cluster.apply("app.yaml", APP)
    pods = cluster.ready_pods("app=myapp", 2)
    names = {p["metadata"]["name"] for p in pods}

    def answered_by_both():
        seen = set()
        for _ in range(10):
            doc = cluster.curl()
            if doc:
                seen.add(doc["pod"])
        return seen == names and seen
    wait_for(answered_by_both, "curl myapp.com to answer from both pods", timeout=30,
             interval=0.5)
    doc = cluster.curl(path="/hello")
    assert doc["host"] == f"myapp.com:{cluster.http_port}" and doc["path"] == "/hello"

    # Delete a pod: a new one with a new IP, and the Endpoints follow.
    victim = pods[0]
    old_ip = victim["status"]["podIP"]
    cluster.meshctl("delete", "pod", victim["metadata"]["name"])

    def replaced():
        now = cluster.ready_pods("app=myapp", 2)
        return victim["metadata"]["name"] not in {p["metadata"]["name"] for p in now} and now
    now = wait_for(replaced, "a replacement pod", timeout=60, interval=0.5)
    new = next(p for p in now if p["metadata"]["name"] not in names)
    assert new["status"]["podIP"] != old_ip

    def endpoints_follow():
        ep = cluster.json("get", "endpoints", "myapp")
        ips = {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
        return ips == {p["status"]["podIP"] for p in now}
    wait_for(endpoints_follow, "the Endpoints to follow", timeout=30, interval=0.3)
    wait_for(lambda: cluster.curl(), "the ingress to answer again", timeout=20)

    cluster.meshctl("delete", "-f", str(app))
    wait_for(lambda: not cluster.pods("app=myapp"), "every myapp pod to go", timeout=60,
             interval=0.5)
    gone = cluster.meshctl("get", "deploy,svc,ingress", "myapp", check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_exec_streams_with_kubectl_and_meshctl_it(cluster):
    """kubectl exec (the remotecommand WebSocket, relayed by the API server to the agent) with
    and without stdin, and `meshctl exec -it` on a terminal (a pty this test holds)."""
    cluster.apply("shell.yaml", SHELL)
    cluster.ready_pods("app=shell", 1)
    kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(cluster.kubeconfig)]
    out = cluster.run(*kubectl, "exec", "shell", "--", "sh", "-c",
                      "echo out; echo err >&2; exit 3", check=False)
    assert out.returncode == 3, out
    assert out.stdout == "out\n" and "err\n" in out.stderr, out
    assert "command terminated with exit code 3" in out.stderr
    cat = cluster.run(*kubectl, "exec", "-i", "shell", "--", "sh", "-c", "cat; hostname",
                      stdin="hello\nworld\n")
    assert cat.stdout == "hello\nworld\nshell\n"

    master, slave = pty.openpty()
    proc = subprocess.Popen([MESHCTL, "--kubeconfig", str(cluster.kubeconfig), "exec", "-it",
                             "shell", "--", "sh"], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cluster.tmp, start_new_session=True)
    os.close(slave)
    screen = b""
    try:
        os.write(master, b"tty; echo $((6*7)); exit 5\r")  # typed ahead: must not be lost
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until meshctl exits and its terminal side closes
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: no one holds the other side any more
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(5) == 5, screen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"/dev/pts/" in screen and b"42\r\n" in screen, screen
    assert b"command terminated with exit code 5" in screen
    cluster.meshctl("delete", "pod", "shell", "--grace-period=0")


def test_statefulset_headless_dns_from_another_pod(cluster):
    db = cluster.apply("db.yaml", DB)
    pods = {p["metadata"]["name"]: p for p in cluster.ready_pods("app=db", 3)}
    assert set(pods) == {"db-0", "db-1", "db-2"}
    started = sorted(pods, key=lambda n: pods[n]["status"]["startTime"])
    assert started == ["db-0", "db-1", "db-2"]
    client_yaml = cluster.apply("client.yaml", CLIENT)
    client = cluster.ready_pods("app=client", 1)[0]["metadata"]["name"]
    lookup = "import socket; print(socket.gethostbyname('db-0.db.default.svc.cluster.local'))"

    def resolves_to(ip):
        out = cluster.meshctl("exec", client, "--", sys.executable, "-c", lookup, check=False)
        return out.stdout.strip() == ip
    wait_for(lambda: resolves_to(pods["db-0"]["status"]["podIP"]), "db-0 to resolve",
             timeout=20, interval=0.5)
    cluster.meshctl("delete", "pod", "db-0")

    def recreated():
        p = {x["metadata"]["name"]: x for x in cluster.ready_pods("app=db", 3)}
        return p["db-0"]["metadata"]["uid"] != pods["db-0"]["metadata"]["uid"] and p["db-0"]
    db0 = wait_for(recreated, "db-0 to come back", timeout=60, interval=0.5)
    wait_for(lambda: resolves_to(db0["status"]["podIP"]), "db-0 to resolve again",
             timeout=45, interval=0.5)
    cluster.meshctl("delete", "-f", str(db))
    cluster.meshctl("delete", "-f", str(client_yaml))


# The cheat sheet's ConfigMap and Secret (my-namespace), and two pods: one takes both as env
# vars and as files, the other takes nothing. The mountPaths carry the cluster's name: the
# agent creates a missing mountPath on the node as an empty directory, and no two test runs
# should share one.
CONFIG = """\
apiVersion: v1
kind: Namespace
metadata: {{name: my-namespace}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: mysql-configmap, namespace: my-namespace}}
data:
  db_url: mysql-service.database
---
apiVersion: v1
kind: Secret
metadata: {{name: mysql-secret, namespace: my-namespace}}
type: Opaque
data:
  mysql-root-password: cGFzc3dvcmQ=
---
apiVersion: v1
kind: Pod
metadata: {{name: mysql-client, namespace: my-namespace, labels: {{app: config}}}}
spec:
  containers:
  - name: sh
    image: busybox
    command: [sleep, "3600"]
    env:
    - name: DB_URL
      valueFrom: {{configMapKeyRef: {{name: mysql-configmap, key: db_url}}}}
    - name: MYSQL_ROOT_PASSWORD
      valueFrom: {{secretKeyRef: {{name: mysql-secret, key: mysql-root-password}}}}
    volumeMounts:
    - {{name: config, mountPath: {config_dir}}}
    - {{name: secret, mountPath: {secret_dir}, readOnly: true}}
  volumes:
  - {{name: config, configMap: {{name: mysql-configmap}}}}
  - {{name: secret, secret: {{secretName: mysql-secret}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bystander, namespace: my-namespace, labels: {{app: config}}}}
spec:
  containers:
  - {{name: sh, image: busybox, command: [sleep, "3600"]}}
"""
# Two echo pods behind a Service and an Ingress, probed every second on the echo image's
# /healthz and /livez, which /control/ready?ok=0 and /control/live?ok=0 turn to 503.
PROBED = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: probed}
spec:
  replicas: 2
  selector: {matchLabels: {app: probed}}
  template:
    metadata: {labels: {app: probed}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: echo
        image: meshnet/echo
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          httpGet: {path: /livez, port: 8080}
          periodSeconds: 1
          failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata: {name: probed}
spec:
  selector: {app: probed}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: probed}
spec:
  rules:
  - host: probed.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: probed, port: {number: 80}}}
"""


def test_configmap_and_secret_reach_one_pod_as_env_and_files(cluster):
    config_dir, secret_dir = f"/etc/{cluster.name}-config", f"/etc/{cluster.name}-secret"
    cluster.apply("config.yaml", CONFIG.format(config_dir=config_dir, secret_dir=secret_dir))
    wait_for(lambda: len([p for p in cluster.json("get", "pods", "-n", "my-namespace",
                                                  "-l", "app=config")["items"]
                          if p["status"].get("phase") == "Running"]) == 2,
             "mysql-client and bystander to run", timeout=60, interval=0.3)

    def sh(pod, script):
        return cluster.meshctl("exec", "-n", "my-namespace", pod, "--", "sh", "-c", script,
                               check=False)
    read = ('echo "env db=$DB_URL pw=$MYSQL_ROOT_PASSWORD"; '
            f'echo "file db=$(cat {config_dir}/db_url) pw=$(cat {secret_dir}/mysql-root-password)"')
    mine = sh("mysql-client", read)
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == ("env db=mysql-service.database pw=password\n"
                           "file db=mysql-service.database pw=password\n"), mine.stdout
    # The secret volume is read-only, as requested.
    denied = sh("mysql-client", f"echo x > {secret_dir}/mysql-root-password")
    assert denied.returncode != 0
    # The other pod in the same namespace sees neither the variables nor the files.
    other = sh("bystander", read)
    assert "env db= pw=\n" in other.stdout, other.stdout
    assert "mysql-service" not in other.stdout and "password" not in other.stdout
    listing = sh("bystander", f"ls -A {config_dir} {secret_dir} 2>/dev/null; true")
    assert "db_url" not in listing.stdout and "mysql-root-password" not in listing.stdout
    # Nor does the node: the files exist only in the pod's mount namespace.
    assert not Path(config_dir, "db_url").exists()
    assert not Path(secret_dir, "mysql-root-password").exists()
    # Deleting the namespace deletes what is in it (`delete -f` would then find pods gone).
    cluster.meshctl("delete", "namespace", "my-namespace")
    wait_for(lambda: cluster.meshctl("get", "namespace", "my-namespace",
                                     check=False).returncode != 0,
             "my-namespace and its pods to go", timeout=60, interval=0.5)


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions") or [])


def _echo_control(cluster, pod: str, what: str) -> None:
    """Flip the echo image's probe endpoints from inside the pod (its own loopback)."""
    cluster.meshctl("exec", pod, "--", "curl", "-sS", "--max-time", "5",
                    f"http://127.0.0.1:8080/control/{what}")


def test_failing_readiness_leaves_endpoints_and_traffic(cluster):
    cluster.apply("probed.yaml", PROBED)
    pods = cluster.ready_pods("app=probed", 2)
    sick, well = pods
    svc_ip = cluster.json("get", "svc", "probed")["spec"]["clusterIP"]

    def endpoint_ips(kind="addresses"):
        ep = cluster.json("get", "endpoints", "probed")
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get(kind) or []}
    both = {p["status"]["podIP"] for p in pods}
    wait_for(lambda: endpoint_ips() == both, "both pods in the Endpoints", timeout=20,
             interval=0.3)

    def answered_by(via):
        seen = set()
        for _ in range(12):
            if via == "ingress":
                doc = cluster.curl(host="probed.test")
            else:  # the ClusterIP, from inside the healthy pod (through the proxy)
                out = cluster.meshctl("exec", well["metadata"]["name"], "--", "curl", "-sS",
                                      "--max-time", "3", f"http://{svc_ip}/", check=False)
                doc = out.returncode == 0 and json.loads(out.stdout)
            if doc:
                seen.add(doc["pod"])
        return seen
    wait_for(lambda: answered_by("ingress") == {p["metadata"]["name"] for p in pods},
             "the ingress to answer from both pods", timeout=30, interval=0.5)

    _echo_control(cluster, sick["metadata"]["name"], "ready?ok=0")
    wait_for(lambda: not _ready(cluster.json("get", "pod", sick["metadata"]["name"])),
             "the failing pod to turn unready", timeout=20, interval=0.3)
    wait_for(lambda: endpoint_ips() == {well["status"]["podIP"]} and
             endpoint_ips("notReadyAddresses") == {sick["status"]["podIP"]},
             "the unready pod to leave the Endpoints", timeout=20, interval=0.3)
    # Still running, not restarted: readiness never kills.
    status = cluster.json("get", "pod", sick["metadata"]["name"])["status"]
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["restartCount"] == 0
    wait_for(lambda: answered_by("ingress") == {well["metadata"]["name"]} and
             answered_by("clusterip") == {well["metadata"]["name"]},
             "traffic to reach only the ready pod", timeout=20, interval=0.5)

    _echo_control(cluster, sick["metadata"]["name"], "ready?ok=1")
    wait_for(lambda: endpoint_ips() == both, "the pod to come back into the Endpoints",
             timeout=20, interval=0.3)
    wait_for(lambda: answered_by("ingress") == {p["metadata"]["name"] for p in pods},
             "the ingress to answer from both pods again", timeout=30, interval=0.5)


def test_failing_liveness_restarts_the_container_with_back_off(cluster):
    # The Deployment of the readiness test, or a fresh one when that test was deselected.
    manifest = cluster.apply("probed.yaml", PROBED)
    name = cluster.ready_pods("app=probed", 2)[0]["metadata"]["name"]

    def container():
        return cluster.json("get", "pod", name)["status"]["containerStatuses"][0]

    def restarted(n):
        c = container()
        return c["restartCount"] == n and "running" in c["state"] and c
    # First failure: killed and restarted at once (kubelet's back-off starts at the second).
    _echo_control(cluster, name, "live?ok=0")
    first = wait_for(lambda: restarted(1), "the first restart", timeout=30, interval=0.3)
    assert first["lastState"]["terminated"]["exitCode"] == 0  # echo exits 0 on SIGTERM
    # A restarted echo is live again; fail it once more: now it waits out a back-off.
    wait_for(lambda: _ready(cluster.json("get", "pod", name)), "the restarted pod to be Ready",
             timeout=20, interval=0.3)
    _echo_control(cluster, name, "live?ok=0")

    def backing_off():
        c = container()
        waiting = c["state"].get("waiting") or {}
        return waiting.get("reason") == "CrashLoopBackOff" and waiting
    waiting = wait_for(backing_off, "CrashLoopBackOff", timeout=30, interval=0.2)
    assert "back-off 10s restarting failed container=echo" in waiting.get("message", ""), waiting
    assert "CrashLoopBackOff" in cluster.meshctl("get", "pod", name).stdout
    wait_for(lambda: restarted(2), "the restart after the back-off", timeout=30, interval=0.5)
    cluster.meshctl("delete", "-f", str(manifest))
    wait_for(lambda: not cluster.pods("app=probed"), "every probed pod to go", timeout=60,
             interval=0.5)


def test_up_recovers_after_every_process_is_killed_then_down_cleans_all(cluster):
    kill_all_recover_then_down(cluster)


def kill_all_recover_then_down(cluster) -> None:
    """SIGKILL every process `up` started, `up` again (the pods come back), then `down`
    leaves the host as it was before the first `up`."""
    cluster.meshctl("create", "deployment", "survivor", "--image=meshnet/echo")
    before = cluster.ready_pods("app=survivor", 1)[0]["status"]["containerStatuses"][0]
    procs = cluster.state()["processes"]
    for rec in procs.values():
        os.kill(rec["pid"], signal.SIGKILL)
    for rec in procs.values():
        wait_for(lambda rec=rec: not Path(f"/proc/{rec['pid']}").exists() or
                 "Z" in Path(f"/proc/{rec['pid']}/stat").read_text().split(")")[1][:3],
                 f"pid {rec['pid']} to die")
    status = cluster.run(MESHCTL, "status", "--data-dir", str(cluster.data), check=False)
    assert status.returncode == 1 and "NOT RUNNING" in status.stdout
    again = cluster.run(*cluster.up_argv())
    assert "leftovers of an earlier run" in again.stdout and "is up" in again.stdout, again

    def runs_again():  # a new container, not the status the killed agent last wrote
        now = cluster.ready_pods("app=survivor", 1)[0]["status"]["containerStatuses"][0]
        return now["containerID"] != before["containerID"] and "running" in now["state"]
    wait_for(runs_again, "the pod's container to run again", timeout=60, interval=0.5)
    wait_for(lambda: cluster.run(MESHCTL, "status", "--data-dir", str(cluster.data),
                                 check=False).returncode == 0, "status to be healthy")
    pids = [r["pid"] for r in cluster.state()["processes"].values()]

    ours = cluster.state()["routes"]  # the unreachable routes `up` added (not another lab's)
    down = cluster.run(MESHCTL, "down", "--data-dir", str(cluster.data))
    assert "nothing is left" in down.stdout, down.stdout
    after = host_snapshot(cluster.name, cluster.link)
    assert (after["links"], after["netns"]) == (cluster.before["links"], cluster.before["netns"])
    assert not [r for r in after["routes"] if cluster.name in r or cluster.link.split("/")[0]
                in r], after
    assert not [r for r in after["routes"] for cidr in ours
                if r.startswith(f"unreachable {cidr} ") and r not in cluster.before["routes"]]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    leftover = subprocess.run(["pgrep", "-f", str(cluster.data)], capture_output=True,
                              text=True).stdout.split()
    assert not leftover, f"processes of the cluster still run: {leftover}"
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if str(cluster.data) in line]
    assert not mounts, f"still mounted: {mounts}"
    assert not (cluster.data / "up" / "state.json").exists()
    again = cluster.run(MESHCTL, "down", "--data-dir", str(cluster.data))
    assert "nothing to stop" in again.stdout
