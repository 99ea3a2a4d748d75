"""The proxy's shared state (`Proxy`: the published table, the pool, metrics) and `Exchange`,
one request/response carried from a client connection to a backend and back.

The Exchange is the only place that decides what a request gets: 503 before the first sync,
404 with no route, 308 to HTTPS for a TLS host reached over HTTP, 413 over the body limit,
503 for a Service without ready endpoints, 502 when no endpoint accepts a connection or the
backend fails before answering, 504 when it stays silent past the read timeout. Retries go to
the next endpoint on a failed connect (nothing was sent, so any method is safe), and once on a
pooled keep-alive connection the backend had closed, for idempotent requests without a body
(RFC 9110 9.2.2) -- what nginx's `proxy_next_upstream error` does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from bisect import bisect_left
from dataclasses import dataclass

from meshnet.ingress import http1
from meshnet.ingress.match import Route, RouteTable, match_normalized, normalize_host, \
    split_target
from meshnet.ingress.upstream import UpstreamConnection, UpstreamPool
from meshnet.deadlines import Deadlines
from meshnet.metrics import Registry

log = logging.getLogger("meshnet.ingress.proxy")
access_log = logging.getLogger("meshnet.ingress.access")

BUFFER_HIGH_WATER_BYTES = 256 * 1024
MAX_CONNECT_TRIES = 3
# Route lookups remembered per (Host, path); forgotten on every table swap, and all at once
# when this many accumulate (paths are the client's to choose).
ROUTE_CACHE_ENTRIES = 10_000
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
NO_FIELDS: dict[bytes, bytes] = {}
STATUS_TEXT = {status: str(status) for status in range(100, 600)}
_MISS = object()


@dataclass(frozen=True)
class ServerSettings:
    # nginx: large_client_header_buffers 4 8k -> a 32 KiB head; client_header_timeout 60s;
    # keepalive_timeout 75s; client_body_timeout 60s.
    max_header_bytes: int = 32 * 1024
    # Peers whose X-Forwarded-* headers are kept (ingress-nginx: use-forwarded-headers with
    # proxy-real-ip-cidr); everyone else's are replaced. CIDR strings.
    trusted_proxies: tuple[str, ...] = ()
    header_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0
    body_timeout_s: float = 60.0
    https_port: int = 443  # the port redirects point to


class Proxy:
    def __init__(self, settings: ServerSettings = ServerSettings(),
                 metrics: Registry | None = None):
        self.settings = settings
        self._table: RouteTable | None = None  # None until the first sync: answer 503
        # (Host, path) -> Route | None, for the current table (see route_for)
        self.routes: dict[tuple[bytes, bytes], Route | None] = {}
        # Whole request reads -> the Exchange fields their parse gave (server.py,
        # ClientConnection.data_received); a table swap leaves them: they are not routes.
        self.request_heads = http1.Memo()
        self.pool = UpstreamPool()
        self.deadlines = Deadlines()  # request heads due (server.ClientConnection.expire)
        self._trusted = tuple(ipaddress.ip_network(c, strict=False)
                              for c in settings.trusted_proxies)
        self.trusts_any = bool(self._trusted)  # is_trusted() can be true at all
        self.connections: set = set()
        self._rr: dict[tuple, int] = {}
        self._hosts: dict[bytes, str] = {}
        metrics = metrics or Registry()
        self.requests = metrics.counter(
            "meshnet_ingress_requests_total", "Requests answered, by Ingress, host and status.",
            ("ingress", "host", "status"))
        self.latency = metrics.histogram(
            "meshnet_ingress_request_duration_seconds",
            "Time from the request head to the end of the response.", ("ingress",))
        self.upstream_failures = metrics.counter(
            "meshnet_ingress_upstream_failures_total",
            "Failed backend connects and responses.", ("reason",))

    def __repr__(self) -> str:
        return f"<Proxy table={self.table!r} connections={len(self.connections)} {self.pool!r}>"

    @property
    def table(self) -> RouteTable | None:
        return self._table

    @table.setter
    def table(self, table: RouteTable | None) -> None:
        """Publish a routing table: requests matched from now on use it."""
        self._table = table
        self.routes = {}

    def route_for(self, host: bytes, path: bytes) -> Route | None:
        """match_normalized for a raw Host header and an origin-form path, cached per table."""
        key = (host, path)
        route = self.routes.get(key, _MISS)
        if route is _MISS:
            if len(self.routes) >= ROUTE_CACHE_ENTRIES:
                self.routes = {}
            route = self.routes[key] = match_normalized(
                self._table, self.normal_host(host), path.decode("latin-1"))
        return route

    def normal_host(self, raw: bytes) -> str:
        """normalize_host of a Host header, cached: a handful of names repeat endlessly."""
        host = self._hosts.get(raw)
        if host is None:
            if len(self._hosts) > 10_000:
                self._hosts.clear()
            host = self._hosts[raw] = normalize_host(raw.decode("latin-1"))
        return host

    def is_trusted(self, addr: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def pick(self, route: Route) -> tuple[tuple[str, int], ...]:
        """The endpoints in the order to try them: round robin per endpoint set."""
        eps = route.endpoints
        n = self._rr.get(eps, -1) + 1
        if len(self._rr) > 10_000:  # endpoint sets churn; forget old counters now and then
            self._rr.clear()
        self._rr[eps] = n
        start = n % len(eps)
        return eps[start:] + eps[:start]

    def count_rejected(self, status: int) -> None:
        self.requests.inc("", "", str(status))


class Exchange:
    __slots__ = ("client", "proxy", "method", "target", "host", "rest", "special", "version",
                 "keep_alive", "upgrade", "framing", "content_length", "request_done",
                 "body_sent", "route", "upstream", "response_started", "response_framing",
                 "client_framing", "status", "finished", "gone", "retried", "_buffer",
                 "_buffered", "_t0")

    def __init__(self, client, method: bytes, target: bytes, host: bytes | None, rest: list,
                 version: str, keep_alive: bool):
        self.client = client
        self.proxy: Proxy = client.proxy
        self.method = method
        self.target = target
        self.host = host  # the Host header as it came
        self.rest = rest  # the end-to-end headers, forwarded unchanged
        self.version = version
        self.keep_alive = keep_alive
        self._t0 = time.monotonic()
        # Set by the caller for requests with more than Host to handle (a body, Upgrade,
        # Expect, X-Forwarded-* from a trusted peer): most requests keep these defaults.
        self.special: dict[bytes, bytes] = NO_FIELDS  # the headers the proxy handles
        self.upgrade: bytes | None = None
        self.framing = ""  # request body: "chunked", "length" or ""
        self.content_length = 0
        self.request_done = False
        self.body_sent = 0
        self.route: Route | None = None
        self.upstream: UpstreamConnection | None = None
        self.response_started = False
        self.response_framing = ""  # what the backend sends: length/chunked/close/none
        self.client_framing = ""  # what the client gets
        self.status = 0
        self.finished = False
        self.gone = False
        self.retried = False
        self._buffer: list[bytes] | None = None  # body received before a backend is attached
        self._buffered = 0

    def __repr__(self) -> str:
        return (f"<Exchange {self.method.decode()} {self.target[:60].decode('latin-1')} "
                f"status={self.status or '-'} upstream={self.upstream!r}>")

    # -- start: route and connect --------------------------------------------------------------

    def start(self) -> None:
        """Route, then take a pooled connection and send the head at once -- no task, no
        coroutine on the hot path. Answers made here (404, 308, 503, ...) are written on the
        next loop turn: start() runs inside the parser's callback, before the request's end
        has been parsed, and the keep-alive decision needs that end."""
        proxy = self.proxy
        table = proxy.table
        if table is None:
            return self._reply_soon(503)
        target = self.target
        if target[:1] == b"/":  # origin-form, nearly every request
            q = target.find(b"?")
            key = (self.host or b"", target if q < 0 else target[:q])
            route = proxy.routes.get(key, _MISS)  # Proxy.route_for, its hit inlined
            if route is _MISS:
                route = proxy.route_for(*key)
        else:
            route = match_normalized(table, self.normal_host(),
                                     split_target(target.decode("latin-1"))[0])
        self.route = route
        if route is None:
            return self._reply_soon(404)
        if route.ssl_redirect and self.client.scheme == "http":
            location = http1.https_location(self.normal_host(), self.target,
                                            proxy.settings.https_port)
            data = http1.redirect(location, keep_alive=self.keep_alive,
                                  head_only=self.method == b"HEAD",
                                  http10=self.version == "1.0")
            asyncio.get_running_loop().call_soon(self.reply, 308, data)
            return
        if route.max_body_bytes and self.content_length > route.max_body_bytes:
            return self._reply_soon(413)
        if not route.endpoints:
            return self._reply_soon(503)
        addrs = route.endpoints
        if len(addrs) > 1:
            addrs = proxy.pick(route)
        conn = proxy.pool.take_idle(addrs[0])
        if conn is not None:
            return self._attach(conn)
        asyncio.get_running_loop().create_task(self._connect(addrs[:MAX_CONNECT_TRIES]))

    def normal_host(self) -> str:
        return self.proxy.normal_host(self.host or b"")

    def _reply_soon(self, status: int) -> None:
        asyncio.get_running_loop().call_soon(self.reply_error, status)

    async def _connect(self, addrs) -> None:
        for addr in addrs:
            try:
                conn = await self.proxy.pool.acquire(addr, self.route.connect_timeout_s)
            except (OSError, asyncio.TimeoutError) as exc:
                self.proxy.upstream_failures.inc("connect")
                log.warning("connect to %s:%d for %s failed: %s", addr[0], addr[1],
                            self.route.service, exc or type(exc).__name__)
                continue
            if self.gone:
                self.proxy.pool.release(conn)
                return
            self._attach(conn)
            return
        self.reply_error(502)

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        conn.start(self, self.method == b"HEAD", self.route.read_timeout_s,
                   self.route.send_timeout_s)
        special = self.special
        host = self.host
        client = self.client
        if client.trusted:  # a proxy in front of us: its X-Forwarded-* are the truth
            _, scheme, port = client.forwarded
            xff, real_ip = http1.forwarded_for(special.get(b"x-forwarded-for"),
                                               client.client_ip, self.proxy.is_trusted)
            added = http1.forwarded_headers(
                xff, real_ip, special.get(b"x-forwarded-proto") or scheme,
                special.get(b"x-forwarded-host") or host or b"",
                special.get(b"x-forwarded-port") or port)
        else:  # the same for every request of the connection that names the same host
            last_host, added = client.forwarded_cache
            if last_host != host or not added:
                ip, scheme, port = client.forwarded
                added = http1.forwarded_headers(ip, ip, scheme, host or b"", port)
                client.forwarded_cache = (host, added)
        if special is not NO_FIELDS:
            added += http1.framing_headers(
                special.get(b"content-length") if self.framing == "length" else None,
                self.framing == "chunked", self.upgrade)
        head = http1.upstream_request_head(self.method, self.target, self.rest, host, added)
        if self._buffer is None:
            conn.transport.write(head)
        else:
            conn.transport.write(head + b"".join(self._buffer))
            self._buffer, self._buffered = None, 0
            client.resume_reading("buffer")

    # -- request body, from the client --------------------------------------------------------------

    def on_request_body(self, data: bytes) -> None:
        self.body_sent += len(data)
        limit = self.route.max_body_bytes if self.route else 0
        if limit and self.body_sent > limit:
            if self.upstream is not None:
                self.upstream.abort()
                self.upstream = None
            return self.client.reject(413)
        if self.framing == "chunked":
            data = http1.chunk(data)
        if self.upstream is not None:
            self.upstream.write(data)
        elif not self.finished:
            if self._buffer is None:
                self._buffer = []
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered > BUFFER_HIGH_WATER_BYTES:
                self.client.pause_reading("buffer")

    def on_request_end(self) -> None:
        self.request_done = True
        if self.framing == "chunked":
            if self.upstream is not None:
                self.upstream.write(http1.LAST_CHUNK)
            elif not self.finished:
                if self._buffer is None:
                    self._buffer = []
                self._buffer.append(http1.LAST_CHUNK)

    # -- response, from the backend ---------------------------------------------------------------

    def on_response_head(self, conn, status: int, reason: bytes, special: dict, rest: list
                         ) -> bytes:
        """special, rest: the backend's head as http1.split_headers splits it. Returns the
        head written to the client."""
        self.status = status
        self.response_started = True
        if self.method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
            framing = "none"
        elif b"transfer-encoding" in special:
            framing = "chunked"
        elif b"content-length" in special:
            framing = "length"
        else:
            framing = "close"
        self.response_framing = framing
        if framing in ("chunked", "close"):
            framing = "chunked" if self.version == "1.1" else "close"
        self.client_framing = framing
        if framing == "close":
            self.keep_alive = False
        upgrade = special.get(b"upgrade") if status == 101 else None
        head = http1.response_head(status, reason, rest, special, framing=framing,
                                   keep_alive=self.keep_alive, upgrade=upgrade,
                                   http10=self.version == "1.0")
        self.client.write(head)
        return head

    def on_whole_response(self, conn: UpstreamConnection, status: int, data: bytes) -> None:
        """A complete response framed by Content-Length, its head already rewritten for this
        client (the upstream's memo of responses): written in one piece."""
        self.status = status
        self.response_started = True
        self.response_framing = self.client_framing = "length"
        self.client.write(data)
        self.on_response_end(conn, True)

    def on_response_body(self, data: bytes) -> None:
        if self.client_framing == "chunked":
            data = http1.chunk(data)
        self.client.write(data)

    def on_response_end(self, conn: UpstreamConnection, reusable: bool) -> None:
        if self.client_framing == "chunked":
            self.client.write(http1.LAST_CHUNK)
        self.upstream = None
        if reusable and self.request_done and not self.gone:
            self.proxy.pool.release(conn)
        else:
            conn.transport.close()
        self._finish()

    def on_response_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        if self.status != 101:
            return conn.abort()
        if rest:
            self.client.write(rest)
        conn.become_tunnel(self.client.transport)
        self.client.become_tunnel(conn.transport)
        self._finish(tunnel=True)

    def on_upstream_failed(self, conn: UpstreamConnection, message: str, *,
                           before_response: bool, timeout: bool = False) -> None:
        self.upstream = None
        if self.gone:
            return
        self.proxy.upstream_failures.inc("timeout" if timeout else "response")
        if before_response and conn.reused and not self.retried and self.body_sent == 0 \
                and self.framing == "" and self.method in IDEMPOTENT and not timeout:
            # A pooled connection the backend closed as we reused it: once more, fresh.
            self.retried = True
            asyncio.get_running_loop().create_task(self._connect(self.proxy.pick(self.route)))
            return
        log.warning("%s %s -> %s: %s", self.method.decode(), self.target[:200].decode("latin-1"),
                    self.route.service if self.route else "-", message)
        if before_response:
            self.reply_error(504 if timeout else 502)
        else:
            self.client.transport.abort()  # a truncated response must not look complete
            self._finish()

    def client_gone(self) -> None:
        self.gone = True
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None

    # -- answers made here ---------------------------------------------------------------------

    def reply_error(self, status: int) -> None:
        self.reply(status, http1.error_page(status, keep_alive=self.keep_alive,
                                            head_only=self.method == b"HEAD",
                                            http10=self.version == "1.0"))

    def reply(self, status: int, data: bytes) -> None:
        self.status = status
        self.response_started = True
        self.client.write(data)
        self._finish()

    def _finish(self, tunnel: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        route = self.route
        ingress = route.ingress if route else ""
        # Counter.inc inlined: a call with *labels cost more than the rest of this method.
        key = (ingress, route.host if route else "", STATUS_TEXT.get(self.status) or
               str(self.status))
        proxy = self.proxy
        counts = proxy.requests.values
        counts[key] = counts.get(key, 0.0) + 1.0
        elapsed = time.monotonic() - self._t0
        # Histogram.observe inlined, as the counter above.
        latency = proxy.latency
        row = latency.series.get((ingress,)) or latency.row(ingress)
        buckets = latency.buckets
        index = bisect_left(buckets, elapsed)
        if index < len(buckets):
            row[index] += 1
        row[-2] += elapsed
        row[-1] += 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info('%s "%s %s HTTP/%s" %d host=%s ingress=%s service=%s %.3fs',
                            self.client.client_ip, self.method.decode(),
                            self.target[:500].decode("latin-1"), self.version, self.status,
                            self.normal_host(), ingress or "-", route.service if route else "-",
                            elapsed)
        if not tunnel:
            self.client.exchange_finished(self, self.keep_alive)
