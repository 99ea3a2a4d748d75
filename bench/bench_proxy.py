"""meshnet-proxy benchmark (not a test): network programming latency at scale, and forwarding
against HAProxy. Needs root (network namespaces); installs haproxy with apt-get if missing.

    .venv/bin/python bench/bench_proxy.py [--sizes 1000,10000] [--changes 200] [--seconds 8]
                                          [--skip-latency] [--skip-haproxy] [--profile]

1. Programming latency. A namespace runs meshnet-apiserver (on its own loopback) and
   meshnet-proxy. For each size N, Services (selectorless, one TCP port) and Endpoints are
   created up to N (the first size through the API; the larger ones as copies added to a
   `meshctl backup` of that store, which the API server is restarted on with
   `meshnet-apiserver --restore`: see `restore_grown`), the proxy is (re)started, and once it
   has gone idle after its first sync, `--changes` Endpoints updates are made to random
   services, 50 ms apart. Reported: the proxy's own histogram
   `meshnet_proxy_network_programming_latency_seconds` (from the change reaching the proxy to
   the table swap) p50/p99, sync duration p99, the time to the first full sync, and the
   proxy's RSS.
2. Forwarding vs HAProxy. A node namespace with a bridge; a backend pod runs a one-thread
   HAProxy answering HTTP 200 "ok" (port 8080) and a sendfile bulk server (port 9000); a client
   pod runs wrk. The proxy under test — meshnet-proxy (ClusterIP 10.96.0.50) or HAProxy in TCP
   mode (one thread, 10.244.1.1) — is pinned to CPU 1, backend and wrk to CPU 0, and both are
   driven the same way in the same run: HTTP keep-alive, HTTP with a new connection per
   request (wrk, 16 connections), and bulk (1 GiB download, best of 3); UDP through the
   ClusterIP against the direct path (iperf3). Last, the whole machine: meshnet-proxy (one
   process) unpinned against HAProxy with nbthread 2, unpinned, keep-alive and new
   connection.

Each step prints a `[seconds] what` line, so a slow run shows where its time went.

The table goes to stdout and bench/results/proxy-<date>.md. Every namespace and process is
removed at the end, also on failure. No traffic leaves the lab's namespaces.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

sys.path.insert(0, str(HERE))

import summary  # noqa: E402
from bench_proxy_driver import (cluster_ip, endpoint_ips, extend_snapshot,  # noqa: E402
                                service_copy)
from netns import Lab, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
PY = sys.executable
DRIVER = str(HERE / "bench_proxy_driver.py")
API_PORT = 16443
# The container caps open files at 20,000 (hard limit): enough for 10,000 listeners.
PROXY_CPU, LOAD_CPU = "1", "0"
CLUSTER_IP = "10.96.0.50"
NODE_IP, BACKEND_IP = "10.244.1.1", "10.244.1.11"
BULK_FILE_MIB, BULK_REPEAT = 256, 4  # 1 GiB per connection
IPERF_PORT, UDP_SECONDS = 5201, 2
ROUNDS = 3
WHOLE_THREADS = 2  # HAProxy's threads in the whole-machine lines (one per core here)
SETTLE_S = 5.0       # the longest wait for the proxy to go idle after its first sync
IDLE_S = 0.5         # ... idle: this long without using more than BUSY_SHARE of a CPU
BUSY_SHARE = 0.2


# -- shared -----------------------------------------------------------------------------------

T0 = time.monotonic()


def phase(what: str) -> None:
    """A progress line with the seconds since the bench started (where the time goes)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", flush=True)


def quantile(buckets: dict[str, float], q: float) -> float:
    """The q-quantile of a cumulative Prometheus histogram, interpolated within a bucket."""
    edges = sorted(((float(le), c) for le, c in buckets.items()), key=lambda x: x[0])
    total = edges[-1][1]
    if not total:
        return float("nan")
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in edges:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {le: c - before.get(le, 0.0) for le, c in after.items()}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_apiserver(lab: Lab, ns: str, data: Path, *extra: str) -> subprocess.Popen:
    data.mkdir(parents=True, exist_ok=True)
    proc = lab.popen(ns, [str(BIN / "meshnet-apiserver"), "--data-dir", str(data), "--listen",
                          f"127.0.0.1:{API_PORT}", "--log-level", "warning", *extra],
                     stdout=subprocess.PIPE, stderr=open(data / "apiserver.log", "ab"))
    line = proc.stdout.readline()
    if b"ready on" not in line:
        raise SystemExit(f"apiserver did not start: {(data / 'apiserver.log').read_text()}")
    return proc


