"""Run every benchmark and write one table: meshnet's figure, the reference's, the ratio.

    bench/run [--only proxy,dns,...] [--skip NAME,...] [--list]

`bench/run` (what `make bench` calls) installs what is needed and runs this. Each step is one
bench script run as its own process with `--summary FILE`; the lines the steps write
(bench/summary.py) become bench/results/<date>.md, together with the machine, the versions of
the reference servers and how long each step took, and the same table replaces the one
between the `bench:start` / `bench:end` markers in README.md. A step that fails is reported
as failed in the table (with the tail of its log) and the others still run. The lines are also
kept in bench/results/<date>.json: a run with --only/--skip replaces just its steps' lines in
today's table.

Every step keeps its traffic on loopback or inside network namespaces it creates, pins the
server under test and its reference to the same CPU, and writes its own detailed report
(bench/results/<step>-<date>.md) next to the combined one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    args: tuple[str, ...] = ()
    what: str = ""
    timeout_s: float = 600


# Arguments sized so the whole run stays under 15 minutes on two cores.
STEPS = (
    Step("apiserver", "bench_apiserver.py", ("--creates", "5000", "--events", "100"),
         "control plane vs etcd: creates/s, list, watch latency with 100 watchers"),
    Step("proxy", "bench_proxy.py", ("--seconds", "2", "--changes", "100"),
         "ClusterIP data plane vs HAProxy (TCP, UDP), programming latency at 1k/10k"),
    Step("dns", "bench_dns.py", ("--duration", "2", "--latency-s", "2"),
         "cluster DNS vs dnsmasq with dnsperf"),
    Step("ingress", "bench_ingress.py", ("--seconds", "5"),
         "ingress vs nginx: keep-alive, new connection, TLS"),
    Step("cluster", "bench_cluster.py", (),
         "meshctl up: ready time, pod start p50/p99, memory with 100 pods"),
    Step("scale", "bench_scale.py", (),
         "memory and first sync of each daemon at 0 / 1,000 / 10,000 Services"),
    Step("store", "bench_store.py", ("--rounds", "2"),
         "store: SQLite vs etcd write throughput and watch latency"),
    Step("lab", "bench_lab.py", (), "netns-lab: programming latency, 5 workers, etcd/SQLite", 300),
)


def versions() -> list[str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"

    import uvloop

    return [f"Python {platform.python_version()}, uvloop {uvloop.__version__}",
            first_line(["/usr/sbin/haproxy", "-v"]),
            first_line(["/usr/sbin/nginx", "-v"]),
            first_line(["dnsmasq", "--version"]),
            "dnsperf " + first_line(["dpkg-query", "-W", "-f", "${Version}", "dnsperf"]),
            first_line(["wrk", "-v"]),
            first_line(["iperf3", "--version"]),
            first_line(["etcd", "--version"])]


def run_step(step: Step, tmp: Path) -> tuple[list[dict], float, str]:
    out = tmp / f"{step.name}.json"
    log = tmp / f"{step.name}.log"
    argv = [PY, str(HERE / step.script), *step.args, "--summary", str(out)]
    started = time.monotonic()
    print(f"== {step.name}: {step.what}", flush=True)
    with open(log, "wb") as f:
        try:
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                  timeout=step.timeout_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    took = time.monotonic() - started
    if rc == 0 and out.exists():
        lines = json.loads(out.read_text())
        print(f"   done in {took:.0f} s, {len(lines)} lines", flush=True)
        return lines, took, ""
    tail = log.read_text(errors="replace")[-1500:]
    print(f"   FAILED ({rc}) after {took:.0f} s:\n{tail}", flush=True)
    return [], took, f"exit {rc}: " + tail.strip().splitlines()[-1] if tail.strip() else str(rc)


def table(lines: list[dict]) -> list[str]:
    out = ["| area | measure | meshnet | reference | ratio | target | met |",
           "|---|---|---|---|---|---|---|"]
    for x in lines:
        ratio = "—" if x["ratio"] is None else f"**{x['ratio']:.2f}**"
        met = {True: "yes", False: "**no**", None: "—"}[x["met"]]
        out.append(f"| {x['area']} | {x['measure']} | {x['meshnet']} | {x['reference']} | "
                   f"{ratio} | {x['target']} | {met} |")
    return out


def report(results: dict[str, tuple[list[dict], float, str]], total_s: float) -> str:
    now = datetime.datetime.now()
    all_lines = [x for lines, _, _ in results.values() for x in lines]
    lines = [f"# meshnet benchmarks, {now:%Y-%m-%d %H:%M}", "",
             f"One `bench/run` on {platform.machine()}, {os.cpu_count()} cores, "
             f"{platform.platform()}; {total_s / 60:.1f} minutes for the steps of the last "
             f"invocation (each step's own time below). Versions: "
             + "; ".join(versions()) + ".", "",
             "Ratio: > 1 means meshnet is better (rates: meshnet / reference; latency, CPU "
             "and memory: reference / meshnet). Each step's own report, with its method, is "
             f"in bench/results/<step>-{now:%Y-%m-%d}.md.", ""]
    lines += table(all_lines)
    lines += ["", "| step | seconds | result |", "|---|---|---|"]
    for name, (got, took, error) in results.items():
        result = f"ok, {len(got)} lines" if not error else "failed: " + error.replace("|", "/")
        lines.append(f"| {name} | {took:.0f} | {result} |")
    return "\n".join(lines) + "\n"


def update_readme(text: str, date: str) -> None:
    """Replace the table between the README's bench markers with this run's lines."""
    readme = ROOT / "README.md"
    body = readme.read_text()
    if README_START not in body or README_END not in body:
        return
    head, rest = body.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    rows = text.split("\n\n| step |", 1)[0].split("\n")
    rows = [r for r in rows if r.startswith("|")]
    block = "\n".join([README_START, f"Latest `bench/run` ({date}; details in "
                       f"`bench/results/{date}.md`):", "", *rows, README_END])
    readme.write_text(head + block + tail)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated steps to leave out")
    p.add_argument("--list", action="store_true", help="list the steps and exit")
    p.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = p.parse_args()
    if args.list:
        for s in STEPS:
            print(f"{s.name:10} {s.what}")
        return
    names = {s.name for s in STEPS}
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - names
    if unknown:
        raise SystemExit(f"unknown step(s): {', '.join(sorted(unknown))}; steps: "
                         f"{', '.join(s.name for s in STEPS)}")
    if os.geteuid() != 0:
        raise SystemExit("bench/run needs root (network namespaces, CPU pinning)")
    steps = [s for s in STEPS if (not only or s.name in only) and s.name not in skip]
    started = time.monotonic()
    date = f"{datetime.date.today():%Y-%m-%d}"
    raw = HERE / "results" / f"{date}.json"
    results = {}
    if (only or skip) and raw.exists():
        # A partial run replaces its steps' lines in today's table and keeps the others'.
        results = {name: tuple(v) for name, v in json.loads(raw.read_text()).items()}
    with tempfile.TemporaryDirectory(prefix="meshnet-bench-") as tmp:
        for step in steps:
            results[step.name] = run_step(step, Path(tmp))
    order = [s.name for s in STEPS]
    results = {name: results[name] for name in order if name in results}
    raw.write_text(json.dumps(results, indent=1) + "\n")
    text = report(results, time.monotonic() - started)
    print(text)
    out = HERE / "results" / f"{date}.md"
    out.write_text(text)
    print(f"written to {out}")
    if not args.no_readme:
        update_readme(text, date)
        print("README.md table updated")


if __name__ == "__main__":
    main()
