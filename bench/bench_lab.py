"""Network programming latency across nodes (issue 7, acceptance 6), on a netns-lab.

    .venv/bin/python bench/bench_lab.py [--workers 5] [--changes 100]
                                        [--stores etcd,sqlite] [--summary FILE]

Needs root (netns-lab). What it measures: an Endpoints object changes, and the time until the
proxy of *every* worker has swapped in a table that carries the change; p50/p99 over
`--changes` changes.

1. `netns-lab/up --workers N` (one control plane on one etcd member; then the same on SQLite,
   side by side in the same run: what etcd costs in the path) under a unique name, on a /24
   no address or route of the host touches, with a data dir of its own; `netns-lab/down`
   always runs at the end, also on failure.
2. Each worker's meshnet-proxy is restarted as a *probe*: the same program with the same
   argv, whose Proxier subclass appends one line per sync to a file: the wall-clock time of
   the table swap, and for each service the sync carried, when its first change reached the
   proxy (the change tracker's timestamp). Cost: one write(2) per sync. Nothing polls the
   proxies while changes are measured: `/metrics` is read before and after only. Processes
   on one host share one clock, so the bench's and the proxies' timestamps compare directly.
3. A selectorless Service with its own Endpoints; then `--changes` merge PATCHes of those
   Endpoints (1-3 addresses out of a pool, a different list each time). t0 is the wall clock
   right before the PATCH is sent; the next change goes out 20-60 ms (random) after every
   proxy swapped the previous one, so each change is measured alone (the proxies' minimum
   sync interval is 20 ms).
   Per change and node: latency = swap - t0, split into delivery (t0 -> the change reached
   the proxy: the API write, etcd, the API server's watch, the network) and in-proxy (-> the
   swap: what the proxies' own histogram measures). Per change: the slowest node, i.e.
   "every node's proxy updated".
4. Check: on every node the proxies' histogram `meshnet_proxy_network_programming_latency_
   seconds` counted at least `--changes` observations meanwhile, and its p50/p99 (bucket
   interpolation, all nodes together) is reported next to the probe's in-proxy figures.

Results: stdout and bench/results/lab-<date>.md; `--summary FILE` writes the bench/run lines
(area "multi-node"). Traffic stays on the lab's underlay and inside its namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import summary  # noqa: E402
LAB = ROOT / "netns-lab"
SERVICE = "bench-lat"
KEY = f"default/{SERVICE}"
HISTOGRAM = "meshnet_proxy_network_programming_latency_seconds"
GAP_S = (0.02, 0.06)
CHANGE_TIMEOUT_S = 10.0
WARMUP = 5


# ------------------------------------------------------------------------------- the probe


def probe(stamps: str, argv: list[str]) -> int:
    """meshnet-proxy, with one line per sync appended to `stamps`:
    `<swap time> <key>=<first change seen> ...` (wall clock, seconds)."""
    from meshnet.proxy import main as proxy_main
    from meshnet.proxy.proxier import Proxier

    fd = os.open(stamps, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    class StampingProxier(Proxier):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.swapped_at = 0.0
            self.on_synced.insert(0, self._swapped)  # the first hook after the swap

        def _swapped(self, changed, services) -> None:
            self.swapped_at = time.time()

        async def sync(self, *, full: bool = False):
            pending = dict(self.tracker.pending)  # what this sync takes, with no await between
            plan = await super().sync(full=full)
            if pending:
                mono, wall = time.monotonic(), time.time()  # tracker times are monotonic
                seen = " ".join(f"{k}={wall - (mono - t):.6f}" for k, t in pending.items())
                os.write(fd, f"{self.swapped_at:.6f} {seen}\n".encode())
            return plan

    proxy_main.Proxier = StampingProxier
    return proxy_main.main(argv)


class Stamps:
    """Follows one probe's file: (swap, first seen) of each sync that carried KEY."""

    def __init__(self, path: Path):
        self.path, self.offset, self.buffer = path, 0, b""
        self.seen: list[tuple[float, float]] = []

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            swap, *items = line.decode().split()
            for item in items:
                key, _, seen = item.rpartition("=")
                if key == KEY:
                    self.seen.append((float(swap), float(seen)))

    def after(self, t0: float) -> tuple[float, float] | None:
        """The first sync carrying KEY whose change arrived after t0."""
        return next(((s, f) for s, f in self.seen if f >= t0), None)


# ---------------------------------------------------------------------------------- the lab


