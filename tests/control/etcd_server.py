"""A real etcd (Debian's etcd-server) for tests: one member or a small cluster on loopback.

Each member listens on free 127.0.0.1 client and peer ports with its data dir under the
test's tmp dir, and is stopped by PID. `kill()` is the crash case (SIGKILL), `start()` again
restarts a member on the same data dir and ports.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 30.0
# meshnet txns have a handful of ops, but the store tests write 10k keys in one txn
# (etcd's default limit is 128 ops per txn).
MAX_TXN_OPS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdMember:
    def __init__(self, name: str, data_dir: Path):
        self.name = name
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.proc else "stopped"
        return f"<EtcdMember {self.name} 127.0.0.1:{self.client_port} {state}>"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, token: str) -> None:
        client = f"http://{self.endpoint}"
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
             "--initial-cluster-token", token,
             "--max-txn-ops", str(MAX_TXN_OPS), "--log-level", "warn"],
            stdout=log, stderr=log, start_new_session=True)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as resp:
                return json.load(resp).get("health") == "true"
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class EtcdCluster:
    def __init__(self, tmp: Path, size: int = 1):
        self.members = [EtcdMember(f"m{i}", tmp / f"m{i}.etcd") for i in range(size)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self.token = f"meshnet-test-{self.members[0].peer_port}"  # one per cluster

    def __repr__(self) -> str:
        return f"<EtcdCluster {self.url}>"

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{m.endpoint}" for m in self.members]

    def start(self) -> None:
        for member in self.members:
            if member.proc is None:
                member.start(self.initial_cluster, self.token)
        self.wait_healthy()

    def wait_healthy(self, members: list[EtcdMember] | None = None) -> None:
        members = members or [m for m in self.members if m.proc is not None]
        deadline = time.monotonic() + READY_TIMEOUT_S
        # Polling /health is etcd's own readiness contract (it answers true once the member
        # has a leader and serves requests).
        while not all(m.healthy() for m in members):
            for m in members:
                if m.proc is not None and m.proc.poll() is not None:
                    log = (m.data_dir.parent / f"{m.name}.log").read_text()[-3000:]
                    raise RuntimeError(f"etcd {m.name} exited with {m.proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd {self.url} not healthy after {READY_TIMEOUT_S} s")
            time.sleep(0.02)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def start_etcd(tmp: Path, size: int = 1) -> EtcdCluster:
    cluster = EtcdCluster(tmp, size)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
