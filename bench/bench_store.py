"""Store benchmark: the embedded SQLite store vs the etcd store, side by side in one run.

    .venv/bin/python bench/bench_store.py [--rounds 5] [--clients 16] [--creates 2000]
                                          [--watchers 100] [--events 100] [--dir DIR]

Both backends are driven through meshnet's own `Store` interface — exactly what the API server
calls — from one uvloop process with the same workload, so the ratios compare the backends and
not the client. The measurements alternate between the backends for `--rounds` rounds (rates:
the median round; latencies: percentiles over all rounds), so that load from elsewhere on a
shared machine falls on both alike:

1. write throughput: `--clients` concurrent clients creating `--creates` keys (ConfigMap-sized
   values); every create is acknowledged only once durable (SQLite: COMMIT with fsync of the
   WAL, group-committed; etcd: committed by raft and fsynced by etcd);
2. write latency: one client creating keys one after another, p50/p99;
3. watch latency: `--watchers` watchers on one prefix; the driver creates `--events` keys
   10 ms apart and every watcher records when the event arrives; latency = arrival minus the
   moment the txn was submitted, p50/p99 over every delivery (SQLite fans out in process; etcd
   streams one HTTP watch per watcher through its JSON gateway);
4. backup and restore: `take_snapshot` + encoding of the whole store, and a restore of that
   snapshot into a fresh store of the same kind.

etcd is a fresh single member (Debian's etcd-server) on loopback with its data dir next to the
SQLite file (default: a temp dir), so both write to the same disk. The table is printed and
written to bench/results/store-<date>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from meshnet.control.store import (EtcdStore, SQLiteStore, StoreError, encode_snapshot,
                                   parse_snapshot, restore_snapshot, take_snapshot)

# About the size of a small ConfigMap as the API server would store it.
VALUE = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"'
         + b"v" * 300 + b'"}}')
SERIAL_CREATES = 300
EVENT_GAP_S = 0.01


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def bench_throughput(store, clients: int, creates: int, round_: int) -> float:
    per_client = creates // clients

    async def client(c: int) -> None:
        for i in range(per_client):
            await store.create(f"/registry/configmaps/ns{c}/cm-{round_}-{i:06d}", VALUE)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return per_client * clients / (time.perf_counter() - t0)


async def bench_serial(store, round_: int) -> list[float]:
    times = []
    for i in range(SERIAL_CREATES):
        t0 = time.perf_counter()
        await store.create(f"/registry/configmaps/serial/cm-{round_}-{i:06d}", VALUE)
        times.append(time.perf_counter() - t0)
    return times


async def bench_watch(store, watchers: int, events: int, round_: int) -> list[float]:
    prefix = f"/registry/configmaps/watched-{round_}/"
    sent: dict[str, float] = {}
    latencies: list[float] = []
    streams = [store.watch(prefix, store.revision) for _ in range(watchers)]

    async def consume(watcher) -> None:
        for _ in range(events):
            event = await watcher.__anext__()
            latencies.append(time.perf_counter() - sent[event.kv.key])

    consumers = [asyncio.create_task(consume(w)) for w in streams]
    await asyncio.sleep(0.5)  # let every etcd watch stream be established
    for i in range(events):
        key = f"{prefix}w-{i:05d}"
        sent[key] = time.perf_counter()
        await store.create(key, VALUE)
        await asyncio.sleep(EVENT_GAP_S)
    await asyncio.wait_for(asyncio.gather(*consumers), 120)
    for w in streams:
        w.close()
    return latencies


async def bench_backup(store, fresh) -> tuple[float, float, int, int]:
    """(snapshot seconds, restore seconds, keys, bytes)."""
    t0 = time.perf_counter()
    kvs, revision, compact = await take_snapshot(store)
    data = b"".join(encode_snapshot(kvs, revision, compact))
    t1 = time.perf_counter()
    snapshot = parse_snapshot(data.splitlines(keepends=True))
    await restore_snapshot(fresh, snapshot)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(kvs), len(data)


async def run(args, directory: str) -> dict[str, dict]:
    import etcd_reference as ref  # bench/ is on sys.path when this file is run

    etcd = ref.Etcd(os.path.join(directory, "etcd"))
    opened = []

    async def open_store(kind: str, name: str):
        store = (SQLiteStore(os.path.join(directory, f"{name}.db")) if kind == "sqlite"
                 else EtcdStore([etcd.url], prefix=f"/{name}"))
        await store.start()
        opened.append(store)
        return store

    try:
        for _ in range(300):  # etcd answers once it has elected itself
            try:
                await (await open_store("etcd", "probe")).close()
                break
            except StoreError:
                await asyncio.sleep(0.1)
        kinds = ("sqlite", "etcd")
        stores = {kind: await open_store(kind, "main") for kind in kinds}
        figures = {kind: {"rate": [], "serial": [], "watch": []} for kind in kinds}
        for round_ in range(args.rounds):
            for kind in kinds:
                f, store = figures[kind], stores[kind]
                f["rate"].append(await bench_throughput(store, args.clients, args.creates,
                                                        round_))
                f["serial"] += await bench_serial(store, round_)
                f["watch"] += await bench_watch(store, args.watchers, args.events, round_)
                print(f"round {round_ + 1} {kind}: {f['rate'][-1]:,.0f} creates/s", flush=True)
        for kind in kinds:
            figures[kind]["backup"] = await bench_backup(stores[kind],
                                                         await open_store(kind, "restored"))
        return figures
    finally:
        for store in opened:
            await store.close()
        etcd.stop()


def report(args, figures: dict[str, dict]) -> str:
    sq, et = figures["sqlite"], figures["etcd"]
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    def row(measure: str, a: float, b: float, fmt, higher_is_better: bool) -> str:
        ratio = a / b if higher_is_better else b / a
        return f"| {measure} | {fmt(a)} | {fmt(b)} | {ratio:.2f} |"

    rate = "{:,.0f}".format
    keys, size = sq["backup"][2], sq["backup"][3]
    rows = [
        row(f"creates/s, {args.clients} clients, durable", statistics.median(sq["rate"]),
            statistics.median(et["rate"]), rate, True),
        row("create latency, 1 client, p50", statistics.median(sq["serial"]),
            statistics.median(et["serial"]), ms, False),
        row("create latency, 1 client, p99", pct(sq["serial"], 99), pct(et["serial"], 99), ms,
            False),
        row(f"watch latency, {args.watchers} watchers, p50", pct(sq["watch"], 50),
            pct(et["watch"], 50), ms, False),
        row(f"watch latency, {args.watchers} watchers, p99", pct(sq["watch"], 99),
            pct(et["watch"], 99), ms, False),
        row(f"backup of {keys:,} keys ({size / 1e6:.1f} MB)", sq["backup"][0], et["backup"][0],
            ms, False),
        row(f"restore of {keys:,} keys into a fresh store", sq["backup"][1], et["backup"][1],
            ms, False),
    ]
    out = [f"# Store benchmark: SQLite vs etcd, {time.strftime('%Y-%m-%d %H:%M')}", "",
           f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
           f"{platform.python_version()}, {platform.platform()}.",
           "Both through meshnet's `Store` interface (what the API server calls), same process "
           "(uvloop), same workload, same disk; etcd is one Debian etcd-server member on "
           "loopback, reached through its JSON gateway. Ratio = SQLite/etcd for rates, "
           "etcd/SQLite for times: > 1 means SQLite is better.",
           f"{args.rounds} rounds alternating between the backends, each {args.creates:,} "
           f"creates from {args.clients} clients, {SERIAL_CREATES} serial creates, "
           f"{args.events} watched events {EVENT_GAP_S * 1000:.0f} ms apart; load average at "
           f"the end {os.getloadavg()[0]:.1f} (a shared machine).", "",
           "| measure | SQLite | etcd | ratio |", "|---|---|---|---|"]
    spread = "; ".join(f"{kind} " + " / ".join(rate(r) for r in figures[kind]["rate"])
                       for kind in ("sqlite", "etcd"))
    return "\n".join(out + rows + ["", f"creates/s per round: {spread}."]) + "\n"


def summary_lines(args, figures: dict[str, dict]) -> list[dict]:
    """bench/run's lines: the etcd store (issue 7) against the embedded SQLite one, so here
    the reference is SQLite and a ratio > 1 means etcd is better."""
    import summary

    sq, et = figures["sqlite"], figures["etcd"]
    a, b = statistics.median(et["rate"]), statistics.median(sq["rate"])
    out = [summary.line("store", f"etcd store creates/s, {args.clients} clients, durable",
                        f"{a:,.0f}", f"{b:,.0f} (SQLite store)", a / b)]
    for q in (50, 99):
        a, b = pct(et["watch"], q), pct(sq["watch"], q)
        out.append(summary.line("store", f"etcd store watch latency, {args.watchers} "
                                f"watchers, p{q}", f"{a * 1000:.1f} ms",
                                f"{b * 1000:.1f} ms (SQLite store)", b / a))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=2_000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--dir", help="directory for the stores (default: a fresh temp dir)")
    parser.add_argument("--summary", help="also write this run's lines for bench/run here")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.dir) as directory:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            figures = runner.run(run(args, directory))
    table = report(args, figures)
    print(table)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"store-{time.strftime('%Y-%m-%d')}.md").write_text(table)
    import summary

    summary.write(args.summary, summary_lines(args, figures))


if __name__ == "__main__":
    main()
