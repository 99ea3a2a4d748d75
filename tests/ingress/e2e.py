"""End-to-end harness: a real API server, a real meshnet-ingress process, real backends.

Backends are aiohttp servers in a thread of their own (10 "pods" on 127.0.0.20-29 sharing one
port, so one Endpoints object lists them all); the ingress listens on 127.0.0.3; every client
is curl with `--resolve`, so all traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError
from meshnet.client.kubeconfig import Kubeconfig
from meshnet.client.rest import RestClient

from backends import Backend
from conftest import http_get

BIN = Path(sys.executable).parent
INGRESS_HOST = "127.0.0.3"
POD_IPS = [f"127.0.0.{20 + i}" for i in range(10)]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Pods:
    """Backend servers on their own event loop thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.backends: list[Backend] = []
        self.port = 0

    def start(self) -> "Pods":
        self.thread.start()
        self.port = free_port(POD_IPS[0])
        for i, ip in enumerate(POD_IPS):
            self.backends.append(self._run(Backend(f"pod{i}", ip, self.port).start()))
        return self

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        for b in self.backends:
            self._run(b.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class IngressProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, extra: list[str] = ()):
        self.status_port = free_port(INGRESS_HOST)
        self.args = [str(BIN / "meshnet-ingress"), "--kubeconfig", str(kubeconfig),
                     "--http-listen", f"{INGRESS_HOST}:0", "--https-listen", f"{INGRESS_HOST}:0",
                     "--status-listen", f"{INGRESS_HOST}:{self.status_port}", *extra]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.http_port = self.https_port = 0

    def start(self) -> "IngressProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if b"ready on" not in line:
            self.stop()
            raise RuntimeError(f"meshnet-ingress did not start: {line!r}\n"
                               f"{self.log_path.read_text()[-3000:]}")
        try:
            http, https = line.decode().split("ready on ")[1].split()
            self.http_port = int(http.rsplit(":", 1)[1])
            self.https_port = int(https.rsplit(":", 1)[1])
        except ValueError:
            self.stop()  # never leave a daemon (with --workers, its workers too) behind
            raise
        return self

    def status(self, path: str) -> tuple[int, str]:
        """GET `path` on --status-listen (with --workers, the supervisor's)."""
        return http_get(f"http://{INGRESS_HOST}:{self.status_port}{path}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def serving(kubeconfig: Path, proc: IngressProcess):
    """Pods, `proc` started, and the Cluster over them; the daemon and the pods stopped after
    (also when the daemon fails to start)."""
    pods = Pods().start()
    try:
        proc.start()
        yield Cluster(kubeconfig, proc, pods)
    finally:
        proc.stop()
        pods.stop()


class Cluster:
    """The API objects side: create-or-replace, delete, and curl through the ingress."""

    def __init__(self, kubeconfig: Path, ingress: IngressProcess, pods: Pods):
        self.client = RestClient(Kubeconfig.load(str(kubeconfig)).connection(None))
        self.ingress = ingress
        self.pods = pods

    def apply(self, obj: dict) -> dict:
        info = lookup(obj["kind"])
        ns = obj["metadata"].get("namespace") if info.namespaced else None
        try:
            return self.client.create(info, obj, ns)
        except ApiError as exc:
            if exc.code != 409:
                raise
        current = self.client.get(info, obj["metadata"]["name"], ns)
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.client.replace(info, obj["metadata"]["name"], obj, ns)

    def get(self, kind: str, name: str, ns: str | None = "default") -> dict:
        info = lookup(kind)
        return self.client.get(info, name, ns if info.namespaced else None)

    def list(self, kind: str, ns: str | None = "default") -> list[dict]:
        return self.client.list(lookup(kind), ns).get("items") or []

    def delete(self, kind: str, name: str, ns: str = "default") -> None:
        try:
            self.client.delete(lookup(kind), name, ns)
        except ApiError as exc:
            if exc.code != 404:
                raise

    def curl(self, host: str, path: str = "/", *, https: bool = False, args: list[str] = (),
             timeout: float = 10) -> subprocess.CompletedProcess:
        port = self.ingress.https_port if https else self.ingress.http_port
        url = f"{'https' if https else 'http'}://{host}:{port}{path}"
        return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), "--resolve",
                               f"{host}:{port}:{INGRESS_HOST}", *args, url],
                              capture_output=True, timeout=timeout + 5)

    def status_of(self, host: str, path: str = "/", **kw) -> tuple[int, bytes]:
        r = self.curl(host, path, args=["-o", "-", "-w", "\n%{http_code}", *kw.pop("args", [])],
                      **kw)
        body, _, code = r.stdout.rpartition(b"\n")
        return int(code or 0), body

    def wait_for(self, check, timeout: float = 10.0, what: str = "condition"):
        """Poll an external process's convergence (the ingress follows the API server)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}; ingress log:\n"
                             f"{self.ingress.log_path.read_text()[-3000:]}")


def env_without_proxy() -> dict:
    env = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(k, None)
    return env


# wrk's own summary as one JSON line (its text output changes between versions; the Lua
# `done` hook does not). errors.status counts responses with a status above 399.
WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def start_wrk(url: str, host: str, script: Path, *, seconds: float, connections: int = 8,
              threads: int = 2, headers: list[str] = ()) -> subprocess.Popen:
    """wrk in the background (collect with `wrk_result`); `script` is where the report hook
    is written."""
    script.write_text(WRK_REPORT_LUA)
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "10s", "-s", str(script), "-H", f"Host: {host}"]
    for h in headers:
        args += ["-H", h]
    return subprocess.Popen([*args, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_without_proxy())


def wrk_result(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    for line in out.decode().splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON "):])
    raise AssertionError(f"wrk printed no report (exit {proc.returncode}): {out!r} {err!r}")
