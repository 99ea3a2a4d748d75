"""Real HTTP backends for the ingress tests: aiohttp servers on 127.0.0.x loopback addresses.

Every backend answers with JSON describing the request it received (its own name, method,
path with query, headers, body length), so a test can see exactly what the proxy forwarded.
`/download/<n>` streams n bytes, `/upload` counts a streamed body, `/ws` echoes WebSocket
messages, `/slow/<seconds>` answers late.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

CHUNK = b"x" * (1 << 20)


def make_app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        size = 0
        async for data in request.content.iter_any():
            size += len(data)
        return web.json_response({
            "backend": name, "method": request.method, "path_qs": request.path_qs,
            "headers": {k: v for k, v in request.headers.items()}, "body_bytes": size})

    async def download(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse(headers={"X-Backend": name})
        if request.query.get("length") != "no":
            resp.content_length = n
        await resp.prepare(request)
        while n > 0:
            piece = CHUNK if n >= len(CHUNK) else CHUNK[:n]
            await resp.write(piece)
            n -= len(piece)
        await resp.write_eof()
        return resp

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(f"{name}:{msg.data}")
        return sock

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["s"]))
        return web.json_response({"backend": name, "slow": True})

    app = web.Application(client_max_size=0)
    app.router.add_get("/download/{n}", download)
    app.router.add_get("/ws", ws)
    app.router.add_get("/slow/{s}", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class Backend:
    def __init__(self, name: str, host: str, port: int = 0):
        self.name, self.host, self.port = name, host, port
        self.runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<Backend {self.name} {self.host}:{self.port}>"

    async def start(self) -> "Backend":
        self.runner = web.AppRunner(make_app(self.name), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def body_json(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])
