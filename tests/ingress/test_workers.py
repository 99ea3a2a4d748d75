"""`meshnet-ingress --workers 2` end to end: a real API server, the real daemon, real backends.

Both workers serve (each counts requests on its own status port), a configuration change
reaches both, a killed worker is forked again, and SIGTERM to the parent leaves no process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from e2e import INGRESS_HOST, POD_IPS, Cluster, IngressProcess, free_port, serving
from fakes import endpoints, ingress, path, service

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
    """An IngressProcess for --workers, its status port chosen so that every worker's
    (the port + k) is free."""
    proc = IngressProcess(kubeconfig, log, ["--workers", str(WORKERS), *extra])
    while not all(port_free(proc.status_port + k) for k in range(WORKERS)):
        proc.status_port = free_port(INGRESS_HOST)
    proc.args[proc.args.index("--status-listen") + 1] = f"{INGRESS_HOST}:{proc.status_port}"
    return proc


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((INGRESS_HOST, port))
        except OSError:
            return False
    return True


def served(status_port: int) -> int:
    """Requests a worker answered, from its /metrics."""
    text = urllib.request.urlopen(f"http://{INGRESS_HOST}:{status_port}/metrics",
                                  timeout=5).read().decode()
    return sum(int(float(n)) for n in re.findall(
        r'^meshnet_ingress_requests_total\{[^}]*status="200"\} (\S+)$', text, re.M))


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
    before = [served(c.ingress.status_port + k) for k in range(WORKERS)]
    for _ in range(100):
        assert c.status_of("first.com")[0] == 200
    after = [served(c.ingress.status_port + k) for k in range(WORKERS)]
    gained = [a - b for a, b in zip(after, before)]
    assert sum(gained) == 100 and all(g > 0 for g in gained), gained
    # A new Ingress reaches every worker: 20 new connections in a row all routed.
    c.apply(ingress("second", {"second.com": [path("/", "web")]}))
    c.wait_for(lambda: all_ok(c, "second.com"), what="second.com served by every worker")
    # Only worker 0 writes the status (both would write the same; here it is just once).
    c.wait_for(lambda: (c.get("Ingress", "second").get("status") or {}).get("loadBalancer"),
               what="status.loadBalancer of the new Ingress")


def test_a_dead_worker_is_forked_again(cluster):
    c = cluster
    old = children(c.ingress.proc.pid)
    os.kill(old[-1], signal.SIGKILL)
    c.wait_for(lambda: len(children(c.ingress.proc.pid)) == WORKERS and
               children(c.ingress.proc.pid) != old, what="the worker forked again")
    c.wait_for(lambda: all_ok(c, "first.com"), what="every worker serving again")


def test_sigterm_leaves_no_process(apiserver, tmp_path):
    proc = workers_process(apiserver.kubeconfig, tmp_path / "ingress.log").start()
    pids = [proc.proc.pid, *children(proc.proc.pid)]
    assert len(pids) == WORKERS + 1
    proc.stop()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), pids
