"""The asyncio API client the node daemons use (proxy, DNS, ingress, agent).

Same wire protocol and errors as the synchronous `RestClient` meshctl uses, on aiohttp with
one keep-alive connection pool. Watches are streamed line by line; an ERROR event with a 410
Status becomes `ApiError(code=410)` so informers know to relist.
"""

from __future__ import annotations

import errno
import json
from typing import AsyncIterator

import aiohttp

from meshnet.api.resources import ResourceInfo
from meshnet.client.errors import ApiError, ConnectionFailed
from meshnet.client.kubeconfig import ClusterConnection, Kubeconfig
from meshnet.client.rest import _build_ssl_context, resource_path

DEFAULT_TIMEOUT_S = 30.0
# A watch line is one object; kube-apiserver objects are at most ~1.5 MiB in etcd.
MAX_LINE_BYTES = 8 * 1024 * 1024


def _stale_connection(exc: BaseException) -> bool:
    """A pooled keep-alive connection the server had closed (e.g. it restarted)."""
    if isinstance(exc, (aiohttp.ServerDisconnectedError, BrokenPipeError, ConnectionResetError)):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.EPIPE,
                                                                     errno.ECONNRESET)


class AsyncClient:
    def __init__(self, conn: ClusterConnection, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.conn = conn
        self.server = conn.server.rstrip("/")
        self._ssl = _build_ssl_context(conn) if self.server.startswith("https") else False
        self._timeout_s = timeout_s
        headers = {"Accept": "application/json", "User-Agent": "meshnet/0.1"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        **kwargs) -> "AsyncClient":
        return cls(Kubeconfig.load(path).connection(context), **kwargs)

    def __repr__(self) -> str:
        return f"<AsyncClient {self.server}>"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s),
                read_bufsize=2 ** 16, max_line_size=MAX_LINE_BYTES,
                max_field_size=MAX_LINE_BYTES)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: dict | list | None = None,
                      content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        for attempt in (1, 2):
            try:
                async with self._client().request(
                        method, self.server + path, params=params, data=data, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self._timeout_s)) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise ApiError.from_response(resp.status, raw, resp.content_type)
                    return json.loads(raw) if raw else {}
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # The request never reached a server that had closed the pooled connection,
                # so one retry on a fresh connection is safe for any verb.
                if attempt == 1 and _stale_connection(exc):
                    continue
                raise ConnectionFailed(f"Unable to connect to the server: {self.server}: "
                                       f"{type(exc).__name__}: {exc}", self.server) from None
        raise AssertionError("unreachable")

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
        """Yield watch events (dicts with type/object) until the server ends the stream."""
        params = {"watch": "true", "timeoutSeconds": str(int(timeout_s)),
                  **_selectors(label_selector, field_selector)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        try:
            async with self._client().get(
                    self.server + resource_path(info, namespace), params=params,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30)) as resp:
                if resp.status >= 400:
                    raise ApiError.from_response(resp.status, await resp.read(),
                                                 resp.content_type)
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(status.get("code", 500), status.get("reason", ""),
                                       status.get("message", ""), status.get("details"))
                    yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"watch {info.plural} on {self.server}: "
                                   f"{type(exc).__name__}: {exc}", self.server) from None


def _selectors(label_selector: str, field_selector: str) -> dict:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params
