"""The agent's API for the API server: container logs and exec (kubelet's :10250 subset).

    GET  /containerLogs/<ns>/<pod>/<container>?follow=&previous=&tailLines=
         text/plain; follow streams until the container exits or the client goes away
    POST /exec/<ns>/<pod>/<container>?command=ls&command=-l   (GET works too)
         application/json {"stdout": ..., "stderr": ..., "exitCode": n} — non-interactive
    GET  /exec/...?command=sh&stdin=true&tty=true with a WebSocket upgrade: kubectl's streamed
         exec (remotecommand v4/v5.channel.k8s.io, execstream.py)
    GET  /healthz

Plain HTTP on the node's address: the API server reaches it over the node network. TODO (with
the RBAC work): HTTPS with a serving certificate from the cluster CA and client-certificate
authentication of the API server, as kubelet's --authentication does.
Errors are text with kubelet's wording and a 4xx status; the API server turns them into Status.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from meshnet.node import execstream
from meshnet.node.runtime import log_paths

if TYPE_CHECKING:
    from meshnet.node.agent import Agent

FOLLOW_POLL_S = 0.1
EXEC_TIMEOUT_S = 300.0
AGENT_KEY = web.AppKey("agent", object)


def _find(request: web.Request):
    agent = request.app[AGENT_KEY]
    ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
    worker = agent.workers_by_name.get(f"{ns}/{pod}")
    if worker is None:
        raise web.HTTPNotFound(text=f'pod "{pod}" not found in namespace "{ns}" on node '
                                    f'"{agent.node_name}"')
    if container not in worker.states:
        raise web.HTTPBadRequest(text=f"container {container} is not valid for pod {pod}")
    return worker, container


def tail(data: bytes, lines: int | None) -> bytes:
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


async def container_logs(request: web.Request) -> web.StreamResponse:
    worker, name = _find(request)
    previous = request.query.get("previous") in ("true", "1")
    follow = request.query.get("follow") in ("true", "1") and not previous
    tail_lines = request.query.get("tailLines")
    files = log_paths(worker.dir, name)
    cs = worker.states[name]
    current = cs.restart_count if cs.started else -1
    if previous:
        wanted = [p for p in files if int(p.stem) < current]
        if not wanted:
            raise web.HTTPBadRequest(text=f'previous terminated container "{name}" in pod '
                                          f'"{worker.name}" not found')
        path = wanted[-1]
    else:
        wanted = [p for p in files if int(p.stem) == current]
        if not wanted:
            raise web.HTTPBadRequest(text=f'container "{name}" in pod "{worker.name}" is '
                                          f'waiting to start: {cs.reason or "ContainerCreating"}')
        path = wanted[0]
    data = await asyncio.to_thread(Path(path).read_bytes)
    data = tail(data, int(tail_lines) if tail_lines else None)
    if not follow:
        return web.Response(body=data, content_type="text/plain", charset="utf-8")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    await resp.write(data)
    offset = Path(path).stat().st_size
    container = worker.containers.get(name)
    while True:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        if chunk:
            offset += len(chunk)
            await resp.write(chunk)
        elif container is None or container.proc.returncode is not None or worker.stopping:
            break
        await asyncio.sleep(FOLLOW_POLL_S)
    await resp.write_eof()
    return resp


async def exec_command(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return await _exec_collected(request)
    try:
        worker, name, container, argv = _exec_target(request)
        command, env = request.app[AGENT_KEY].runtime.interactive_argv(
            container, argv, worker.envs.get(name), execstream.query_flag(request, "tty"))
    except ProcessLookupError as exc:
        raise web.HTTPBadRequest(text=str(exc), reason=str(exc)) from None
    except web.HTTPException as exc:
        # A refused upgrade shows the client only the status line: put the words there too.
        raise type(exc)(text=exc.text, reason=(exc.text or "").splitlines()[0][:200]) from None
    return await execstream.serve(request, command, argv, env)


def _exec_target(request: web.Request):
    worker, name = _find(request)
    argv = request.query.getall("command", [])
    if not argv:
        raise web.HTTPBadRequest(text="you must specify at least one command for the container")
    container = worker.containers.get(name)
    if container is None or container.proc.returncode is not None:
        raise web.HTTPBadRequest(text=f"container {name} is not running "
                                      f"({worker.states[name].reason or 'terminated'})")
    return worker, name, container, argv


async def _exec_collected(request: web.Request) -> web.Response:
    worker, name, container, argv = _exec_target(request)
    agent = request.app[AGENT_KEY]
    code, out, err = await agent.runtime.exec(container, argv, EXEC_TIMEOUT_S,
                                              worker.envs.get(name))
    body = {"stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "exitCode": code}
    return web.Response(text=json.dumps(body), content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve_agent_api(agent: "Agent", host: str, port: int) -> web.AppRunner:
    app = web.Application()
    app[AGENT_KEY] = agent
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    app.router.add_route("*", "/exec/{ns}/{pod}/{container}", exec_command)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
