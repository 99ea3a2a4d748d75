"""The asyncio API client the node daemons use (proxy, DNS, ingress, agent).

Same wire protocol and errors as the synchronous `RestClient` meshctl uses, on aiohttp with
one keep-alive connection pool. Watches are streamed line by line; an ERROR event with a 410
Status becomes `ApiError(code=410)` so informers know to relist.

With several API servers (`ClusterConnection.servers`) requests go to the current one and move
to the next on failure as `failover.py` decides; a watch that breaks marks its server failed, so
the informer's next watch (from its last resourceVersion) opens on the next server. Watch
sockets get TCP keepalive: a server that vanished without closing the connection (its host or
link went down) is noticed within WATCH_KEEPALIVE_S instead of at the end of the watch; a
server that is there but stopped sending (not even BOOKMARKs) within WATCH_IDLE_TIMEOUT_S.
"""

from __future__ import annotations

import errno
import json
import socket
from typing import AsyncIterator

import aiohttp

from meshnet.api.resources import ResourceInfo
from meshnet.client.errors import ApiError, ConnectionFailed
from meshnet.client.failover import (GATEWAY_STATUSES, Failure, ServerRotation, host_of,
                                     retry_on_next)
from meshnet.client.kubeconfig import ClusterConnection, Kubeconfig
from meshnet.client.rest import _build_ssl_context, resource_path

DEFAULT_TIMEOUT_S = 30.0
# A server that does not accept a connection within this is down for failover purposes
# (a LAN connect takes milliseconds; client-go dials with 30 s, but it has one server only).
CONNECT_TIMEOUT_S = 5.0
# A watch socket with no traffic for KEEPIDLE s is probed every KEEPINTVL s; KEEPCNT
# unanswered probes break it: about 15 + 5 * 3 = 30 s to notice a vanished server.
KEEPIDLE_S, KEEPINTVL_S, KEEPCNT = 15, 5, 3
WATCH_KEEPALIVE_S = KEEPIDLE_S + KEEPINTVL_S * KEEPCNT
# A watch that asked for BOOKMARKs and hears nothing for this long is taken for stuck (the
# server or its store stopped without closing the stream) and broken off: meshnet-apiserver
# sends a BOOKMARK every 30 s on a quiet watch, kube-apiserver about once a minute.
WATCH_IDLE_TIMEOUT_S = 90.0
# A watch line is one object; kube-apiserver objects are at most ~1.5 MiB in etcd.
MAX_LINE_BYTES = 8 * 1024 * 1024


def _stale_connection(exc: BaseException) -> bool:
    """A pooled keep-alive connection the server had closed (e.g. it restarted)."""
    if isinstance(exc, (aiohttp.ServerDisconnectedError, BrokenPipeError, ConnectionResetError)):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.EPIPE,
                                                                     errno.ECONNRESET)


def _failure(exc: BaseException) -> Failure:
    """Did the request reach a server before `exc`? (aiohttp names the connect stage.)"""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return Failure.CONNECT
    return Failure.TRANSPORT


def _keepalive(resp: aiohttp.ClientResponse) -> None:
    transport = resp.connection.transport if resp.connection is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT)
    except (OSError, AttributeError):  # not TCP (a unix socket in a test), or no such option
        pass


class _Failed(Exception):
    """One server did not serve a request: how (`Failure`) and the error to report."""

    def __init__(self, error: BaseException, failure: Failure):
        self.error, self.failure = error, failure


