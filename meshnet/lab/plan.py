"""What `netns-lab/up` builds, as plain data: members, addresses, etcd, every process's argv.

Theory of operation
-------------------
Every member of the lab is a network namespace `<name>-<member>` with one veth (`eth0`) to an
underlay bridge that lives in a namespace of its own (`<name>-sw`), never in the host's:

    <name>-cp1..3   control plane: meshnet-apiserver on CP_IP:6443, etcd members
    <name>-w1..N    workers: meshnet-agent, -proxy, -dns, -ingress (a Node each)
    <name>-out      an outside client: on the underlay, not a node
    <name>-sw       the underlay switch: bridge br0, one port per member and one for the host
    host            <name>-h with HOST_IP (the first underlay address), for the kubeconfig

Underlay addresses (a /24 or larger, default 172.29.0.0/24): the host .1, control planes
.11-.13, workers .21 upwards, outside .250, and the LoadBalancer pool .200-.239, so a
LoadBalancer IP is announced (ARP) on the underlay like a real L2 segment's. Pod and service
ranges are the usual 10.244.0.0/16 and 10.96.0.0/12; workers route each other's podCIDRs
(host-gw) over the underlay. Nothing has a default route: a packet for anything outside the
lab has nowhere to go.

The host gets `unreachable` routes for the service and pod ranges and for the underlay itself
(with a high metric, under the veth's connected route), so when the lab is half built or gone,
lab traffic from the host fails closed instead of taking the default route.

etcd members go round-robin onto the control-plane namespaces (three members with one control
plane: all three in cp1, on ports 2379/2380, 2381/2382, 2383/2384). With `--store sqlite`
there is no etcd and exactly one API server. API servers share one CA and admin token (the
first one's, copied before the others start) so one kubeconfig reaches them all: `server` is
the first, the `meshnet.io/servers` extension names the rest (docs/failover.md).

Nothing here does I/O; `meshnet.lab.run` applies the plan.
"""

from __future__ import annotations

import copy
import ipaddress
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meshnet.client.failover import SERVERS_EXTENSION
from meshnet.cluster.plan import (AGENT_PORT, AGENT_STATUS_PORT, CLUSTER_CIDR, CLUSTER_DNS_IP,
                                  DNS_METRICS_PORT, DNS_PORT, INGRESS_STATUS_PORT, NAME_RE,
                                  NODE_HTTP_PORT, NODE_HTTPS_PORT, PROXY_STATUS_PORT,
                                  SERVICE_CIDR, PlanError, ProcessSpec)

DEFAULT_NAME = "lab"
DEFAULT_UNDERLAY = "172.29.0.0/24"
DEFAULT_DATA_ROOT = Path("/var/lib/meshnet-lab")
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
MAX_CONTROL_PLANES, MAX_WORKERS = 3, 40
CP_OFFSET, WORKER_OFFSET, OUTSIDE_OFFSET = 10, 20, 250
LB_POOL_OFFSETS = (200, 239)
# Under the veth's connected route (metric 0): it only answers once that route is gone.
UNREACHABLE_METRIC = 4242
# meshnet-dns forwards names outside the cluster here unless --dns-upstream says otherwise:
# the worker's own loopback, where nothing listens, so such names fail inside the lab and no
# question ever leaves it (the host's resolver is never used).
NO_UPSTREAM = "127.0.0.1:53"
# Faster than Kubernetes' defaults (40 s / 5 min / 15 s) so a lab shows failures in seconds:
# the agent renews its node Lease every 10 s, so the grace period must stay above that.
LAB_APISERVER_DEFAULTS = (("--node-monitor-grace-period", "20s"),
                          ("--pod-eviction-timeout", "30s"),
                          ("--leader-lease-duration", "5s"))
WORKER_PROCESSES = ("agent", "proxy", "dns", "ingress")


@dataclass(frozen=True)
class Member:
    name: str        # cp1, w2, out
    role: str        # control-plane, worker, outside
    ip: str
    netns: str

    def __repr__(self) -> str:
        return f"<Member {self.name} {self.role} {self.ip}>"


