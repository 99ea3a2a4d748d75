"""`kubectl exec` streaming: Kubernetes' remotecommand protocol over a WebSocket.

Theory of operation
-------------------
kubectl (1.30+) and meshctl `exec -i/-t` open a WebSocket (subprotocol `v5.channel.k8s.io`,
or `v4.channel.k8s.io`) to `pods/<name>/exec`; the API server relays it to the agent frame
by frame (control/apiserver/podproxy.py), as kube-apiserver does to kubelet. Every binary
message is one channel byte and a payload:

    0 stdin     client -> agent      3 error   agent -> client: a Status, then the close
    1 stdout    agent -> client      4 resize  client -> agent: {"Width": w, "Height": h}
    2 stderr    agent -> client      255 close client -> agent (v5): [stream id] has ended

With `tty=true` the command gets a pseudo-terminal (stdout and stderr are both the terminal,
so channel 2 stays silent; resize sets its window size) and is its session's controlling
terminal (`setsid --ctty`), so shells do job control and Ctrl-C reaches the foreground job.
Without it, stdin/stdout/stderr are pipes. The process is the runtime's (`interactive_argv`:
nsenter into the container's namespaces, or `docker exec`). When it exits the agent sends the
Status (Success, or NonZeroExitCode with the exit code as a cause, exactly kubelet's words) and
closes; if the client goes away first, the command's process group is killed.

The frame and Status builders are pure; `ExecSession` is the only I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import termios

from aiohttp import WSMsgType, web

log = logging.getLogger("meshnet.agent.exec")

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_BYTES = 32 * 1024
KILL_WAIT_S = 5.0


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def exit_status(argv: list[str], code: int) -> dict:
    """The Status kubelet sends on the error channel when the command has exited."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(argv)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message,
            "reason": "InternalError", "code": 500}


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(columns, rows) from a resize message; None when it is not one."""
    try:
        doc = json.loads(payload)
        return int(doc["Width"]), int(doc["Height"])
    except (ValueError, KeyError, TypeError):
        return None


def query_flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes")


class ExecSession:
    """One streamed command: a WebSocket on one side, a process (pty or pipes) on the other."""

    def __init__(self, ws: web.WebSocketResponse, argv: list[str], shown: list[str],
                 env: dict[str, str], *, tty: bool, stdin: bool):
        self.ws, self.argv, self.shown, self.env = ws, argv, shown, env
        self.tty, self.want_stdin = tty, stdin
        self.proc: asyncio.subprocess.Process | None = None
        self.master = -1  # the pty's controlling side (tty only)

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else "-"
        return f"<ExecSession {' '.join(self.shown)} pid={pid} tty={self.tty}>"

    async def run(self) -> None:
        try:
            await self._start()
        except OSError as exc:
            await self._send_status(error_status(f"cannot run {self.shown[0]!r}: {exc}"))
            return
        await self.ws.send_bytes(frame(STDOUT))  # "streams are open", as kubelet's first frame
        pumps = [asyncio.create_task(self._from_client())]
        if self.tty:
            pumps.append(asyncio.create_task(self._pump_master()))
        else:
            pumps += [asyncio.create_task(self._pump(self.proc.stdout, STDOUT)),
                      asyncio.create_task(self._pump(self.proc.stderr, STDERR))]
        outputs = pumps[1:]
        try:
            exited = asyncio.create_task(self.proc.wait())
            done, _ = await asyncio.wait([exited, pumps[0]], return_when=asyncio.FIRST_COMPLETED)
            if exited not in done:  # the client went away: so does the command
                self._kill()
                await exited
                return
            # Output written just before the exit is still in the pipes or the pty.
            await asyncio.wait(outputs, timeout=1.0)
            code = exited.result()
            code = 128 - code if code < 0 else code
            await self._send_status(exit_status(self.shown, code))
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if self.master >= 0:
                os.close(self.master)
                self.master = -1
            if self.proc.returncode is None:
                self._kill()
                await self.proc.wait()

    async def _start(self) -> None:
        if not self.tty:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, start_new_session=True,
                stdin=asyncio.subprocess.PIPE if self.want_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            return
        master, slave = os.openpty()
        try:
            # setsid --ctty: a session of its own with the pty as its controlling terminal.
            self.proc = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", *self.argv, env={**self.env, "TERM": "xterm"},
                stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master

    async def _from_client(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], msg.data[1:]
            if channel == STDIN and self.want_stdin:
                await self._write_stdin(payload)
            elif channel == RESIZE and self.tty:
                size = parse_resize(payload)
                if size and self.master >= 0:
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                                struct.pack("HHHH", size[1], size[0], 0, 0))
            elif channel == CLOSE and payload[:1] == bytes((STDIN,)):
                self._close_stdin()

    async def _write_stdin(self, data: bytes) -> None:
        if self.tty:
            while data and self.master >= 0:
                try:
                    data = data[os.write(self.master, data):]
                except BlockingIOError:
                    await asyncio.sleep(0.01)  # the terminal's input queue is full
            return
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    def _close_stdin(self) -> None:
        if self.tty:
            if self.master >= 0:
                with contextlib.suppress(OSError):
                    os.write(self.master, b"\x04")  # EOF at the start of a line: ^D
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def _pump(self, stream: asyncio.StreamReader, channel: int) -> None:
        while data := await stream.read(READ_BYTES):
            await self.ws.send_bytes(frame(channel, data))

    async def _pump_master(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(self.master, READ_BYTES)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: every holder of the terminal's other side is gone
                    return
                if not data:
                    return
                await self.ws.send_bytes(frame(STDOUT, data))
        finally:
            loop.remove_reader(self.master)

    async def _send_status(self, status: dict) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(frame(ERROR, json.dumps(status).encode()))
            await self.ws.close()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its session's group, as for containers


async def serve(request: web.Request, argv: list[str], shown: list[str],
                env: dict[str, str]) -> web.WebSocketResponse:
    """Upgrade the request and run the command until it exits or the client goes."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    if ws.ws_protocol is None:
        await ws.send_bytes(frame(ERROR, json.dumps(error_status(
            f"unsupported WebSocket subprotocol; use one of {', '.join(PROTOCOLS)}")).encode()))
        await ws.close()
        return ws
    session = ExecSession(ws, argv, shown, env, tty=query_flag(request, "tty"),
                          stdin=query_flag(request, "stdin"))
    log.info("exec %r", session)
    await session.run()
    return ws