class AsyncClient:
    def __init__(self, conn: ClusterConnection, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 watch_idle_timeout_s: float = WATCH_IDLE_TIMEOUT_S):
        self.conn = conn
        self.watch_idle_timeout_s = watch_idle_timeout_s
        self.servers = ServerRotation(conn.servers)
        https = any(s.startswith("https") for s in self.servers.servers)
        self._ssl = _build_ssl_context(conn) if https else False
        self._timeout_s = timeout_s
        self._connect_timeout_s = min(connect_timeout_s, timeout_s)
        headers = {"Accept": "application/json", "User-Agent": "meshnet/0.1"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, *,
                        server: str | None = None, **kwargs) -> "AsyncClient":
        """`server`: overrides the kubeconfig's server(s); `https://a:6443,https://b:6443`
        names several (the daemons' --server flag)."""
        return cls(Kubeconfig.load(path).connection(context, server=server or None), **kwargs)

    @property
    def server(self) -> str:
        """The API server requests go to now."""
        return self.servers.current

    def __repr__(self) -> str:
        more = f" (+{len(self.servers) - 1}, failovers={self.servers.failovers})" \
            if len(self.servers) > 1 else ""
        return f"<AsyncClient {self.server}{more}>"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                read_bufsize=2 ** 16, max_line_size=MAX_LINE_BYTES,
                max_field_size=MAX_LINE_BYTES)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _unreachable(self, tried: dict[str, BaseException]) -> ConnectionFailed:
        if len(tried) == 1:
            server, exc = next(iter(tried.items()))
            return ConnectionFailed(f"Unable to connect to the server: {server}: "
                                    f"{type(exc).__name__}: {exc}", server)
        detail = "; ".join(f"{host_of(s)}: {type(e).__name__}: {e}" for s, e in tried.items())
        return ConnectionFailed(f"Unable to connect to any of {len(tried)} API servers: "
                                f"{detail}", self.server)

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: dict | list | None = None,
                      content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        tried: dict[str, BaseException] = {}
        for server in self.servers.round():
            try:
                return await self._request_once(server, method, path, params, data, headers)
            except _Failed as failed:
                failure, tried[server] = failed.failure, failed.error
            self.servers.failed(server, tried[server])
            if not retry_on_next(method, failure):
                break
        if failure is Failure.GATEWAY:
            raise tried[server]  # the answer itself: a Status (or a proxy's page) says why
        raise self._unreachable(tried) from None

    async def _request_once(self, server: str, method: str, path: str, params, data,
                            headers) -> dict:
        """One server; raises ApiError for an answer it should get, _Failed otherwise."""
        stale = False
        while True:
            try:
                async with self._client().request(
                        method, server + path, params=params, data=data, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self._timeout_s,
                                                      sock_connect=self._connect_timeout_s)
                ) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        error = ApiError.from_response(resp.status, raw, resp.content_type)
                        if resp.status in GATEWAY_STATUSES:
                            raise _Failed(error, Failure.GATEWAY)
                        raise error
                    return json.loads(raw) if raw else {}
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # A pooled keep-alive connection the server had closed: the request did not
                # reach it, so one retry on a fresh connection is safe for any verb. If that
                # cannot even connect, the server rather died under the first attempt, which
                # it may have carried out: not a connect failure then (no write is repeated).
                if not stale and _stale_connection(exc):
                    stale = True
                    continue
                failure = _failure(exc)
                raise _Failed(exc, Failure.TRANSPORT if stale else failure) from None

    # -- typed helpers -------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        return await self.request("GET", resource_path(info, namespace, name))

    async def list(self, info: ResourceInfo, namespace: str | None = None, *,
                   label_selector: str = "", field_selector: str = "") -> dict:
        return await self.request("GET", resource_path(info, namespace),
                                  params=_selectors(label_selector, field_selector))

    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict) -> dict:
        return await self.request("POST", resource_path(info, namespace), body=obj)

    async def replace(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict, *,
                      subresource: str | None = None) -> dict:
        return await self.request("PUT", resource_path(info, namespace, name, subresource),
                                  body=obj)

    async def patch(self, info: ResourceInfo, namespace: str | None, name: str, patch: dict, *,
                    subresource: str | None = None,
                    content_type: str = "application/merge-patch+json") -> dict:
        return await self.request("PATCH", resource_path(info, namespace, name, subresource),
                                  body=patch, content_type=content_type)

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        return await self.request("DELETE", resource_path(info, namespace, name))

    async def watch(self, info: ResourceInfo, namespace: str | None = None, *,
                    resource_version: str = "", timeout_s: float = 300.0,
                    label_selector: str = "", field_selector: str = "",
                    bookmarks: bool = True) -> AsyncIterator[dict]:
        """Yield watch events (dicts with type/object) until the server ends the stream.

        Opening fails over like a GET; once streaming, a broken stream raises
        ConnectionFailed and the caller watches again (the next server is current by then)."""
        params = {"watch": "true", "timeoutSeconds": str(int(timeout_s)),
                  **_selectors(label_selector, field_selector)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        path = resource_path(info, namespace)
        idle_s = min(timeout_s + 30, self.watch_idle_timeout_s) if bookmarks else timeout_s + 30
        tried: dict[str, BaseException] = {}
        for server in self.servers.round():
            try:
                async with self._client().get(
                        server + path, params=params,
                        timeout=aiohttp.ClientTimeout(total=None,
                                                      sock_connect=self._connect_timeout_s,
                                                      sock_read=idle_s)) as resp:
                    if resp.status >= 400:
                        error = ApiError.from_response(resp.status, await resp.read(),
                                                       resp.content_type)
                        if resp.status not in GATEWAY_STATUSES:
                            raise error
                        raise _Failed(error, Failure.GATEWAY)
                    _keepalive(resp)
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise ApiError(status.get("code", 500), status.get("reason", ""),
                                           status.get("message", ""), status.get("details"))
                        yield event
                    return
            except _Failed as answer:  # a 502/503/504 answer
                tried[server] = answer.error
                self.servers.failed(server, answer.error)
                continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.servers.failed(server, exc)
                if _failure(exc) is Failure.CONNECT:
                    tried[server] = exc
                    continue
                raise ConnectionFailed(f"watch {info.plural} on {server}: "
                                       f"{type(exc).__name__}: {exc}", server) from None
        if isinstance(tried[server], ApiError):
            raise tried[server]
        raise self._unreachable(tried) from None


def _selectors(label_selector: str, field_selector: str) -> dict:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params
