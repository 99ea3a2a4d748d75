"""`--workers N` for any meshnet daemon: N copies of it sharing its addresses with SO_REUSEPORT.

Theory of operation
-------------------
One daemon process serves on one core. With `--workers N` the process the user started (the
supervisor) serves nothing itself: it execs N workers, each a complete single-process daemon
(`python -m <module>` with the user's flags plus `--workers 1 --worker-of PID --worker-index
K`), which bind the same addresses with SO_REUSEPORT; the kernel spreads datagrams and new
connections over their sockets by a hash of the client's address and port. Workers share
nothing (each has its own informers and tables); that is the price of no locks and no IPC on
the request path, as with nginx's `reuseport` and NSD's `reuseport: yes`.

A worker, like the single process, prints its ready line on stdout once its sockets are bound;
before it, a worker whose status port is on prints `<prog> status on ADDR:PORT`. The daemon's
`WorkerSpec.join` turns the ready line into the flags that put another worker on the same
addresses (`--listen 127.0.0.1:5353`; `--http-listen ... --https-listen ...`).

- Start: worker 0 first (a `:0` port is chosen once, by it; bad flags fail once, not N
  times), then the others at once with its addresses. The supervisor prints worker 0's ready
  line, unchanged, once every worker has printed its own: scripts read one format either way.
- Exec, not fork: a worker is a fresh interpreter, so no event loop, thread or uvloop state is
  ever copied into a child. A worker knows its index (`--worker-index`), so the daemon can
  give one of them a singular job (the ingress's API writes go through worker 0 alone).
- Status: the user's `--status-listen` is served by the supervisor, the one port probes and
  scrapers know. Workers serve theirs on 127.0.0.1:0, read by the supervisor only: `/healthz`
  is 200 while every worker runs, `/ready` once every worker's `/ready` is 200, `/metrics` is
  every worker's metrics with a `worker` label (families kept together, as the text format
  requires) plus the supervisor's `<prog>_worker_restarts_total`.
- A worker that exits (crash, OOM kill) is replaced with the same index and addresses after a
  backoff that doubles while replacements keep dying young (RESTART_MIN_S to RESTART_MAX_S).
- SIGTERM/SIGINT: the supervisor sends SIGTERM to each worker by PID, SIGKILL after the
  daemon's stop deadline (its own drain plus clean-up), and waits. Workers run in their own
  session, so a terminal's ^C reaches the supervisor only; a worker whose supervisor dies
  anyway (SIGKILL) gets SIGTERM from the kernel (PR_SET_PDEATHSIG, meshnet.daemon).

Not done: the supervisor holds no socket of its own, so if every worker is down at once a
`:0` port may be taken by another program before the replacements bind it (they then fail to
start and are retried with the backoff). Any local process of the same user can join the
SO_REUSEPORT group and take a share of the traffic; run daemons under a user of their own
where that matters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web

from meshnet.daemon import DaemonError, die_with_parent, run_daemon
from meshnet.metrics import Counter, serve_status

log = logging.getLogger("meshnet.workers")

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
YOUNG_S = 10.0            # a worker that dies younger than this doubles the next backoff
START_TIMEOUT_S = 60.0    # exec -> ready line
SCRAPE_TIMEOUT_S = 2.0
WORKER_STATUS = "127.0.0.1:0"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor needs to know of a daemon."""

    prog: str                  # "meshnet-dns": messages, the status line, the restarts metric
    module: str                # run as `python -m module`
    join: Callable[[str], Sequence[str] | None]  # ready line -> flags for its addresses
    parse_addr: Callable[[str, str], tuple[str, int]]  # (text, flag) -> host, port
    stop_deadline_s: float     # a worker's own graceful stop, plus margin

    @property
    def status_prefix(self) -> str:
        return f"{self.prog} status on "


# -- pure parts --------------------------------------------------------------------------------

def with_label(sample: str, name: str, value: str) -> str:
    """`metric{a="b"} 1` -> `metric{name="value",a="b"} 1` (likewise without labels)."""
    cut = METRIC_NAME.match(sample).end()
    if sample[cut:cut + 1] == "{":
        return f'{sample[:cut]}{{{name}="{value}",{sample[cut + 1:]}'
    return f'{sample[:cut]}{{{name}="{value}"}}{sample[cut:]}'


