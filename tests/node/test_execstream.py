"""The remotecommand WebSocket protocol of `kubectl exec` (meshnet.node.execstream): the pure
builders table-first, then real sessions over loopback — an aiohttp server running
`execstream.serve` on host commands (the agent puts nsenter/docker exec in front of the same),
and aiohttp's WebSocket client speaking v5.channel.k8s.io as kubectl does."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from meshnet.cli.attach import exit_code, resize_message
from meshnet.node import execstream as es

STATUS_CASES = [
    ("exit 0 is Success", ["true"], 0, {"metadata": {}, "status": "Success"}),
    ("a non-zero exit names the command and the code, as kubelet", ["sh", "-c", "exit 3"], 3,
     {"metadata": {}, "status": "Failure",
      "message": "command terminated with non-zero exit code: error executing command "
                 "[sh -c exit 3], exit code 3",
      "reason": "NonZeroExitCode",
      "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}),
]


@pytest.mark.parametrize("desc,argv,code,want", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_exit_status(desc, argv, code, want):
    assert es.exit_status(argv, code) == want


CLIENT_CASES = [
    ("success", {"status": "Success"}, (0, "")),
    ("exit code from the cause", es.exit_status(["x"], 7),
     (7, "command terminated with exit code 7")),
    ("any other failure", es.error_status("no such container"),
     (1, "error: no such container")),
]


@pytest.mark.parametrize("desc,status,want", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
def test_client_reads_the_exit_code(desc, status, want):
    assert exit_code(status) == want


@pytest.mark.parametrize("payload,want", [
    (b'{"Width": 120, "Height": 40}', (120, 40)),
    (resize_message(80, 24)[1:], (80, 24)),
    (b'{"Width": "x"}', None),
    (b"not json", None),
])
def test_parse_resize(payload, want):
    assert es.parse_resize(payload) == want


def test_frames_carry_the_channel_first():
    assert es.frame(es.STDERR, b"oops") == b"\x02oops"
    assert es.frame(es.STDOUT) == b"\x01"


# -- sessions over loopback ------------------------------------------------------------------


@pytest.fixture
async def server():
    async def handler(request):
        argv = request.query.getall("command")
        return await es.serve(request, argv, argv, {"PATH": os.environ["PATH"]})

    app = web.Application()
    app.router.add_get("/exec", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}/exec"
    await runner.cleanup()


class Result:
    def __init__(self):
        self.out, self.err, self.status = b"", b"", None


async def run_session(server, command, *, tty=False, send=(), protocols=es.PROTOCOLS):
    """Connect, send the frames (bytes) or waits (floats), read until the server closes."""
    session, url = server
    params = [("command", c) for c in command] + [("stdin", "true"),
                                                 ("tty", "true" if tty else "false")]
    result = Result()
    async with session.ws_connect(url, params=params, protocols=protocols) as ws:
        result.protocol = ws.protocol
        for item in send:
            if isinstance(item, float):
                await asyncio.sleep(item)
            else:
                await ws.send_bytes(item)
        async for msg in ws:
            channel, payload = msg.data[0], msg.data[1:]
            if channel == es.STDOUT:
                result.out += payload
            elif channel == es.STDERR:
                result.err += payload
            elif channel == es.ERROR:
                result.status = json.loads(payload)
    return result


async def test_stdin_to_stdout_then_eof_closes_it(server):
    r = await run_session(server, ["cat"], send=[b"\x00hello ", b"\x00world",
                                                 bytes((es.CLOSE, es.STDIN))])
    assert r.protocol == "v5.channel.k8s.io"
    assert (r.out, r.err, r.status) == (b"hello world", b"", {"metadata": {},
                                                               "status": "Success"})


async def test_stderr_and_the_exit_code(server):
    r = await run_session(server, ["sh", "-c", "echo out; echo oops >&2; exit 3"])
    assert (r.out, r.err) == (b"out\n", b"oops\n")
    assert r.status["reason"] == "NonZeroExitCode"
    assert r.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_a_command_that_cannot_run_is_a_failure_status(server):
    r = await run_session(server, ["/nonexistent/program"])
    assert r.status["status"] == "Failure" and "/nonexistent/program" in r.status["message"]


async def test_tty_is_a_controlling_terminal_that_resizes(server):
    script = "read go; stty size; [ -t 0 ] && echo is-a-tty; ps -o tty= -p $$ | grep -q pts " \
             "&& echo controlling; exit 4"
    r = await run_session(server, ["sh", "-c", script], tty=True, send=[
        resize_message(100, 30), 0.2, b"\x00go\r"])
    text = r.out.decode()
    assert "30 100" in text and "is-a-tty" in text and "controlling" in text, text
    assert r.err == b""  # a terminal has one output: stdout
    assert r.status["details"]["causes"][0]["message"] == "4"


async def test_client_going_away_kills_the_command(server, tmp_path):
    pidfile = tmp_path / "pid"
    session, url = server
    params = [("command", "sh"), ("command", "-c"),
              ("command", f"echo $$ > {pidfile}; exec sleep 100"), ("stdin", "true")]
    async with session.ws_connect(url, params=params, protocols=es.PROTOCOLS) as ws:
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.05)
        pid = int(pidfile.read_text())
        await ws.close()
    for _ in range(100):
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                break
        except (FileNotFoundError, ProcessLookupError):
            break  # gone (it may go between any two looks)
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"pid {pid} still runs after the client left")


async def test_an_unsupported_subprotocol_is_refused_with_a_status(server):
    r = await run_session(server, ["true"], protocols=("v3.channel.k8s.io",))
    assert r.status["status"] == "Failure" and "v5.channel.k8s.io" in r.status["message"]
