"""Errors raised by the API client.

Everything that goes wrong between meshctl (or a daemon) and the API server ends up as one of
these, so callers never see `ssl.SSLError`, `ConnectionRefusedError` or `http.client` internals:

- `ApiError`: the server answered with an error status; carries the decoded `Status` fields
  (code, reason, message, details) exactly as kube-apiserver sent them.
- `ConnectionFailed`: no answer at all (refused, DNS, TLS handshake, timeout).
- `ConfigError`: the kubeconfig is missing, unreadable or does not name a usable cluster.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base class of every client error."""


class ConfigError(ClientError):
    """A kubeconfig problem; the message says which file or entry and what to do."""


class ConnectionFailed(ClientError):
    """The server could not be reached or the TLS handshake failed."""

    def __init__(self, message: str, server: str = ""):
        super().__init__(message)
        self.server = server


# kube-apiserver's reasons for bare HTTP codes, used when a body is not a Status
# (a proxy in between, or a path the server does not route).
_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

# client-go's wording for the same case (k8s.io/apimachinery/pkg/api/errors.NewGenericServerResponse).
_MESSAGE_BY_CODE = {
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    403: "the server does not allow access to the requested resource",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    406: "the server was unable to respond with a content type that the client supports",
    409: "the server reported a conflict",
    410: "the server could not find the requested resource",
    413: "the server has rejected the request because it is too large",
    415: "the server was unable to respond with a content type that the client supports",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    500: "an error on the server has prevented the request from succeeding",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be "
         "processing the request",
}


class ApiError(ClientError):
    """An error response from the API server (a metav1.Status, or a bare HTTP error)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 status: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.status = status or {}

    @property
    def causes(self) -> list[dict]:
        return list(self.details.get("causes") or [])

    @classmethod
    def from_response(cls, code: int, body: bytes, content_type: str = "") -> "ApiError":
        """Decode an error response: a Status body if there is one, else the bare code."""
        import json

        status = None
        if body:
            try:
                decoded = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                decoded = None
            if isinstance(decoded, dict) and decoded.get("kind") == "Status":
                status = decoded
        if status is not None:
            return cls(
                int(status.get("code") or code),
                status.get("reason") or _REASON_BY_CODE.get(code, ""),
                status.get("message") or _MESSAGE_BY_CODE.get(code, f"unknown (HTTP {code})"),
                status.get("details") or {},
                status,
            )
        message = _MESSAGE_BY_CODE.get(code, f"the server responded with HTTP {code}")
        text = body.decode("utf-8", "replace").strip() if body else ""
        if text and code >= 500:
            # client-go includes the body for server errors: `an error on the server ("...")`.
            message = message.replace("the server", f'the server ("{text[:200]}")', 1) \
                if code != 500 else f'an error on the server ("{text[:200]}") has prevented ' \
                                    f'the request from succeeding'
        return cls(code, _REASON_BY_CODE.get(code, ""), message, {}, None)

    def __repr__(self) -> str:
        return f"<ApiError {self.code} {self.reason}: {self.message}>"


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, ApiError) and err.code == 404


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, ApiError) and err.code == 409 and err.reason == "Conflict"


def is_already_exists(err: BaseException) -> bool:
    return isinstance(err, ApiError) and err.reason == "AlreadyExists"
