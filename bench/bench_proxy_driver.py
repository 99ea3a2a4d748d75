"""Helpers bench_proxy.py runs inside its network namespaces (one subcommand per run).

    populate KUBECONFIG FROM TO [PER]
                                     Services svc-FROM..svc-TO-1 (selectorless, one port) and
                                     their Endpoints of PER addresses (default 1), 16 requests
                                     in flight
    churn KUBECONFIG N COUNT GAP_S   COUNT Endpoints changes to random services of N, GAP_S
                                     apart; prints the proxy's latency histograms before/after
    objects KUBECONFIG OPS_JSON      create the objects in the JSON list (ops as e2e_api.py)
    bulk-serve PORT FILE REPEAT      accept connections; send FILE REPEAT times with sendfile
    bulk-get HOST PORT               read one connection to EOF; prints bytes and seconds

Prints one JSON document on stdout.

It also holds what both bench_proxy.py and bench_dns.py use to reach 10,000 Services quickly:
`extend_snapshot` adds copies of API-made Services (`service_copy`) to a `meshctl backup`
file, which `meshnet-apiserver --restore` then loads before the server starts — some twenty
times faster than POSTing each Service and its Endpoints.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterable

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.control.store import KeyValue, encode_snapshot, read_snapshot

SERVICES, ENDPOINTS = lookup("services"), lookup("endpoints")
METRICS_URL = "http://127.0.0.1:10256/metrics"
IN_FLIGHT = 16


def cluster_ip(i: int) -> str:
    return f"10.100.{i // 250}.{i % 250 + 1}"


def endpoints_body(i: int, *ips: str) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": f"svc-{i}"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                         "ports": [{"name": "http", "port": 8080}]}]}


def endpoint_ips(i: int, per: int) -> list[str]:
    """The addresses of svc-i's Endpoints (`populate` and the snapshot copies alike)."""
    return ([f"10.244.{i // 250 % 250}.{i % 250 + 1}"] if per == 1 else
            [endpoint_ip(i * per + k) for k in range(per)])


def endpoint_ip(n: int) -> str:
    """The n-th of 16 million distinct addresses in 10.128.0.0/9 (lab-internal)."""
    return f"10.{128 + n // 65536 % 128}.{n // 256 % 256}.{n % 256}"


async def populate(kubeconfig: str, first: int, last: int, per: int = 1) -> dict:
    client = AsyncClient.from_kubeconfig(kubeconfig)
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with sem:
            await client.create(SERVICES, "default", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                "spec": {"clusterIP": cluster_ip(i),
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
            await client.create(ENDPOINTS, "default", endpoints_body(i, *endpoint_ips(i, per)))

    start = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(first, last)))
    finally:
        await client.close()
    return {"created": last - first, "seconds": time.monotonic() - start}


# -- store snapshots: many Services without POSTing each ----------------------------------------

SERVICE_KEY = "/registry/core/services/{}/{}"  # the store's keys, as `meshctl backup` has them
ENDPOINTS_KEY = "/registry/core/endpoints/{}/{}"
SERVICE_IP_KEY = "/registry/ranges/serviceips/{}"


def service_copy(kvs: dict[str, KeyValue], model: tuple[str, str], name: str,
                 cluster_ip: str | None, addresses: list[dict]) -> list[tuple[str, dict]]:
    """Store records for Service <model's namespace>/`name`, its Endpoints (`addresses`) and
    its ClusterIP allocation: copies of what the API server wrote for Service `model`, with
    their own name, uids and `cluster_ip` (unused when the model is headless)."""
    ns, model_name = model
    uid = str(uuid.uuid4())
    svc = json.loads(kvs[SERVICE_KEY.format(ns, model_name)].value)
    svc["metadata"].update(name=name, uid=uid)
    out = [(SERVICE_KEY.format(ns, name), svc)]
    if svc["spec"].get("clusterIP") not in (None, "", "None"):
        owner = json.loads(kvs[SERVICE_IP_KEY.format(svc["spec"]["clusterIP"])].value)
        owner.update(name=name, uid=uid)
        svc["spec"].update(clusterIP=cluster_ip, clusterIPs=[cluster_ip])
        out.append((SERVICE_IP_KEY.format(cluster_ip), owner))
    eps = json.loads(kvs[ENDPOINTS_KEY.format(ns, model_name)].value)
    eps["metadata"].update(name=name, uid=str(uuid.uuid4()))
    subset = (eps.get("subsets") or [{}])[0]
    eps["subsets"] = [{**subset, "addresses": addresses}] if addresses else []
    out.append((ENDPOINTS_KEY.format(ns, name), eps))
    return out