class Lab:
    def __init__(self, workers: int, store: str, tmp: Path):
        sys.path.insert(0, str(ROOT / "tests"))
        from netns import free_subnet

        self.name = f"mnb{secrets.token_hex(3)}"
        self.data = tmp / "lab"
        self.underlay = free_subnet("172.29.0.0/16", 24)
        self.workers = [f"w{i}" for i in range(1, workers + 1)]
        self.store = store
        self.probes: dict[str, subprocess.Popen] = {}
        self.stamps: dict[str, Stamps] = {}
        self.tmp = tmp

    def lab(self, verb: str, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run([str(LAB / verb), "--name", self.name, "--data-dir",
                               str(self.data), *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode:
            raise SystemExit(f"netns-lab/{verb} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def up(self) -> float:
        t0 = time.monotonic()
        self.lab("up", "--workers", str(len(self.workers)), "--store", self.store,
                 "--underlay", self.underlay)
        return time.monotonic() - t0

    def state(self) -> dict:
        return json.loads((self.data / "state.json").read_text())

    def status_url(self, worker: str) -> str:
        argv = self.state()["processes"][f"{worker}-proxy"]["argv"]
        return f"http://{argv[argv.index('--status-address') + 1]}"

    def start_probes(self) -> float:
        """Every worker's proxy replaced by a probe with the same argv; until all are ready."""
        t0 = time.monotonic()
        for w in self.workers:
            self.lab("stop", w, "proxy")
            argv = self.state()["processes"][f"{w}-proxy"]["argv"]
            at = next(i for i, a in enumerate(argv) if a.endswith("meshnet-proxy"))
            stamps = self.tmp / f"{w}.stamps"
            self.stamps[w] = Stamps(stamps)
            log = open(self.tmp / f"{w}-probe.log", "ab")
            self.probes[w] = subprocess.Popen(
                [*argv[:at], sys.executable, str(Path(__file__).resolve()), "--probe",
                 str(stamps), "--", *argv[at + 1:]],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        for w in self.workers:
            wait(lambda w=w: self._ready(w), f"the probe proxy on {w}", 60)
        return time.monotonic() - t0

    def _ready(self, worker: str) -> bool:
        if self.probes[worker].poll() is not None:
            log = (self.tmp / f"{worker}-probe.log").read_text(errors="replace")
            raise SystemExit(f"the probe proxy on {worker} exited:\n{log[-3000:]}")
        try:
            with urllib.request.urlopen(self.status_url(worker) + "/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def histogram(self, worker: str) -> dict[str, float]:
        with urllib.request.urlopen(self.status_url(worker) + "/metrics", timeout=5) as r:
            text = r.read().decode()
        buckets = {}
        for line in text.splitlines():
            if line.startswith(HISTOGRAM + "_bucket"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[le] = float(line.rsplit(" ", 1)[1])
        return buckets

    def stop_probes(self) -> None:
        for proc in self.probes.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.probes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def down(self) -> None:
        self.stop_probes()
        subprocess.run([str(LAB / "down"), "--name", self.name, "--data-dir", str(self.data)],
                       capture_output=True, timeout=300)


def wait(predicate, what: str, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return result


# ----------------------------------------------------------------------------- measuring


def endpoints(rng: random.Random, previous: dict | None = None) -> dict:
    """1-3 addresses out of a pool; never the previous list (an unchanged object makes no
    event)."""
    pool = [f"10.244.{200 + i // 250}.{i % 250 + 1}" for i in range(50)]
    body = previous
    while body == previous:
        ips = sorted(rng.sample(pool, rng.randint(1, 3)))
        body = {"subsets": [{"addresses": [{"ip": ip} for ip in ips],
                             "ports": [{"name": "http", "port": 8080,
                                        "protocol": "TCP"}]}]}
    return body


def measure(lab: Lab, changes: int) -> dict:
    from meshnet.api.resources import lookup
    from meshnet.client.kubeconfig import Kubeconfig
    from meshnet.client.rest import RestClient

    client = RestClient(Kubeconfig.load(str(lab.data / "admin.kubeconfig"), {})
                        .connection(None), timeout=10)
    services, eps = lookup("services"), lookup("endpoints")
    rng = random.Random(7)
    client.create(services, {"metadata": {"name": SERVICE}, "spec": {
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, "default")
    body = endpoints(rng)
    client.create(eps, {"metadata": {"name": SERVICE}, **body}, "default")

    def programmed() -> bool:
        for s in lab.stamps.values():
            s.poll()
        return all(s.seen for s in lab.stamps.values())
    # The Service's first syncs (a listener and an address to add) are not what is measured:
    # they are over before the histograms' `before`.
    wait(programmed, f"{KEY} programmed on every node", CHANGE_TIMEOUT_S, 0.01)
    time.sleep(0.5)
    before = {w: lab.histogram(w) for w in lab.workers}
    rows, writes = [], []
    try:
        for k in range(WARMUP + changes):
            body = endpoints(rng, body)
            t0 = time.time()
            client.patch(eps, SERVICE, body, "default")
            t_ack = time.time()
            deadline = time.monotonic() + CHANGE_TIMEOUT_S
            while True:
                for s in lab.stamps.values():
                    s.poll()
                got = {w: s.after(t0) for w, s in lab.stamps.items()}
                if all(got.values()):
                    break
                if time.monotonic() > deadline:
                    late = [w for w, g in got.items() if not g]
                    raise SystemExit(f"change {k}: not programmed on {', '.join(late)} "
                                     f"within {CHANGE_TIMEOUT_S:g}s")
                time.sleep(0.002)
            if k >= WARMUP:
                writes.append(t_ack - t0)
                rows.append({w: (swap - t0, seen - t0) for w, (swap, seen) in got.items()})
            time.sleep(rng.uniform(*GAP_S))
    finally:
        client.close()
    after = {w: lab.histogram(w) for w in lab.workers}
    return {"rows": rows, "writes": writes,
            "histogram": {w: {le: after[w][le] - before[w].get(le, 0.0) for le in after[w]}
                          for w in lab.workers}}


def figures(result: dict) -> dict:
    from bench_apiserver import pct  # not at the top: the probe imports this module too
    from bench_proxy import quantile

    rows = result["rows"]
    every = [max(r[w][0] for w in r) for r in rows]
    each = [v[0] for r in rows for v in r.values()]
    delivery = [v[1] for r in rows for v in r.values()]
    in_proxy = [v[0] - v[1] for r in rows for v in r.values()]
    spread = [max(v[0] for v in r.values()) - min(v[0] for v in r.values()) for r in rows]
    merged: dict[str, float] = {}
    for h in result["histogram"].values():
        for le, c in h.items():
            merged[le] = merged.get(le, 0.0) + c
    ms = lambda xs, p: pct(xs, p) * 1000  # noqa: E731
    return {
        "changes": len(rows), "nodes": len(rows[0]) if rows else 0,
        "every_p50": ms(every, 50), "every_p99": ms(every, 99), "every_max": max(every) * 1000,
        "each_p50": ms(each, 50), "each_p99": ms(each, 99),
        "delivery_p50": ms(delivery, 50), "delivery_p99": ms(delivery, 99),
        "in_proxy_p50": ms(in_proxy, 50), "in_proxy_p99": ms(in_proxy, 99),
        "spread_p50": ms(spread, 50), "spread_p99": ms(spread, 99),
        "write_p50": ms(result["writes"], 50), "write_p99": ms(result["writes"], 99),
        "hist_p50": quantile(merged, 0.5) * 1000, "hist_p99": quantile(merged, 0.99) * 1000,
        "hist_counts": {w: int(h.get("+Inf", 0)) for w, h in result["histogram"].items()},
    }


# ---------------------------------------------------------------------------------- report


ROWS = (  # (label, figure key, decimals); the first is the headline
    ("**every node's proxy updated** (PATCH sent -> the last node's table swap)", "every", 1),
    ("one node's proxy updated (every node's sample)", "each", 1),
    ("of which delivery: PATCH sent -> the change reached the proxy", "delivery", 1),
    ("of which in the proxy: -> table swapped (probe)", "in_proxy", 2),
    ("in the proxy, the proxies' own histogram (all nodes, bucket interpolation)", "hist", 2),
    ("first to last node, per change", "spread", 1),
    ("the PATCH's round trip (API server + store)", "write", 1),
)
STORE_NAMES = {"etcd": "etcd (1 member)", "sqlite": "SQLite"}


def report(runs: dict[str, tuple[dict, dict]], args) -> str:
    load = os.getloadavg()[0]
    stores = list(runs)
    head = " | ".join(f"{STORE_NAMES[st]} p50 | p99" for st in stores)
    lines = [
        f"# Multi-node network programming latency, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; load average {load:.1f} at the "
        f"end (a shared machine).",
        f"netns-lab: {args.workers} workers (agent, proxy, DNS, ingress each) and one API "
        f"server, once on etcd and once on SQLite, one lab after the other. "
        f"`bench/bench_lab.py --changes {args.changes}`: Endpoints changes (after {WARMUP} "
        f"unmeasured), each measured alone, on every node. Lab up to every node Ready: "
        + ", ".join(f"{STORE_NAMES[st]} {t['up']:.1f} s" for st, (_, t) in runs.items())
        + "; the probe proxies replacing the lab's ready in "
        + ", ".join(f"{t['probes']:.1f} s" for _, t in runs.values()) + ".",
        "",
        f"| measure | {head} |",
        "|---|" + "---|---|" * len(stores),
    ]
    for label, key, digits in ROWS:
        cells = []
        for f, _ in runs.values():
            p50, p99 = f"{f[key + '_p50']:.{digits}f} ms", f"{f[key + '_p99']:.{digits}f} ms"
            if key == "every":
                p50, p99 = f"**{p50}**", f"**{p99}** (max {f['every_max']:.1f})"
            cells += [p50, p99]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Samples: " + "; ".join(f"{STORE_NAMES[st]} {f['changes']} changes x {f['nodes']} "
                                 f"nodes" for st, (f, _) in runs.items()) + ". "
        f"Histogram observations per node meanwhile (>= {args.changes + WARMUP} expected: one "
        f"per change, plus any other Service change): "
        + "; ".join(f"{STORE_NAMES[st]} " + ", ".join(f"{w} {c}"
                                                      for w, c in f["hist_counts"].items())
                    for st, (f, _) in runs.items()) + ".",
        "",
        "Method: bench/bench_lab.py's docstring. Each worker's proxy runs as a probe (the same "
        "program and flags, plus a line per sync with the swap time and when each change "
        "reached it), so nothing polls the proxies during the measurement; every process "
        "shares the host's clock.",
        "",
        "## Reading the figures",
        "",
        "- The proxies' own part (the change reached the proxy -> the table swapped) is a "
        "fraction of a millisecond at the median: an Endpoints change recompiles one service "
        "and swaps one attribute. The probe's figure and the proxies' histogram agree.",
        "- Almost all of the time is delivery: the PATCH's durable write (the store's fsync; "
        "on etcd also the hop through etcd's JSON gateway, and raft), then the API server's "
        "watch fan-out to every watcher of Endpoints (on each worker the proxy, the DNS and "
        "the ingress, plus the controllers), then TLS and decoding in each daemon. The "
        "SQLite column is the same lab with the embedded store: the difference is etcd's "
        "share.",
        "- First to last node: the API server writes each watch stream in turn and the "
        "workers' daemons share the machine's cores with it, so the last node trails the "
        "first by a few milliseconds; on a shared machine the tail follows the load.",
    ]
    return "\n".join(lines) + "\n"


def summary_lines(runs: dict[str, tuple[dict, dict]], args) -> list[dict]:
    """bench/run's lines: the lab on etcd (the HA set-up); where SQLite ran too it is the
    reference (ratio > 1: etcd is faster), as in bench_store.py."""
    first = "etcd" if "etcd" in runs else next(iter(runs))
    f, t = runs[first]
    ref = runs.get("sqlite") if first == "etcd" else None
    what = f"Endpoints change -> all {args.workers} nodes' proxies, {first} store"
    out = []
    for q in (50, 99):
        a = f[f"every_p{q}"]
        b = ref[0][f"every_p{q}"] if ref else None
        out.append(summary.line("multi-node", f"network programming, {what}, p{q}",
                                f"{a:.1f} ms", f"{b:.1f} ms (SQLite store)" if ref else "—",
                                b / a if ref else None))
    out.append(summary.line("multi-node", f"netns-lab up, {args.workers} workers, to every "
                            f"node Ready", f"{t['up']:.1f} s"))
    return out


def run_lab(store: str, args) -> tuple[dict, dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    lab = Lab(args.workers, store, tmp)
    timings = {}
    ok = False
    try:
        print(f"netns-lab {lab.name} ({store}): {args.workers} workers on {lab.underlay}",
              flush=True)
        timings["up"] = lab.up()
        print(f"  up in {timings['up']:.1f} s", flush=True)
        timings["probes"] = lab.start_probes()
        print(f"  probe proxies ready in {timings['probes']:.1f} s", flush=True)
        result = measure(lab, args.changes)
        ok = True
    finally:
        lab.down()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)
    f = figures(result)
    print(f"  every node updated p50 {f['every_p50']:.1f} ms, p99 {f['every_p99']:.1f} ms",
          flush=True)
    return f, timings


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        rest = sys.argv[3:]
        return probe(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--stores", default="etcd,sqlite",
                   help="the labs to run, one after the other (default etcd,sqlite)")
    p.add_argument("--summary", default=None, help="write the bench/run lines (JSON) here")
    args = p.parse_args()
    stores = [x for x in args.stores.split(",") if x]
    if not stores or set(stores) - set(STORE_NAMES):
        p.error(f"--stores: a list of {', '.join(STORE_NAMES)}")
    if os.geteuid() != 0:
        raise SystemExit("bench_lab.py needs root (netns-lab)")
    runs = {store: run_lab(store, args) for store in stores}
    text = report(runs, args)
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"lab-{time.strftime('%Y-%m-%d')}.md").write_text(text)
    summary.write(args.summary, summary_lines(runs, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
