"""`meshctl exec -i/-t`: a streamed exec over Kubernetes' remotecommand WebSocket protocol.

The client side of meshnet/node/execstream.py (and of kubelet's): a WebSocket to
`pods/<name>/exec` (subprotocol v5.channel.k8s.io, else v4), one channel byte per message —
0 stdin (from us), 1 stdout, 2 stderr, 3 the final Status, 4 terminal size (from us), 255 "this
stream has ended" (v5: sent when our stdin reaches EOF). With -t and a terminal on stdin, the
terminal is put in raw mode for the session (so keys, Ctrl-C included, go to the remote
command) and restored afterwards; its size is sent at the start and on every SIGWINCH. The exit
status comes from the Status (NonZeroExitCode carries the code), as kubectl reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import tty as ttymod
from urllib.parse import urlsplit

import aiohttp

from meshnet.client.rest import _build_ssl_context

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_BYTES = 32 * 1024


def exit_code(status: dict) -> tuple[int, str]:
    """(exit code, message to show) from the error channel's Status."""
    if status.get("status") == "Success":
        return 0, ""
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                code = int(cause.get("message", "1"))
                return code, f"command terminated with exit code {code}"
    return 1, f"error: {status.get('message') or 'exec failed'}"


def resize_message(columns: int, lines: int) -> bytes:
    return bytes((RESIZE,)) + json.dumps({"Width": columns, "Height": lines}).encode()


async def stream(client, path: str, params: list[tuple[str, str]], *, stdin: bool,
                 tty: bool) -> tuple[int, str]:
    """Run the exec session on this process's stdin/stdout/stderr: the remote exit code and
    what to say about it."""
    conn = client.conn
    parsed = urlsplit(client.server)  # the API server in use (the kubeconfig's, or failover)
    scheme = "wss" if parsed.scheme == "https" else "ws"
    url = f"{scheme}://{parsed.netloc}{client.url(path, params)}"
    ssl_ctx = _build_ssl_context(conn) if url.startswith("wss") else False
    headers = client._headers("*/*", None, None)
    in_fd, out, errout = sys.stdin.fileno(), sys.stdout.buffer, sys.stderr.buffer
    loop = asyncio.get_running_loop()
    status: dict = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.ws_connect(url, protocols=PROTOCOLS, ssl=ssl_ctx, max_msg_size=0,
                                      server_hostname=conn.tls_server_name or None) as ws:
            v5 = ws.protocol == PROTOCOLS[0]

            def send(data: bytes) -> None:
                if not ws.closed:
                    loop.create_task(ws.send_bytes(data))

            def on_stdin() -> None:
                try:
                    data = os.read(in_fd, READ_BYTES)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if data:
                    send(bytes((STDIN,)) + data)
                    return
                loop.remove_reader(in_fd)
                if v5:
                    send(bytes((CLOSE, STDIN)))

            def on_resize() -> None:
                size = os.get_terminal_size(in_fd)
                send(resize_message(size.columns, size.lines))

            if stdin:
                loop.add_reader(in_fd, on_stdin)
            if tty:
                loop.add_signal_handler(signal.SIGWINCH, on_resize)
                on_resize()
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        continue
                    channel, payload = msg.data[0], msg.data[1:]
                    if channel in (STDOUT, STDERR) and payload:
                        target = out if channel == STDOUT else errout
                        target.write(payload)
                        target.flush()
                    elif channel == ERROR:
                        status = json.loads(payload or b"{}")
            finally:
                if stdin:
                    loop.remove_reader(in_fd)
                if tty:
                    loop.remove_signal_handler(signal.SIGWINCH)
    if not status:
        return 1, "error: the exec stream ended without a status"
    return exit_code(status)


def run(client, path: str, params: list[tuple[str, str]], *, stdin: bool, tty: bool,
        err) -> int:
    """`stream()` with the terminal in raw mode for the session when -t (and stdin is one)."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if tty else None
    try:
        if saved is not None:
            ttymod.setraw(fd, termios.TCSANOW)  # not tty's default TCSAFLUSH: keep typed-ahead
        code, message = asyncio.run(stream(client, path, params, stdin=stdin, tty=tty))
    except aiohttp.WSServerHandshakeError as exc:
        code, message = 1, f"error: {exc.status} {exc.message}"
    except (aiohttp.ClientError, OSError) as exc:
        code, message = 1, f"error: unable to upgrade connection: {exc}"
    finally:
        if saved is not None:  # before any message: raw mode would garble it
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    if message:
        err(message)
    return code
