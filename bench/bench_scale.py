"""Scale benchmark (not a test): memory and first sync of every daemon that follows Services
and Endpoints, idle and at 1,000 and 10,000 Services, and whether they grow linearly.

    .venv/bin/python bench/bench_scale.py [--sizes 0,1000,10000] [--per 10] [--summary FILE]

Needs root (a network namespace). In one namespace of its own (nothing leaves it): a
meshnet-apiserver (SQLite), and for each size N: Services svc-0..N-1 (one port, selectorless)
with Endpoints of `--per` addresses each (so 10,000 Services carry 100,000 endpoint
addresses), plus, from the first non-zero size on, one ClusterIP Service with 1,000 endpoints.
The first non-zero size is created through the API; larger ones are copies of svc-0 added to
a `meshctl backup` of the store and loaded by `meshnet-apiserver --restore` (the daemons see
the same objects; the API server's figure is then that of a restored store, without the
write history). For each size, fresh meshnet-proxy, meshnet-dns and meshnet-ingress processes
are started
together; reported per daemon: the time from exec to /ready (its first full sync) and its RSS
once ready (and 2 s settled), with the API server's RSS beside them.

Linear or better means: the growth from the middle size to the largest, per Service, is no
more than 1.25 × the growth per Service from the smallest non-zero size (memory), and the
first sync at the largest size takes no more than 1.25 × size-ratio × the middle one.

The table goes to stdout and bench/results/scale-<date>.md. Every namespace and process is
removed at the end, also on failure.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import summary  # noqa: E402
from bench_proxy import BIN, driver, restore_grown, rss_mib, start_apiserver  # noqa: E402
from netns import Lab, wait_for  # noqa: E402

BIG_ENDPOINTS = 1000
BIG_INDEX = 60_000  # svc-60000: a ClusterIP the driver can form, beyond every size used here
SETTLE_S = 2.0
GROWTH_SLACK = 1.25
DAEMONS = ("meshnet-proxy", "meshnet-dns", "meshnet-ingress")
STATUS = {"meshnet-proxy": "127.0.0.1:10256", "meshnet-dns": "127.0.0.1:10258",
          "meshnet-ingress": "127.0.0.1:10254"}


def start_daemons(lab: Lab, ns: str, kubeconfig: Path, logs: Path) -> dict:
    argv = {
        "meshnet-proxy": ["--node-name", "node-a", "--no-lb-announce"],
        # The upstream is a port in this namespace nobody answers on: no query leaves it.
        "meshnet-dns": ["--listen", "127.0.0.1:1053", "--upstream", "127.0.0.1:9",
                        "--status-listen", STATUS["meshnet-dns"]],
        "meshnet-ingress": ["--http-listen", "127.0.0.1:18080", "--https-listen",
                            "127.0.0.1:18443", "--status-listen", STATUS["meshnet-ingress"]],
    }
    procs = {}
    for name in DAEMONS:
        procs[name] = (time.monotonic(), lab.popen(
            ns, ["prlimit", "--nofile=20000", "--", str(BIN / name), "--kubeconfig",
                 str(kubeconfig), "--log-level", "warning", *argv[name]],
            stdout=open(logs / f"{name}.log", "ab"), stderr=subprocess.STDOUT))
    return procs


def ready(lab: Lab, ns: str, name: str, proc, logs: Path) -> bool:
    if proc.poll() is not None:
        raise SystemExit(f"{name} exited: {(logs / f'{name}.log').read_text()[-3000:]}")
    out = lab.run(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       f"http://{STATUS[name]}/ready"])
    return out.stdout == "200"


def measure(lab: Lab, ns: str, kubeconfig: Path, logs: Path, api_pid: int) -> dict:
    procs = start_daemons(lab, ns, kubeconfig, logs)
    row = {}
    pending = dict(procs)
    deadline = time.monotonic() + 300
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready after 300 s: {sorted(pending)}")
        for name, (started, proc) in list(pending.items()):
            if ready(lab, ns, name, proc, logs):
                row[name] = {"sync_s": time.monotonic() - started}
                del pending[name]
        time.sleep(0.1)
    time.sleep(SETTLE_S)
    for name, (_, proc) in procs.items():
        row[name]["rss_mib"] = rss_mib(proc.pid)
    row["meshnet-apiserver"] = {"rss_mib": rss_mib(api_pid)}
    for _, proc in procs.values():
        lab.stop(proc)
    return row


def growth(rows: list[dict], name: str, key: str) -> tuple[float, float]:
    """The increase of `key` per Service over the first step (smallest to middle size) and
    over the last step (middle to largest size)."""
    (n1, r1), (n2, r2) = (rows[-2]["services"], rows[-2]), (rows[-1]["services"], rows[-1])
    base = rows[0]
    first = (r1[name][key] - base[name][key]) / max(n1 - base["services"], 1)
    last = (r2[name][key] - r1[name][key]) / max(n2 - n1, 1)
    return first, last


def report(rows: list[dict], per: int) -> tuple[str, list[dict]]:
    now = datetime.datetime.now()
    lines = [f"# Scale benchmark, {now:%Y-%m-%d %H:%M}", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {platform.platform()}.", "",
             f"Services with {per} endpoint addresses each (plus one Service with "
             f"{BIG_ENDPOINTS:,} endpoints from the first non-zero size on); fresh daemons per "
             "size, started together: exec -> /ready (first full sync), RSS once ready.", "",
             "| Services | endpoint addresses | " + " | ".join(
                 f"{d} sync / RSS" for d in DAEMONS) + " | meshnet-apiserver RSS |",
             "|---|---|" + "---|" * (len(DAEMONS) + 1)]
    for r in rows:
        cells = [f"{r[d]['sync_s']:.1f} s / {r[d]['rss_mib']:.0f} MiB" for d in DAEMONS]
        lines.append(f"| {r['services']:,} | {r['endpoints']:,} | " + " | ".join(cells) +
                     f" | {r['meshnet-apiserver']['rss_mib']:.0f} MiB |")
    out = []
    first, last = rows[0], rows[-1]
    for d in DAEMONS + ("meshnet-apiserver",):
        out.append(summary.line("memory", f"{d} RSS, idle", f"{first[d]['rss_mib']:.0f} MiB"))
        out.append(summary.line("memory", f"{d} RSS, {last['services']:,} Services / "
                                f"{last['endpoints']:,} endpoints",
                                f"{last[d]['rss_mib']:.0f} MiB"))
    if len(rows) >= 3:
        lines += ["", "Growth (linear or better: the second step costs no more per Service "
                      f"than {GROWTH_SLACK} × the first; sync time no more than "
                      f"{GROWTH_SLACK} × proportional):", ""]
        mid = rows[-2]
        scale = last["services"] / max(mid["services"], 1)
        for d in DAEMONS:
            a, b = growth(rows, d, "rss_mib")
            mem_ok = b <= GROWTH_SLACK * a or b * 1024 < 4  # under 4 KiB per Service: flat
            sync_ratio = last[d]["sync_s"] / max(mid[d]["sync_s"], 1e-3)
            sync_ok = sync_ratio <= GROWTH_SLACK * scale
            lines.append(f"- {d}: memory {a * 1024:.1f} KiB per Service up to "
                         f"{mid['services']:,}, then {b * 1024:.1f} KiB "
                         f"({'linear or better' if mem_ok else 'worse than linear'}); first "
                         f"sync ×{sync_ratio:.1f} for ×{scale:.0f} Services "
                         f"({'linear or better' if sync_ok else 'worse than linear'}).")
            out.append(summary.line("scale", f"{d}: memory per Service, "
                                    f"{mid['services']:,} → {last['services']:,}",
                                    f"{b * 1024:.1f} KiB", f"{a * 1024:.1f} KiB (first step)",
                                    target="linear", met=mem_ok))
            out.append(summary.line("scale", f"{d}: first sync, {mid['services']:,} → "
                                    f"{last['services']:,} Services",
                                    f"{mid[d]['sync_s']:.1f} → {last[d]['sync_s']:.1f} s",
                                    target="linear", met=sync_ok))
    return "\n".join(lines) + "\n", out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="0,1000,10000")
    p.add_argument("--per", type=int, default=10, help="endpoint addresses per Service")
    p.add_argument("--summary", help="also write this run's lines for bench/run to this file")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_scale.py needs root (a network namespace)")
    sizes = [int(s) for s in args.sizes.split(",")]
    lab = Lab()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            ns = lab.netns("scale")
            data = tmp / "api"
            api = start_apiserver(lab, ns, data)
            kubeconfig = data / "admin.kubeconfig"
            have, big = 0, False
            for n in sizes:
                if n > have and not have:
                    made = driver(lab, ns, "populate", kubeconfig, have, n, args.per,
                                  timeout=1800)
                    print(f"  created {made['created']} Services (+Endpoints) in "
                          f"{made['seconds']:.1f} s", flush=True)
                    have = n
                elif n > have:  # the rest as copies, loaded by `meshnet-apiserver --restore`
                    api, kubeconfig = restore_grown(lab, ns, tmp, api, kubeconfig, have, n,
                                                    args.per)
                    have = n
                if n and not big:
                    driver(lab, ns, "populate", kubeconfig, BIG_INDEX, BIG_INDEX + 1,
                           BIG_ENDPOINTS)
                    big = True
                row = measure(lab, ns, kubeconfig, tmp, api.pid)
                row.update(services=n + big, endpoints=n * args.per + big * BIG_ENDPOINTS)
                print(f"  {json.dumps(row)}", flush=True)
                rows.append(row)
        finally:
            lab.cleanup()
    text, lines = report(rows, args.per)
    print(text)
    out = HERE / "results" / f"scale-{datetime.date.today():%Y-%m-%d}.md"
    out.write_text(text)
    print(f"written to {out}")
    summary.write(args.summary, lines)


if __name__ == "__main__":
    main()
