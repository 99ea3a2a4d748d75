"""1 GiB through the proxy in each direction with curl, with constant memory: bodies stream
with backpressure, they are never buffered whole."""

from __future__ import annotations

import asyncio
import json
import resource
import time

import pytest

from meshnet.ingress.proxy import Proxy
from meshnet.ingress.routes import compile_routes
from meshnet.ingress.server import start_listener

from backends import Backend
from fakes import endpoints, ingress, path, service, views

GIB = 1 << 30


@pytest.fixture
async def proxy_port():
    backend = await Backend("b0", "127.0.0.10").start()
    proxy = Proxy()
    table, _ = compile_routes(*views([ingress("i", {"a.com": [path("/", "web")]})],
                                     [service("web")], [endpoints("web", ["127.0.0.10"],
                                                                  {"http": backend.port})]))
    proxy.table = table
    server = await start_listener(proxy, "127.0.0.2", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    proxy.pool.close()
    await backend.stop()


async def curl(*args: str, stdin=None) -> tuple[bytes, float]:
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "--resolve", "a.com:0:127.0.0.2", *args,
        stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out, time.monotonic() - t0


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("query", ["", "?length=no"], ids=["content-length", "chunked"])
async def test_download_1gib(proxy_port, query):
    before = rss_mib()
    out, secs = await curl("-o", "/dev/null", "-w", "%{size_download} %{http_code}",
                           f"http://127.0.0.2:{proxy_port}/download/{GIB}{query}",
                           "-H", "Host: a.com")
    assert out.decode() == f"{GIB} 200"
    print(f"download 1 GiB{query}: {secs:.1f}s, {GIB / secs / 1e6:.0f} MB/s")
    assert rss_mib() - before < 200  # streamed, not buffered


async def test_upload_1gib_content_length(proxy_port, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(GIB)  # sparse: no disk used
    before = rss_mib()
    out, secs = await curl("-T", str(big), "-H", "Host: a.com",
                           f"http://127.0.0.2:{proxy_port}/upload")
    assert json.loads(out)["body_bytes"] == GIB
    print(f"upload 1 GiB (Content-Length): {secs:.1f}s, {GIB / secs / 1e6:.0f} MB/s")
    assert rss_mib() - before < 200


async def test_upload_1gib_chunked(proxy_port):
    # curl -T - reads stdin and sends it chunked (no length known in advance)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        f"head -c {GIB} /dev/zero | curl -sS --fail -T - -H 'Host: a.com' "
        f"http://127.0.0.2:{proxy_port}/upload", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    secs = time.monotonic() - t0
    assert proc.returncode == 0
    assert json.loads(out)["body_bytes"] == GIB
    print(f"upload 1 GiB (chunked): {secs:.1f}s, {GIB / secs / 1e6:.0f} MB/s")
