"""Durable create throughput of the embedded SQLite store (group commit under concurrency).

    .venv/bin/python bench/bench_store.py [--clients 16] [--creates 10000] [--dir DIR] [--uvloop]

Every create is acknowledged only after its batch's COMMIT (WAL, synchronous=FULL) returned,
so the figure is durable writes per second on the disk holding --dir (default: a temp dir).
Also times list() of 10,000 keys, served from memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from meshnet.control.store import SQLiteStore

# About the size of a small ConfigMap as the API server would store it.
VALUE = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"'
         + b"v" * 300 + b'"}}')


async def run(directory: str, clients: int, creates: int) -> None:
    store = SQLiteStore(os.path.join(directory, "store.db"))
    await store.start()
    per_client = creates // clients

    async def client(c: int) -> None:
        for i in range(per_client):
            await store.create(f"/registry/configmaps/ns{c}/cm-{i:06d}", VALUE)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    total = per_client * clients
    writer = store.writer
    print(f"{total} durable creates from {clients} concurrent clients in {elapsed:.2f} s: "
          f"{total / elapsed:,.0f} creates/s "
          f"({writer.commits} commits, {writer.txns / max(writer.commits, 1):.1f} txns/commit)")

    t0 = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        kvs, _rev = await store.list("/registry/configmaps/")
    print(f"list of {len(kvs)} keys: {(time.perf_counter() - t0) / rounds * 1000:.2f} ms")
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--creates", type=int, default=10_000)
    parser.add_argument("--dir", help="directory for store.db (default: a fresh temp dir)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.install()
    if args.dir:
        asyncio.run(run(args.dir, args.clients, args.creates))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-store-") as directory:
            asyncio.run(run(directory, args.clients, args.creates))


if __name__ == "__main__":
    main()
