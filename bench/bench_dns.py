"""Cluster DNS benchmark (not a test): meshnet-dns against dnsmasq with dnsperf, same names.

    .venv/bin/python bench/bench_dns.py [--services 1000] [--duration 15]
                                        [--scale-services 10000] [--scale-endpoints 100000]

What it does, all on loopback (127.0.0.0/8; nothing leaves the machine):

1. installs the Debian packages `dnsperf` and `dnsmasq-base` if they are missing (apt-get);
2. starts a real `meshnet-apiserver` and creates `--services` Services (every
   `--headless-every`th one headless) with an Endpoints object of `--endpoints-per` addresses
   each, in ten namespaces;
3. starts the upstream: a dnsmasq on 127.0.53.4 answering every `*.example.test` name with a
   static A record (`address=`), and nothing else (`no-resolv`, no `server=`);
4. starts meshnet-dns (127.0.53.2) following that API server, and a dnsmasq (127.0.53.3) whose
   hosts file and `srv-host` lines are generated from the same Services and Endpoints read
   back from the API server. Both forward to the upstream above and never to the host's
   resolver (`--upstream`; `no-resolv` + `server=`). Both are pinned to the same CPU
   (`taskset -c SERVER_CPU`); dnsperf and the upstream run on another;
5. per case: one warm pass of each server through the query file (dnsperf -n 1, gently: every
   server has seen every name once; not for `forward-miss`, whose names are new by design);
   then per server, in turn: dnsperf for `--duration` seconds at full load (queries/s,
   dnsperf's average latency and its standard deviation), then a second run at a fixed rate
   (`--latency-qps`) with dnsperf -v, whose per-query latencies give p50/p99; servers take
   turns `--rounds` times per case and the best full-load run of each is kept;
6. `whole-machine`: the per-core lines above pin both servers to one CPU. Here meshnet-dns
   runs `--workers N` processes (SO_REUSEPORT, meshnet/workers.py) and dnsmasq (single-threaded
   by design) runs as it is, neither pinned, on cluster names (see `whole_machine`);
7. scale: a second API server holds `--scale-services` Services / `--scale-endpoints`
   addresses: the first `--services` as created through the API above, the rest added to a
   copy of its store (`meshctl backup` format) and loaded with `meshnet-apiserver --restore`,
   twenty times faster than POSTing them (see `scale_snapshot`). A fresh meshnet-dns follows
   it: the time to its first full sync (/ready), its RSS after it, the propagation time of a
   Service created at that scale (create -> answer), and dnsmasq's RSS with the same names;
8. `via-proxy` (needs root): how pods reach the cluster DNS. In a network namespace of its own
   (nothing connects it to the host; the host gets `unreachable` routes for the addresses used,
   removed afterwards) it runs a meshnet-apiserver, meshnet-dns on a node address
   (10.244.53.53:53, as the kube-dns Endpoints name it) and meshnet-proxy, which binds the
   kube-dns ClusterIP 10.96.0.10:53 and relays UDP to it. dnsperf asks cluster names directly
   (the node address) and through the proxy (the ClusterIP), in turns; meshnet-dns and the
   proxy share the server CPU, as on a node, and each one's CPU per query is reported.

Each step prints a `[seconds] what` line, so a slow run shows where its time went.

Cases: `cluster` (A and SRV of Services that exist), `nxdomain` (what a pod with ndots:5
sends first: `<svc>.<ns>.svc.cluster.local.<ns>.svc.cluster.local`,
`example.com.<ns>.svc.cluster.local`, ...), `forward-cached` (1,000 upstream names asked over
and over: both servers answer from their cache) and `forward-miss` (every name new: each query
goes upstream). The table goes to stdout and to bench/results/dns-<date>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from bench_apiserver import Server, pct  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from netns import Lab, ip, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
ZONE = "cluster.local"
PORT = 5353
MESHNET_ADDR, DNSMASQ_ADDR, UPSTREAM_ADDR = "127.0.53.2", "127.0.53.3", "127.0.53.4"
DNSMASQ_A_ADDR = "127.0.53.5"  # dnsmasq with the hosts file only: no srv-host lines
SERVERS = (("meshnet", MESHNET_ADDR), ("dnsmasq", DNSMASQ_ADDR), ("dnsmasq-a", DNSMASQ_A_ADDR))
STATUS_PORT = 9153
NAMESPACES = [f"bench{i}" for i in range(10)]
FORWARD_DOMAIN = "example.test"
READY_TIMEOUT_S = 600.0
CASES = ("cluster", "nxdomain", "forward-cached", "forward-miss", "whole-machine", "via-proxy")
# via-proxy: addresses inside the bench's own namespace; the host gets `unreachable` routes
# for exactly these prefixes while it runs (none of them is the host's or its resolver's).
NETNS_API_PORT = 6443
KUBE_DNS_IP, DNS_NODE_IP = "10.96.0.10", "10.244.53.53"
NETNS_SERVICE_NET = "10.96.53.0/24"  # the ClusterIPs of the Services queried
HOST_UNREACHABLE = (f"{KUBE_DNS_IP}/32", NETNS_SERVICE_NET, f"{DNS_NODE_IP}/32")
NETNS_SERVICES = 100
BENCH_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"},
               {"name": "grpc", "port": 9090, "protocol": "TCP"}]


T0 = time.monotonic()


def phase(what: str) -> None:
    """A progress line with the seconds since the bench started (where the time goes)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", flush=True)


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq-base"))
               if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def dnsmasq_bin() -> str:
    return shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


# -- objects ------------------------------------------------------------------------------------


def endpoint_addresses(i: int, per: int) -> list[dict]:
    """The Endpoints addresses of the bench's Service svc<i>: `per` of them, all distinct."""
    base = i * per
    return [{"ip": f"10.{244 + ((base + j) >> 16)}.{((base + j) >> 8) & 255}.{(base + j) & 255}"}
            for j in range(per)]


