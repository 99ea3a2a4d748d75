"""The reference for the API server benchmark: a real etcd (Debian's etcd-server) on loopback.

kube-apiserver stores every object in etcd, so etcd's own figures for the same operations are
the ceiling a Kubernetes control plane works under: a create is a txn `create_revision == 0 ->
put` (what kube-apiserver sends), a list is a range over a prefix, a watch is a prefix watch.
It is driven through etcd's JSON gateway (/v3/...) from the same client process, with the same
concurrency, the same object bodies and the same measurement as the meshnet side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time

import aiohttp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def ensure_etcd() -> str:
    path = shutil.which("etcd")
    if path is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "etcd-server"], check=True,
                       stdout=subprocess.DEVNULL)
        path = shutil.which("etcd")
    return path


class Etcd:
    def __init__(self, data_dir: str):
        client, peer = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{client}"
        self.proc = subprocess.Popen(
            [ensure_etcd(), "--name", "bench", "--data-dir", data_dir,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.post(f"{self.url}/v3/kv/range",
                                        json={"key": _b64("probe")}) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("etcd did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _object(name: str, ns: str, i: int) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": name, "namespace": ns, "uid": f"00000000-0000-0000-0000-{i:012d}",
        "creationTimestamp": "2026-01-01T00:00:00Z"}, "data": {"index": str(i)}}).encode()


async def create(session: aiohttp.ClientSession, url: str, key: str, value: bytes) -> None:
    body = {"compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}]}
    async with session.post(f"{url}/v3/kv/txn", json=body) as resp:
        result = await resp.json(content_type=None)
        if resp.status != 200 or not result.get("succeeded"):
            raise SystemExit(f"etcd create failed: {resp.status} {result}")


async def bench_creates(session, url: str, total: int, clients: int, ns: str) -> float:
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await create(session, url, f"/registry/configmaps/{ns}/cm-{i}",
                         _object(f"cm-{i}", ns, i))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return total / (time.perf_counter() - start)


async def bench_list(session, url: str, ns: str, rounds: int = 10) -> tuple[list[float], int]:
    prefix = f"/registry/configmaps/{ns}/"
    times, count = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        async with session.post(f"{url}/v3/kv/range", json={
                "key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}) as resp:
            body = await resp.read()
        # Decoding the values is part of a list for any client, as it is on the meshnet side.
        kvs = json.loads(body).get("kvs", [])
        [json.loads(base64.b64decode(kv["value"])) for kv in kvs]
        times.append(time.perf_counter() - start)
        count = len(kvs)
    return times, count


async def bench_watch(session, url: str, watchers: int, events: int, ns: str) -> list[float]:
    prefix = f"/registry/configmaps/{ns}/"
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = asyncio.Semaphore(0)

    async def watcher() -> None:
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}}
        async with session.post(f"{url}/v3/watch", json=body) as resp:
            seen = 0
            async for line in resp.content:
                arrived = time.perf_counter()
                result = json.loads(line).get("result", {})
                if result.get("created"):
                    ready.release()
                for ev in result.get("events", []):
                    key = base64.b64decode(ev["kv"]["key"]).decode()
                    latencies.append(arrived - sent[key])
                    seen += 1
                if seen >= events:
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    for _ in range(watchers):
        await ready.acquire()
    await asyncio.sleep(0.5)
    for i in range(events):
        key = f"{prefix}w-{i}"
        sent[key] = time.perf_counter()
        await create(session, url, key, _object(f"w-{i}", ns, i))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies
