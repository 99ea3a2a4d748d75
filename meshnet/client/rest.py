"""A small synchronous Kubernetes REST client on the standard library.

Theory of operation
-------------------
One `RestClient` talks to one API server over one kept-alive HTTPS connection
(`http.client` + `ssl`), the way kubectl talks to kube-apiserver: bearer token or client
certificate, the cluster CA from the kubeconfig, JSON bodies. Paths are built from a
`ResourceInfo` (`/api/v1/namespaces/default/services/web`,
`/apis/apps/v1/deployments`), so the same client works against meshnet and a real cluster.

- Every error response becomes `ApiError` (decoded from the `Status` body when there is one);
  every transport failure becomes `ConnectionFailed` with kubectl's wording. Nothing from
  `ssl`, `socket` or `http.client` escapes.
- A request that finds the kept-alive connection closed by the server is retried once on a
  fresh connection (the server may drop idle connections at any time).
- `watch()` opens its own connection and yields decoded events line by line (the API server
  streams one JSON object per line); an `ERROR` event carrying a Status raises `ApiError`
  (e.g. 410 Expired, after which the caller lists again).
- Several API servers (`conn.servers`): the connection goes to the current one; when it fails
  the client moves to the next as `failover.py` decides (a request not sent goes anywhere,
  a GET is repeated on the next server, a write is not).

This module is synchronous on purpose: meshctl does one thing at a time, and the asyncio
daemons have their own client.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import platform
import socket
import ssl
import tempfile
import urllib.parse
from typing import Iterator

from meshnet import __version__
from meshnet.api.resources import ResourceInfo

from .errors import ApiError, ConfigError, ConnectionFailed
from .failover import GATEWAY_STATUSES, Failure, ServerRotation, host_of, retry_on_next
from .kubeconfig import ClusterConnection

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
# What kubectl sends for `get` (cli-runtime resource.Builder.TransformRequests): Table in v1,
# then v1beta1, then plain JSON for servers that cannot render tables.
TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")

CONNECT_TIMEOUT_S = 30.0
FAILOVER_CONNECT_TIMEOUT_S = 5.0  # with several servers: a LAN connect takes milliseconds
DEFAULT_TIMEOUT_S = 300.0  # a single non-watch request; --request-timeout overrides
LIST_CHUNK = 500  # kubectl's --chunk-size default

_PATCH_TYPES = {"merge": MERGE_PATCH, "json": JSON_PATCH, "strategic": STRATEGIC_PATCH}


def user_agent(program: str = "meshctl") -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{program}/v{__version__} ({platform.system().lower()}/{machine}) meshnet"


def resource_path(info: ResourceInfo, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The REST path of a collection or an object of `info`."""
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and namespace:
        base += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
    base += f"/{info.plural}"
    if name:
        base += f"/{urllib.parse.quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
    return base


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection whose SNI / verified name can differ from the dialled host."""

    def __init__(self, host, port, *, context, timeout, server_hostname=None):
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_hostname = server_hostname

    def connect(self):
        http.client.HTTPConnection.connect(self)
        name = self._server_hostname or self.host
        self.sock = self._context.wrap_socket(self.sock, server_hostname=name)


class Response:
    """A fully read response (non-streaming requests)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        if not self.body:
            return {}
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class WatchStream:
    """Iterator over watch events; `close()` ends it from another place (e.g. Ctrl-C)."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 server: str, on_broken=None):
        self._conn = conn
        self._response = response
        self._server = server
        self._on_broken = on_broken  # called with (server, error) when the stream breaks
        self.closed = False

    def __iter__(self) -> Iterator[dict]:
        try:
            while not self.closed:
                try:
                    line = self._response.readline()
                except (socket.timeout, TimeoutError):
                    return  # --request-timeout elapsed: the watch simply ends, as kubectl's
                except (OSError, http.client.HTTPException, ValueError) as e:
                    if self.closed:
                        return
                    if self._on_broken is not None:
                        self._on_broken(self._server, e)
                    raise _transport_error(e, self._server) from None
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise ApiError(500, "InternalError",
                                   f"watch stream: undecodable event: {line[:200]!r}") from None
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise ApiError(int(obj.get("code") or 500), obj.get("reason") or "",
                                   obj.get("message") or "watch error", obj.get("details"), obj)
                yield event
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._conn.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<WatchStream {self._server} {'closed' if self.closed else 'open'}>"


def _transport_error(e: BaseException, server: str) -> ConnectionFailed:
    host = urllib.parse.urlsplit(server).netloc or server
    if isinstance(e, ConnectionRefusedError):
        return ConnectionFailed(f"The connection to the server {host} was refused - did you "
                                f"specify the right host or port?", server)
    if isinstance(e, ssl.SSLCertVerificationError):
        detail = e.verify_message or str(e)
        return ConnectionFailed(f"Unable to connect to the server: tls: failed to verify "
                                f"certificate: {detail}", server)
    if isinstance(e, ssl.SSLError):
        return ConnectionFailed(f"Unable to connect to the server: tls: {e.reason or e}", server)
    if isinstance(e, socket.gaierror):
        return ConnectionFailed(f"Unable to connect to the server: dial tcp: lookup "
                                f"{urllib.parse.urlsplit(server).hostname}: {e.strerror}", server)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return ConnectionFailed(f"Unable to connect to the server: net/http: request canceled "
                                f"(Client.Timeout exceeded while awaiting headers) [{host}]",
                                server)
    if isinstance(e, http.client.HTTPException):
        return ConnectionFailed(f"Unable to connect to the server: {host}: "
                                f"{type(e).__name__}: {e}", server)
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return ConnectionFailed(f"Unable to connect to the server: {host}: {text}", server)


def _build_ssl_context(conn: ClusterConnection) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if conn.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            if conn.ca_data:
                ctx.load_verify_locations(cadata=conn.ca_data.decode("ascii", "replace"))
            elif conn.ca_file:
                ctx.load_verify_locations(cafile=conn.ca_file)
            else:
                ctx.load_default_certs()
        except (ssl.SSLError, OSError) as e:
            where = conn.ca_file or "certificate-authority-data"
            raise ConfigError(f'unable to load root certificates from {where} (cluster '
                              f'"{conn.cluster}"): {getattr(e, "strerror", None) or e}') from None
    if conn.cert_file or conn.cert_data:
        _load_client_cert(ctx, conn)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, conn: ClusterConnection) -> None:
    # ssl can only load key material from files; inline data goes through a private temp dir
    # that is removed as soon as the context holds the keys.
    with tempfile.TemporaryDirectory(prefix="meshctl-") as tmp:
        cert = conn.cert_file
        key = conn.key_file
        if conn.cert_data:
            cert = os.path.join(tmp, "client.crt")
            with open(os.open(cert, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(conn.cert_data)
        if conn.key_data:
            key = os.path.join(tmp, "client.key")
            with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(conn.key_data)
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f'unable to load client certificate/key for user "{conn.user}": '
                              f'{getattr(e, "strerror", None) or e}') from None


class _Target:
    """One API server URL, parsed."""

    __slots__ = ("server", "scheme", "host", "port", "base_path")

    def __init__(self, server: str, cluster: str):
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f'invalid server URL "{server}" (cluster "{cluster}"): '
                              f"expected https://HOST:PORT")
        self.server = server
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")


class RestClient:
    """Synchronous client for an API server (or several sharing one store: failover.py)."""

    def __init__(self, conn: ClusterConnection, *, timeout: float | None = None,
                 agent: str | None = None):
        self.conn = conn
        self.timeout = timeout  # None: DEFAULT_TIMEOUT_S for requests, unbounded watches
        self.agent = agent or user_agent()
        self._targets = {server: _Target(server, conn.cluster) for server in conn.servers}
        self.servers = ServerRotation(conn.servers)
        # With others to try, a server that does not accept within seconds is down.
        self._connect_timeout_s = CONNECT_TIMEOUT_S if len(self.servers) == 1 else \
            FAILOVER_CONNECT_TIMEOUT_S
        https = any(t.scheme == "https" for t in self._targets.values())
        self._ssl = _build_ssl_context(conn) if https else None
        self._http: http.client.HTTPConnection | None = None
        self._used = False

    # The current server's parts (the first server until one fails).
    server = property(lambda self: self.servers.current)
    scheme = property(lambda self: self._targets[self.server].scheme)
    host = property(lambda self: self._targets[self.server].host)
    port = property(lambda self: self._targets[self.server].port)
    base_path = property(lambda self: self._targets[self.server].base_path)

    # ------------------------------------------------------------- transport

    def _connect(self, server: str, timeout: float | None) -> http.client.HTTPConnection:
        t = self._targets[server]
        if t.scheme == "https":
            c = _HTTPSConnection(t.host, t.port, context=self._ssl,
                                 timeout=self._connect_timeout_s,
                                 server_hostname=self.conn.tls_server_name)
        else:
            c = http.client.HTTPConnection(t.host, t.port, timeout=self._connect_timeout_s)
        try:
            c.connect()
        except (OSError, http.client.HTTPException):
            c.close()
            raise
        c.sock.settimeout(timeout)
        return c

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        """A connection to the current server, else the next that accepts one (a request
        that was not sent can go anywhere); ConnectionFailed if none does."""
        errors: dict[str, str] = {}
        for server in self.servers.round():
            try:
                return self._connect(server, timeout)
            except (OSError, http.client.HTTPException) as e:
                error = _transport_error(e, server)
                if len(self.servers) == 1:
                    raise error from None
                errors[server] = str(error)
                self.servers.failed(server, error)
        detail = "; ".join(f"{host_of(s)}: {m}" for s, m in errors.items())
        raise ConnectionFailed(f"Unable to connect to any of {len(errors)} API servers: "
                               f"{detail}", self.server)

    def _headers(self, accept: str, content_type: str | None, extra: dict | None) -> dict:
        headers = {"Accept": accept, "User-Agent": self.agent}
        if self.conn.token:
            headers["Authorization"] = f"Bearer {self.conn.token}"
        elif self.conn.username is not None and self.conn.password is not None:
            raw = f"{self.conn.username}:{self.conn.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        if content_type:
            headers["Content-Type"] = content_type
        if extra:
            headers.update(extra)
        return headers

    def url(self, path: str, params=None) -> str:
        query = _encode_params(params)
        return self.base_path + path + (f"?{query}" if query else "")

    def request(self, method: str, path: str, *, params=None, body=None,
                content_type: str | None = None, accept: str = JSON,
                headers: dict | None = None) -> Response:
        """Send one request and read the whole response; raises ApiError on >= 400."""
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else \
                json.dumps(body, separators=(",", ":")).encode()
            content_type = content_type or JSON
        hdrs = self._headers(accept, content_type, headers)
        timeout = self.timeout or DEFAULT_TIMEOUT_S
        stale_retry = True
        for _ in range(len(self.servers) + 1):  # each server once, plus one stale retry
            reused = self._http is not None and self._used
            if self._http is None:
                self._http = self._new_connection(timeout)
                self._used = False
            server = self.server  # the one just connected to (or kept alive)
            try:
                self._http.request(method, self.url(path, params), body=data, headers=hdrs)
                resp = self._http.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                self.close()
                error = e
                if reused and stale_retry:
                    # The server closed an idle kept-alive connection: the request did not
                    # reach it. Again on a fresh connection *to the same server*: if that
                    # fails, the server rather died under this request, and a write must
                    # not be repeated elsewhere.
                    stale_retry = False
                    try:
                        self._http = self._connect(server, timeout)
                        self._used = False
                        continue
                    except (OSError, http.client.HTTPException) as again:
                        error = again
            except (OSError, http.client.HTTPException) as e:
                self.close()
                error = e
            else:
                self._used = True
                if resp.will_close:
                    self.close()
                response = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                                    payload)
                if resp.status < 400:
                    return response
                error = ApiError.from_response(resp.status, payload,
                                               response.headers.get("content-type", ""))
                if resp.status not in GATEWAY_STATUSES:
                    raise error
                self.close()
                self.servers.failed(server, error)
                if not retry_on_next(method, Failure.GATEWAY) or server == self.server:
                    raise error
                continue
            self.servers.failed(server, error)
            if not retry_on_next(method, Failure.TRANSPORT) or server == self.server:
                break
        if isinstance(error, ApiError):
            raise error
        raise _transport_error(error, server) from None

    def close(self) -> None:
        if self._http is not None:
            try:
                self._http.close()
            except OSError:
                pass
            self._http = None
            self._used = False

    def get_json(self, path: str, params=None, accept: str = JSON):
        return self.request("GET", path, params=params, accept=accept).json()

    # -------------------------------------------------------------- resources

    def get(self, info: ResourceInfo, name: str, namespace: str | None = None, *,
            accept: str = JSON, params=None) -> dict:
        return self.get_json(resource_path(info, namespace, name), params, accept)

    def list(self, info: ResourceInfo, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None,
             accept: str = JSON, limit: int | None = None, continue_token: str | None = None,
             resource_version: str | None = None, params=None) -> dict:
        query = dict(params or {})
        query.update({"labelSelector": label_selector or None,
                      "fieldSelector": field_selector or None,
                      "limit": limit, "continue": continue_token or None,
                      "resourceVersion": resource_version})
        return self.get_json(resource_path(info, namespace), query, accept)

    def list_all(self, info: ResourceInfo, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 accept: str = JSON, params=None, chunk: int = LIST_CHUNK) -> dict:
        """List following `continue` tokens; items (or Table rows) of all pages merged."""
        result: dict | None = None
        token = None
        while True:
            page = self.list(info, namespace, label_selector=label_selector,
                             field_selector=field_selector, accept=accept, limit=chunk,
                             continue_token=token, params=params)
            if result is None:
                result = page
            else:
                key = "rows" if page.get("kind") == "Table" else "items"
                result.setdefault(key, [])
                result[key] = (result[key] or []) + (page.get(key) or [])
                result["metadata"] = page.get("metadata") or result.get("metadata")
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        if result is not None and result.get("metadata"):
            result["metadata"].pop("continue", None)
        return result or {}

    def create(self, info: ResourceInfo, obj: dict, namespace: str | None = None, *,
               dry_run: bool = False, params=None) -> dict:
        query = dict(params or {})
        if dry_run:
            query["dryRun"] = "All"
        return self.request("POST", resource_path(info, namespace), params=query,
                            body=obj).json()

    def replace(self, info: ResourceInfo, name: str, obj: dict, namespace: str | None = None,
                *, dry_run: bool = False, subresource: str | None = None) -> dict:
        query = {"dryRun": "All"} if dry_run else None
        return self.request("PUT", resource_path(info, namespace, name, subresource),
                            params=query, body=obj).json()

    def patch(self, info: ResourceInfo, name: str, patch, namespace: str | None = None, *,
              patch_type: str = "merge", dry_run: bool = False,
              subresource: str | None = None) -> dict:
        query = {"dryRun": "All"} if dry_run else None
        return self.request("PATCH", resource_path(info, namespace, name, subresource),
                            params=query, body=patch,
                            content_type=_PATCH_TYPES.get(patch_type, patch_type)).json()

    def delete(self, info: ResourceInfo, name: str, namespace: str | None = None, *,
               propagation_policy: str | None = None, grace_period: int | None = None,
               dry_run: bool = False) -> dict:
        options: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if dry_run:
            options["dryRun"] = ["All"]
        return self.request("DELETE", resource_path(info, namespace, name),
                            body=options).json()

    def watch(self, info: ResourceInfo, namespace: str | None = None, *,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, accept: str = JSON,
              timeout_seconds: int | None = None, bookmarks: bool = False) -> WatchStream:
        """Open a watch; iterate the result for events (`{"type", "object"}`)."""
        params = {"watch": "1", "resourceVersion": resource_version or None,
                  "labelSelector": label_selector or None,
                  "fieldSelector": field_selector or None,
                  "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        path = resource_path(info, namespace)
        for _ in range(len(self.servers)):
            c = self._new_connection(self.timeout)
            server = self.server
            try:
                c.request("GET", self.url(path, params),
                          headers=self._headers(accept, None, None))
                resp = c.getresponse()
            except (OSError, http.client.HTTPException) as e:
                c.close()
                error = _transport_error(e, server)
            else:
                if resp.status < 400:
                    return WatchStream(c, resp, server, on_broken=self.servers.failed)
                payload = resp.read()
                c.close()
                error = ApiError.from_response(resp.status, payload,
                                               resp.getheader("content-type", ""))
                if resp.status not in GATEWAY_STATUSES:
                    raise error
            self.servers.failed(server, error)
            if server == self.server:
                break  # no other server
        raise error

    def __repr__(self) -> str:
        more = f" (+{len(self.servers) - 1})" if len(self.servers) > 1 else ""
        return f"<RestClient {self.server}{more} context={self.conn.context or '-'}>"


def _encode_params(params) -> str:
    if not params:
        return ""
    items = params.items() if isinstance(params, dict) else params
    pairs = [(k, str(v)) for k, v in items if v is not None]
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
