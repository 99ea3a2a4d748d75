"""An API client living inside the node namespace (the API server listens on that namespace's
loopback, which the test process cannot reach). Line protocol on stdin/stdout:

    {"op": "create"|"get"|"delete"|"patch"|"list"|"raw", "plural": ..., "namespace": ...,
     "name": ..., "body": {...}, "method": ..., "path": ..., "params": [[k, v], ...]}
    -> {"ok": true, "result": ...} | {"ok": false, "code": 404, "error": "..."}

One process answers every request of a test module, so polling costs no process start.
"""

import asyncio
import json
import sys

import aiohttp

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ClientError


async def handle(client: AsyncClient, op: dict):
    kind = op["op"]
    if kind == "raw":  # logs/exec: text or JSON bodies, any status
        async with client._client().request(
                op.get("method", "GET"), client.server + op["path"],
                params=op.get("params") or []) as resp:
            return {"status": resp.status, "body": await resp.text()}
    info, ns = lookup(op["plural"]), op.get("namespace", "default")
    if not info.namespaced:
        ns = None
    if kind == "create":
        return await client.create(info, ns, op["body"])
    if kind == "get":
        return await client.get(info, ns, op["name"])
    if kind == "list":
        return await client.list(info, ns)
    if kind == "delete":
        return await client.delete(info, ns, op["name"])
    if kind == "patch":
        return await client.patch(info, ns, op["name"], op["body"],
                                  subresource=op.get("subresource"))
    raise ValueError(f"unknown op {kind}")


async def main(kubeconfig: str) -> None:
    client = AsyncClient.from_kubeconfig(kubeconfig)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2 ** 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ok": True, "result": "ready"}), flush=True)
    try:
        while line := await reader.readline():
            op = json.loads(line)
            try:
                out = {"ok": True, "result": await handle(client, op)}
            except ApiError as exc:
                out = {"ok": False, "code": exc.code, "error": str(exc)}
            except (ClientError, aiohttp.ClientError, OSError) as exc:
                out = {"ok": False, "code": 0, "error": str(exc)}
            print(json.dumps(out), flush=True)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