async def create_objects(server: Server, start: int, count: int, endpoints_per: int,
                         headless_every: int, clients: int = 16) -> None:
    """Services svc<i> (i in [start, start+count)) with their Endpoints, no selector (so the
    endpoints controller leaves them alone)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    conn = aiohttp.TCPConnector(ssl=server.ssl, limit=clients + 2)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as s:
        if start == 0:
            for ns in NAMESPACES:
                async with s.post(f"{server.url}/api/v1/namespaces",
                                  json={"metadata": {"name": ns}}) as resp:
                    assert resp.status in (201, 409), await resp.text()
        todo = iter(range(start, start + count))

        async def post(path: str, body: dict) -> None:
            async with s.post(f"{server.url}{path}", json=body) as resp:
                if resp.status != 201:
                    raise SystemExit(f"POST {path}: {resp.status} {await resp.text()}")
                await resp.read()

        async def worker() -> None:
            for i in todo:
                ns, name = NAMESPACES[i % len(NAMESPACES)], f"svc{i}"
                ports = BENCH_PORTS
                spec = {"ports": ports}
                if headless_every and i % headless_every == 0:
                    spec["clusterIP"] = "None"
                await post(f"/api/v1/namespaces/{ns}/services",
                           {"metadata": {"name": name}, "spec": spec})
                addrs = endpoint_addresses(i, endpoints_per)
                await post(f"/api/v1/namespaces/{ns}/endpoints",
                           {"metadata": {"name": name},
                            "subsets": [{"addresses": addrs, "ports": ports}] if addrs else []})

        await asyncio.gather(*(worker() for _ in range(clients)))


async def list_objects(server: Server) -> tuple[list[dict], dict[tuple[str, str], dict]]:
    headers = {"Authorization": f"Bearer {server.token}"}
    conn = aiohttp.TCPConnector(ssl=server.ssl)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as s:
        async with s.get(f"{server.url}/api/v1/services") as resp:
            services = (await resp.json())["items"]
        async with s.get(f"{server.url}/api/v1/endpoints") as resp:
            eps = {(e["metadata"]["namespace"], e["metadata"]["name"]): e
                   for e in (await resp.json())["items"]}
    return services, eps


def dnsmasq_zone(services: list[dict], eps: dict) -> tuple[list[str], list[str]]:
    """The same names as meshnet-dns serves, as a hosts file and `srv-host=` lines: ClusterIP
    A records, headless A per ready endpoint plus the dashed per-endpoint names, SRV per named
    port (dnsmasq also derives the PTRs from the hosts file)."""
    hosts, srv = [], []
    for svc in services:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        spec = svc["spec"]
        fqdn = f"{name}.{ns}.svc.{ZONE}"
        if spec.get("clusterIP") == "None":
            targets = []
            for subset in eps.get((ns, name), {}).get("subsets") or ():
                for a in subset.get("addresses") or ():
                    host = f"{a['ip'].replace('.', '-')}.{fqdn}"
                    hosts.append(f"{a['ip']} {fqdn} {host}")
                    targets.append(host)
        elif spec.get("clusterIP"):
            hosts.append(f"{spec['clusterIP']} {fqdn}")
            targets = [fqdn]
        else:
            continue
        for port in spec.get("ports") or ():
            if port.get("name"):
                for target in targets:
                    srv.append(f"srv-host=_{port['name']}._{port.get('protocol', 'TCP').lower()}"
                               f".{fqdn},{target},{port['port']}")
    return hosts, srv


# -- processes ----------------------------------------------------------------------------------


class Proc:
    """A process this bench started, stopped by its PID only."""

    def __init__(self, name: str, argv: list[str], cpu: int | None, log: Path, **kwargs):
        self.name = name
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        self.log = log
        self.proc = subprocess.Popen(argv, stderr=open(log, "ab"), start_new_session=True,
                                     **kwargs)

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.proc.pid}>"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_dnsmasq(name: str, workdir: Path, addr: str, cpu: int, lines: list[str],
                  hosts: list[str] | None = None) -> Proc:
    conf = workdir / f"{name}.conf"
    body = [f"port={PORT}", f"listen-address={addr}", "bind-interfaces", "no-resolv",
            "no-hosts", "no-poll", "user=root", "pid-file=", "keep-in-foreground",
            "cache-size=10000", "dns-forward-max=1000", *lines]
    if hosts is not None:
        path = workdir / f"{name}.hosts"
        path.write_text("\n".join(hosts) + "\n")
        body.append(f"addn-hosts={path}")
    conf.write_text("\n".join(body) + "\n")
    proc = Proc(name, [dnsmasq_bin(), f"--conf-file={conf}"], cpu, workdir / f"{name}.log")
    wait_answer(addr, f"x.{FORWARD_DOMAIN}" if name == "upstream" else f"dns-version.{ZONE}",
                proc, want_rcode=None)
    return proc


def dig_rcode(addr: str, name: str, qtype: str = "A", port: int = PORT, netns: str = "") -> str:
    argv = ["dig", f"@{addr}", "-p", str(port), "+tries=1", "+time=1", name, qtype]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    m = re.search(r"status: (\w+)", out)
    return m.group(1) if m else "TIMEOUT"


def wait_answer(addr: str, name: str, proc: Proc, want_rcode: str | None = "NOERROR",
                timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise SystemExit(f"{proc.name} exited: {proc.log.read_text()[-2000:]}")
        rcode = dig_rcode(addr, name)
        if rcode != "TIMEOUT" and (want_rcode is None or rcode == want_rcode):
            return
        time.sleep(0.05)
    raise SystemExit(f"{proc.name}: {name} did not answer {want_rcode} in time")


def start_meshnet(workdir: Path, kubeconfig: Path, cpu: int | None,
                  workers: int = 1) -> tuple[Proc, float]:
    """meshnet-dns, and the seconds from exec to its first full sync (/ready; with workers,
    every worker's)."""
    start = time.monotonic()
    proc = Proc("meshnet-dns", [str(BIN / "meshnet-dns"), "--kubeconfig", str(kubeconfig),
                                "--listen", f"{MESHNET_ADDR}:{PORT}",
                                "--upstream", f"{UPSTREAM_ADDR}:{PORT}",
                                "--status-listen", f"{MESHNET_ADDR}:{STATUS_PORT}",
                                "--workers", str(workers), "--log-level", "warning"],
                cpu, workdir / "meshnet-dns.log", stdout=subprocess.PIPE)
    line = proc.proc.stdout.readline().decode()
    if "listening" not in line:
        raise SystemExit(f"meshnet-dns did not start: {line!r} {proc.log.read_text()[-2000:]}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{MESHNET_ADDR}:{STATUS_PORT}/ready",
                                        timeout=2) as resp:
                if resp.status == 200:
                    return proc, time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit("meshnet-dns never became ready")


# -- dnsperf ------------------------------------------------------------------------------------


def write_queries(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_names(services: list[dict]):
    """(namespace, name, service FQDN) of the bench's own Services."""
    for svc in services:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        if ns.startswith("bench"):
            yield ns, name, f"{name}.{ns}.svc.{ZONE}"


def cluster_queries(services: list[dict]) -> list[str]:
    out = []
    for _, _, fqdn in bench_names(services):
        out += [f"{fqdn} A"] * 4 + [f"_http._tcp.{fqdn} SRV"]
    random.Random(1).shuffle(out)
    return out


def nxdomain_queries(services: list[dict]) -> list[str]:
    """The search-path expansions a pod with ndots:5 in namespace <ns> tries first."""
    out = []
    for ns, name, fqdn in bench_names(services):
        out += [f"{fqdn}.{ns}.svc.{ZONE} A", f"{fqdn}.svc.{ZONE} A",
                f"{fqdn}.{ZONE} A", f"api{name[3:]}.example.com.{ns}.svc.{ZONE} A"]
    random.Random(2).shuffle(out)
    return out


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (meshnet-dns --workers: its workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_times() -> dict[int, list[int]]:
    """Per-CPU time from /proc/stat: {cpu: [user, nice, system, idle, iowait, irq, softirq,
    steal]} in clock ticks."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *fields = line.split()
            out[int(name[3:])] = [int(x) for x in fields[:8]]
    return out


def cpu_busy(before: dict[int, list[int]], after: dict[int, list[int]]) -> dict[int, tuple]:
    """Per CPU: (busy fraction, softirq fraction) between two `cpu_times()`. The softirq
    share matters on loopback: a sendto delivers the datagram to the receiver in the sender's
    softirq, and that time is not in either process's utime+stime."""
    out = {}
    for cpu, b in before.items():
        d = [y - x for x, y in zip(b, after[cpu])]
        total = sum(d) or 1
        out[cpu] = (1 - (d[3] + d[4]) / total, d[6] / total)
    return out


def warm(addr: str, queries: Path, cpu: int | None, port: int = PORT, netns: str = "",
         clients: int = 4) -> None:
    """One pass through the query file at a gentle pace (20 outstanding, so nothing is lost
    and dnsperf does not wait out its timeout): every server has seen every name once before
    it is measured (meshnet-dns memoises encoded answers, dnsmasq fills its cache)."""
    argv = ["dnsperf", "-s", addr, "-p", str(port), "-d", str(queries), "-n", "1", "-c",
            str(clients), "-q", "20", "-t", "2"]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    subprocess.run(argv, capture_output=True, check=True)


def dnsperf(addr: str, queries: Path, duration_s: float, cpu: int | None, *, qps: int = 0,
            verbose: bool = False, server_pid: int = 0, port: int = PORT, netns: str = "",
            proxy_pid: int = 0, clients: int = 4, server_pids: tuple[int, ...] = ()) -> dict:
    """One dnsperf run; with `server_pid` (or several `server_pids`, whose CPU is added up),
    also the server's CPU per answered query."""
    server_pids = (server_pid,) if server_pid else server_pids
    argv = ["dnsperf", "-s", addr, "-p", str(port), "-d", str(queries), "-l", str(duration_s),
            "-c", str(clients), "-q", "200", "-t", "2"]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    if qps:
        argv += ["-Q", str(qps)]
    if verbose:
        argv += ["-v"]
    before = sum(map(cpu_ticks, server_pids))
    proxy_before = cpu_ticks(proxy_pid) if proxy_pid else 0
    times_before = cpu_times()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    stats = {"cpus": cpu_busy(times_before, cpu_times())}
    if server_pids:
        stats["cpu_ticks"] = sum(map(cpu_ticks, server_pids)) - before
    if proxy_pid:
        stats["proxy_ticks"] = cpu_ticks(proxy_pid) - proxy_before
    for key, pattern in (("sent", r"Queries sent:\s+(\d+)"),
                         ("completed", r"Queries completed:\s+(\d+)"),
                         ("lost", r"Queries lost:\s+(\d+)"),
                         ("qps", r"Queries per second:\s+([\d.]+)"),
                         ("avg", r"Average Latency \(s\):\s+([\d.]+)"),
                         ("stddev", r"Latency StdDev \(s\):\s+([\d.]+)")):
        m = re.search(pattern, out)
        stats[key] = float(m.group(1)) if m else 0.0
    m = re.search(r"Response codes:\s+(.*)", out)
    stats["rcodes"] = m.group(1).strip() if m else ""
    if verbose:
        lat = [float(x) for x in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", out, re.M)]
        stats["p50"] = pct(lat, 50) if lat else 0.0
        stats["p99"] = pct(lat, 99) if lat else 0.0
    if not stats["completed"]:
        raise SystemExit(f"dnsperf got no answer from {addr}:{port}: {out[-1500:]}")
    if server_pids:
        # server CPU per answered query: unlike q/s, barely moved by other load on the machine
        stats["cpu_us"] = stats["cpu_ticks"] / os.sysconf("SC_CLK_TCK") / stats["completed"] * 1e6
        if proxy_pid:
            stats["proxy_cpu_us"] = (stats["proxy_ticks"] / os.sysconf("SC_CLK_TCK")
                                     / stats["completed"] * 1e6)
    return stats


# -- the run ------------------------------------------------------------------------------------


def run_cases(args, workdir: Path, services: list[dict],
              pids: dict[str, int]) -> list[tuple[str, dict, dict, dict]]:
    cases = [("cluster", write_queries(workdir / "cluster.txt", cluster_queries(services))),
             ("nxdomain", write_queries(workdir / "nx.txt", nxdomain_queries(services))),
             ("forward-cached", write_queries(
                 workdir / "fwd.txt", [f"h{j}.{FORWARD_DOMAIN} A" for j in range(1000)]))]
    miss_lines = int(args.duration * 40_000)  # more unique names than either can answer
    for who, _ in SERVERS:
        write_queries(workdir / f"miss-{who}.txt",
                      [f"{who}-{j}.{FORWARD_DOMAIN} A" for j in range(miss_lines)])
    results = []
    for case, path in cases + [("forward-miss", None)]:
        if case not in args.cases:
            continue
        row = {}
        best: dict[str, dict] = {}
        if path is not None:  # forward-miss: every name new, by design
            for who, addr in SERVERS:
                warm(addr, path, args.client_cpu)
        # Servers take turns, `--rounds` times; the best full-load run of each is kept, so a
        # burst of unrelated load on the machine does not land on one server only.
        for rnd in range(args.rounds):
            for who, addr in SERVERS:
                qfile = path or workdir / f"miss-{who}.txt"
                if case == "forward-miss" and rnd:
                    qfile = write_queries(workdir / f"miss-{who}.txt",
                                          [f"{who}-r{rnd}-{j}.{FORWARD_DOMAIN} A"
                                           for j in range(miss_lines)])
                full = dnsperf(addr, qfile, args.duration, args.client_cpu,
                               server_pid=pids[who])
                print(f"  round {rnd + 1} {case:15s} {who:9s} {full['qps']:9,.0f} q/s cpu "
                      f"{full['cpu_us']:.1f} us/query; CPUs busy/softirq " + ", ".join(
                          f"{c}: {b:.0%}/{si:.0%}" for c, (b, si) in full["cpus"].items()),
                      flush=True)
                if full["qps"] > best.get(who, {"qps": -1})["qps"]:
                    best[who] = full
        for who, addr in SERVERS:
            qfile = path or workdir / f"miss-{who}.txt"
            full = best[who]
            if case == "forward-miss":  # fresh names again for the fixed-rate run
                qfile = write_queries(workdir / f"miss2-{who}.txt",
                                      [f"{who}-b{j}.{FORWARD_DOMAIN} A"
                                       for j in range(int(args.latency_qps * args.latency_s
                                                          * 1.2))])
            fixed = dnsperf(addr, qfile, args.latency_s, args.client_cpu,
                            qps=args.latency_qps, verbose=True, server_pid=pids[who])
            row[who] = {**full, "p50": fixed["p50"], "p99": fixed["p99"],
                        "fixed_avg": fixed["avg"]}
            print(f"{case:15s} {who:8s} {full['qps']:9,.0f} q/s avg {full['avg'] * 1e3:.3f} ms"
                  f" sd {full['stddev'] * 1e3:.3f} ms; at {args.latency_qps} q/s p50 "
                  f"{fixed['p50'] * 1e3:.3f} ms p99 {fixed['p99'] * 1e3:.3f} ms "
                  f"cpu {full.get('cpu_us', 0):.1f} us/query "
                  f"(CPUs busy/softirq: " + ", ".join(
                      f"{c}: {b:.0%}/{si:.0%}" for c, (b, si) in full["cpus"].items()) + ") "
                  f"lost {full['lost']:.0f} [{full['rcodes']}]", flush=True)
        results.append((case, row["meshnet"], row["dnsmasq"], row["dnsmasq-a"]))
    return results


# -- via-proxy ----------------------------------------------------------------------------------


def host_unreachable(prefixes: tuple[str, ...]) -> list[str]:
    """`unreachable` routes on the host for the lab's prefixes that have no route of their own
    yet; returns those added, which `remove_routes` deletes again."""
    added = []
    for prefix in prefixes:
        if ip("route", "show", "exact", prefix).stdout.strip():
            continue
        ip("route", "add", "unreachable", prefix)
        added.append(prefix)
    return added


def remove_routes(prefixes: list[str]) -> None:
    for prefix in prefixes:
        ip("route", "del", "unreachable", prefix, check=False)


async def netns_objects(kubeconfig: str, count: int) -> None:
    """Inside the lab namespace (`--netns-setup`): Services svc0.. with ClusterIPs from
    NETNS_SERVICE_NET, and kube-dns pointed at meshnet-dns on the node address the way
    `meshctl up` does it (no selector; Endpoints naming the node)."""
    from meshnet.api.resources import lookup
    from meshnet.client.aio import AsyncClient

    services, endpoints = lookup("services"), lookup("endpoints")
    net = ipaddress.ip_network(NETNS_SERVICE_NET)
    client = AsyncClient.from_kubeconfig(kubeconfig)
    try:
        await client.create(lookup("namespaces"), None, {"metadata": {"name": "bench0"}})
        for i in range(count):
            await client.create(services, "bench0", {
                "metadata": {"name": f"svc{i}"},
                "spec": {"clusterIP": str(net[i + 1]),
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        await client.patch(services, "kube-system", "kube-dns", {"spec": {"selector": None}})
        subsets = [{"addresses": [{"ip": DNS_NODE_IP}],
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}]
        try:
            await client.create(endpoints, "kube-system",
                                {"metadata": {"name": "kube-dns"}, "subsets": subsets})
        except Exception:  # noqa: BLE001 - it exists (left by the endpoints controller)
            pass
        # The endpoints controller may still act on the Service as it was (with a selector)
        # and write its own Endpoints over ours: write until ours stay put for a while.
        stable = 0
        for _ in range(60):
            await asyncio.sleep(0.5)
            current = await client.get(endpoints, "kube-system", "kube-dns")
            if current.get("subsets") == subsets:
                stable += 1
                if stable == 3:
                    return
            else:
                stable = 0
                await client.patch(endpoints, "kube-system", "kube-dns", {"subsets": subsets})
        raise SystemExit("the kube-dns Endpoints keep being rewritten")
    finally:
        await client.close()


def whole_machine(args, workdir: Path, kubeconfig: Path, services: list[dict],
                  masq: Proc) -> dict:
    """Cluster names, the whole machine: meshnet-dns --workers N against dnsmasq (its
    `dnsmasq-a` set-up, the faster of the two), neither pinned; dnsperf on the client CPU as
    in the per-core runs, with 16 client sockets (SO_REUSEPORT spreads clients by their
    address and port: 4 sockets could land 3:1). Servers take turns, `--rounds` times; the
    best run of each is kept."""
    qfile = workdir / "cluster.txt"
    cpus = f"0-{os.cpu_count() - 1}"
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(masq.proc.pid)], check=True,
                   capture_output=True)
    dns, _ = start_meshnet(workdir, kubeconfig, None, workers=args.whole_workers)
    try:
        best: dict[str, dict] = {}
        servers = (("meshnet", MESHNET_ADDR), ("dnsmasq", DNSMASQ_A_ADDR))
        pids = {"meshnet": tuple(children(dns.proc.pid)), "dnsmasq": (masq.proc.pid,)}
        for _, addr in servers:
            warm(addr, qfile, args.client_cpu, clients=16)
        for _ in range(args.rounds):
            for who, addr in servers:
                full = dnsperf(addr, qfile, args.duration, args.client_cpu, clients=16,
                               server_pids=pids[who])
                print(f"whole machine {who:8s} {full['qps']:9,.0f} q/s cpu "
                      f"{full['cpu_us']:.1f} us/query lost {full['lost']:.0f} "
                      f"[{full['rcodes']}]", flush=True)
                if full["qps"] > best.get(who, {"qps": -1})["qps"]:
                    best[who] = full
        with urllib.request.urlopen(f"http://{MESHNET_ADDR}:{STATUS_PORT}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
        per_worker: dict[str, float] = {}
        for m in re.finditer(r'^meshnet_dns_requests_total\{worker="(\d+)",[^}]*\} (\S+)$',
                             text, re.M):
            per_worker[m.group(1)] = per_worker.get(m.group(1), 0.0) + float(m.group(2))
        total = sum(per_worker.values()) or 1.0
        best["shares"] = [per_worker[k] / total for k in sorted(per_worker)]
        return best
    finally:
        dns.stop()


def via_proxy(args, workdir: Path) -> dict:
    """dnsperf on cluster names, straight to meshnet-dns and through meshnet-proxy's kube-dns
    ClusterIP, in a namespace of the bench's own; see the module docstring (7)."""
    if os.geteuid() != 0:
        raise SystemExit("the via-proxy case needs root (network namespaces)")
    lab = Lab()
    added = host_unreachable(HOST_UNREACHABLE)
    try:
        ns = lab.netns("dns")
        # The node's address, on a veth pair inside the namespace: without dummy links
        # meshnet-proxy puts service addresses on lo and removes any other address there.
        lab.veth(ns, "node0", ns, "node1")
        lab.addr(ns, "node0", f"{DNS_NODE_IP}/32")
        data = workdir / "netns-api"
        data.mkdir()
        api = lab.popen(ns, [str(BIN / "meshnet-apiserver"), "--data-dir", str(data),
                             "--listen", f"127.0.0.1:{NETNS_API_PORT}", "--log-level", "warning"],
                        stdout=subprocess.PIPE, stderr=open(data / "apiserver.log", "ab"))
        if b"ready on" not in api.stdout.readline():
            raise SystemExit(f"apiserver did not start: {(data / 'apiserver.log').read_text()}")
        kubeconfig = str(data / "admin.kubeconfig")
        out = lab.run(ns, [sys.executable, __file__, "--netns-setup", kubeconfig], timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"setting up the namespace's objects failed: {out.stderr[-2000:]}")
        cpu = ["taskset", "-c", str(args.server_cpu)]
        dns = lab.popen(ns, [*cpu, str(BIN / "meshnet-dns"), "--kubeconfig", kubeconfig,
                             "--listen", f"{DNS_NODE_IP}:53",
                             # no forwarded names are asked: a port nothing listens on
                             "--upstream", "127.0.0.1:5399", "--log-level", "warning"],
                        stdout=subprocess.PIPE, stderr=open(workdir / "netns-dns.log", "ab"))
        if b"listening" not in dns.stdout.readline():
            raise SystemExit(f"meshnet-dns: {(workdir / 'netns-dns.log').read_text()[-2000:]}")
        proxy = lab.popen(ns, [*cpu, "prlimit", "--nofile=20000", "--",
                               str(BIN / "meshnet-proxy"), "--kubeconfig", kubeconfig,
                               "--node-name", "node-a", "--log-level", "warning",
                               "--no-lb-announce"],
                          stdout=subprocess.DEVNULL, stderr=open(workdir / "proxy.log", "ab"))
        phase("via-proxy: namespace objects made, daemons started")
        name = f"svc{NETNS_SERVICES - 1}.bench0.svc.{ZONE}"
        for addr in (DNS_NODE_IP, KUBE_DNS_IP):
            try:
                wait_for(lambda: proxy.poll() is None and
                         dig_rcode(addr, name, port=53, netns=ns) == "NOERROR",
                         f"{name} answered at {addr}:53", timeout=120, interval=0.2)
            except AssertionError as exc:
                raise SystemExit(f"{exc}; proxy log: "
                                 f"{(workdir / 'proxy.log').read_text()[-3000:]}") from None
        phase("via-proxy: both paths answer")
        lines = []
        for i in range(NETNS_SERVICES):
            fqdn = f"svc{i}.bench0.svc.{ZONE}"
            lines += [f"{fqdn} A"] * 4 + [f"_http._tcp.{fqdn} SRV"]
        random.Random(3).shuffle(lines)
        qfile = write_queries(workdir / "netns-queries.txt", lines)
        paths = (("direct", DNS_NODE_IP), ("via proxy", KUBE_DNS_IP))
        best: dict[str, dict] = {}
        run = dict(server_pid=dns.pid, proxy_pid=proxy.pid, port=53, netns=ns)
        for _, addr in paths:
            warm(addr, qfile, args.client_cpu, port=53, netns=ns)
        for _ in range(args.rounds):
            for path, addr in paths:
                full = dnsperf(addr, qfile, args.duration, args.client_cpu, **run)
                print(f"via-proxy {path:9s} {full['qps']:9,.0f} q/s cpu meshnet-dns "
                      f"{full['cpu_us']:.1f} proxy {full['proxy_cpu_us']:.1f} us/query "
                      f"lost {full['lost']:.0f} [{full['rcodes']}]", flush=True)
                if full["qps"] > best.get(path, {"qps": -1})["qps"]:
                    best[path] = full
        for path, addr in paths:
            fixed = dnsperf(addr, qfile, args.latency_s, args.client_cpu, qps=args.latency_qps,
                            verbose=True, **run)
            best[path].update(p50=fixed["p50"], p99=fixed["p99"])
        return best
    finally:
        lab.cleanup()
        remove_routes(added)


def measure_propagation(server: Server, workdir: Path, samples: int = 5) -> list[float]:
    """Create a Service at scale and time until meshnet-dns answers for it."""
    times = []

    async def create(i: int) -> float:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with aiohttp.ClientSession(headers=headers,
                                         connector=aiohttp.TCPConnector(ssl=server.ssl)) as s:
            start = time.monotonic()
            async with s.post(f"{server.url}/api/v1/namespaces/bench0/services",
                              json={"metadata": {"name": f"late{i}"},
                                    "spec": {"ports": [{"port": 80}]}}) as resp:
                assert resp.status == 201, await resp.text()
            return start

    for i in range(samples):
        start = asyncio.run(create(i))
        name = f"late{i}.bench0.svc.{ZONE}"
        while dig_rcode(MESHNET_ADDR, name) != "NOERROR":
            if time.monotonic() - start > 60:
                raise SystemExit(f"{name} never appeared")
        times.append(time.monotonic() - start)
    return times


SERVICE_CIDR = "10.96.0.0/12"  # meshnet-apiserver's default --service-cidr


def scale_snapshot(server: Server, path: Path, have: int, total: int, per: int,
                   headless_every: int) -> None:
    """Write a store snapshot: `server`'s store (`meshctl backup`) plus Services
    svc<have>..svc<total-1> with their Endpoints (`per` addresses) and ClusterIP
    allocations, each copied from one of the first Services of the same namespace and kind
    (headless or not); see bench_proxy_driver.extend_snapshot."""
    from bench_proxy_driver import SERVICE_IP_KEY, extend_snapshot, service_copy

    backup = path.with_suffix(".backup")
    out = subprocess.run([str(BIN / "meshctl"), "--kubeconfig", str(server_kubeconfig(server)),
                          "backup", str(backup)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"meshctl backup failed: {out.stderr[-2000:]}")

    def shape(i: int) -> tuple[int, bool]:
        return i % len(NAMESPACES), bool(headless_every) and i % headless_every == 0

    models: dict[tuple[int, bool], int] = {}
    for j in range(have):
        models.setdefault(shape(j), j)

    def copies(kvs: dict):
        taken = {key.rsplit("/", 1)[1] for key in kvs if key.startswith(SERVICE_IP_KEY[:-2])}
        free = (str(a) for a in ipaddress.ip_network(SERVICE_CIDR).hosts()
                if str(a) not in taken)
        for i in range(have, total):
            if shape(i) not in models:
                raise SystemExit(f"scale: no Service among the first {have} is shaped like "
                                 f"svc{i}")
            model = (NAMESPACES[i % len(NAMESPACES)], f"svc{models[shape(i)]}")
            yield from service_copy(kvs, model, f"svc{i}", None if shape(i)[1] else next(free),
                                    endpoint_addresses(i, per))

    extend_snapshot(backup, path, copies)


def restored_server(workdir: Path, snapshot: Path) -> Server:
    """A second meshnet-apiserver whose store is `snapshot`, filled by the documented offline
    restore (`meshnet-apiserver --restore`) before it starts."""
    data = workdir / "apiserver-scale"
    out = subprocess.run([str(BIN / "meshnet-apiserver"), "--restore", str(snapshot),
                          "--data-dir", str(data)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"restore failed: {out.stderr[-2000:]}")
    server = Server(str(data))
    server.data_dir = str(data)
    return server


def scale(args, server: Server, workdir: Path, have: int) -> dict:
    """Scale figures on a second API server holding --scale-services Services: the bench's
    first `have` as created through the API, the others added by `scale_snapshot` (about 20
    times faster than POSTing them; meshnet-dns and dnsmasq see the same objects either way)."""
    per = max(1, args.scale_endpoints // args.scale_services)
    snapshot = workdir / "scale.snapshot"
    # endpoints per new Service so that the total reaches --scale-endpoints
    scale_snapshot(server, snapshot, have, args.scale_services, per, args.headless_every)
    phase(f"scale: snapshot with {args.scale_services} Services written")
    server = restored_server(workdir, snapshot)
    try:
        return measure_scale(args, server, workdir)
    finally:
        server.stop()


def measure_scale(args, server: Server, workdir: Path) -> dict:
    services, eps = asyncio.run(list_objects(server))
    n_eps = sum(len(s.get("addresses") or ()) for e in eps.values()
                for s in e.get("subsets") or ())
    phase("scale: listed")
    dns, sync_s = start_meshnet(workdir, server_kubeconfig(server), args.server_cpu)
    try:
        time.sleep(1.0)  # let the allocator settle before reading RSS
        rss = dns.rss_kib()
        prop = measure_propagation(server, workdir)
        rss_after = dns.rss_kib()
    finally:
        dns.stop()
    phase("scale: meshnet-dns measured")
    hosts, srv = dnsmasq_zone(services, eps)
    masq = start_dnsmasq("dnsmasq-scale", workdir, DNSMASQ_ADDR, args.server_cpu,
                         [f"server={UPSTREAM_ADDR}#{PORT}", f"local=/{ZONE}/", "local-ttl=5",
                          *srv], hosts)
    try:
        masq_rss = masq.rss_kib()
    finally:
        masq.stop()
    return {"services": len(services), "endpoints": n_eps, "sync_s": sync_s, "rss_kib": rss,
            "rss_after_kib": rss_after, "propagation": prop, "dnsmasq_rss_kib": masq_rss}


def server_kubeconfig(server: Server) -> Path:
    return Path(server.data_dir, "admin.kubeconfig")


def versions() -> str:
    masq = subprocess.run([dnsmasq_bin(), "--version"], capture_output=True, text=True).stdout
    perf = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    perf_v = re.search(r"Version ([\d.]+)", perf.stdout + perf.stderr)
    return f"dnsmasq {masq.split()[2]}, dnsperf {perf_v.group(1) if perf_v else '?'}"


def report(args, results, small: dict, big: dict | None, load: tuple,
           proxy: dict | None, whole: dict | None = None) -> str:
    def ms(s: float) -> str:
        return f"{s * 1e3:.3f}"

    out = [f"# meshnet-dns benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "",
           f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
           f"{platform.python_version()}, {platform.platform()}; {versions()} (Debian). "
           f"Load average before / after the run: {load[0]:.1f} / {load[1]:.1f} (other jobs "
           f"share this machine; each full-load figure is the best of {args.rounds} runs, "
           f"servers taking turns).", "",
           f"Zone: {small['services']} Services ({small['headless']} headless) with "
           f"{small['endpoints']} endpoint addresses, served by meshnet-dns (following a real "
           f"meshnet-apiserver) and by dnsmasq (hosts file + srv-host generated from the same "
           f"objects). Both pinned to CPU {args.server_cpu}; dnsperf (4 sockets, 200 "
           f"outstanding) and the upstream dnsmasq on CPU {args.client_cpu}. Each server makes "
           f"one warm pass through each case's names first (not for forward-miss, whose names "
           f"are all new); full-load runs {args.duration:g} s each; p50/p99 from dnsperf -v at a fixed {args.latency_qps:,} "
           f"q/s for {args.latency_s:g} s (a load every server sustains). CPU µs/query: the "
           f"server's CPU time (/proc/PID/stat) per answered query during the full-load run, "
           f"the figure least disturbed by other load on the machine. Ratio = meshnet q/s / "
           f"q/s of the faster dnsmasq; CPU ratio = the cheaper dnsmasq's CPU per query / meshnet's "
           f"(> 1: meshnet better in both).", "",
           "dnsmasq answers every query by scanning its `srv-host` list (thousands of lines "
           "here: one per named port and headless endpoint), so it is also run without any "
           "(`dnsmasq-a`: hosts file only; its SRV answers in the `cluster` case are then "
           "NXDOMAIN, less work). The ratio column uses the faster of the two dnsmasqs.", "",
           "| case | meshnet q/s | dnsmasq q/s | dnsmasq-a q/s | ratio | meshnet avg ± sd ms | "
           "dnsmasq avg ± sd ms | dnsmasq-a avg ± sd ms | meshnet p50 / p99 ms | "
           "dnsmasq p50 / p99 ms | dnsmasq-a p50 / p99 ms | CPU µs/query meshnet / dnsmasq / "
           "dnsmasq-a | CPU ratio | target |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, a, b, c in results:
        target = "≥ 0.8" if case == "cluster" else "—"
        best = max(b["qps"], c["qps"])
        out.append(f"| {case} | {a['qps']:,.0f} | {b['qps']:,.0f} | {c['qps']:,.0f} | "
                   f"{a['qps'] / best:.2f} | "
                   + " | ".join(f"{ms(x['avg'])} ± {ms(x['stddev'])}" for x in (a, b, c)) + " | "
                   + " | ".join(f"{ms(x['p50'])} / {ms(x['p99'])}" for x in (a, b, c))
                   + " | " + " / ".join(f"{x['cpu_us']:.1f}" for x in (a, b, c))
                   + f" | {min(b['cpu_us'], c['cpu_us']) / a['cpu_us'] if a['cpu_us'] else 0:.2f}"
                   + f" | {target} |")
    out.append("")
    out.append("Response codes (meshnet / dnsmasq / dnsmasq-a): " + "; ".join(
        f"{case}: {a['rcodes']} / {b['rcodes']} / {c['rcodes']}" for case, a, b, c in results))
    if whole:
        a, b = whole["meshnet"], whole["dnsmasq"]
        shares = " / ".join(f"{x:.0%}" for x in whole["shares"])
        out += ["", f"## Whole machine: meshnet-dns --workers {args.whole_workers} vs dnsmasq",
                "",
                f"The lines above compare one core with one core. Here nothing is pinned: "
                f"meshnet-dns runs {args.whole_workers} worker processes on one address "
                f"(SO_REUSEPORT), dnsmasq (the `dnsmasq-a` set-up, the faster one above) runs "
                f"as it always does, in one process with one thread: it is single-threaded by "
                f"design and has no option to use more cores, so this is the figure a user who "
                f"picks it gets on this {os.cpu_count()}-core machine. dnsperf stays on CPU "
                f"{args.client_cpu} as above, so the servers get CPU {args.server_cpu} and "
                f"what dnsperf leaves of CPU {args.client_cpu}: on this machine the load "
                f"generator caps what a second worker can add. dnsperf has 16 client sockets "
                f"here, so that SO_REUSEPORT's hash of the client's address and port spreads "
                f"them over the workers (200 outstanding); `cluster` query mix, "
                f"{args.duration:g} s runs after one warm pass, best of {args.rounds}, taking "
                f"turns. CPU µs/query: all workers' CPU time.", "",
                "| server | cluster names q/s | ratio | CPU µs/query | queries per worker |",
                "|---|---|---|---|---|",
                f"| meshnet-dns --workers {args.whole_workers} | {a['qps']:,.0f} | "
                f"{a['qps'] / b['qps']:.2f} | {a['cpu_us']:.1f} | {shares} |",
                f"| dnsmasq (1 thread) | {b['qps']:,.0f} | 1.00 | {b['cpu_us']:.1f} | — |"]
    if proxy:
        direct = proxy["direct"]
        out += ["", "## Reaching it: straight to meshnet-dns vs through meshnet-proxy", "",
                f"In a network namespace: meshnet-dns on the node address {DNS_NODE_IP}:53, "
                f"meshnet-proxy relaying the kube-dns ClusterIP {KUBE_DNS_IP}:53 to it (UDP, "
                f"one flow per client socket); both pinned to CPU {args.server_cpu}, dnsperf "
                f"on CPU {args.client_cpu}; {NETNS_SERVICES} Services, the `cluster` query mix "
                f"(A and SRV). Best of {args.rounds} runs each, taking turns; p50/p99 at "
                f"{args.latency_qps:,} q/s.", "",
                "| path | q/s | ratio | avg ± sd ms | p50 / p99 ms | CPU µs/query meshnet-dns "
                "| CPU µs/query meshnet-proxy | lost |", "|---|---|---|---|---|---|---|---|"]
        for path, r in proxy.items():
            out.append(f"| {path} | {r['qps']:,.0f} | {r['qps'] / direct['qps']:.2f} | "
                       f"{ms(r['avg'])} ± {ms(r['stddev'])} | {ms(r['p50'])} / {ms(r['p99'])} "
                       f"| {r['cpu_us']:.1f} | {r['proxy_cpu_us']:.1f} | {r['lost']:.0f} |")
    if big:
        prop = big["propagation"]
        out += ["", f"## Scale: {big['services']:,} Services, {big['endpoints']:,} endpoint "
                    "addresses", "",
                f"A second API server: the {small['services']:,} Services above, created "
                "through the API, and the rest added to a copy of its store (each a copy of "
                "one of the first, renamed, with its own ClusterIP allocation and addresses) "
                "loaded by `meshnet-apiserver --restore` before it starts.", "",
                "| measure | meshnet-dns | dnsmasq |", "|---|---|---|",
                f"| RSS after first sync | {big['rss_kib'] / 1024:.0f} MiB | "
                f"{big['dnsmasq_rss_kib'] / 1024:.0f} MiB |",
                f"| RSS after {len(prop)} more Services | {big['rss_after_kib'] / 1024:.0f} MiB "
                "| — |",
                f"| exec -> first full sync (/ready) | {big['sync_s']:.2f} s | — |",
                f"| Service create -> answered, median / max | "
                f"{sorted(prop)[len(prop) // 2] * 1e3:.0f} / {max(prop) * 1e3:.0f} ms | — |"]
    return "\n".join(out) + "\n"


def summary_lines(results, big: dict | None, proxy: dict | None,
                  whole: dict | None = None) -> list[dict]:
    """bench/run's lines (bench/summary.py): each case against the faster dnsmasq."""
    import summary

    names = {"cluster": "cluster names", "nxdomain": "NXDOMAIN search-path names",
             "forward-cached": "forwarded names, cached", "forward-miss":
             "forwarded names, cache miss"}
    out = []
    for case, a, b, c in results:
        best = max(b["qps"], c["qps"])
        ratio = a["qps"] / best
        target, met = ("≥ 0.8", ratio >= 0.8) if case == "cluster" else ("—", None)
        out.append(summary.line("dns", f"queries/s, {names.get(case, case)}",
                                f"{a['qps']:,.0f}", f"{best:,.0f} (dnsmasq)", ratio, target,
                                met))
        out.append(summary.line("dns", f"CPU per query, {names.get(case, case)}",
                                f"{a['cpu_us']:.1f} µs",
                                f"{min(b['cpu_us'], c['cpu_us']):.1f} µs (dnsmasq)",
                                min(b["cpu_us"], c["cpu_us"]) / a["cpu_us"]
                                if a["cpu_us"] else None))
    if whole:
        a, b = whole["meshnet"]["qps"], whole["dnsmasq"]["qps"]
        out.append(summary.line("dns", f"queries/s, cluster names, whole machine "
                                f"({os.cpu_count()} cores, unpinned)",
                                f"{a:,.0f} ({len(whole['shares'])} workers)",
                                f"{b:,.0f} (dnsmasq, 1 thread by design)", a / b))
    if proxy:
        direct, via = proxy["direct"], [r for k, r in proxy.items() if k != "direct"]
        if via:
            out.append(summary.line("dns", "queries/s through the kube-dns ClusterIP (proxy)",
                                    f"{via[0]['qps']:,.0f}", f"{direct['qps']:,.0f} (straight "
                                    "to meshnet-dns)", via[0]["qps"] / direct["qps"]))
    if big:
        out.append(summary.line("memory", f"meshnet-dns RSS, {big['services']:,} Services / "
                                f"{big['endpoints']:,} endpoints",
                                f"{big['rss_kib'] / 1024:.0f} MiB",
                                f"{big['dnsmasq_rss_kib'] / 1024:.0f} MiB (dnsmasq)",
                                big["dnsmasq_rss_kib"] / big["rss_kib"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints-per", type=int, default=10)
    p.add_argument("--headless-every", type=int, default=10)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per full-load run")
    p.add_argument("--rounds", type=int, default=2,
                   help="full-load runs per server and case, taking turns; the best is kept")
    p.add_argument("--latency-qps", type=int, default=1_000)
    p.add_argument("--latency-s", type=float, default=5.0)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--scale-services", type=int, default=10_000)
    p.add_argument("--scale-endpoints", type=int, default=100_000)
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--whole-workers", type=int, default=2,
                   help="meshnet-dns --workers in the whole-machine case (default 2)")
    p.add_argument("--cases", type=lambda text: text.split(","), default=list(CASES),
                   help=f"comma-separated subset of {','.join(CASES)} (default: all)")
    p.add_argument("--summary", help="also write this run's lines for bench/run to this file")
    p.add_argument("--netns-setup", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.netns_setup:  # run by the via-proxy case inside its namespace
        asyncio.run(netns_objects(args.netns_setup, NETNS_SERVICES))
        return
    ensure_tools()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="meshnet-bench-dns-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "apiserver"
        data_dir.mkdir()
        server = Server(str(data_dir))
        server.data_dir = str(data_dir)
        procs: list[Proc] = []
        try:
            asyncio.run(create_objects(server, 0, args.services, args.endpoints_per,
                                       args.headless_every))
            phase(f"created {args.services} Services")
            services, eps = asyncio.run(list_objects(server))
            hosts, srv = dnsmasq_zone(services, eps)
            procs.append(start_dnsmasq("upstream", workdir, UPSTREAM_ADDR, args.client_cpu,
                                       [f"address=/{FORWARD_DOMAIN}/192.0.2.1",
                                        "local-ttl=300"]))
            masq = start_dnsmasq("dnsmasq", workdir, DNSMASQ_ADDR, args.server_cpu,
                                 [f"server={UPSTREAM_ADDR}#{PORT}", f"local=/{ZONE}/",
                                  "local-ttl=5", *srv], hosts)
            procs.append(masq)
            masq_a = start_dnsmasq("dnsmasq-a", workdir, DNSMASQ_A_ADDR, args.server_cpu,
                                   [f"server={UPSTREAM_ADDR}#{PORT}", f"local=/{ZONE}/",
                                    "local-ttl=5"], hosts)
            procs.append(masq_a)
            phase("dnsmasqs started")
            dns, _ = start_meshnet(workdir, server_kubeconfig(server), args.server_cpu)
            procs.append(dns)
            small = {"services": sum(1 for s in services
                                     if s["metadata"]["namespace"].startswith("bench")),
                     "headless": sum(1 for s in services if s["spec"].get("clusterIP") == "None"),
                     "endpoints": sum(len(s.get("addresses") or ()) for e in eps.values()
                                      for s in e.get("subsets") or ())}
            phase("meshnet-dns ready")
            results = run_cases(args, workdir, services,
                                {"meshnet": dns.proc.pid, "dnsmasq": masq.proc.pid,
                                 "dnsmasq-a": masq_a.proc.pid})
            phase("cases done")
            whole = None
            if "whole-machine" in args.cases:
                dns.stop()  # its address is the workers' now
                whole = whole_machine(args, workdir, server_kubeconfig(server), services,
                                      masq_a)
                phase("whole machine done")
            for proc in (dns, masq, masq_a):
                proc.stop()
            proxy = via_proxy(args, workdir) if "via-proxy" in args.cases else None
            phase("via-proxy done")
            big = None
            if not args.skip_scale:
                big = scale(args, server, workdir, args.services)
        finally:
            for proc in reversed(procs):
                proc.stop()
            server.stop()
    phase("scale done")
    table = report(args, results, small, big, (load_before, os.getloadavg()[0]), proxy, whole)
    print(table)
    results_dir = Path(__file__).parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"dns-{time.strftime('%Y-%m-%d')}.md").write_text(table)
    import summary

    summary.write(args.summary, summary_lines(results, big, proxy, whole))


if __name__ == "__main__":
    main()
