"""Speaking etcd's JSON gateway: the store URL, TLS, base64 keys, ranges, transport errors.

The gateway (`/v3/...` on etcd's client port, in every etcd >= 3.3) is etcd's gRPC API as
JSON over HTTP/1.1: bytes travel base64'd, int64s as strings, and a gRPC status comes back as
{"code", "message"} with an HTTP error status.
"""

from __future__ import annotations

import base64
import ssl
from urllib.parse import parse_qs, urlsplit

from .base import StoreError

DEFAULT_PREFIX = "/meshnet"
CONNECT_TIMEOUT_S = 2.0
GRPC_UNAVAILABLE = 14
GRPC_OUT_OF_RANGE = 11  # etcd's "required revision has been compacted / is a future revision"


class GatewayError(StoreError):
    def __init__(self, endpoint: str, path: str, code: int, message: str):
        super().__init__(f"etcd {endpoint}{path}: {message} (gRPC code {code})")
        self.code = code
        self.message = message


class Retryable(Exception):
    """A transport failure worth trying on the next endpoint."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def range_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (b"\\0" = to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def tls_refusal(exc: BaseException, endpoint: str) -> StoreError | None:
    """A TLS failure as a StoreError saying which flag to fix, or None for anything else.
    These are configuration errors: trying other endpoints or again cannot help."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    if isinstance(cause, ssl.SSLCertVerificationError):
        # aiohttp's ClientConnectorCertificateError is one too, wrapping ssl's.
        cause = getattr(cause, "certificate_error", cause)
        return StoreError(f"etcd {endpoint}: its certificate is not trusted "
                          f"({getattr(cause, 'verify_message', None) or cause}); "
                          "--etcd-cafile must name the CA that "
                          "signed etcd's --cert-file, and the certificate must name the host")
    reason = cause.reason or str(cause)
    if "CERTIFICATE" in reason:  # BAD_CERTIFICATE, CERTIFICATE_REQUIRED, UNKNOWN_CA alerts
        return StoreError(f"etcd {endpoint} refused the TLS connection ({reason}): with "
                          "--client-cert-auth it needs --etcd-certfile/--etcd-keyfile, a client "
                          "certificate signed by a CA in its --trusted-ca-file")
    return StoreError(f"etcd {endpoint}: TLS failed ({reason})")


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """`etcd://host:port[,host:port...][?prefix=/p]` -> (["http://host:port", ...], prefix);
    `etcds://...` the same with https (TLS: see `tls_context`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("etcd", "etcds") or parts.path not in ("", "/") or parts.fragment:
        raise StoreError(f"store URL {url!r}: expected etcd[s]://host:port[,host:port...]"
                         f"[?prefix={DEFAULT_PREFIX}]")
    http = "https" if parts.scheme == "etcds" else "http"
    endpoints = []
    for member in parts.netloc.split(","):
        host, sep, port = member.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StoreError(f"store URL {url!r}: endpoint {member!r} is not host:port "
                             "(e.g. 127.0.0.1:2379)")
        endpoints.append(f"{http}://{host}:{port}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"prefix"}
    if unknown:
        raise StoreError(f"store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                         "the only option is prefix")
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1].rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise StoreError(f"store URL {url!r}: prefix {prefix!r} must start with '/'")
    return endpoints, prefix


def tls_context(ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None) -> ssl.SSLContext:
    """The client side of TLS to etcd, from kube-apiserver's --etcd-cafile (the CA that
    signed etcd's --cert-file; default: the system's CAs), --etcd-certfile and
    --etcd-keyfile (a client certificate for etcd's --client-cert-auth)."""
    if (cert_file is None) != (key_file is None):
        raise StoreError("--etcd-certfile and --etcd-keyfile go together: give both (a client "
                         "certificate and its key) or neither")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"--etcd-cafile {ca_file}: cannot load it as PEM CA certificates: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise StoreError(f"--etcd-certfile {cert_file} / --etcd-keyfile {key_file}: cannot "
                             f"load them as a PEM certificate and its private key: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return context
