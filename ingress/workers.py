"""`meshnet-ingress --workers N`: N processes serving the same listeners, one per core.

Theory of operation
-------------------
The parent is a supervisor and serves nothing: it reserves the HTTP and HTTPS addresses
(sockets bound with SO_REUSEPORT but never listening, which resolves a `:0` port once for
all and keeps the port ours while a worker restarts), then forks the workers before any event
loop or thread exists. Each worker is a whole meshnet-ingress -- informers, routing table,
TLS store, pool -- with its own listening sockets on those addresses (SO_REUSEPORT: the kernel
spreads new connections over the workers' accept queues, as nginx's `reuseport`).

Only worker 0 writes to the API server (the IngressClass, `status.loadBalancer`, Events), so
workers never race each other's writes; the others only watch. Worker k serves `/healthz`,
`/ready` and `/metrics` on the status port + k (each its own counters).

The parent prints the ready line once every worker has reported its ports through a pipe.
A worker that dies is forked again (at most once a second per worker). On SIGTERM or SIGINT
the parent sends SIGTERM to each worker by PID, waits for them (each drains its requests as a
single process does), SIGKILLs what is left after the grace period, and exits. Workers get
SIGTERM should the parent die without doing so (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time

from meshnet.daemon import DaemonError, die_with_parent, setup_logging

log = logging.getLogger("meshnet.ingress.workers")

READY_TIMEOUT_S = 60.0
RESTART_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 20.0  # a worker's own drain (main.SHUTDOWN_GRACE_S) plus its clean-up
POLL_S = 0.2


def reserve(text: str, flag: str) -> tuple[socket.socket, str]:
    """A bound, not listening, SO_REUSEPORT socket for ADDR:PORT and the address with the
    port resolved (`:0` becomes the port the kernel chose)."""
    from meshnet.ingress.main import parse_addr

    host, port = parse_addr(text, flag)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    return sock, (f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}")


class Supervisor:
    def __init__(self, args, run_worker):
        """run_worker(args, index, ready_fd) -> exit status: one worker's whole life."""
        self.args = args
        self.run_worker = run_worker
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> when last forked
        self.ports: dict[int, str] = {}  # worker index -> "HTTP HTTPS" ports it reported
        self.stopping = False
        self._ready_r = self._ready_w = -1
        self._pending = b""

    def __repr__(self) -> str:
        return f"<Supervisor workers={sorted(self.pids.values())} stopping={self.stopping}>"

    def run(self) -> int:
        setup_logging(self.args.log_level)
        try:
            reserved = [reserve(self.args.http_listen, "--http-listen"),
                        reserve(self.args.https_listen, "--https-listen")]
        except OSError as exc:
            print(f"meshnet-ingress: cannot listen: {exc}", file=sys.stderr)
            return 1
        except DaemonError as exc:  # a bad --http-listen or --https-listen
            print(f"meshnet-ingress: {exc}", file=sys.stderr)
            return 1
        self.args.http_listen, self.args.https_listen = reserved[0][1], reserved[1][1]
        self._ready_r, self._ready_w = os.pipe()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for index in range(self.args.workers):
                self._fork(index)
            if not self._wait_ready():
                return 0 if self.stopping else 1  # stopped while starting is a clean stop
            http_port, https_port = self.ports[0].split()
            http_host = self.args.http_listen.rpartition(":")[0].strip("[]")
            https_host = self.args.https_listen.rpartition(":")[0].strip("[]")
            log.info("%d workers ready, pids %s", self.args.workers,
                     " ".join(str(p) for p in sorted(self.pids)))
            # The same ready line as a single process prints (scripts split it).
            print(f"meshnet-ingress ready on http://{http_host}:{http_port} "
                  f"https://{https_host}:{https_port}", flush=True)
            while not self.stopping:
                self._drain_ready(POLL_S)
                self._reap(restart=True)
            return 0
        finally:
            self._stop_all()
            for sock, _ in reserved:
                sock.close()

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _fork(self, index: int) -> None:
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                if not die_with_parent(parent):
                    os._exit(0)  # the parent died before the worker was told to follow it
                os.close(self._ready_r)
                status = self.run_worker(self.args, index, self._ready_w)
            except BaseException:  # noqa: BLE001 - a child must never return into the parent
                log.exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        self.pids[pid] = index
        self.started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, pid)

    def _drain_ready(self, timeout: float) -> None:
        """Reads the ready lines ("INDEX HTTP_PORT HTTPS_PORT") workers wrote so far."""
        try:
            readable, _, _ = select.select([self._ready_r], [], [], timeout)
        except InterruptedError:
            return
        if not readable:
            return
        self._pending += os.read(self._ready_r, 4096)
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            index, ports = line.decode().split(" ", 1)
            self.ports[int(index)] = ports

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.ports) < self.args.workers:
            if self.stopping or time.monotonic() > deadline:
                return False
            self._drain_ready(POLL_S)
            if self._reap(restart=False):
                print("meshnet-ingress: a worker exited before it was ready (its log is "
                      "above)", file=sys.stderr)
                return False
        return True

    def _reap(self, restart: bool) -> bool:
        """Collects exited workers (forking them again when `restart`); True if any."""
        any_exited = False
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            any_exited = True
            self.ports.pop(index, None)
            if self.stopping:
                continue
            log.warning("worker %d (pid %d) exited with %s", index, pid,
                        describe_status(status))
            if restart:
                time.sleep(max(0.0, self.started[index] + RESTART_INTERVAL_S - time.monotonic()))
                self._fork(index)
        return any_exited

    def _stop_all(self) -> None:
        self.stopping = True
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.pids and time.monotonic() < deadline:
            self._reap(restart=False)
            time.sleep(0.05)
        for pid in list(self.pids):
            log.warning("worker %d (pid %d) did not stop in %gs; killed", self.pids[pid], pid,
                        STOP_TIMEOUT_S)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            del self.pids[pid]


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.waitstatus_to_exitcode(status)}"