def extend_snapshot(src: Path, dst: Path,
                    records: Callable[[dict[str, KeyValue]], Iterable[tuple[str, dict]]]) -> int:
    """Write `dst`: the `meshctl backup` file `src` plus what `records(kvs)` yields (kvs: the
    snapshot's entries by key), each at a revision of its own. Returns how many were added."""
    snap = read_snapshot(str(src))
    kvs = {kv.key: kv for kv in snap.items}
    revision = snap.revision
    for key, obj in list(records(kvs)):
        revision += 1
        kvs[key] = KeyValue(key, json.dumps(obj, separators=(",", ":")).encode(), revision,
                            revision)
    with open(dst, "wb") as f:
        f.writelines(encode_snapshot([kvs[k] for k in sorted(kvs)], revision,
                                     snap.compact_revision))
    return revision - snap.revision


def histograms() -> dict:
    text = urllib.request.urlopen(METRICS_URL, timeout=5).read().decode()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if "_bucket{" not in line:
            continue
        name, rest = line.split("_bucket{", 1)
        le = rest.split('le="', 1)[1].split('"', 1)[0]
        out.setdefault(name, {})[le] = float(line.rsplit(" ", 1)[1])
    return out


async def churn(kubeconfig: str, n: int, count: int, gap_s: float) -> dict:
    client = AsyncClient.from_kubeconfig(kubeconfig)
    before = histograms()
    rng = random.Random(1)
    write_s = []
    try:
        for k in range(count):
            i = rng.randrange(n)
            ip = f"10.245.{k // 250 % 250}.{k % 250 + 1}"
            t = time.monotonic()
            await client.patch(ENDPOINTS, "default", f"svc-{i}",
                               {"subsets": endpoints_body(i, ip)["subsets"]})
            write_s.append(time.monotonic() - t)
            await asyncio.sleep(gap_s)
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    return {"before": before, "after": histograms(), "write_s": write_s}


async def objects(kubeconfig: str, ops: list[dict]) -> dict:
    client = AsyncClient.from_kubeconfig(kubeconfig)
    try:
        for op in ops:
            info, ns = lookup(op["plural"]), op.get("namespace", "default")
            if op["op"] == "create":
                await client.create(info, ns, op["body"])
            else:
                await client.patch(info, ns, op["name"], {"status": op["body"]},
                                   subresource="status")
    finally:
        await client.close()
    return {"ops": len(ops)}


def bulk_serve(port: int, path: str, repeat: int) -> None:
    srv = socket.create_server(("0.0.0.0", port), backlog=64)
    print(json.dumps({"ready": port}), flush=True)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while True:
            conn, _ = srv.accept()
            with conn:
                for _ in range(repeat):
                    offset = 0
                    while offset < size:
                        offset += os.sendfile(conn.fileno(), f.fileno(), offset, size - offset)
                conn.shutdown(socket.SHUT_WR)


def bulk_get(host: str, port: int) -> dict:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    with socket.create_connection((host, port)) as s:
        start = time.monotonic()
        while n := s.recv_into(view):
            total += n
        seconds = time.monotonic() - start
    return {"bytes": total, "seconds": seconds}


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "populate":
        result = asyncio.run(populate(args[0], int(args[1]), int(args[2]),
                                      int(args[3]) if len(args) > 3 else 1))
    elif cmd == "churn":
        result = asyncio.run(churn(args[0], int(args[1]), int(args[2]), float(args[3])))
    elif cmd == "objects":
        result = asyncio.run(objects(args[0], json.loads(args[1])))
    elif cmd == "bulk-serve":
        bulk_serve(int(args[0]), args[1], int(args[2]))
        return
    elif cmd == "bulk-get":
        result = bulk_get(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
