"""The agent's side of the container zygote (zygote.py): start it, ask it to fork, hear exits.

The zygote is started on first use with one end of a SOCK_SEQPACKET socketpair (one message
per request, reply or exit). `spawn()` sends a request and the write end of the container's
"ready" pipe, and returns a `ZygoteProcess` — the face of asyncio.subprocess.Process the
runtime and podworker use (`pid`, `returncode`, `await wait()`). Exit messages settle it.

If the zygote dies (it should not), the next `spawn()` starts a new one; containers it had
forked keep running (their own sessions) and are watched through a pidfd instead. Their exit
status is then unknown: reported as UNKNOWN_EXIT (255), with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger("meshnet.agent.spawner")

ZYGOTE = str(Path(__file__).with_name("zygote.py"))
MAX_MESSAGE_BYTES = 65536
UNKNOWN_EXIT = 255


class SpawnError(OSError):
    """The zygote could not fork the container."""


class ZygoteProcess:
    """A container's main process, forked by the zygote."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._done = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<ZygoteProcess {self.pid} returncode={self.returncode}>"

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._done.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)


class Spawner:
    def __init__(self, python: str):
        self.python = python
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._procs: dict[int, ZygoteProcess] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        zygote = self._proc.pid if self._proc else "-"
        return f"<Spawner zygote={zygote} containers={len(self._procs)}>"

    async def _ensure(self) -> socket.socket:
        async with self._lock:
            if self._sock is not None:
                return self._sock
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    self.python, "-I", "-S", ZYGOTE, str(theirs.fileno()),
                    stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
            finally:
                theirs.close()
            mine.setblocking(False)
            asyncio.get_running_loop().add_reader(mine.fileno(), self._on_readable)
            self._sock = mine
            log.info("container zygote started (pid %d)", self._proc.pid)
            return mine

    async def spawn(self, *, spec: Path, log_path: Path, netns_path: str, etc_dir: str,
                    echo: bool, ready_fd: int) -> ZygoteProcess:
        sock = await self._ensure()
        self._next_id += 1
        rid = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        message = json.dumps({"id": rid, "spec": str(spec), "log": str(log_path),
                              "netns": netns_path, "etc": etc_dir, "echo": echo}).encode()
        try:
            sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      ready_fd.to_bytes(4, "little", signed=True))])
        except OSError as exc:
            self._pending.pop(rid, None)
            raise SpawnError(f"container zygote: {exc}") from None
        reply = await fut
        if "error" in reply:
            raise SpawnError(f"container zygote: {reply['error']}")
        return self._procs[reply["pid"]]

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(MAX_MESSAGE_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = json.loads(data)
            if "exit" in msg:
                proc = self._procs.pop(msg["exit"], None)
                if proc is not None:
                    proc.exited(msg["code"])
                continue
            if "pid" in msg:  # before the reply is seen, so an exit can never come first
                self._procs[msg["pid"]] = ZygoteProcess(msg["pid"])
            fut = self._pending.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _lost(self) -> None:
        """The zygote is gone: fail pending spawns, watch its containers by pidfd."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result({"error": "the zygote exited"})
        self._pending.clear()
        if self._procs:
            log.warning("container zygote exited; %d containers are watched without their "
                        "exit status", len(self._procs))
        for proc in list(self._procs.values()):
            _watch_pidfd(loop, proc)
        self._procs.clear()

    async def close(self) -> None:
        """Stop the zygote (containers keep running: they are stopped one by one)."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            await self._proc.wait()
            self._proc = None


def _watch_pidfd(loop: asyncio.AbstractEventLoop, proc: ZygoteProcess) -> None:
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        proc.exited(UNKNOWN_EXIT)
        return

    def readable() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        proc.exited(UNKNOWN_EXIT)
    loop.add_reader(fd, readable)
