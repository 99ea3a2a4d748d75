"""meshnet-agent with `--runtime docker`, end to end, against a dockerd of the test's own.

The lab is test_e2e's (a node namespace with the API server, the agent and an API client; a
peer namespace on its uplink). dockerd runs on a socket, data root and exec root under a fresh
temporary directory, entered into the *node* namespace with `nsenter --net` (not
`ip netns exec`, which remounts /sys and so hides the cgroup hierarchy dockerd needs), and with
every networking feature off (`--bridge=none --iptables=false --ip-forward=false ...`): it never
creates an interface, a rule or a sysctl anywhere, and containers only ever get `none` or
`container:` networking from the agent. Teardown removes every container, stops dockerd by PID,
kills any shim left under the temporary directory by PID and unmounts what is mounted there —
also when a test failed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import io
import tarfile
import tempfile
from pathlib import Path

import docker
import pytest

from meshnet.node.docker_runtime import API_VERSION, builtin_context, image_from_config
from meshnet.node.errors import ImagePullError
from netns import Lab, wait_for
from test_e2e import HERE, NODE, Cluster, container_status, pod_netns_names

DOCKERD_START_S = 30.0
STOP_TIMEOUT_S = 20.0


class Dockerd:
    """A dockerd of the test's own, in network namespace `netns`, all state under `root`."""

    def __init__(self, netns: str, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        root.mkdir(parents=True)
        argv = ["nsenter", f"--net=/run/netns/{netns}", "dockerd",
                "--host", self.host, "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"), "--pidfile", str(root / "docker.pid"),
                "--bridge=none", "--iptables=false", "--ip6tables=false",
                "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false"]
        self.proc = subprocess.Popen(argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # A fixed API version: "auto" would ask the daemon, which is not up yet.
        self.api = docker.APIClient(base_url=self.host, timeout=30, version=API_VERSION)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.tail()}")
            try:
                return self.api.ping()
            except Exception:
                return False
        try:
            wait_for(up, f"dockerd on {self.socket}", DOCKERD_START_S, interval=0.1)
        except BaseException:
            self.stop()
            raise

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def containers(self, **labels: str) -> list[dict]:
        flt = [f"{k}={v}" for k, v in labels.items()]
        return self.api.containers(all=True, filters={"label": flt} if flt else None)

    def stop(self) -> None:
        try:
            for c in self.api.containers(all=True):
                self.api.remove_container(c["Id"], force=True)
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT_S)
            # containerd and its shims outlive dockerd by design: ours are the ones whose
            # command line names our directory.
            for pid in _pids_mentioning(str(self.root)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for target in reversed(_mounts_under(self.root)):
                subprocess.run(["umount", "-l", target], capture_output=True)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f]
    return [t for t in targets if t.startswith(str(root) + "/")]


class DockerCluster(Cluster):
    """test_e2e's Cluster, its agent started with `--runtime docker`."""

    def __init__(self, lab: Lab, tmp: Path):  # noqa: super().__init__ starts the netns agent
        self.lab, self.tmp = lab, tmp
        self._wire(lab)
        self.dockerd = Dockerd(self.node, tmp / "docker")
        try:
            self._start(lab, tmp, ("--runtime", "docker", "--docker-host", self.dockerd.host))
        except BaseException:
            self.dockerd.stop()  # the fixture never gets this object to stop it
            raise

    def pods_of(self, app: str) -> list[dict]:
        return [p for p in self.ok(op="list", plural="pods")["items"]
                if (p["metadata"].get("labels") or {}).get("app") == app]


@pytest.fixture(scope="module")
def cluster():
    subprocess.run([str(HERE.parent.parent / "scripts" / "install-test-deps")], check=True)
    lab = Lab()
    tmp = Path(tempfile.mkdtemp(prefix="meshnet-docker-e2e-"))
    c = None
    try:
        c = DockerCluster(lab, tmp)
        yield c
        lab.stop(c.agent)  # the agent's own clean-up is under test: SIGTERM first
        assert c.agent.returncode == 0, c.agent_text()
        assert c.dockerd.containers(**{"io.meshnet.node": NODE}) == []
        assert "mnv" not in c.node_links() and "mn-br0" not in c.node_links()
        assert not pod_netns_names(c.agent_log)
        ipam = json.loads((c.state / "ipam.json").read_text())
        assert ipam["allocations"] == {}, ipam
    finally:
        try:
            if c is not None:
                c.dockerd.stop()
        finally:
            lab.cleanup()
            leftover = pod_netns_names(c.agent_log) if c is not None else set()
            shutil.rmtree(tmp, ignore_errors=True)
        assert not _pids_mentioning(str(tmp)), "dockerd/containerd processes left behind"
        assert not leftover, f"pod namespaces left behind: {leftover}"


