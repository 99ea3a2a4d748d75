"""HTTP/1.1 message heads the proxy writes: pure functions over header lists, no I/O.

The parsing itself is httptools (llhttp, the parser of Node.js): it already refuses the
request-smuggling shapes of RFC 9112 section 6.3 -- Content-Length together with
Transfer-Encoding, duplicate Content-Length, a Transfer-Encoding other than a final `chunked`,
obs-fold continuation lines, bad chunk sizes, bare LF line ends -- so a message that reaches
these functions has one unambiguous framing. What is left here is RFC 9110 section 7.6.1:
hop-by-hop headers (and those named by `Connection`) are never forwarded; the framing
headers are rewritten for the hop they are sent on.

Measured (bench/bench_ingress_parsers.py, a 261-byte browser-like request head, parser
created per request): httptools 3.4 us, h11 45.9 us -- 13x, which is why it is httptools.
Cheaper still is not parsing at all: `Memo` keeps what whole messages parsed into, by their
bytes, for the client and backend connections to look up before they parse (server.py,
upstream.py).
"""

from __future__ import annotations

import time
from email.utils import formatdate

SERVER_NAME = b"meshnet-ingress"

# RFC 9110 7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection). Lowercase bytes.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                        b"proxy-authorization"})
# Incoming forwarding headers are replaced unless the peer is a trusted proxy (see
# `forwarded_for` and docs/ingress.md "trusted proxies").
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                       b"x-forwarded-port", b"x-real-ip", b"forwarded"})
# The headers the proxy reads or writes itself; all others are forwarded as they came.
REQUEST_SPECIAL = HOP_BY_HOP | FORWARDED | {b"host", b"content-length", b"expect"}
RESPONSE_SPECIAL = HOP_BY_HOP | {b"content-length", b"server", b"date"}
# Connection tokens that are options, not names of headers to drop.
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})

REASONS = {200: b"OK", 308: b"Permanent Redirect", 400: b"Bad Request", 404: b"Not Found",
           408: b"Request Timeout", 413: b"Content Too Large", 431:
           b"Request Header Fields Too Large", 500: b"Internal Server Error",
           501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
           504: b"Gateway Timeout", 505: b"HTTP Version Not Supported"}

_date_cache = [0, b""]


