"""`meshctl up --runtime docker` end to end: the walkthrough's Deployment as docker containers.

The cluster is test_up's (fresh data dir, unique name, free loopback ports and /30, a DNS
upstream of the test's own on loopback) plus `--runtime docker`: `up` starts a dockerd of the
cluster's own inside the node namespace, on a socket under the data dir and with networking off
(`--bridge=none --iptables=false ...`). The agent builds the built-in images from the host's
static busybox (no registry) and wires each pod's sandbox into the pod network. The last test
SIGKILLs every process (dockerd included), checks `up` recovers, then that `down` leaves no
process, mount, namespace, link or route behind.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from meshnet.cluster import dockerd
from netns import wait_for
from test_up import APP, MESHCTL, Up, kill_all_recover_then_down, running, sleeper

HERE = Path(__file__).parent
CLIENT = sleeper("client")


class DockerUp(Up):
    def up_argv(self):
        return super().up_argv() + ["--runtime", "docker"]


@pytest.fixture(scope="module")
def cluster():
    subprocess.run([str(HERE.parent.parent / "scripts" / "install-test-deps")], check=True)
    with running(DockerUp) as c:
        yield c


def _node_links(cluster) -> list[str]:
    out = subprocess.run(["ip", "-n", f"{cluster.name}-node-1", "-o", "link"],
                         capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_up_runs_a_dockerd_of_its_own_in_the_node_namespace(cluster):
    procs = cluster.state()["processes"]
    assert set(procs) == {"apiserver", "relay", "dockerd", "agent", "proxy", "dns", "ingress"}
    assert cluster.state()["runtime"] == "docker"
    ns = {n: Path(f"/proc/{r['pid']}/ns/net").readlink() for n, r in procs.items()}
    assert ns["dockerd"] == ns["agent"] != Path("/proc/self/ns/net").readlink()
    assert f"--docker-host unix://{cluster.data}/up/docker/docker.sock" in \
        " ".join(procs["agent"]["argv"])
    assert dockerd.ping(str(cluster.data / "up" / "docker" / "docker.sock"))
    status = cluster.run(MESHCTL, "status", "--data-dir", str(cluster.data))
    assert "dockerd" in status.stdout and "NOT RUNNING" not in status.stdout


def test_deployment_service_ingress_on_docker_containers(cluster):
    app = cluster.apply("app.yaml", APP)
    pods = cluster.ready_pods("app=myapp", 2)
    names = {p["metadata"]["name"] for p in pods}
    cidr = ipaddress.ip_network(cluster.json("get", "node", f"{cluster.name}-node-1")
                                ["spec"]["podCIDR"])
    for pod in pods:
        assert ipaddress.ip_address(pod["status"]["podIP"]) in cidr
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("docker://")
    # dockerd made no interface: the node has its uplink, the bridge, the pods' veths and the
    # proxy's dummy, nothing named docker* or br-*.
    links = _node_links(cluster)
    assert not [n for n in links if n.startswith(("docker", "br-", "veth"))], links

    def answered_by(fetch):
        seen = set()
        for _ in range(10):
            doc = fetch()
            if doc:
                seen.add(doc["pod"])
        return seen
    # From the host, through the ingress on loopback, the Service and the proxy.
    wait_for(lambda: answered_by(cluster.curl) == names,
             "curl --resolve myapp.com to answer from both docker pods", timeout=30,
             interval=0.5)
    doc = cluster.curl(path="/hello")
    assert doc["host"] == f"myapp.com:{cluster.http_port}" and doc["path"] == "/hello", doc
    assert doc["ip"] in {p["status"]["podIP"] for p in pods}

    # From another docker pod, through the ClusterIP and through the Service's name.
    client = cluster.apply("client.yaml", CLIENT)
    cluster.ready_pods("app=client", 1)
    svc_ip = cluster.json("get", "svc", "myapp")["spec"]["clusterIP"]

    def wget(url):
        def fetch():
            # `timeout`, not wget's -T: the static busybox's wget crashes with -T (SIGSEGV).
            out = cluster.meshctl("exec", "client", "--", "timeout", "5", "wget", "-q", "-O-",
                                  url, check=False)
            return out.returncode == 0 and out.stdout.startswith("{") and json.loads(out.stdout)
        return fetch
    wait_for(lambda: answered_by(wget(f"http://{svc_ip}/")) == names,
             "the ClusterIP to answer from both pods inside a pod", timeout=30, interval=0.5)
    wait_for(lambda: answered_by(wget("http://myapp/")) == names,  # the search path, DNS
             "the Service's name to answer from both pods", timeout=30, interval=0.5)

    # kubectl exec streams into a docker container too (`docker exec` behind the agent).
    kubectl = [str(Path(MESHCTL).parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig)]
    cat = cluster.run(*kubectl, "exec", "-i", "client", "--", "sh", "-c",
                      "cat; hostname; exit 2", stdin="from stdin\n", check=False)
    assert (cat.returncode, cat.stdout) == (2, "from stdin\nclient\n"), cat

    cluster.meshctl("delete", "-f", str(app))
    cluster.meshctl("delete", "-f", str(client))
    wait_for(lambda: not cluster.pods("app=myapp") and not cluster.pods("app=client"),
             "every pod to go", timeout=60, interval=0.5)


def test_up_recovers_after_every_process_is_killed_then_down_cleans_all(cluster):
    docker_dir = cluster.data / "up" / "docker"
    kill_all_recover_then_down(cluster)
    assert dockerd.leftover_pids(docker_dir) == []
    assert dockerd.mounts_under(docker_dir) == []