def label_metrics(texts: Sequence[str], extra: Sequence[str] = ()) -> str:
    """Several processes' Prometheus text as one exposition: the i-th text's samples get a
    `worker="i"` label; each family's HELP/TYPE lines once, its samples together."""
    families: dict[str, tuple[list[str], list[str]]] = {}  # name -> (HELP/TYPE, samples)
    for index, text in enumerate(texts):
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split()[2]
                head = families.setdefault(family, ([], []))[0]
                if line not in head:
                    head.append(line)
            elif line and not line.startswith("#"):
                families.setdefault(family, ([], []))[1].append(
                    with_label(line, "worker", str(index)))
    out = [line for head, samples in families.values() for line in (*head, *samples)]
    return "\n".join([*out, *extra]) + "\n"


def next_backoff(backoff_s: float, lived_s: float) -> float:
    """The wait before replacing a worker that lived `lived_s` after the last wait
    `backoff_s`: doubled while workers die young, back to the minimum after a long life."""
    return min(backoff_s * 2, RESTART_MAX_S) if lived_s < YOUNG_S else RESTART_MIN_S


def worker_argv(argv: Sequence[str], supervisor: int, index: int, join: Sequence[str],
                status: bool) -> list[str]:
    """The user's flags, overridden (argparse keeps the last occurrence) for one worker."""
    out = [*argv, "--workers", "1", "--worker-of", str(supervisor),
           "--worker-index", str(index), *join]
    if status:
        out += ["--status-listen", WORKER_STATUS]
    return out


# -- the worker side ---------------------------------------------------------------------------

def add_worker_flags(parser: argparse.ArgumentParser) -> None:
    """The flags the supervisor sets on the processes it starts (hidden from --help)."""
    parser.add_argument("--worker-of", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)


def announce_status(prog: str, args, host: str, port: int) -> None:
    """In a worker, before its ready line: where its status port is, for the supervisor."""
    if args.worker_of:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"{prog} status on {shown}", flush=True)


def run(spec: WorkerSpec, args, argv: Sequence[str],
        serve: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """A daemon's main after its flags are parsed: the supervisor with `--workers` N > 1,
    else `serve` (the single process, or one worker)."""
    if args.workers < 1:
        print(f"{spec.prog}: --workers {args.workers}: must be 1 or more", file=sys.stderr)
        return 1
    if args.workers > 1 and not args.worker_of:
        return run_daemon(spec.prog, lambda stop: supervise(spec, args, argv, stop),
                          log_level=args.log_level)
    if args.worker_of and not die_with_parent(args.worker_of):
        return 0  # the supervisor is gone already
    return run_daemon(spec.prog, serve, log_level=args.log_level)


# -- the supervisor ----------------------------------------------------------------------------

class Worker:
    """One server process, replaced when it exits."""

    def __init__(self, spec: WorkerSpec, index: int):
        self.spec = spec
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.status_url = ""
        self.ready_line = ""
        self.started = 0.0
        self.backoff_s = RESTART_MIN_S
        self._drain: asyncio.Task | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<Worker {self.index} pid={pid} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, argv: list[str]) -> Sequence[str]:
        """Exec the worker and wait for its ready line; returns the flags of its addresses."""
        self.status_url = self.ready_line = ""
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.spec.module, *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while line := (await self.proc.stdout.readline()).decode():
                    if line.startswith(self.spec.status_prefix):
                        self.status_url = "http://" + line[len(self.spec.status_prefix):].strip()
                    elif (join := self.spec.join(line)) is not None:
                        self.ready_line = line.rstrip("\n")
                        # Whatever it prints later goes to the log, never into a full pipe.
                        self._drain = asyncio.create_task(self._log_stdout())
                        return join
        except TimeoutError:
            pass
        await self.stop(self.spec.stop_deadline_s)
        raise DaemonError(f"worker {self.index} did not start (exit status "
                          f"{self.proc.returncode}; its messages are above)")

    async def _log_stdout(self) -> None:
        while line := await self.proc.stdout.readline():
            log.info("worker %d: %s", self.index, line.decode(errors="replace").rstrip())

    async def stop(self, deadline_s: float) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), deadline_s)
            except asyncio.TimeoutError:
                log.warning("worker %d (pid %d) did not stop in %.0f s: killing it",
                            self.index, proc.pid, deadline_s)
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None


