"""A real etcd (Debian's etcd-server) for tests: one member or a small cluster on loopback.

Each member listens on free 127.0.0.1 client and peer ports with its data dir under the
test's tmp dir, and is stopped by PID. `kill()` is the crash case (SIGKILL), `start()` again
restarts a member on the same data dir and ports. `etcd = etcd_fixture()` in a test module
gives it a fixture `etcd` (one cluster per module). `start_etcd(tmp, tls=True)` serves clients
over TLS with --client-cert-auth: `EtcdTLSFiles` (made with the API server's certificate
helpers) holds the CA, the member's certificate and a client certificate.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import kill_process, stop_process
from meshnet.control.apiserver.pki import issue_cert, new_ca, write_cert

READY_TIMEOUT_S = 30.0
# meshnet txns have a handful of ops, but the store tests write 10k keys in one txn
# (etcd's default limit is 128 ops per txn).
MAX_TXN_OPS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class EtcdTLSFiles:
    ca: Path  # signs everything below
    server_cert: Path  # the members' (serverAuth and clientAuth: etcd's gateway dials with it)
    server_key: Path
    client_cert: Path  # what an API server presents (--etcd-certfile)
    client_key: Path
    other_ca: Path  # a CA that signed none of these

    @classmethod
    def make(cls, directory: Path) -> EtcdTLSFiles:
        directory.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = new_ca("etcd-test-ca")
        files = cls(*(directory / name for name in (
            "ca.crt", "server.crt", "server.key", "client.crt", "client.key", "other-ca.crt")))
        write_cert(files.ca, directory / "ca.key", ca_cert, ca_key)
        write_cert(files.server_cert, files.server_key,
                   *issue_cert(ca_cert, ca_key, "etcd", ["127.0.0.1", "localhost"],
                               server=True, client=True))
        write_cert(files.client_cert, files.client_key,
                   *issue_cert(ca_cert, ca_key, "meshnet-apiserver", [], server=False,
                               client=True))
        write_cert(files.other_ca, directory / "other-ca.key", *new_ca("someone-else"))
        return files

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


class EtcdMember:
    def __init__(self, name: str, data_dir: Path, tls: EtcdTLSFiles | None = None):
        self.name = name
        self.data_dir = data_dir
        self.tls = tls
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

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    def start(self, initial_cluster: str, token: str) -> None:
        client = self.client_url
        tls = [] if self.tls is None else [
            "--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
            "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
             "--initial-cluster-token", token, *tls,
             "--max-txn-ops", str(MAX_TXN_OPS), "--log-level", "warn"],
            stdout=log, stderr=log, start_new_session=True)

    def healthy(self) -> bool:
        context = self.tls.client_context() if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1,
                                        context=context) as resp:
                return json.load(resp).get("health") == "true"
        except OSError:
            return False

    def kill(self) -> None:
        self.proc = kill_process(self.proc)

    def stop(self) -> None:
        self.proc = stop_process(self.proc)


class EtcdCluster:
    def __init__(self, tmp: Path, size: int = 1, tls: bool = False):
        self.tls = EtcdTLSFiles.make(tmp / "pki") if tls else None
        self.members = [EtcdMember(f"m{i}", tmp / f"m{i}.etcd", self.tls) for i in range(size)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self.token = f"meshnet-test-{self.members[0].peer_port}"  # one per cluster

    def __repr__(self) -> str:
        return f"<EtcdCluster {self.url}>"

    @property
    def url(self) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(m.endpoint for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

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


def start_etcd(tmp: Path, size: int = 1, tls: bool = False) -> EtcdCluster:
    cluster = EtcdCluster(tmp, size, tls)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def etcd_fixture(scope: str = "module", tls: bool = False):
    """A pytest fixture running one etcd member for the scope; assign it to `etcd`."""
    @pytest.fixture(scope=scope, name="etcd")
    def fixture(tmp_path_factory):
        cluster = start_etcd(tmp_path_factory.mktemp("etcd-tls" if tls else "etcd"), tls=tls)
        try:
            yield cluster
        finally:
            cluster.stop()

    return fixture