# -- the pure parts: image config and the built-in images' build context ----------------------

IMAGE_CASES = [
    ("entrypoint, cmd and env from the image config",
     {"Config": {"Entrypoint": ["/bin/meshnet-echo"], "Cmd": None, "Env": ["PATH=/bin", "A=b=c"],
                 "Labels": {"io.meshnet.downward-env": "true"}}},
     (("/bin/meshnet-echo",), (), (("PATH", "/bin"), ("A", "b=c")), True)),
    ("no entrypoint: cmd only; no label, no downward env",
     {"Config": {"Entrypoint": None, "Cmd": ["sh"], "Env": None, "Labels": None}},
     ((), ("sh",), (), False)),
    ("an image without a config at all", {}, ((), (), (), False)),
]


@pytest.mark.parametrize("inspect,want", [c[1:] for c in IMAGE_CASES],
                         ids=[c[0] for c in IMAGE_CASES])
def test_image_from_config(inspect, want):
    image = image_from_config("ref", inspect)
    assert (image.entrypoint, image.cmd, image.env, image.downward_env) == want


@pytest.mark.parametrize("name", ["busybox", "meshnet/echo"])
def test_builtin_context_is_a_static_busybox_with_applet_links(name):
    with tarfile.open(fileobj=io.BytesIO(builtin_context(name))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile").read().decode()
    assert dockerfile.startswith("FROM scratch\n") and "RUN" not in dockerfile
    assert members["rootfs/bin/busybox"].mode == 0o755
    assert members["rootfs/bin/sh"].issym() and members["rootfs/bin/sh"].linkname == "busybox"
    assert members["rootfs/tmp"].mode == 0o1777
    assert ("rootfs/bin/meshnet-echo-http" in members) == (name == "meshnet/echo")


def test_builtin_context_refuses_a_dynamic_busybox(tmp_path):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF" + b"\0" * 500 + b"/lib64/ld-linux-x86-64.so.2\0")
    with pytest.raises(ImagePullError, match="busybox-static"):
        builtin_context("busybox", fake)


# -- end to end ---------------------------------------------------------------------------------

ECHO_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "echo", "image": "meshnet/echo",
                                                   "ports": [{"containerPort": 8080}]}]}}}}
SHELL = [{"name": "sh", "image": "busybox", "command": ["sleep", "3600"]}]


def _web_pod(cluster) -> dict:
    def ready():
        pods = [p for p in cluster.pods_of("web") if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 1 and _is_ready(pods[0]) and pods[0]
    try:
        return wait_for(ready, "the web Deployment's pod Running and Ready", 60, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\npods: {json.dumps(cluster.pods_of('web'))[-3000:]}\n"
                             f"agent log:\n{cluster.agent_text()}") from None


def _is_ready(pod) -> bool:
    status = pod.get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conds.get("Ready") == "True"


def _waiting_reason(pod) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "")


def test_deployment_pod_runs_as_a_docker_container_with_a_pod_ip(cluster):
    cluster.ok(op="create", plural="deployments", body=ECHO_DEPLOYMENT)
    pod = _web_pod(cluster)
    assert pod["metadata"]["name"].startswith("web-")
    status = pod["status"]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(cluster.pod_cidr)
    cs = container_status(pod)
    assert cs["containerID"].startswith("docker://") and cs["ready"], cs
    cid = cs["containerID"][len("docker://"):]
    info = cluster.dockerd.api.inspect_container(cid)
    uid = pod["metadata"]["uid"]
    sandbox = cluster.dockerd.api.inspect_container(f"k8s_POD_{uid}")
    # The CNI way: the container shares the sandbox's namespace, which holds eth0 + the pod IP.
    assert info["HostConfig"]["NetworkMode"] == f"container:{sandbox['Id']}"
    assert sandbox["HostConfig"]["NetworkMode"] == "none"
    assert info["Config"]["Labels"]["io.kubernetes.pod.uid"] == uid
    out = subprocess.run(["nsenter", f"--net=/proc/{info['State']['Pid']}/ns/net",
                          "ip", "-o", "-4", "addr", "show", "eth0"],
                         capture_output=True, text=True)
    assert f"inet {status['podIP']}/" in out.stdout, out


