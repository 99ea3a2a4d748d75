"""API errors as Kubernetes `Status` objects.

Everything the API server refuses is a `StatusError`; the HTTP layer turns it into a
`{"kind": "Status", ...}` body with the same code, reason and wording as kube-apiserver
(`pods "web" not found`), so kubectl and the official clients print what users expect.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    """One failing field of an Invalid error (metav1.StatusCause)."""

    field: str
    message: str  # "Invalid value: 70000: must be between 1 and 65535"
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    @property
    def text(self) -> str:
        return f"{self.field}: {self.message}"


def field_invalid(path: str, value, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueInvalid")


def field_required(path: str, detail: str = "") -> Cause:
    return Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired")


def field_not_supported(path: str, value, supported) -> Cause:
    values = ", ".join(f'"{s}"' for s in supported)
    return Cause(path, f"Unsupported value: {_show(value)}: supported values: {values}",
                 "FieldValueNotSupported")


def field_duplicate(path: str, value) -> Cause:
    return Cause(path, f"Duplicate value: {_show(value)}", "FieldValueDuplicate")


def field_forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def _show(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class StatusError(Exception):
    """An API error that becomes a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, *, kind: str = "",
                 name: str = "", group: str = "", causes: tuple[Cause, ...] = (),
                 retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = tuple(causes)
        self.retry_after = retry_after

    def to_status(self) -> dict:
        status: dict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            status["details"] = details
        return status

    def __repr__(self) -> str:
        return f"<StatusError {self.code} {self.reason}: {self.message}>"


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(plural, group)} "{name}" not found',
                       kind=plural, name=name, group=group)


def already_exists(plural: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists",
                       f'{_qualified(plural, group)} "{name}" already exists',
                       kind=plural, name=name, group=group)


def conflict(plural: str, name: str, detail: str, group: str = "") -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": '
                       f"{detail}", kind=plural, name=name, group=group)


def stale_version(plural: str, name: str, group: str = "") -> StatusError:
    return conflict(plural, name, "the object has been modified; please apply your changes to "
                    "the latest version and try again", group)


def invalid(kind: str, name: str, causes, group: str = "") -> StatusError:
    causes = tuple(causes)
    listing = ", ".join(c.text for c in causes)
    msg = f'{kind}{"." + group if group else ""} "{name}" is invalid: '
    msg += f"[{listing}]" if len(causes) > 1 else listing
    return StatusError(422, "Invalid", msg, kind=kind, name=name, group=group, causes=causes)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def too_large(limit_bytes: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge",
                       f"Request entity too large: limit is {limit_bytes}")


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media '
                       f'types include: application/json, application/yaml, '
                       f'application/vnd.kubernetes.protobuf, '
                       f'application/json-patch+json, application/merge-patch+json, '
                       f'application/strategic-merge-patch+json, application/apply-patch+yaml '
                       f'(got "{content_type}")')


def gone(message: str) -> StatusError:
    """A watch or list from a compacted resourceVersion (reason Expired, code 410)."""
    return StatusError(410, "Expired", message)


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)
