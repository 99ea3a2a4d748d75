"""`pods/log` and `pods/exec`: forwarded to the node agent that runs the pod.

As kube-apiserver does for kubelet: find the pod's node, dial the Node's InternalIP at its
`status.daemonEndpoints.kubeletEndpoint.Port`, and relay the answer — logs streamed as they
come (`follow=true`), exec either as the agent's JSON `{stdout, stderr, exitCode}` (a plain
request: meshctl exec without -i/-t) or, when the client asks for a WebSocket (kubectl exec,
meshctl exec -it), as a WebSocket to the agent relayed frame by frame both ways with the
subprotocol the agent chose (remotecommand v4/v5.channel.k8s.io: the agent speaks it; see
meshnet/node/execstream.py). SPDY is not spoken: kubectl 1.30+ uses WebSockets. Agent errors
come back as Status with the agent's words; an unreachable agent is a 500 naming the address,
as kube-apiserver's "dial tcp ...: connection refused" does.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import WSMsgType, web

from meshnet.api import errors
from meshnet.api.resources import lookup

DEFAULT_AGENT_PORT = 10250
CONNECT_TIMEOUT_S = 5.0
_REASONS = {400: "BadRequest", 404: "NotFound", 403: "Forbidden"}


async def _agent_address(registry, pod: dict) -> tuple[str, int]:
    name = pod["metadata"]["name"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node = await registry.get(lookup("nodes"), None, node_name)
    status = node.get("status") or {}
    ip = next((a.get("address") for a in status.get("addresses") or []
               if a.get("type") == "InternalIP"), None)
    if not ip:
        raise errors.bad_request(f"node {node_name} has no InternalIP address; is its agent "
                                 f"(meshnet-agent) running?")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
        or DEFAULT_AGENT_PORT
    return ip, int(port)


def _container(pod: dict, request: web.Request) -> str:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    wanted = request.query.get("container", "")
    if wanted:
        if wanted not in names:
            raise errors.bad_request(f"container {wanted} is not valid for pod "
                                     f"{pod['metadata']['name']}")
        return wanted
    if len(names) == 1:
        return names[0]
    raise errors.bad_request(f"a container name must be specified for pod "
                             f"{pod['metadata']['name']}, choose one of: [{' '.join(names)}]")


async def forward(request: web.Request, registry, ri) -> web.StreamResponse:
    pod = await registry.get(ri.info, ri.namespace, ri.name)
    container = _container(pod, request)
    ip, port = await _agent_address(registry, pod)
    if ri.subresource == "log":
        path = f"/containerLogs/{ri.namespace}/{ri.name}/{container}"
        params = [(k, request.query[k]) for k in ("follow", "previous", "tailLines",
                                                  "timestamps") if k in request.query]
        method = "GET"
    else:
        path = f"/exec/{ri.namespace}/{ri.name}/{container}"
        params = [("command", c) for c in request.query.getall("command", [])]
        method = "POST"
    url = f"http://{ip}:{port}{path}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
    if ri.subresource == "exec" and request.headers.get("Upgrade", "").lower() == "websocket":
        return await _relay_websocket(request, url, timeout, ri)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(method, url, params=params) as upstream:
                if upstream.status >= 400:
                    text = (await upstream.text()).strip()
                    raise errors.StatusError(upstream.status,
                                             _REASONS.get(upstream.status, "InternalError"),
                                             text)
                resp = web.StreamResponse(status=200, headers={
                    "Content-Type": upstream.headers.get("Content-Type", "text/plain")})
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
    except (aiohttp.ClientError, OSError) as exc:
        raise errors.StatusError(500, "InternalError",
                                 f"{method} {url}: {type(exc).__name__}: {exc}; is the node "
                                 f"agent running on {ri.namespace}/{ri.name}'s node?") from None


async def _relay_websocket(request: web.Request, url: str, timeout: aiohttp.ClientTimeout,
                           ri) -> web.StreamResponse:
    """Open the agent's WebSocket with the client's subprotocols, then upgrade the client with
    the one the agent chose and copy messages both ways until either side closes."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
               if p.strip()]
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            upstream = await session.ws_connect(url, params=list(request.query.items()),
                                                protocols=offered, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:  # the agent said no: its words
            raise errors.StatusError(exc.status, _REASONS.get(exc.status, "InternalError"),
                                     exc.message) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise errors.StatusError(500, "InternalError",
                                     f"GET {url}: {type(exc).__name__}: {exc}; is the node "
                                     f"agent running on {ri.namespace}/{ri.name}'s node?") \
                from None
        async with upstream:
            client = web.WebSocketResponse(
                protocols=(upstream.protocol,) if upstream.protocol else (), max_msg_size=0)
            await client.prepare(request)
            await asyncio.gather(_copy(client, upstream), _copy(upstream, client))
            return client


async def _copy(src, dst) -> None:
    try:
        async for msg in src:
            if msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
    except (ConnectionError, aiohttp.ClientError):
        pass
    finally:
        await dst.close()
