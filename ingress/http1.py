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
"""

from __future__ import annotations

import time
from email.utils import formatdate

SERVER_NAME = b"meshnet-ingress"

# RFC 9110 7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection). Lowercase bytes.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                        b"proxy-authorization"})
# Incoming forwarding headers are replaced, not trusted: a client must not be able to claim
# another address (see docs/ingress.md "trusted proxies").
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                       b"x-forwarded-port", b"x-real-ip", b"forwarded"})

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


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def upstream_request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], *,
                          client_ip: str, scheme: str, port: int, body: str,
                          upgrade: bytes | None) -> bytes:
    """The request head sent to a backend.

    body: "length" (Content-Length kept), "chunked" (re-chunked by the proxy) or "" (none).
    Host is forwarded unchanged (the backend sees the name the client asked for)."""
    named = connection_tokens(headers)
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    host = b""
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP or low in FORWARDED or low in named or low == b"expect":
            continue
        if low == b"content-length" and body != "length":
            continue
        if low == b"host":
            host = value
        out += (name, b": ", value, b"\r\n")
    ip = client_ip.encode()
    out += (b"X-Forwarded-For: ", ip, b"\r\nX-Real-IP: ", ip,
            b"\r\nX-Forwarded-Proto: ", scheme.encode(),
            b"\r\nX-Forwarded-Host: ", host,
            b"\r\nX-Forwarded-Port: ", str(port).encode(), b"\r\n")
    if body == "chunked":
        out.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]], *,
                  framing: str, keep_alive: bool, upgrade: bytes | None = None) -> bytes:
    """The response head sent to the client. framing: "length" (Content-Length kept),
    "chunked" (the proxy chunks), "close" (body until close) or "none" (no body)."""
    named = connection_tokens(headers)
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", reason or REASONS.get(status, b""), b"\r\n"]
    has_server = has_date = False
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP or low in named:
            continue
        if low == b"content-length" and framing not in ("length", "none"):
            continue
        if low == b"server":
            has_server = True
        elif low == b"date":
            has_date = True
        out += (name, b": ", value, b"\r\n")
    if not has_server:
        out += (b"Server: ", SERVER_NAME, b"\r\n")
    if not has_date:
        out += (b"Date: ", http_date(), b"\r\n")
    if framing == "chunked":
        out.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    elif not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def error_page(status: int, *, keep_alive: bool, head_only: bool = False,
               extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete small response in nginx's style."""
    reason = REASONS.get(status, b"Error")
    title = b"%d %b" % (status, reason)
    body = (b"<html>\r\n<head><title>%b</title></head>\r\n<body>\r\n<center><h1>%b</h1></center>"
            b"\r\n<hr><center>%b</center>\r\n</body>\r\n</html>\r\n" % (title, title, SERVER_NAME))
    headers = [(b"Content-Type", b"text/html"), (b"Content-Length", str(len(body)).encode()),
               *extra]
    head = response_head(status, reason, headers, framing="length", keep_alive=keep_alive)
    return head if head_only else head + body


def redirect(location: bytes, *, keep_alive: bool, head_only: bool = False) -> bytes:
    """308 keeps the method and body (RFC 9110 15.4.9); ingress-nginx uses 308 too."""
    return error_page(308, keep_alive=keep_alive, head_only=head_only,
                      extra=[(b"Location", location)])


def https_location(host: str, target: bytes, https_port: int) -> bytes:
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://{host}{port}".encode() + target