def start_proxy(lab: Lab, ns: str, kubeconfig: Path, log: Path, *, cpu: str | None = None,
                ) -> subprocess.Popen:
    argv = ["prlimit", "--nofile=20000", "--", str(BIN / "meshnet-proxy"), "--kubeconfig",
            str(kubeconfig), "--node-name", "node-a", "--log-level", "warning",
            "--no-lb-announce"]
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    return lab.popen(ns, argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def proxy_ready(lab: Lab, ns: str, proxy: subprocess.Popen, log: Path) -> bool:
    if proxy.poll() is not None:
        raise SystemExit(f"meshnet-proxy exited: {log.read_text(errors='replace')[-3000:]}")
    out = lab.run(ns, ["curl", "-sf", "http://127.0.0.1:10256/ready"])
    return out.returncode == 0 and out.stdout == "ok"


def driver(lab: Lab, ns: str, *args, timeout: float = 600) -> dict:
    out = lab.run(ns, [PY, DRIVER, *map(str, args)], timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"driver {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# -- 1. programming latency -------------------------------------------------------------------

def wait_idle(pid: int) -> float:
    """Wait until the process has used no more than BUSY_SHARE of a CPU for IDLE_S (its
    start-up work done), at most SETTLE_S; returns the seconds waited."""
    start = quiet_since = time.monotonic()
    last = cpu_s(pid)
    while time.monotonic() - start < SETTLE_S:
        time.sleep(0.1)
        now, used = time.monotonic(), cpu_s(pid)
        if used - last > BUSY_SHARE * 0.1:
            quiet_since = now
        last = used
        if now - quiet_since >= IDLE_S:
            break
    return time.monotonic() - start


def restore_grown(lab: Lab, ns: str, tmp: Path, api: subprocess.Popen, kubeconfig: Path,
                  have: int, n: int, per: int = 1) -> tuple[subprocess.Popen, Path]:
    """The API server again, holding Services svc-0..svc-(n-1): its store (`meshctl backup`)
    plus copies of svc-0 and its Endpoints renamed svc-have.. (each with the ClusterIP and
    `per` addresses `populate` would give it), loaded by `meshnet-apiserver --restore` into a new
    data dir. Twenty times faster than POSTing them; the proxy sees the same objects."""
    backup, grown = tmp / f"store-{have}.backup", tmp / f"store-{n}.snapshot"
    out = lab.run(ns, [str(BIN / "meshctl"), "--kubeconfig", str(kubeconfig), "backup",
                       str(backup)])
    if out.returncode != 0:
        raise SystemExit(f"meshctl backup failed: {out.stderr[-2000:]}")
    extend_snapshot(backup, grown, lambda kvs: (
        record for i in range(have, n)
        for record in service_copy(kvs, ("default", "svc-0"), f"svc-{i}", cluster_ip(i),
                                   [{"ip": ip} for ip in endpoint_ips(i, per)])))
    phase(f"snapshot with {n} Services written")
    lab.stop(api)
    phase("API server stopped")
    data = tmp / f"latency-api-{n}"
    out = subprocess.run([str(BIN / "meshnet-apiserver"), "--restore", str(grown),
                          "--data-dir", str(data)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"restore failed: {out.stderr[-2000:]}")
    phase("restored")
    return start_apiserver(lab, ns, data), data / "admin.kubeconfig"


# Below this, the programming-latency histogram's buckets (1, 2, 3 ms: proxy/forwarding.py
# SYNC_BUCKETS_S) are too coarse for a ratio of two p99s: 1.0 against 2.0 ms is one bucket.
GROWTH_FLOOR_MS = 5.0


def p99_growth(latency: list[dict]) -> float:
    """p99 at the largest size / p99 at the smallest, each taken as at least
    GROWTH_FLOOR_MS."""
    return (max(latency[-1]["p99_ms"], GROWTH_FLOOR_MS) /
            max(latency[0]["p99_ms"], GROWTH_FLOOR_MS))


def bench_latency(lab: Lab, tmp: Path, sizes: list[int], changes: int) -> list[dict]:
    ns = lab.netns("ctl")
    data = tmp / "latency-api"
    api = start_apiserver(lab, ns, data)
    kubeconfig = data / "admin.kubeconfig"
    rows, have = [], 0
    for n in sizes:
        if have == 0:
            made = driver(lab, ns, "populate", kubeconfig, have, n)
            phase(f"created {made['created']} services+endpoints in {made['seconds']:.1f}s")
        else:
            api, kubeconfig = restore_grown(lab, ns, tmp, api, kubeconfig, have, n)
            phase(f"API server restored with {n} services+endpoints")
        have = n
        started = time.monotonic()
        log = tmp / f"proxy-{n}.log"
        proxy = start_proxy(lab, ns, kubeconfig, log)
        wait_for(lambda: proxy_ready(lab, ns, proxy, log), "the first sync",
                 timeout=300, interval=0.1)
        first_sync_s = time.monotonic() - started
        phase(f"proxy synced {n} Services")
        # Let start-up work finish first: the stale-address sweep lists every address on the
        # netlink thread (pyroute2 is Python: seconds of GIL at 10,000), which showed as a
        # 30-40 ms p99 for changes made in the first seconds after /ready.
        settled = wait_idle(proxy.pid)
        phase(f"proxy idle {settled:.1f} s after ready")
        result = driver(lab, ns, "churn", kubeconfig, n, changes, 0.05)
        lat = delta(result["after"]["meshnet_proxy_network_programming_latency_seconds"],
                    result["before"]["meshnet_proxy_network_programming_latency_seconds"])
        dur = delta(result["after"]["meshnet_proxy_sync_duration_seconds"],
                    result["before"]["meshnet_proxy_sync_duration_seconds"])
        writes = sorted(result["write_s"])
        row = {"services": n, "changes": int(lat["+Inf"]),
               "p50_ms": quantile(lat, 0.5) * 1000, "p99_ms": quantile(lat, 0.99) * 1000,
               "sync_p99_ms": quantile(dur, 0.99) * 1000, "first_sync_s": first_sync_s,
               "rss_mib": rss_mib(proxy.pid),
               "api_write_p50_ms": writes[len(writes) // 2] * 1000}
        phase(f"{row}")
        rows.append(row)
        # The last proxy is killed: a clean stop removes its N addresses one by one (seconds
        # at 10,000), and they go with the namespace anyway. The others stop cleanly, so the
        # next size starts from an empty VIP interface.
        lab.stop(proxy, signal.SIGKILL if n == sizes[-1] else signal.SIGTERM)
        phase("proxy stopped")
    return rows


# -- 2. forwarding vs HAProxy -----------------------------------------------------------------

HAPROXY_PROXY = """global
    nbthread {threads}
    maxconn 8000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend small
    bind {node}:{small_port}
    default_backend small
backend small
    server s1 {backend}:8080
frontend bulk
    bind {node}:{bulk_port}
    default_backend bulk
backend bulk
    server s1 {backend}:9000
"""

HAPROXY_BACKEND = """global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind :8080
    http-request return status 200 content-type text/plain string "ok"
"""


def ensure_tool(command: str, package: str) -> str:
    """The path of `command`, installing its Debian package first if it is missing."""
    found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if not found:
        print(f"  installing {package} (apt-get)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True,
                       stdout=subprocess.DEVNULL)
        found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    return found


def ensure_haproxy() -> tuple[str, str]:
    found = ensure_tool("haproxy", "haproxy")
    ensure_tool("iperf3", "iperf3")
    version = subprocess.run([found, "-v"], capture_output=True, text=True).stdout
    return found, version.splitlines()[0] if version else "?"


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(lab: Lab, ns: str, url: str, seconds: int, close: bool, pid: int | None = None) -> dict:
    """One wrk run; with `pid`, also the CPU time that process spent per request (the figure
    least disturbed by other load on a shared machine)."""
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", url]
    if close:
        argv[5:5] = ["-H", "Connection: close"]
    before = cpu_s(pid) if pid else 0.0
    out = lab.run(ns, argv, timeout=seconds + 30).stdout
    cpu = cpu_s(pid) - before if pid else 0.0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rate": rate, "p99_ms": float(p99.group(1)) * scale,
            "cpu_us": cpu * 1e6 / max(requests, 1),
            "errors": (errors.group(1) if errors else "") +
                      (f" non-2xx {non2xx.group(1)}" if non2xx else "")}


def request_rates(lab: Lab, client: str, targets: dict, pids: dict, seconds: int) -> dict:
    """wrk through each target (name -> (ip, port, _)), keep-alive then a new connection per
    request: per name and mode, the median run of ROUNDS. The targets take turns: the machine
    may be shared, and alternating spreads any outside load over all of them."""
    results: dict[str, dict] = {name: {} for name in targets}
    for mode, close in (("keep-alive", False), ("new connection", True)):
        runs: dict[str, list] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, (ip, port, _) in targets.items():
                runs[name].append(wrk(lab, client, f"http://{ip}:{port}/", seconds, close,
                                      pids[name]))
        for name in targets:
            ordered = sorted(runs[name], key=lambda r: r["rate"])
            results[name][mode] = dict(ordered[len(ordered) // 2],
                                       rates=[round(r["rate"]) for r in runs[name]],
                                       cpu_us=statistics.median(r["cpu_us"]
                                                                for r in runs[name]))
            phase(f"{name} {mode}: {results[name][mode]}")
    return results


def iperf_udp(lab: Lab, ns: str, ip: str) -> dict:
    """iperf3 UDP, 1,400-byte datagrams sent as fast as the client can for UDP_SECONDS: what
    the receiver got (Mbit/s and datagrams/s) and the loss."""
    for attempt in range(3):
        if attempt:  # the server may still be closing the previous test: it refuses for a moment
            time.sleep(1.0)
        out = lab.run(ns, ["taskset", "-c", LOAD_CPU, "iperf3", "-c", ip, "-p",
                           str(IPERF_PORT), "-u", "-b", "0", "-l", "1400", "-t",
                           str(UDP_SECONDS), "-J"], timeout=UDP_SECONDS + 30)
        doc = json.loads(out.stdout)
        if "error" not in doc:
            break
    else:
        raise SystemExit(f"iperf3 to {ip}: {doc['error']}")
    end = doc["end"]["sum"]
    received = end["packets"] - end["lost_packets"]
    return {"received_mbit_s": received * 1400 * 8 / end["seconds"] / 1e6,
            "received_pps": received / end["seconds"], "lost_percent": end["lost_percent"]}


def bench_haproxy(lab: Lab, tmp: Path, seconds: int, profile: bool) -> tuple[list, dict]:
    haproxy, version = ensure_haproxy()
    node = lab.netns("node")
    lab.bridge(node, "br0")
    lab.addr(node, "br0", f"{NODE_IP}/24")
    backend = lab.pod(node, "br0", "backend", f"{BACKEND_IP}/24", NODE_IP)
    client = lab.pod(node, "br0", "client", "10.244.1.10/24", NODE_IP)
    for ns in (node, backend, client):
        lab.run(ns, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1",
                     "net.ipv4.ip_local_port_range=10000 65000"])
    (tmp / "backend.cfg").write_text(HAPROXY_BACKEND)
    lab.popen(backend, ["taskset", "-c", LOAD_CPU, haproxy, "-f", str(tmp / "backend.cfg"),
                        "-db"], stdout=subprocess.DEVNULL, stderr=open(tmp / "backend.log", "ab"))
    bulk_file = tmp / "bulk.bin"
    with open(bulk_file, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(BULK_FILE_MIB):
            f.write(block)
    phase("forwarding: bulk file written")
    bulk = lab.popen(backend, ["taskset", "-c", LOAD_CPU, PY, DRIVER, "bulk-serve", "9000",
                               str(bulk_file), str(BULK_REPEAT)], stdout=subprocess.PIPE)
    assert b"ready" in bulk.stdout.readline()
    (tmp / "proxy.cfg").write_text(HAPROXY_PROXY.format(
        node=NODE_IP, backend=BACKEND_IP, threads=1, small_port=8081, bulk_port=9001))
    reference = lab.popen(node, ["taskset", "-c", PROXY_CPU, haproxy, "-f",
                                 str(tmp / "proxy.cfg"), "-db"],
                          stdout=subprocess.DEVNULL, stderr=open(tmp / "haproxy.log", "ab"))
    # The whole-machine reference: not pinned, WHOLE_THREADS threads.
    (tmp / "proxy-whole.cfg").write_text(HAPROXY_PROXY.format(
        node=NODE_IP, backend=BACKEND_IP, threads=WHOLE_THREADS, small_port=8082,
        bulk_port=9002))
    whole_reference = lab.popen(node, [haproxy, "-f", str(tmp / "proxy-whole.cfg"), "-db"],
                                stdout=subprocess.DEVNULL,
                                stderr=open(tmp / "haproxy-whole.log", "ab"))

    lab.popen(backend, ["taskset", "-c", LOAD_CPU, "iperf3", "-s", "-p", str(IPERF_PORT)],
              stdout=subprocess.DEVNULL, stderr=open(tmp / "iperf3.log", "ab"))
    data = tmp / "fwd-api"
    start_apiserver(lab, node, data)
    kubeconfig = data / "admin.kubeconfig"
    driver(lab, node, "objects", kubeconfig, json.dumps([
        {"op": "create", "plural": "pods", "body": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "backend", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}]}}},
        {"op": "status", "plural": "pods", "name": "backend", "body": {
            "phase": "Running", "podIP": BACKEND_IP, "podIPs": [{"ip": BACKEND_IP}],
            "conditions": [{"type": "Ready", "status": "True"}]}},
        {"op": "create", "plural": "services", "body": {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": CLUSTER_IP, "selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "bulk", "port": 9000, "targetPort": 9000},
                {"name": "iperf", "port": IPERF_PORT, "protocol": "TCP"},
                {"name": "iperf-udp", "port": IPERF_PORT, "protocol": "UDP"}]}}}]))
    phase("forwarding: objects created")
    log = tmp / "proxy-fwd.log"
    proxy = start_proxy(lab, node, kubeconfig, log, cpu=PROXY_CPU)
    wait_for(lambda: proxy_ready(lab, node, proxy, log) and
             wrk(lab, client, f"http://{CLUSTER_IP}/", 1, False)["rate"] > 0,
             "the ClusterIP to answer", timeout=60, interval=0.2)
    phase("forwarding set up")

    targets = {"meshnet-proxy": (CLUSTER_IP, 80, 9000), "haproxy": (NODE_IP, 8081, 9001)}
    pids = {"meshnet-proxy": proxy.pid, "haproxy": reference.pid}
    results = request_rates(lab, client, targets, pids, seconds)
    bulk_runs: dict[str, list] = {name: [] for name in targets}
    for _ in range(3):
        for name, (ip, _, bulk_port) in targets.items():
            r = driver(lab, client, "bulk-get", ip, bulk_port)
            assert r["bytes"] == BULK_FILE_MIB * BULK_REPEAT << 20, r
            bulk_runs[name].append(r["bytes"] / r["seconds"] / (1 << 30))
    for name in targets:
        results[name]["bulk"] = {"gib_s": max(bulk_runs[name])}
        phase(f"{name} bulk: {bulk_runs[name]}")
    udp_runs: dict[str, list] = {"meshnet-proxy": [], "direct": []}
    for _ in range(ROUNDS):
        for name, ip in (("meshnet-proxy", CLUSTER_IP), ("direct", BACKEND_IP)):
            udp_runs[name].append(iperf_udp(lab, client, ip))
    for name, runs in udp_runs.items():
        results.setdefault(name, {})["udp"] = max(runs, key=lambda r: r["received_mbit_s"])
        phase(f"{name} udp: {runs}")
    # Whole machine, last (it unpins the proxy): meshnet-proxy, one process, against HAProxy
    # with WHOLE_THREADS threads, neither pinned; the backend and wrk stay on LOAD_CPU.
    subprocess.run(["taskset", "-a", "-p", "-c", f"0-{os.cpu_count() - 1}", str(proxy.pid)],
                   check=True, capture_output=True)
    whole = request_rates(lab, client, {"meshnet-proxy": (CLUSTER_IP, 80, 0),
                                        "haproxy": (NODE_IP, 8082, 0)},
                          {"meshnet-proxy": proxy.pid, "haproxy": whole_reference.pid},
                          seconds)
    results["whole"] = whole
    profiles = {}
    lab.stop(proxy)
    if profile:
        profiles = profile_proxy(lab, node, client, kubeconfig, tmp, seconds)
    return [version, results], profiles


