"""What `meshctl up` starts, as plain data: names, addresses and every process's argv.

Theory of operation
-------------------
One node lives in its own network namespace, joined to the host by ONE veth pair whose two
ends carry a /30 (`--link-cidr`, default 172.31.255.252/30: the host end is its first usable
address, the node end — the node's InternalIP — the second). That /30 is the only address
`up` ever adds to the host namespace. Everything else talks through a relay in the host
namespace (`relay.py`), so no route to a cluster range is needed on the host:

    host 127.0.0.1:API_PORT    meshnet-apiserver (listens on loopback only)
    host HOST_IP:API_PORT   -> 127.0.0.1:API_PORT       the node reaches the API server
    host 127.0.0.1:HTTP(S)  -> NODE_IP:80 / :443        the ingress, published on loopback
    host HOST_IP:1053       -> --dns-upstream           meshnet-dns forwards other names here

With `--runtime docker` the node also runs a dockerd of its own (socket, data root and exec
root under `<data-dir>/up/docker`, every networking feature off: it never creates an interface
or a rule, and the agent wires each container into the pod network itself, as a CNI plugin).

The cluster ranges (service and pod CIDRs) get `unreachable` routes on the host, so a packet
for them never leaves by the default route. The link range is NOT link-local (169.254/16):
Endpoints refuse link-local addresses, as Kubernetes does, and the node's address is one.

Nothing here does I/O; `meshnet.cli.up` applies the plan.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "meshnet"
DEFAULT_LINK_CIDR = "172.31.255.252/30"
DEFAULT_API_PORT = 6443
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"
CLUSTER_DNS_IP = "10.96.0.10"
# Inside the node namespace the ports are fixed: it is our own namespace, nothing collides.
NODE_HTTP_PORT, NODE_HTTPS_PORT = 80, 443
AGENT_PORT, AGENT_STATUS_PORT = 10250, 10248
PROXY_STATUS_PORT, DNS_PORT, DNS_METRICS_PORT, INGRESS_STATUS_PORT = 10256, 53, 9153, 10254
# Not 53 on the host: a host resolver (dnsmasq, systemd-resolved) may hold *:53 already.
DNS_RELAY_PORT = 1053
# IFNAMSIZ is 16: the host veth is "<name>-h", so names stay at 12 characters or fewer.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?")


RUNTIMES = ("netns", "docker")
# dockerd that never touches a network: no bridge, no iptables/ip6tables rules, no sysctls, no
# userland proxy (containers only ever get `none` or `container:` networking from the agent).
DOCKERD_NO_NETWORK = ("--bridge=none", "--iptables=false", "--ip6tables=false",
                      "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false")


class PlanError(ValueError):
    """A flag of `meshctl up` that cannot work; the message says which and what to do."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str                 # "apiserver", "relay", "agent", ...
    argv: tuple[str, ...]
    in_node: bool             # run inside the node namespace (ip netns exec)
    ready_url: str = ""       # http URL polled from the host until it answers 200, or
                              # unix:PATH of a docker API socket answering /_ping
    net_only: bool = False    # enter only the node's network namespace (nsenter --net), not a
                              # fresh mount namespace with the node's /sys: dockerd needs the
                              # host's cgroup hierarchy, which `ip netns exec` hides


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    data_dir: Path
    api_port: int
    http_port: int
    https_port: int
    link_cidr: str
    dns_upstream: tuple[tuple[str, int], ...]
    runtime: str = "netns"
    python: str = field(default=sys.executable)

    # ----------------------------------------------------------------- names and addresses

    @property
    def netns(self) -> str:
        return f"{self.name}-node-1"

    @property
    def node_name(self) -> str:
        return self.netns

    @property
    def host_veth(self) -> str:
        return f"{self.name}-h"

    @property
    def node_veth(self) -> str:
        return "eth0"

    @property
    def host_ip(self) -> str:
        return str(_hosts(self.link_cidr)[0])

    @property
    def node_ip(self) -> str:
        return str(_hosts(self.link_cidr)[1])

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.link_cidr).prefixlen

    @property
    def up_dir(self) -> Path:
        return self.data_dir / "up"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        return self.up_dir / "node.kubeconfig"

    @property
    def agent_state(self) -> Path:
        return self.up_dir / "agent"

    @property
    def docker_dir(self) -> Path:
        """dockerd's socket, data root and exec root (--runtime docker)."""
        return self.up_dir / "docker"

    @property
    def docker_socket(self) -> Path:
        return self.docker_dir / "docker.sock"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def node_api_url(self) -> str:
        return f"https://{self.host_ip}:{self.api_port}"

    def unreachable_ranges(self) -> tuple[str, ...]:
        return (SERVICE_CIDR, CLUSTER_CIDR)

    # ----------------------------------------------------------------------- processes

    def processes(self) -> tuple[ProcessSpec, ...]:
        """In start order; `down` stops them in reverse."""
        bin_dir = Path(self.python).parent
        kc = str(self.node_kubeconfig)
        # Standard library only: by path, isolated, no `site` (a ~10 MiB process).
        relay = [self.python, "-I", "-S", str(Path(__file__).with_name("relay.py")),
                 "--tcp", f"{self.host_ip}:{self.api_port}=127.0.0.1:{self.api_port}",
                 "--tcp", f"127.0.0.1:{self.http_port}={self.node_ip}:{NODE_HTTP_PORT}",
                 "--tcp", f"127.0.0.1:{self.https_port}={self.node_ip}:{NODE_HTTPS_PORT}"]
        for host, port in self.dns_upstream[:1]:
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            relay += ["--udp", f"{self.host_ip}:{DNS_RELAY_PORT}={target}",
                      "--tcp", f"{self.host_ip}:{DNS_RELAY_PORT}={target}"]
        node = self.node_ip
        runtime: tuple[str, ...] = ()
        dockerd: tuple[ProcessSpec, ...] = ()
        if self.runtime == "docker":
            d = self.docker_dir
            runtime = ("--runtime", "docker", "--docker-host", f"unix://{self.docker_socket}")
            dockerd = (ProcessSpec("dockerd", (
                "dockerd", "--host", f"unix://{self.docker_socket}",
                "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "docker.pid"), *DOCKERD_NO_NETWORK), True,
                f"unix:{self.docker_socket}", net_only=True),)
        return (
            ProcessSpec("apiserver", (
                str(bin_dir / "meshnet-apiserver"), "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.api_port}",
                "--advertise-address", self.host_ip,
                "--service-cidr", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR), False),
            ProcessSpec("relay", tuple(relay), False),
            *dockerd,
            ProcessSpec("agent", (
                str(bin_dir / "meshnet-agent"), "--kubeconfig", kc,
                "--node-name", self.node_name, "--node-ip", node,
                "--cluster-dns", CLUSTER_DNS_IP, "--state-dir", str(self.agent_state),
                "--agent-listen", f"{node}:{AGENT_PORT}",
                "--status-address", f"{node}:{AGENT_STATUS_PORT}", *runtime), True,
                f"http://{node}:{AGENT_STATUS_PORT}/ready"),
            ProcessSpec("proxy", (
                str(bin_dir / "meshnet-proxy"), "--kubeconfig", kc,
                "--node-name", self.node_name,
                "--status-address", f"{node}:{PROXY_STATUS_PORT}"), True,
                f"http://{node}:{PROXY_STATUS_PORT}/ready"),
            ProcessSpec("dns", (
                str(bin_dir / "meshnet-dns"), "--kubeconfig", kc,
                "--listen", f"{node}:{DNS_PORT}",
                "--upstream", f"{self.host_ip}:{DNS_RELAY_PORT}",
                "--status-listen", f"{node}:{DNS_METRICS_PORT}"), True,
                f"http://{node}:{DNS_METRICS_PORT}/ready"),
            ProcessSpec("ingress", (
                str(bin_dir / "meshnet-ingress"), "--kubeconfig", kc,
                "--http-listen", f"{node}:{NODE_HTTP_PORT}",
                "--https-listen", f"{node}:{NODE_HTTPS_PORT}",
                "--status-listen", f"{node}:{INGRESS_STATUS_PORT}",
                "--publish-address", "127.0.0.1",
                "--watch-ingress-without-class"), True,
                f"http://{node}:{INGRESS_STATUS_PORT}/ready"),
        )

    def kube_dns_endpoints(self) -> dict:
        """kube-dns has no pods here: meshnet-dns runs on the node, so the Service loses its
        selector and its Endpoints name the node (a selector-less Service, as `kubernetes`)."""
        return {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns"}},
            "subsets": [{"addresses": [{"ip": self.node_ip, "nodeName": self.node_name}],
                         "ports": [{"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"},
                                   {"name": "metrics", "port": DNS_METRICS_PORT,
                                    "protocol": "TCP"}]}]}


def _hosts(cidr: str) -> list:
    return list(ipaddress.ip_network(cidr).hosts())


def make_plan(*, name: str, data_dir: Path, api_port: int, http_port: int, https_port: int,
              link_cidr: str, dns_upstream: str, runtime: str = "netns") -> ClusterPlan:
    """Validate the flags of `meshctl up` and build the plan (no I/O)."""
    if runtime not in RUNTIMES:
        raise PlanError(f'--runtime "{runtime}": use one of {", ".join(RUNTIMES)}')
    if not NAME_RE.fullmatch(name):
        raise PlanError(f'--name "{name}": use 1-12 lower-case letters, digits and "-" '
                        f"(it names the namespace {name}-node-1 and the interface {name}-h)")
    for flag, port in (("--api-port", api_port), ("--ingress-http-port", http_port),
                       ("--ingress-https-port", https_port)):
        if not 1 <= port <= 65535:
            raise PlanError(f"{flag} {port}: must be between 1 and 65535")
    try:
        net = ipaddress.ip_network(link_cidr, strict=True)
    except ValueError as exc:
        raise PlanError(f"--link-cidr {link_cidr}: {exc} (use a free /30 such as "
                        f"{DEFAULT_LINK_CIDR})") from None
    if net.version != 4 or net.prefixlen != 30:
        raise PlanError(f"--link-cidr {link_cidr}: must be an IPv4 /30 (two addresses: the "
                        f"host's end and the node's)")
    if net.is_link_local or net.is_loopback or net.is_multicast:
        raise PlanError(f"--link-cidr {link_cidr}: must not be loopback, multicast or "
                        f"link-local (Endpoints refuse link-local addresses); use a private "
                        f"range such as {DEFAULT_LINK_CIDR}")
    for cluster in (SERVICE_CIDR, CLUSTER_CIDR):
        if net.overlaps(ipaddress.ip_network(cluster)):
            raise PlanError(f"--link-cidr {link_cidr} overlaps the cluster range {cluster}")
    return ClusterPlan(name, data_dir, api_port, http_port, https_port, str(net),
                       parse_upstreams(dns_upstream), runtime)


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """`ADDR[:PORT],...` (IPv6 as [ADDR]:PORT). Only the first is relayed to the node."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, p = item.split(":")
            port = int(p)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise PlanError(f"--dns-upstream {item}: not an IP address[:port]") from None
        out.append((host, port))
    return tuple(out)


def upstreams_from_resolv_conf(text: str) -> str:
    """The host's nameservers as a --dns-upstream value (the default for real users)."""
    servers = [line.split()[1] for line in text.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1]
    return ",".join(f"[{s}]" if ":" in s else s for s in servers)
