"""Shared fixtures: a real meshnet-apiserver process on a free loopback port.

`apiserver` starts one per test module in a fresh data dir (so modules never see each
other's objects), waits for its ready line, and kills it by PID at teardown — also when the
test fails. `ApiServer.restart()` and `.kill()` exist for durability tests.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0


def http_get(url: str, timeout_s: float = 5) -> tuple[int, str]:
    """(status, body) of a GET; error statuses are answers too (a daemon's /ready says 503)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def python_says(code: str) -> list[str]:
    """The words a fresh interpreter prints running `code` (a clean sys.modules, for tests of
    what a process imports)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def kill_process(proc: subprocess.Popen | None) -> None:
    """SIGKILL a process this test started and reap it; returns None for `self.proc = ...`."""
    if proc is not None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def stop_process(proc: subprocess.Popen | None, grace_s: float = 10) -> None:
    """SIGTERM a process this test started, SIGKILL after `grace_s`, reap it; returns None."""
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class ApiServer:
    def __init__(self, data_dir: Path, extra_args: list[str]):
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = data_dir / "apiserver.log"

    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.proc else "stopped"
        return f"<ApiServer 127.0.0.1:{self.port} {state}>"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "tokens.csv").read_text().split(",")[0]

    @property
    def ca(self) -> str:
        return str(self.data_dir / "ca.crt")

    def start(self) -> None:
        listen = f"127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "meshnet-apiserver"), "--data-dir", str(self.data_dir),
             "--listen", listen, *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if b"ready on" in line:
                self.port = int(line.split(b"ready on https://")[1].split(b" ")[0]
                                .rsplit(b":", 1)[1])
                return
        self.stop()
        raise RuntimeError(f"meshnet-apiserver did not start: {line!r}; log:\n"
                           f"{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        self.proc = kill_process(self.proc)

    def stop(self) -> None:
        self.proc = stop_process(self.proc, 15)

    def restart(self, *, kill: bool = False) -> None:
        self.kill() if kill else self.stop()
        self.start()


def start_apiserver(tmp: Path, extra_args: list[str] | None = None) -> ApiServer:
    server = ApiServer(tmp, extra_args or [])
    server.start()
    return server


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def k8s(apiserver):
    """An official `kubernetes` client ApiClient configured from the generated kubeconfig."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()