class Supervisor:
    def __init__(self, spec: WorkerSpec, count: int, argv: Sequence[str], status: bool):
        self.spec = spec
        self.argv = list(argv)
        self.status = status
        self.join: Sequence[str] = ()  # worker 0's addresses, once it has bound them
        self.workers = [Worker(spec, i) for i in range(count)]
        self.restarts = Counter(f"{spec.prog.replace('-', '_')}_worker_restarts_total",
                                "Workers started again after they exited.")
        self.http: aiohttp.ClientSession | None = None  # while the status port is served

    def __repr__(self) -> str:
        return f"<Supervisor {self.spec.prog} {' '.join(self.join)} {self.workers}>"

    def _argv(self, worker: Worker) -> list[str]:
        return worker_argv(self.argv, os.getpid(), worker.index, self.join, self.status)

    async def start(self) -> None:
        first, *rest = self.workers
        self.join = await first.start(self._argv(first))
        await asyncio.gather(*(w.start(self._argv(w)) for w in rest))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop(self.spec.stop_deadline_s) for w in self.workers))
        if self.http is not None:
            await self.http.close()

    async def keep(self, worker: Worker, stop: asyncio.Event) -> None:
        """Replace `worker` whenever it exits, until `stop`."""
        while not stop.is_set():
            code = await worker.proc.wait()
            if stop.is_set():
                return
            lived = time.monotonic() - worker.started
            worker.backoff_s = next_backoff(worker.backoff_s, lived)
            log.warning("worker %d (pid %d) exited with status %s after %.1f s; starting "
                        "another in %.1f s", worker.index, worker.proc.pid, code, lived,
                        worker.backoff_s)
            try:
                await asyncio.wait_for(stop.wait(), worker.backoff_s)
                return
            except asyncio.TimeoutError:
                pass
            self.restarts.inc()
            try:
                await worker.start(self._argv(worker))
            except DaemonError as exc:
                log.warning("%s", exc)

    # -- status ----------------------------------------------------------------------------------

    async def _scrape(self, worker: Worker, path: str) -> tuple[int, str]:
        if not worker.running or not worker.status_url:
            return 503, ""
        try:
            async with self.http.get(worker.status_url + path) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 503, ""

    async def _ready(self) -> bool:
        got = await asyncio.gather(*(self._scrape(w, "/ready") for w in self.workers))
        return all(code == 200 for code, _ in got)

    async def _metrics(self) -> str:
        got = await asyncio.gather(*(self._scrape(w, "/metrics") for w in self.workers))
        return label_metrics([body for _, body in got], self.restarts.render())

    async def serve_status(self, host: str, port: int) -> web.AppRunner:
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        return await serve_status(host, port, None,
                                  healthy=lambda: all(w.running for w in self.workers),
                                  ready=self._ready, render=self._metrics)


async def supervise(spec: WorkerSpec, args, argv: Sequence[str], stop: asyncio.Event) -> None:
    """The supervisor's life: start the workers, serve the status port, replace workers that
    exit, and stop them all on `stop`."""
    status_at = spec.parse_addr(args.status_listen, "--status-listen") \
        if args.status_listen else None
    sup = Supervisor(spec, args.workers, argv, status_at is not None)
    status = None
    keepers: list[asyncio.Task] = []
    try:
        starting = asyncio.create_task(sup.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():  # stopped while starting: a clean stop
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()
        if status_at is not None:
            try:
                status = await sup.serve_status(*status_at)
            except OSError as exc:
                raise DaemonError(f"--status-listen {args.status_listen}: {exc}") from None
        keepers = [asyncio.create_task(sup.keep(w, stop), name=f"worker-{w.index}")
                   for w in sup.workers]
        print(sup.workers[0].ready_line, flush=True)  # the single process's line, unchanged
        log.info("%d workers (%s): pids %s", len(sup.workers), " ".join(sup.join),
                 [w.proc.pid for w in sup.workers])
        await stop.wait()
    finally:
        stop.set()
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        await sup.stop()
        if status is not None:
            await status.cleanup()