@dataclass(frozen=True)
class EtcdMember:
    name: str        # e1
    host: Member     # the control-plane namespace it runs in
    client_port: int

    @property
    def client_url(self) -> str:
        return f"http://{self.host.ip}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host.ip}:{self.client_port + 1}"


@dataclass(frozen=True)
class LabPlan:
    name: str
    data_dir: Path
    control_planes: int = 1
    workers: int = 2
    etcd: int = 1                 # 0 with --store sqlite
    underlay: str = DEFAULT_UNDERLAY
    lb_pool: str = ""
    dns_upstream: str = NO_UPSTREAM
    apiserver_args: tuple[str, ...] = ()
    python: str = field(default=sys.executable)

    # ----------------------------------------------------------------- names and addresses

    @property
    def up_dir(self) -> Path:
        """Logs and process working directory (what meshnet.cluster.supervisor expects)."""
        return self.data_dir

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def switch_netns(self) -> str:
        return f"{self.name}-sw"

    @property
    def host_veth(self) -> str:
        return f"{self.name}-h"

    def _addr(self, offset: int) -> str:
        return str(ipaddress.ip_network(self.underlay).network_address + offset)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.underlay).prefixlen

    @property
    def host_ip(self) -> str:
        return self._addr(1)

    def members(self) -> tuple[Member, ...]:
        cps = [Member(f"cp{i}", "control-plane", self._addr(CP_OFFSET + i), f"{self.name}-cp{i}")
               for i in range(1, self.control_planes + 1)]
        workers = [Member(f"w{i}", "worker", self._addr(WORKER_OFFSET + i), f"{self.name}-w{i}")
                   for i in range(1, self.workers + 1)]
        out = Member("out", "outside", self._addr(OUTSIDE_OFFSET), f"{self.name}-out")
        return (*cps, *workers, out)

    def member(self, name: str) -> Member:
        """By member name (w1), namespace (lab-w1) or Node name (w1)."""
        for m in self.members():
            if name in (m.name, m.netns):
                return m
        raise PlanError(f'no lab member "{name}"; members: '
                        f'{", ".join(m.name for m in self.members())}')

    def role(self, role: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members() if m.role == role)

    def lb_pool_range(self) -> str:
        if self.lb_pool:
            return self.lb_pool
        lo, hi = LB_POOL_OFFSETS
        return f"{self._addr(lo)}-{self._addr(hi)}"

    def etcd_members(self) -> tuple[EtcdMember, ...]:
        cps = self.role("control-plane")
        return tuple(EtcdMember(f"e{i + 1}", cps[i % len(cps)],
                                ETCD_CLIENT_PORT + 2 * (i // len(cps)))
                     for i in range(self.etcd))

    @property
    def store(self) -> str:
        """The API servers' --store: etcd://every member, or "" (SQLite in the data dir)."""
        members = self.etcd_members()
        if not members:
            return ""
        return "etcd://" + ",".join(f"{m.host.ip}:{m.client_port}" for m in members)

    def api_urls(self) -> tuple[str, ...]:
        return tuple(f"https://{m.ip}:{API_PORT}" for m in self.role("control-plane"))

    def unreachable_ranges(self) -> tuple[str, ...]:
        """The cluster ranges the host gets `unreachable` routes for (the underlay gets one
        too, with UNREACHABLE_METRIC)."""
        return (SERVICE_CIDR, CLUSTER_CIDR)

    def member_dir(self, member: Member) -> Path:
        return self.data_dir / member.name

    # ----------------------------------------------------------------------- processes

    def processes(self) -> tuple[tuple[Member, ProcessSpec], ...]:
        """In start order (etcd, API servers, workers); `down` stops them in reverse. Process
        names are `<member>-<process>` (cp1-apiserver, w2-proxy, cp1-e1)."""
        out: list[tuple[Member, ProcessSpec]] = []
        members = self.etcd_members()
        initial = ",".join(f"{e.name}={e.peer_url}" for e in members)
        for e in members:
            argv = ("etcd", "--name", e.name,
                    "--data-dir", str(self.member_dir(e.host) / f"etcd-{e.name}"),
                    "--listen-client-urls", e.client_url, "--advertise-client-urls", e.client_url,
                    "--listen-peer-urls", e.peer_url, "--initial-advertise-peer-urls", e.peer_url,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"meshnet-lab-{self.name}",
                    "--log-level", "warn")
            out.append(self._spec(e.host, e.name, argv, f"{e.client_url}/health"))
        bin_dir = Path(self.python).parent
        flags = dict(LAB_APISERVER_DEFAULTS)
        extra = list(self.apiserver_args)
        for key, value in flags.items():
            if key not in extra:
                extra += [key, value]
        for cp in self.role("control-plane"):
            argv = (str(bin_dir / "meshnet-apiserver"),
                    "--data-dir", str(self.member_dir(cp) / "apiserver"),
                    "--listen", f"{cp.ip}:{API_PORT}", "--advertise-address", cp.ip,
                    "--service-cidr", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR,
                    "--lb-pool", self.lb_pool_range(),
                    *(("--store", self.store) if self.store else ()), *extra)
            out.append(self._spec(cp, "apiserver", argv, ""))
        for w in self.role("worker"):
            out += [self._spec(w, name, argv, ready)
                    for name, argv, ready in self._worker(w, bin_dir)]
        return tuple(out)

    def _spec(self, member: Member, process: str, argv: tuple[str, ...],
              ready_url: str) -> tuple[Member, ProcessSpec]:
        # `ip netns exec` execs the program: the PID recorded is the program's own.
        return member, ProcessSpec(f"{member.name}-{process}",
                                   ("ip", "netns", "exec", member.netns, *argv), False,
                                   ready_url)

    def _worker(self, w: Member, bin_dir: Path):
        kc = str(self.kubeconfig)
        ip = w.ip
        return (
            ("agent", (str(bin_dir / "meshnet-agent"), "--kubeconfig", kc, "--node-name", w.name,
                       "--node-ip", ip, "--cluster-dns", CLUSTER_DNS_IP,
                       "--state-dir", str(self.member_dir(w) / "agent"),
                       "--agent-listen", f"{ip}:{AGENT_PORT}",
                       "--status-address", f"{ip}:{AGENT_STATUS_PORT}"),
             f"http://{ip}:{AGENT_STATUS_PORT}/ready"),
            ("proxy", (str(bin_dir / "meshnet-proxy"), "--kubeconfig", kc, "--node-name", w.name,
                       "--status-address", f"{ip}:{PROXY_STATUS_PORT}"),
             f"http://{ip}:{PROXY_STATUS_PORT}/ready"),
            ("dns", (str(bin_dir / "meshnet-dns"), "--kubeconfig", kc,
                     "--listen", f"{ip}:{DNS_PORT}", "--upstream", self.dns_upstream,
                     "--status-listen", f"{ip}:{DNS_METRICS_PORT}"),
             f"http://{ip}:{DNS_METRICS_PORT}/ready"),
            ("ingress", (str(bin_dir / "meshnet-ingress"), "--kubeconfig", kc,
                         "--http-listen", f"{ip}:{NODE_HTTP_PORT}",
                         "--https-listen", f"{ip}:{NODE_HTTPS_PORT}",
                         "--status-listen", f"{ip}:{INGRESS_STATUS_PORT}",
                         "--publish-address", ip, "--watch-ingress-without-class"),
             f"http://{ip}:{INGRESS_STATUS_PORT}/ready"),
        )

    # ----------------------------------------------------------------------- cluster data

    def lab_kubeconfig(self, admin: dict) -> dict:
        """The first API server's admin kubeconfig, naming every API server."""
        doc = copy.deepcopy(admin)
        urls = self.api_urls()
        for entry in doc.get("clusters") or []:
            cluster = entry["cluster"]
            cluster["server"] = urls[0]
            others = [e for e in cluster.get("extensions") or []
                      if e.get("name") != SERVERS_EXTENSION]
            if len(urls) > 1:
                others.append({"name": SERVERS_EXTENSION,
                               "extension": {"servers": list(urls[1:])}})
            cluster.pop("extensions", None)
            if others:
                cluster["extensions"] = others
        return doc

    def kube_dns_endpoints(self) -> dict:
        """meshnet-dns runs on every worker, not as pods: the kube-dns Service loses its
        selector and its Endpoints list the workers (as `meshctl up` does for its node), each
        with its nodeName, so that internalTrafficPolicy Local sends a pod to its own node's."""
        return {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns"}},
            "subsets": [{"addresses": [{"ip": w.ip, "nodeName": w.name}
                                       for w in self.role("worker")],
                         "ports": [{"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"},
                                   {"name": "metrics", "port": DNS_METRICS_PORT,
                                    "protocol": "TCP"}]}]}

    def flags(self) -> dict:
        """What shapes the lab: a restart after a crash must use the same."""
        return {"name": self.name, "control_planes": self.control_planes,
                "workers": self.workers, "etcd": self.etcd, "underlay": self.underlay,
                "lb_pool": self.lb_pool_range()}


def split_flags(items: list[str]) -> tuple[str, ...]:
    """`--apiserver-arg=--flag=value` items as argv: ("--flag", "value"); a bare "--flag"
    stays one word."""
    out: list[str] = []
    for item in items:
        flag, sep, value = item.partition("=")
        out += [flag, value] if sep else [flag]
    return tuple(out)


def merge_flags(base: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    """`base` with every `--flag value` of `extra` replacing the same flag's value in it (or
    added); a flag without a value (the next word is another flag) is added if missing."""
    out = list(base)
    i = 0
    while i < len(extra):
        flag = extra[i]
        has_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        value = extra[i + 1] if has_value else None
        i += 2 if has_value else 1
        if flag not in out:
            out += [flag] + ([value] if value is not None else [])
        elif value is not None:
            at = out.index(flag)
            if at + 1 < len(out) and not out[at + 1].startswith("--"):
                out[at + 1] = value
            else:
                out.insert(at + 1, value)
    return tuple(out)


def make_plan(*, name: str, data_dir: Path | None, control_planes: int, workers: int,
              etcd: int, store: str, underlay: str, lb_pool: str = "",
              dns_upstream: str = "", apiserver_args: tuple[str, ...] = ()) -> LabPlan:
    """Validate the flags of `netns-lab/up` and build the plan (no I/O)."""
    if not NAME_RE.fullmatch(name):
        raise PlanError(f'--name "{name}": use 1-12 lower-case letters, digits and "-" (it '
                        f"prefixes the namespaces, {name}-w1, and the host veth {name}-h)")
    if not 1 <= control_planes <= MAX_CONTROL_PLANES:
        raise PlanError(f"--control-planes {control_planes}: between 1 and "
                        f"{MAX_CONTROL_PLANES}")
    if not 1 <= workers <= MAX_WORKERS:
        raise PlanError(f"--workers {workers}: between 1 and {MAX_WORKERS}")
    if store not in ("etcd", "sqlite"):
        raise PlanError(f'--store "{store}": etcd or sqlite')
    if store == "sqlite":
        if control_planes != 1:
            raise PlanError("--store sqlite: one API server only (the SQLite file is not "
                            "shared); use --store etcd for several control planes")
        etcd = 0
    elif etcd not in (1, 3):
        raise PlanError(f"--etcd {etcd}: 1 or 3 members (an even number adds no fault "
                        f"tolerance)")
    try:
        net = ipaddress.ip_network(underlay, strict=True)
    except ValueError as exc:
        raise PlanError(f"--underlay {underlay}: {exc} (e.g. {DEFAULT_UNDERLAY})") from None
    if net.version != 4 or net.prefixlen > 24:
        raise PlanError(f"--underlay {underlay}: an IPv4 /24 or larger (members, the host and "
                        f"the LoadBalancer pool take fixed offsets in it)")
    if not net.is_private or net.is_link_local:
        raise PlanError(f"--underlay {underlay}: use a private range (RFC 1918), not "
                        f"link-local: Endpoints refuse 169.254/16 as Kubernetes does")
    for cluster in (SERVICE_CIDR, CLUSTER_CIDR):
        if net.overlaps(ipaddress.ip_network(cluster)):
            raise PlanError(f"--underlay {underlay} overlaps the cluster range {cluster}")
    data = Path(data_dir) if data_dir else DEFAULT_DATA_ROOT / name
    return LabPlan(name, data.absolute(), control_planes, workers, etcd, str(net), lb_pool,
                   dns_upstream or NO_UPSTREAM, tuple(apiserver_args))