def profile_proxy(lab: Lab, node: str, client: str, kubeconfig: Path, tmp: Path,
                  seconds: int) -> dict:
    """The proxy again, under cProfile (py-spy cannot read this Python build), through each
    load: the functions with the most own time. cProfile slows the proxy down; the shares
    are what count."""
    import pstats

    out = {}
    for mode, close in (("keep-alive", False), ("new connection", True)):
        stats = tmp / f"profile-{mode.replace(' ', '-')}.prof"
        log = tmp / "proxy-profile.log"
        proc = lab.popen(node, ["taskset", "-c", PROXY_CPU, PY, "-m", "cProfile", "-o",
                                str(stats), "-m", "meshnet.proxy.main", "--kubeconfig",
                                str(kubeconfig), "--node-name", "node-a", "--log-level",
                                "warning", "--no-lb-announce"],
                         stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: proxy_ready(lab, node, proc, log), "the profiled proxy", timeout=60,
                 interval=0.2)
        wrk(lab, client, f"http://{CLUSTER_IP}/", seconds, close)
        lab.stop(proc)
        st = pstats.Stats(str(stats))
        total = sum(v[2] for v in st.stats.values()) or 1.0
        top = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:8]
        out[mode] = [(f"{Path(f).name}:{line} {fn}", round(100 * v[2] / total, 1))
                     for (f, line, fn), v in top]
    return out