def test_echo_serves_http_to_another_pod_over_the_pod_network(cluster):
    web = _web_pod(cluster)
    web_ip, web_name = web["status"]["podIP"], web["metadata"]["name"]
    # `sleep` as PID 1 ignores SIGTERM: deleting it later takes the grace period, then SIGKILL.
    cluster.create_pod("client", SHELL, terminationGracePeriodSeconds=2)
    client = cluster.wait_ready("client", timeout=60)
    assert client["status"]["podIP"] != web_ip
    out = cluster.exec("client", "wget", "-q", "-O-", f"http://{web_ip}:8080/hello?x=1")
    assert out["exitCode"] == 0, out
    doc = json.loads(out["stdout"])
    assert (doc["pod"], doc["namespace"], doc["ip"], doc["path"], doc["query"],
            doc["method"], doc["host"]) == \
        (web_name, "default", web_ip, "/hello", "x=1", "GET", f"{web_ip}:8080")
    assert doc["headers"]["User-Agent"] == "Wget"
    tcp = cluster.exec("client", "sh", "-c", f"echo ping | nc -w 2 {web_ip} 9000")
    assert tcp["stdout"].split() == [web_name, "ping"], tcp
    # The pod's hostname and the cluster DNS configuration reach the container.
    assert cluster.exec("client", "hostname")["stdout"].strip() == "client"
    resolv = cluster.exec("client", "cat", "/etc/resolv.conf")["stdout"]
    assert "nameserver 10.96.0.10" in resolv and "ndots:5" in resolv, resolv


def test_logs_come_from_the_container(cluster):
    web = _web_pod(cluster)
    text = cluster.logs(web["metadata"]["name"])["body"]
    assert "echo " + web["metadata"]["name"] in text and "GET /hello?x=1 200" in text, text


def test_exec_exit_code_and_stderr(cluster):
    out = cluster.exec("client", "sh", "-c", "echo oops >&2; exit 3")
    assert (out["exitCode"], out["stderr"]) == (3, "oops\n"), out


def test_unknown_image_is_err_image_pull_then_back_off(cluster):
    cluster.create_pod("ghost", [{"name": "g", "image": "registry.invalid/ghost:1"}])
    pod = cluster.wait_pod("ghost", lambda p: _waiting_reason(p) in
                           ("ErrImagePull", "ImagePullBackOff"), "ErrImagePull", timeout=20)
    assert "registry.invalid/ghost:1" in json.dumps(pod["status"])
    cluster.ok(op="delete", plural="pods", name="ghost")


def test_delete_removes_the_containers_and_the_wiring(cluster):
    pod = cluster.pod("client")
    uid = pod["metadata"]["uid"]
    assert len(cluster.dockerd.containers(**{"io.kubernetes.pod.uid": uid})) == 2  # + sandbox
    cluster.ok(op="delete", plural="pods", name="client")

    veth = "mnv" + uid.replace("-", "")[:12]

    def gone():  # the API object goes first; the containers, the veth and /etc/netns follow
        out = cluster.call(op="get", plural="pods", name="client")
        return not out["ok"] and not cluster.dockerd.containers(**{"io.kubernetes.pod.uid": uid}) \
            and veth not in cluster.node_links() \
            and not Path(f"/etc/netns/mnpod-{uid.replace('-', '')[:16]}").exists()
    wait_for(gone, "the client pod, its containers, veth and /etc/netns gone", 40, interval=0.2)
    # A Deployment's pod deleted: a new container, a new pod.
    old = _web_pod(cluster)
    cluster.ok(op="delete", plural="pods", name=old["metadata"]["name"])
    new = wait_for(lambda: next((p for p in cluster.pods_of("web")
                                 if p["metadata"]["uid"] != old["metadata"]["uid"]
                                 and _is_ready(p)), None), "a replacement web pod", 60, 0.2)
    assert container_status(new)["containerID"] != container_status(old)["containerID"]
    wait_for(lambda: not cluster.dockerd.containers(
        **{"io.kubernetes.pod.uid": old["metadata"]["uid"]}), "old containers removed", 40, 0.2)
