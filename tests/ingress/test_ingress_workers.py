"""`meshnet-ingress --workers 2` end to end: a real API server, the real daemon, real backends.

Both workers serve (the supervisor's one status port counts requests per worker), a
configuration change reaches both, only worker 0 writes to the API server, a killed worker is
started again, and SIGTERM to the supervisor leaves no process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from e2e import INGRESS_HOST, POD_IPS, Cluster, IngressProcess, serving
from fakes import endpoints, ingress, path, service
from meshnet.ingress.main import listen_flags

WORKERS = 2


def children(pid: int) -> list[int]:
    return sorted(int(p) for p in
                  Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose only once reaped: it must not be one either.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def workers_process(kubeconfig: Path, log: Path, extra: list[str] = ()) -> IngressProcess:
    return IngressProcess(kubeconfig, log, ["--workers", str(WORKERS), *extra])


def served(proc: IngressProcess) -> list[int]:
    """Requests each worker answered, from the supervisor's /metrics (`worker` label)."""
    code, text = proc.status("/metrics")
    assert code == 200, text
    out = [0] * WORKERS
    for k, n in re.findall(r'^meshnet_ingress_requests_total\{worker="(\d+)",[^}]*'
                           r'status="200"[^}]*\} (\S+)$', text, re.M):
        out[int(k)] += int(float(n))
    return out


def flag(pid: int, name: str) -> str:
    """The value a process was given for `name` (the last one counts, as for argparse)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[len(argv) - argv[::-1].index(name)]


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    with serving(apiserver.kubeconfig, workers_process(
            apiserver.kubeconfig, tmp_path_factory.mktemp("ingress") / "ingress.log",
            ["--publish-address", "127.0.0.3"])) as c:
        c.apply(service("web", {"http": 80}))
        c.apply(endpoints("web", POD_IPS[:2], {"http": c.pods.port}))
        c.apply(ingress("first", {"first.com": [path("/", "web")]}))
        yield c


def all_ok(c: Cluster, host: str, n: int = 20) -> bool:
    """n requests in a row answered 200, each on a new connection (curl), so SO_REUSEPORT
    picks a worker for each."""
    return all(c.status_of(host)[0] == 200 for _ in range(n))


def test_both_workers_serve_and_follow_configuration_changes(cluster):
    c = cluster
    assert len(children(c.ingress.proc.pid)) == WORKERS
    c.wait_for(lambda: all_ok(c, "first.com"), what="first.com served by every worker")
    assert c.ingress.status("/ready")[0] == 200
    assert c.ingress.status("/healthz")[0] == 200
    before = served(c.ingress)
    for _ in range(100):
        assert c.status_of("first.com")[0] == 200
    after = served(c.ingress)
    gained = [a - b for a, b in zip(after, before)]
    assert sum(gained) == 100 and all(g > 0 for g in gained), gained
    # A new Ingress reaches every worker: 20 new connections in a row all routed.
    c.apply(ingress("second", {"second.com": [path("/", "web")]}))
    c.wait_for(lambda: all_ok(c, "second.com"), what="second.com served by every worker")
    # Only worker 0 writes the status (both would write the same; here it is just once).
    c.wait_for(lambda: (c.get("Ingress", "second").get("status") or {}).get("loadBalancer"),
               what="status.loadBalancer of the new Ingress")


def test_workers_get_their_index_and_the_first_ones_ports(cluster):
    pids = children(cluster.ingress.proc.pid)
    assert sorted(flag(pid, "--worker-index") for pid in pids) == \
        [str(k) for k in range(WORKERS)]
    for pid in pids:
        assert flag(pid, "--status-listen") == "127.0.0.1:0"  # only the supervisor's is known
        if flag(pid, "--worker-index") != "0":  # worker 0 picked the ports (:0 was given)
            assert flag(pid, "--http-listen") == f"{INGRESS_HOST}:{cluster.ingress.http_port}"
            assert flag(pid, "--https-listen") == \
                f"{INGRESS_HOST}:{cluster.ingress.https_port}"


def test_every_worker_offers_the_same_default_certificate(cluster):
    """Made once by the supervisor: 20 connections without SNI, spread over the workers by
    SO_REUSEPORT, all see one certificate (each worker making its own would show two)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    seen = set()
    for _ in range(20):
        with socket.create_connection((INGRESS_HOST, cluster.ingress.https_port), 5) as sock, \
                context.wrap_socket(sock) as tls:
            seen.add(tls.getpeercert(binary_form=True))
    assert len(seen) == 1
    argv = Path(f"/proc/{children(cluster.ingress.proc.pid)[0]}/cmdline").read_bytes()
    assert b"--default-certificate-dir" in argv


def test_a_dead_worker_is_started_again(cluster):
    c = cluster
    old = children(c.ingress.proc.pid)
    os.kill(old[-1], signal.SIGKILL)
    c.wait_for(lambda: len(children(c.ingress.proc.pid)) == WORKERS and
               children(c.ingress.proc.pid) != old, what="the worker started again")
    c.wait_for(lambda: all_ok(c, "first.com"), what="every worker serving again")
    c.wait_for(lambda: c.ingress.status("/ready")[0] == 200, what="ready again")
    assert re.search(r"^meshnet_ingress_worker_restarts_total 1$",
                     c.ingress.status("/metrics")[1], re.M)


@pytest.mark.parametrize("desc, line, want", [
    ("IPv4", "meshnet-ingress ready on http://127.0.0.3:8080 https://127.0.0.3:8443\n",
     ("--http-listen", "127.0.0.3:8080", "--https-listen", "127.0.0.3:8443")),
    ("any address", "meshnet-ingress ready on http://0.0.0.0:80 https://0.0.0.0:443\n",
     ("--http-listen", "0.0.0.0:80", "--https-listen", "0.0.0.0:443")),
    ("the status line is not it", "meshnet-ingress status on 127.0.0.1:4000\n", None),
    ("nor another daemon's", "meshnet-dns listening on udp+tcp 127.0.0.1:53\n", None),
])
def test_listen_flags(desc, line, want):
    assert listen_flags(line) == want


def test_sigterm_leaves_no_process(apiserver, tmp_path):
    proc = workers_process(apiserver.kubeconfig, tmp_path / "ingress.log").start()
    pids = [proc.proc.pid, *children(proc.proc.pid)]
    assert len(pids) == WORKERS + 1
    proc.stop()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), pids