def http_date() -> bytes:
    """The Date header value, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


class Memo(dict):
    """Whole messages, by their bytes, -> what parsing them gave (Proxy.request_heads,
    UpstreamPool.responses): peers repeat themselves byte for byte, and a dict lookup costs a
    fraction of a parse. Remembering costs a few thousand instructions a message, though;
    when messages stop repeating -- it fills with fewer hits than entries -- it rests for
    REST_MESSAGES messages, in which the callers neither look up nor remember. The callers
    (ClientConnection and UpstreamConnection.data_received) do the lookup inline -- count
    down `resting`, `get`, count `hits` -- as a method it would be one more Python call on
    every request.

    Bounded: messages over MAX_MESSAGE_BYTES are not kept, and at MAX_ENTRIES all are dropped
    (the keys are the peers' to choose): at most about 2 MiB."""

    __slots__ = ("hits", "resting")
    MAX_MESSAGE_BYTES = 4096
    MAX_ENTRIES = 256
    REST_MESSAGES = 16 * MAX_ENTRIES

    def __init__(self):
        super().__init__()
        self.hits = 0  # lookups found since the last time it filled (callers count them)
        self.resting = 0  # messages still to let pass (callers count them down)

    def __repr__(self) -> str:
        return f"<Memo entries={len(self)} hits={self.hits} resting={self.resting}>"

    def remember(self, message: bytes, value) -> None:
        if len(message) > self.MAX_MESSAGE_BYTES:
            return
        if len(self) >= self.MAX_ENTRIES:
            if self.hits < len(self):
                self.resting = self.REST_MESSAGES
            self.clear()
            self.hits = 0
        self[message] = value


def split_headers(headers: list[tuple[bytes, bytes]], special_names: frozenset[bytes]
                  ) -> tuple[dict[bytes, bytes], list[tuple[bytes, bytes]]]:
    """One pass over a head (one pass, not one per header looked up): ({lowercase name:
    value} of the `special_names` present -- the first occurrence, Connection values
    joined --, the other headers in order). Headers the Connection header names are
    hop-by-hop too (RFC 9110 7.6.1) and are dropped. Request heads; a response head is split
    the same way line by line as it is parsed (upstream.UpstreamConnection.on_header), which
    spares a second loop over its headers."""
    special: dict[bytes, bytes] = {}
    rest = []
    for item in headers:
        low = item[0].lower()
        if low in special_names:
            if low not in special:
                special[low] = item[1]
            elif low == b"connection":
                special[low] += b"," + item[1]
        else:
            rest.append(item)
    return special, drop_connection_named(special, rest)


def drop_connection_named(special: dict[bytes, bytes], rest: list[tuple[bytes, bytes]]
                          ) -> list[tuple[bytes, bytes]]:
    """rest without the headers the Connection header (in special) names: they are
    hop-by-hop too (RFC 9110 7.6.1)."""
    connection = special.get(b"connection")
    if connection is not None and connection.lower() not in _CONNECTION_OPTIONS:
        named = {t.strip().lower() for t in connection.split(b",")} - _CONNECTION_OPTIONS
        if named:
            return [h for h in rest if h[0].lower() not in named]
    return rest


def forwarded_for(incoming: bytes | None, peer: str, trusted) -> tuple[bytes, bytes]:
    """(X-Forwarded-For, X-Real-IP) for a request from `peer`, as nginx's realip module with
    `real_ip_recursive on`: a trusted peer's X-Forwarded-For is kept and the peer appended;
    the real IP is the rightmost address not in a trusted network (the leftmost if all are).
    `trusted`: a predicate over an address string."""
    if not incoming:
        return peer.encode(), peer.encode()
    hops = [h.strip() for h in incoming.decode("latin-1").split(",") if h.strip()]
    real = hops[0] if hops else peer
    for hop in reversed(hops):
        if not trusted(hop):
            real = hop
            break
    return (incoming + b", " + peer.encode()), real.encode()


def upstream_request_head(method: bytes, target: bytes, rest: list[tuple[bytes, bytes]],
                          host: bytes | None, added: bytes) -> bytes:
    """The request head sent to a backend: `rest` (end-to-end headers, from split_headers)
    as they came, Host unchanged (the backend sees the name the client asked for), and
    `added`: the lines of forwarded_headers and framing_headers."""
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    if host is not None:
        out += (b"Host: ", host, b"\r\n")
    for name, value in rest:
        out += (name, b": ", value, b"\r\n")
    out += (added, b"\r\n")
    return b"".join(out)


def forwarded_headers(xff: bytes, real_ip: bytes, proto: bytes, host: bytes, port: bytes
                      ) -> bytes:
    """The X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host and
    X-Forwarded-Port lines."""
    return (b"X-Forwarded-For: %b\r\nX-Real-IP: %b\r\nX-Forwarded-Proto: %b\r\n"
            b"X-Forwarded-Host: %b\r\nX-Forwarded-Port: %b\r\n"
            % (xff, real_ip, proto, host, port))


def framing_headers(content_length: bytes | None, chunked: bool, upgrade: bytes | None
                    ) -> bytes:
    """The request's framing on the hop to the backend, and Upgrade."""
    out = b""
    if content_length is not None:
        out += b"Content-Length: " + content_length + b"\r\n"
    elif chunked:
        out += b"Transfer-Encoding: chunked\r\n"
    if upgrade is not None:
        out += b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n"
    return out


def response_head(status: int, reason: bytes, rest: list[tuple[bytes, bytes]],
                  special: dict[bytes, bytes], *, framing: str, keep_alive: bool,
                  upgrade: bytes | None = None, http10: bool = False) -> bytes:
    """The response head sent to the client: `rest` and `special` as split_headers made them
    from the backend's head. framing: "length" (Content-Length kept), "chunked" (the proxy
    chunks), "close" (body until close) or "none" (no body). Server and Date are the
    backend's when it sent them. http10: the client speaks HTTP/1.0, whose connections close
    after a response unless it says `Connection: keep-alive` (RFC 9112 9.3)."""
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", reason or REASONS.get(status, b""),
           b"\r\nServer: ", special.get(b"server", SERVER_NAME),
           b"\r\nDate: ", special.get(b"date") or http_date(), b"\r\n"]
    for name, value in rest:
        out += (name, b": ", value, b"\r\n")
    if framing == "chunked":
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif framing in ("length", "none"):
        length = special.get(b"content-length")
        if length is not None:
            out += (b"Content-Length: ", length, b"\r\n")
    if upgrade is not None:
        out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    elif not keep_alive:
        out.append(b"Connection: close\r\n")
    elif http10:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def error_page(status: int, *, keep_alive: bool, head_only: bool = False,
               extra: list[tuple[bytes, bytes]] = (), http10: bool = False) -> bytes:
    """A complete small response in nginx's style."""
    reason = REASONS.get(status, b"Error")
    title = b"%d %b" % (status, reason)
    body = (b"<html>\r\n<head><title>%b</title></head>\r\n<body>\r\n<center><h1>%b</h1></center>"
            b"\r\n<hr><center>%b</center>\r\n</body>\r\n</html>\r\n" % (title, title, SERVER_NAME))
    head = response_head(status, reason, [(b"Content-Type", b"text/html"), *extra],
                         {b"content-length": str(len(body)).encode()}, framing="length",
                         keep_alive=keep_alive, http10=http10)
    return head if head_only else head + body


def redirect(location: bytes, *, keep_alive: bool, head_only: bool = False,
             http10: bool = False) -> bytes:
    """308 keeps the method and body (RFC 9110 15.4.9); ingress-nginx uses 308 too."""
    return error_page(308, keep_alive=keep_alive, head_only=head_only,
                      extra=[(b"Location", location)], http10=http10)


def https_location(host: str, target: bytes, https_port: int) -> bytes:
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://{host}{port}".encode() + target