# -- report -----------------------------------------------------------------------------------

def report(latency: list[dict], fwd, profiles: dict) -> str:
    now = datetime.datetime.now()
    lines = [f"# meshnet-proxy benchmark, {now:%Y-%m-%d %H:%M}", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {platform.platform()}.", ""]
    if latency:
        lines += ["## Network programming latency (Endpoints change -> table swap)", "",
                  "The proxy's own histogram: from the change reaching the proxy (watch event) "
                  "to the swap that publishes it; changes 50 ms apart to random services, "
                  f"starting once the proxy, after reporting ready, has used less than "
                  f"{BUSY_SHARE:.0%} of a CPU for {IDLE_S:g} s (its start-up sweep done; at "
                  f"most {SETTLE_S:g} s). The first size's Services are created through the API; "
                  "the larger sizes add copies of them to a `meshctl backup` of that store and "
                  "restart the API server on it (`meshnet-apiserver --restore`).", "",
                  "| services | changes | p50 | p99 | sync p99 | first sync | proxy RSS |",
                  "|---|---|---|---|---|---|---|"]
        for r in latency:
            lines.append(f"| {r['services']:,} | {r['changes']} | {r['p50_ms']:.2f} ms | "
                         f"{r['p99_ms']:.2f} ms | {r['sync_p99_ms']:.2f} ms | "
                         f"{r['first_sync_s']:.1f} s | {r['rss_mib']:.0f} MiB |")
        if len(latency) >= 2:
            ratio = p99_growth(latency)
            lines += ["", f"p99 at {latency[-1]['services']:,} / p99 at "
                          f"{latency[0]['services']:,}: **{ratio:.2f}×** (target ≤ 2×; each "
                          f"p99 taken as at least {GROWTH_FLOOR_MS:g} ms, below which the "
                          f"histogram's buckets are too coarse for a ratio); "
                          f"worst p99 {max(r['p99_ms'] for r in latency):.1f} ms "
                          f"(target < 100 ms)."]
        lines.append("")
    if fwd:
        version, res = fwd
        m, h = res["meshnet-proxy"], res["haproxy"]
        lines += ["## Forwarding vs HAProxy", "",
                  f"Same run, same backend (one-thread HAProxy answering `200 ok`; a sendfile "
                  f"bulk server), proxy under test pinned to CPU {PROXY_CPU}, backend and "
                  f"load generator (wrk, 1 thread, 16 connections) to CPU {LOAD_CPU}. "
                  f"Reference: {version}, TCP mode, nbthread 1. Ratio: meshnet / HAProxy "
                  f"(rate, throughput: higher is better; p99: HAProxy / meshnet).", "",
                  f"Requests/s and p99: median of {ROUNDS} runs (--seconds each), alternating the two; "
                  "bulk: best of 3. Proxy CPU per request: the proxy process's user + system "
                  "time during the run over the requests served (median of the runs); its "
                  "ratio is HAProxy / meshnet.", "",
                  "| measure | meshnet-proxy | HAProxy | ratio | target |", "|---|---|---|---|---|"]
        for mode, target in (("keep-alive", "≥ 0.7"), ("new connection", "≥ 0.7")):
            a, b = m[mode], h[mode]
            lines.append(f"| requests/s, HTTP {mode} | {a['rate']:,.0f} | {b['rate']:,.0f} | "
                         f"**{a['rate'] / b['rate']:.2f}** | {target} |")
            lines.append(f"| p99 latency, {mode} | {a['p99_ms']:.2f} ms | {b['p99_ms']:.2f} ms "
                         f"| {b['p99_ms'] / a['p99_ms']:.2f} | — |")
            lines.append(f"| proxy CPU per request, {mode} | {a['cpu_us']:.1f} µs | "
                         f"{b['cpu_us']:.1f} µs | {b['cpu_us'] / a['cpu_us']:.2f} | — |")
        a, b = m["bulk"]["gib_s"], h["bulk"]["gib_s"]
        lines.append(f"| bulk download (1 GiB, best of 3) | {a:.2f} GiB/s | {b:.2f} GiB/s | "
                     f"**{a / b:.2f}** | ≥ 0.9 |")
        u, d = res["meshnet-proxy"]["udp"], res["direct"]["udp"]
        lines.append(f"| UDP datagrams received (iperf3, 1,400 B, {UDP_SECONDS} s, best of "
                     f"{ROUNDS}) vs the "
                     f"direct path | {u['received_pps']:,.0f}/s, {u['received_mbit_s']:,.0f} "
                     f"Mbit/s, {u['lost_percent']:.1f}% lost | {d['received_pps']:,.0f}/s, "
                     f"{d['received_mbit_s']:,.0f} Mbit/s, {d['lost_percent']:.1f}% lost | "
                     f"**{u['received_pps'] / d['received_pps']:.2f}** | — |")
        whole = res["whole"]
        for mode in ("keep-alive", "new connection"):
            a, b = whole["meshnet-proxy"][mode], whole["haproxy"][mode]
            lines.append(f"| requests/s, HTTP {mode}, whole machine: meshnet-proxy (1 process) "
                         f"vs HAProxy nbthread {WHOLE_THREADS}, unpinned | {a['rate']:,.0f} "
                         f"(CPU {a['cpu_us']:.1f} µs) | {b['rate']:,.0f} (CPU "
                         f"{b['cpu_us']:.1f} µs) | {a['rate'] / b['rate']:.2f} | — |")
        lines += ["", f"Whole machine (last two lines): neither proxy pinned; the backend and "
                      f"wrk stay on CPU {LOAD_CPU}. HAProxy runs nbthread {WHOLE_THREADS} (one "
                      f"thread per core); meshnet-proxy is one process, one event loop, so it "
                      f"uses one core at most (it has no --workers; docs/proxy.md measures two "
                      f"processes sharing the listener with SO_REUSEPORT and says what stands "
                      f"in the way). The lines above are the per-core comparison."]
        errors = {f"{n} {k}": v["errors"] for n, r in res.items() for k, v in r.items()
                  if isinstance(v, dict) and v.get("errors")}
        errors.update({f"whole {n} {k}": v["errors"] for n, r in whole.items()
                       for k, v in r.items() if v.get("errors")})
        if errors:
            lines += ["", f"wrk errors: {errors}"]
        lines.append("")
    if profiles:
        lines += ["## Where meshnet-proxy spends its time (cProfile, share of own time)", ""]
        for mode, top in profiles.items():
            lines.append(f"- {mode}: " + "; ".join(f"`{n}` {p}%" for n, p in top))
        lines.append("")
    return "\n".join(lines)


def summary_lines(latency: list[dict], fwd) -> list[dict]:
    """This run's lines for bench/run's combined table (bench/summary.py)."""
    out = []
    for r in latency:
        out.append(summary.line("proxy", f"network programming latency p99, "
                                f"{r['services']:,} Services", f"{r['p99_ms']:.1f} ms",
                                target="< 100 ms", met=r["p99_ms"] < 100))
        out.append(summary.line("memory", f"meshnet-proxy RSS, {r['services']:,} Services",
                                f"{r['rss_mib']:.0f} MiB"))
    if len(latency) >= 2:
        growth = p99_growth(latency)
        out.append(summary.line("proxy", f"programming p99 at {latency[-1]['services']:,} / "
                                f"at {latency[0]['services']:,} Services (each at least "
                                f"{GROWTH_FLOOR_MS:g} ms)", f"{growth:.2f}×",
                                target="≤ 2×", met=growth <= 2))
    if fwd:
        _, res = fwd
        m, h = res["meshnet-proxy"], res["haproxy"]
        for mode, label in (("keep-alive", "keep-alive"), ("new connection", "new connection "
                                                                              "per request")):
            a, b = m[mode], h[mode]
            out.append(summary.line("proxy", f"ClusterIP TCP requests/s, {label}",
                                    f"{a['rate']:,.0f}", f"{b['rate']:,.0f} (HAProxy)",
                                    a["rate"] / b["rate"], "≥ 0.7", a["rate"] / b["rate"] >= 0.7))
            out.append(summary.line("proxy", f"ClusterIP TCP p99, {label}",
                                    f"{a['p99_ms']:.2f} ms", f"{b['p99_ms']:.2f} ms (HAProxy)",
                                    b["p99_ms"] / a["p99_ms"]))
            out.append(summary.line("proxy", f"ClusterIP TCP CPU per request, {label}",
                                    f"{a['cpu_us']:.0f} µs", f"{b['cpu_us']:.0f} µs (HAProxy)",
                                    b["cpu_us"] / a["cpu_us"]))
        a, b = m["bulk"]["gib_s"], h["bulk"]["gib_s"]
        out.append(summary.line("proxy", "ClusterIP TCP bulk throughput", f"{a:.2f} GiB/s",
                                f"{b:.2f} GiB/s (HAProxy)", a / b, "≥ 0.9", a / b >= 0.9))
        for mode in ("keep-alive", "new connection"):
            a, b = res["whole"]["meshnet-proxy"][mode], res["whole"]["haproxy"][mode]
            out.append(summary.line("proxy", f"ClusterIP TCP requests/s, {mode}, whole "
                                    f"machine (unpinned; meshnet-proxy is 1 process)",
                                    f"{a['rate']:,.0f}",
                                    f"{b['rate']:,.0f} (HAProxy nbthread {WHOLE_THREADS})",
                                    a["rate"] / b["rate"]))
        u, d = res["meshnet-proxy"]["udp"], res["direct"]["udp"]
        out.append(summary.line("proxy", "ClusterIP UDP datagrams/s received (iperf3)",
                                f"{u['received_pps']:,.0f}",
                                f"{d['received_pps']:,.0f} (direct, no proxy)",
                                u["received_pps"] / d["received_pps"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-haproxy", action="store_true")
    p.add_argument("--profile", action="store_true", help="profile the proxy under load (cProfile)")
    p.add_argument("--summary", help="also write this run's lines for bench/run to this file")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_proxy.py needs root (network namespaces)")
    lab = Lab()
    latency, fwd, profiles = [], None, {}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if not args.skip_latency:
                print("network programming latency", flush=True)
                latency = bench_latency(lab, tmp, [int(s) for s in args.sizes.split(",")],
                                        args.changes)
            if not args.skip_haproxy:
                print("forwarding vs haproxy", flush=True)
                fwd, profiles = bench_haproxy(lab, tmp, args.seconds, args.profile)
        finally:
            lab.cleanup()
    text = report(latency, fwd, profiles)
    print(text)
    out = HERE / "results" / f"proxy-{datetime.date.today():%Y-%m-%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    print(f"written to {out}")
    summary.write(args.summary, summary_lines(latency, fwd))
    phase("done")


if __name__ == "__main__":
    main()
