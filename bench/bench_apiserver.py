"""API server benchmark (not a test): creates/s, list latency, watch delivery latency.

    .venv/bin/python bench/bench_apiserver.py [--creates 10000] [--clients 16] [--watchers 100]

Starts a fresh `meshnet-apiserver` (embedded SQLite store: every acknowledged write is
durable) on a free loopback port in a temp data dir, then from one uvloop client process:

1. creates/s: `--clients` concurrent keep-alive HTTPS connections POSTing ConfigMaps until
   `--creates` objects exist (every 201 means committed with fsync);
2. list latency: GET of the whole namespace of `--creates` objects, repeated, p50/p99;
3. watch delivery: `--watchers` concurrent watch streams on one namespace; the driver creates
   objects one at a time and each watcher records when the ADDED event arrives; the latency is
   arrival minus the moment the create was sent, p50/p99 over every delivery.

Then the same three measurements against a real etcd (the reference: kube-apiserver's store;
see etcd_reference.py), and prints both with their ratio; the table is also written to
bench/results/apiserver-<date>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

BIN = Path(sys.executable).parent


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, data_dir: str):
        self.proc = subprocess.Popen(
            [str(BIN / "meshnet-apiserver"), "--data-dir", data_dir, "--listen", "127.0.0.1:0",
             "--log-level", "warning"], stdout=subprocess.PIPE, start_new_session=True)
        line = self.proc.stdout.readline().decode()
        if "ready on" not in line:
            raise SystemExit(f"apiserver did not start: {line!r}")
        self.url = line.split("ready on ")[1].split()[0]
        self.token = Path(data_dir, "tokens.csv").read_text().split(",")[0]
        self.ssl = ssl.create_default_context(cafile=os.path.join(data_dir, "ca.crt"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


async def bench_creates(session: aiohttp.ClientSession, url: str, total: int,
                        clients: int, ns: str) -> float:
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            body = {"metadata": {"name": f"cm-{i}"}, "data": {"index": str(i)}}
            async with session.post(f"{url}/api/v1/namespaces/{ns}/configmaps",
                                    json=body) as resp:
                if resp.status != 201:
                    raise SystemExit(f"create failed: {resp.status} {await resp.text()}")
                await resp.read()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return total / (time.perf_counter() - start)


async def bench_list(session: aiohttp.ClientSession, url: str, ns: str,
                     rounds: int = 10) -> tuple[list[float], int]:
    times, count = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        async with session.get(f"{url}/api/v1/namespaces/{ns}/configmaps") as resp:
            body = await resp.read()
        times.append(time.perf_counter() - start)
        count = len(json.loads(body)["items"])
    return times, count


async def bench_watch(session: aiohttp.ClientSession, url: str, watchers: int,
                      events: int, ns: str) -> list[float]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = asyncio.Semaphore(0)
    async with session.get(f"{url}/api/v1/namespaces/{ns}/configmaps") as resp:
        rv = (await resp.json())["metadata"]["resourceVersion"]

    async def watcher() -> None:
        async with session.get(f"{url}/api/v1/namespaces/{ns}/configmaps",
                               params={"watch": "true", "resourceVersion": rv,
                                       "timeoutSeconds": "600"}) as resp:
            ready.release()
            seen = 0
            async for line in resp.content:
                arrived = time.perf_counter()
                event = json.loads(line)
                latencies.append(arrived - sent[event["object"]["metadata"]["name"]])
                seen += 1
                if seen == events:
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    for _ in range(watchers):
        await ready.acquire()
    await asyncio.sleep(0.5)  # let every stream reach its store watcher
    for i in range(events):
        name = f"w-{i}"
        sent[name] = time.perf_counter()
        async with session.post(f"{url}/api/v1/namespaces/{ns}/configmaps",
                                json={"metadata": {"name": name}}) as resp:
            await resp.read()
        await asyncio.sleep(0.01)  # a steady stream, not a burst
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies


async def run_meshnet(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="meshnet-bench-") as data_dir:
        server = Server(data_dir)
        try:
            headers = {"Authorization": f"Bearer {server.token}"}
            conn = aiohttp.TCPConnector(ssl=server.ssl, limit=args.watchers + args.clients + 4)
            async with aiohttp.ClientSession(headers=headers, connector=conn,
                                             timeout=aiohttp.ClientTimeout(total=None)) as s:
                for ns in ("bench", "watch"):
                    async with s.post(f"{server.url}/api/v1/namespaces",
                                      json={"metadata": {"name": ns}}) as resp:
                        assert resp.status == 201, await resp.text()
                rate = await bench_creates(s, server.url, args.creates, args.clients, "bench")
                list_times, count = await bench_list(s, server.url, "bench")
                lat = await bench_watch(s, server.url, args.watchers, args.events, "watch")
        finally:
            server.stop()
    return {"rate": rate, "list": list_times, "count": count, "watch": lat}


async def run_etcd(args) -> dict:
    import etcd_reference as ref

    with tempfile.TemporaryDirectory(prefix="meshnet-bench-etcd-") as data_dir:
        etcd = ref.Etcd(data_dir)
        try:
            conn = aiohttp.TCPConnector(limit=args.watchers + args.clients + 4)
            async with aiohttp.ClientSession(connector=conn,
                                             timeout=aiohttp.ClientTimeout(total=None)) as s:
                await etcd.wait_ready(s)
                rate = await ref.bench_creates(s, etcd.url, args.creates, args.clients, "bench")
                list_times, count = await ref.bench_list(s, etcd.url, "bench")
                lat = await ref.bench_watch(s, etcd.url, args.watchers, args.events, "watch")
        finally:
            etcd.stop()
    return {"rate": rate, "list": list_times, "count": count, "watch": lat}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(args, ours: dict, ref: dict | None) -> str:
    def row(measure, mine, theirs, target, higher_is_better):
        if theirs is None:
            return f"| {measure} | {mine[1]} | — | — | {target} |"
        ratio = mine[0] / theirs[0] if higher_is_better else theirs[0] / mine[0]
        return f"| {measure} | {mine[1]} | {theirs[1]} | {ratio:.2f} | {target} |"

    def figures(d):
        if d is None:
            return {k: None for k in ("rate", "l50", "l99", "w50", "w99")}
        return {"rate": (d["rate"], f"{d['rate']:,.0f}"),
                "l50": (statistics.median(d["list"]), _ms(statistics.median(d["list"]))),
                "l99": (pct(d["list"], 99), _ms(pct(d["list"], 99))),
                "w50": (pct(d["watch"], 50), _ms(pct(d["watch"], 50))),
                "w99": (pct(d["watch"], 99), _ms(pct(d["watch"], 99)))}

    a, b = figures(ours), figures(ref)
    n = ours["count"]
    rows = [
        row(f"creates/s, {args.clients} clients, durable", a["rate"], b["rate"], "≥ 1,000", True),
        row(f"list {n:,} objects, p50", a["l50"], b["l50"], "—", False),
        row(f"list {n:,} objects, p99", a["l99"], b["l99"], "—", False),
        row(f"watch delivery, {args.watchers} watchers, p50", a["w50"], b["w50"], "—", False),
        row(f"watch delivery, {args.watchers} watchers, p99", a["w99"], b["w99"], "< 50 ms",
            False),
    ]
    out = [f"# meshnet-apiserver benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "",
           f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
           f"{platform.python_version()}, {platform.platform()}.",
           "Reference: etcd (Debian etcd-server) on loopback through its JSON gateway — the "
           "store under kube-apiserver — driven by the same client with the same concurrency "
           "and bodies. Ratio > 1 means meshnet is better (rate: meshnet/etcd; latency: "
           "etcd/meshnet).", "",
           "| measure | meshnet | etcd | ratio | target |", "|---|---|---|---|---|"]
    return "\n".join(out + rows) + "\n"


def summary_lines(args, ours: dict, ref: dict | None) -> list[dict]:
    """This run's lines for bench/run's combined table (bench/summary.py)."""
    import summary

    def versus(measure, mine, theirs, fmt, higher_is_better, target="—", met=None):
        if theirs is None:
            return summary.line("control plane", measure, fmt(mine), target=target, met=met)
        ratio = mine / theirs if higher_is_better else theirs / mine
        return summary.line("control plane", measure, fmt(mine), f"{fmt(theirs)} (etcd)",
                            ratio, target, met)

    rate = "{:,.0f}".format
    get = (lambda d, f: None if d is None else f(d))
    w99 = pct(ours["watch"], 99)
    return [
        versus(f"creates/s, {args.clients} clients, durable", ours["rate"],
               get(ref, lambda d: d["rate"]), rate, True, "≥ 1,000", ours["rate"] >= 1000),
        versus(f"list {ours['count']:,} objects, p50", statistics.median(ours["list"]),
               get(ref, lambda d: statistics.median(d["list"])), _ms, False),
        versus(f"watch delivery, {args.watchers} watchers, p50", pct(ours["watch"], 50),
               get(ref, lambda d: pct(d["watch"], 50)), _ms, False),
        versus(f"watch delivery, {args.watchers} watchers, p99", w99,
               get(ref, lambda d: pct(d["watch"], 99)), _ms, False, "< 50 ms", w99 < 0.05),
    ]


async def run(args) -> tuple[str, list[dict]]:
    ours = await run_meshnet(args)
    ref = None if args.no_reference else await run_etcd(args)
    return report(args, ours, ref), summary_lines(args, ours, ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--creates", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--no-reference", action="store_true",
                   help="skip the etcd reference run")
    p.add_argument("--summary", help="also write this run's lines for bench/run to this file")
    args = p.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        table, lines = runner.run(run(args))
    print(table)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"apiserver-{time.strftime('%Y-%m-%d')}.md").write_text(table)
    import summary

    summary.write(args.summary, lines)


if __name__ == "__main__":
    main()
