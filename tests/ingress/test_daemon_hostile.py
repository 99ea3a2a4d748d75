"""Hostile clients against the real `meshnet-ingress` daemon (acceptance 3): request
smuggling, 100 KB heads and a slowloris of 1,000 connections are each rejected, and a normal
client keeps being served. The shapes are the in-process tests' (test_proxy, test_hostile);
here they go through the process, its uvloop and its listeners as deployed."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import pytest

from e2e import INGRESS_HOST, POD_IPS, Cluster, IngressProcess, serving
from fakes import endpoints, ingress, path, service
from test_proxy import SMUGGLING_CASES

HEADER_TIMEOUT_S = 2.0
SLOWLORIS_CONNECTIONS = 1000


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    with serving(apiserver.kubeconfig, IngressProcess(
            apiserver.kubeconfig, tmp_path_factory.mktemp("ingress") / "ingress.log",
            ["--client-header-timeout", str(HEADER_TIMEOUT_S)])) as c:
        c.apply(service("web", {"http": 80}))
        c.apply(endpoints("web", POD_IPS[:2], {"http": c.pods.port}))
        c.apply(ingress("web", {"a.com": [path("/", "web")]}))
        c.wait_for(lambda: c.status_of("a.com")[0] == 200, what="a.com served")
        yield c


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send data, read until the daemon closes the connection."""
    reader, writer = await asyncio.open_connection(INGRESS_HOST, port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()


async def normal_request(port: int) -> bytes:
    return await exchange(port, b"GET / HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n")


def rejected_count(c: Cluster, status: int) -> int:
    text = urllib.request.urlopen(
        f"http://{INGRESS_HOST}:{c.ingress.status_port}/metrics").read().decode()
    m = re.search(r'meshnet_ingress_requests_total\{ingress="",host="",status="%d"\} (\d+)'
                  % status, text)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("desc,data", SMUGGLING_CASES, ids=[c[0] for c in SMUGGLING_CASES])
async def test_smuggling_is_rejected_and_normal_clients_served(cluster, desc, data):
    out = await exchange(cluster.ingress.http_port, data)
    assert out.startswith(b"HTTP/1.1 400 Bad Request"), (desc, out[:200])
    assert out.count(b"HTTP/1.1") == 1, desc  # the smuggled request was never answered
    assert (await normal_request(cluster.ingress.http_port)).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("where", ["header", "url"])
async def test_100kb_head_is_431_and_normal_clients_served(cluster, where):
    big = b"a" * 100_000
    data = (b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: " + big + b"\r\n\r\n" if where == "header"
            else b"GET /" + big + b" HTTP/1.1\r\nHost: a.com\r\n\r\n")
    out = await exchange(cluster.ingress.http_port, data)
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), out[:200]
    assert (await normal_request(cluster.ingress.http_port)).startswith(b"HTTP/1.1 200 OK")


async def test_slowloris_of_1000_connections_is_cut_off_while_others_are_served(cluster):
    port = cluster.ingress.http_port
    before = rejected_count(cluster, 408)
    conns = []
    for _ in range(SLOWLORIS_CONNECTIONS):
        reader, writer = await asyncio.open_connection(INGRESS_HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a.com\r\nX-")
        conns.append((reader, writer))
    t0 = time.monotonic()

    async def trickle(writer):  # one more header byte every 200 ms, never the end of the head
        try:
            while True:
                await asyncio.sleep(0.2)
                writer.write(b"a")
        except (ConnectionError, RuntimeError):
            return

    async def cut_off(reader):
        try:
            return await reader.read(-1)
        except ConnectionError:
            # a trickled byte crossed the daemon's close: the kernel's RST discards the unread
            # 408; the daemon's own count below still shows it
            return b"reset"

    tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
    answers = asyncio.ensure_future(asyncio.gather(*(cut_off(r) for r, _ in conns)))
    served = 0
    while not answers.done():
        assert (await normal_request(port)).startswith(b"HTTP/1.1 200 OK")
        served += 1
        assert time.monotonic() - t0 < HEADER_TIMEOUT_S + 5, "slowloris not cut off in time"
    elapsed = time.monotonic() - t0
    for t in tricklers:
        t.cancel()
    for _, w in conns:
        w.close()
    assert all(a.startswith(b"HTTP/1.1 408 Request Timeout") or a == b"reset"
               for a in answers.result())
    assert rejected_count(cluster, 408) - before == SLOWLORIS_CONNECTIONS
    assert served > 5
    assert (await normal_request(port)).startswith(b"HTTP/1.1 200 OK")
    print(f"slowloris: {SLOWLORIS_CONNECTIONS} connections cut off after {elapsed:.1f}s; "
          f"{served} normal requests served meanwhile")
