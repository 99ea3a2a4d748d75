"""`meshnet-dns --workers N`: N server processes sharing one address with SO_REUSEPORT.

Theory of operation
-------------------
One meshnet-dns process answers on one core. With `--workers N` the process started by the
user (the supervisor) answers nothing itself: it starts N workers, each a complete
single-process meshnet-dns (`python -m meshnet.dns.main` with the user's flags plus
`--worker-of PID`), which binds the same UDP and TCP address with SO_REUSEPORT. The kernel
then spreads the load: each datagram goes to one of the N UDP sockets, each new connection to
one of the N listeners, chosen by a hash of the client's address and port — so one client
socket always talks to the same worker, and a few client sockets may land unevenly.

Nothing is shared between workers. Each follows the API server with its own informers and
keeps its own zone table, memo and upstream cache: N watches on the API server, N times one
process's memory, and a forwarded name may be asked upstream once per worker. That is the
price of no locks and no IPC on the query path (NSD and Knot do the same with
`reuseport: yes`); the zone is small next to the API server's own load.

- Port 0: the first worker picks the port; the others are started on the port it printed.
- Status (`--status-listen`): the supervisor serves it. Each worker serves its own on
  127.0.0.1:0 and prints where; `/healthz` is 200 while every worker runs, `/ready` once
  every worker's `/ready` is 200, `/metrics` is every worker's metrics with a `worker` label
  (families kept together, as the text format requires) plus the supervisor's restart count.
- A worker that exits (crash, OOM kill) is replaced on the same port after a backoff that
  doubles while replacements keep dying young (RESTART_MIN_S up to RESTART_MAX_S).
- SIGTERM/SIGINT: the supervisor stops each worker by its PID (SIGTERM, then SIGKILL after
  STOP_DEADLINE_S) and waits for it. Workers run in their own session, so a terminal's ^C
  reaches the supervisor only; a worker whose supervisor dies anyway (SIGKILL) gets SIGTERM
  from the kernel (PR_SET_PDEATHSIG) and stops.

Any local process of the same user can bind the address with SO_REUSEPORT too and receive a
share of the queries; run the DNS under a user of its own where that matters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import time
from typing import Sequence

import aiohttp
from aiohttp import web

from meshnet.daemon import DaemonError
from meshnet.dns.main import parse_hostport, show_hostport
from meshnet.metrics import Counter, serve_status

log = logging.getLogger("meshnet.dns.workers")

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
YOUNG_S = 10.0            # a worker that dies younger than this doubles the next backoff
START_TIMEOUT_S = 60.0    # exec -> "listening" line
STOP_DEADLINE_S = 5.0     # a worker's own stop takes up to 2 s (server.STOP_DEADLINE_S)
SCRAPE_TIMEOUT_S = 2.0
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def with_label(sample: str, name: str, value: str) -> str:
    """`metric{a="b"} 1` -> `metric{name="value",a="b"} 1` (likewise without labels)."""
    cut = METRIC_NAME.match(sample).end()
    if sample[cut:cut + 1] == "{":
        return f'{sample[:cut]}{{{name}="{value}",{sample[cut + 1:]}'
    return f'{sample[:cut]}{{{name}="{value}"}}{sample[cut:]}'


def label_metrics(texts: list[str], extra: Sequence[str] = ()) -> str:
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


class Worker:
    """One server process, replaced when it exits."""

    def __init__(self, index: int):
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.status_url = ""
        self.started = 0.0
        self.backoff_s = RESTART_MIN_S

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        state = "running" if self.running else "stopped"
        return f"<Worker {self.index} pid={pid} {state}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, argv: list[str]) -> int:
        """Exec the worker and wait for its "listening" line; returns the port it bound."""
        self.status_url = ""
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meshnet.dns.main", *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while line := (await self.proc.stdout.readline()).decode():
                    if line.startswith("meshnet-dns status on "):
                        self.status_url = "http://" + line.split(" on ", 1)[1].strip()
                    elif line.startswith("meshnet-dns listening on "):
                        return int(line.rsplit(":", 1)[1])
        except TimeoutError:
            pass
        await self.stop()
        raise DaemonError(f"worker {self.index} did not start (exit status "
                          f"{self.proc.returncode}; its messages are above)")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
        except asyncio.TimeoutError:
            log.warning("worker %d (pid %d) did not stop in %.0f s: killing it", self.index,
                        proc.pid, STOP_DEADLINE_S)
            proc.kill()
            await proc.wait()


def worker_argv(argv: list[str], host: str, port: int, status: bool) -> list[str]:
    """The user's flags, overridden (argparse keeps the last occurrence) for one worker."""
    out = [*argv, "--workers", "1", "--worker-of", str(os.getpid()),
           "--listen", show_hostport(host, port)]
    if status:
        out += ["--status-listen", "127.0.0.1:0"]
    return out


class Supervisor:
    def __init__(self, args, argv: list[str]):
        self.host, self.port = parse_hostport(args.listen, "--listen")
        self.argv = argv
        self.status_listen = args.status_listen
        self.workers = [Worker(i) for i in range(args.workers)]
        self.restarts = Counter("meshnet_dns_worker_restarts_total",
                                "Workers started again after they exited.")
        self.http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<Supervisor {show_hostport(self.host, self.port)} {self.workers}>"

    def _argv(self) -> list[str]:
        return worker_argv(self.argv, self.host, self.port, bool(self.status_listen))

    async def start(self) -> None:
        first, *rest = self.workers
        if self.port == 0:  # the first worker picks the port, the others join it
            self.port = await first.start(self._argv())
        else:
            rest = self.workers
        await asyncio.gather(*(w.start(self._argv()) for w in rest))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))
        if self.http is not None:
            await self.http.close()

    async def keep(self, worker: Worker, stop: asyncio.Event) -> None:
        """Replace `worker` whenever it exits, until `stop`."""
        while not stop.is_set():
            code = await worker.proc.wait()
            if stop.is_set():
                return
            lived = time.monotonic() - worker.started
            worker.backoff_s = (min(worker.backoff_s * 2, RESTART_MAX_S) if lived < YOUNG_S
                                else RESTART_MIN_S)
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
                await worker.start(self._argv())
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

    async def serve_status(self) -> web.AppRunner:
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        host, port = parse_hostport(self.status_listen, "--status-listen")
        try:
            return await serve_status(host, port, None,
                                      healthy=lambda: all(w.running for w in self.workers),
                                      ready=self._ready, render=self._metrics)
        except OSError as exc:
            raise DaemonError(f"--status-listen {self.status_listen}: {exc}") from None


async def supervise(args, argv: list[str], stop: asyncio.Event) -> None:
    sup = Supervisor(args, argv)
    status = None
    keepers: list[asyncio.Task] = []
    try:
        await sup.start()
        if sup.status_listen:
            status = await sup.serve_status()
        keepers = [asyncio.create_task(sup.keep(w, stop), name=f"worker-{w.index}")
                   for w in sup.workers]
        print(f"meshnet-dns listening on udp+tcp {show_hostport(sup.host, sup.port)}",
              flush=True)
        log.info("%d workers on %s: pids %s", len(sup.workers),
                 show_hostport(sup.host, sup.port), [w.proc.pid for w in sup.workers])
        await stop.wait()
    finally:
        stop.set()
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        await sup.stop()
        if status is not None:
            await status.cleanup()
