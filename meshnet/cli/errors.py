"""meshctl's errors and how they are printed (kubectl's cmdutil.CheckErr wording).

- `CLIError`: a mistake in what was asked; printed as `error: <message>`, exit status 1.
- `ApiError` from the client: `Error from server (<Reason>): <context><message>`, where the
  context says which operation on which file failed (`error when creating "x.yaml": `).
- `ConnectionFailed`: printed as is (`The connection to the server ... was refused ...`).
"""

from __future__ import annotations

from meshnet.client.errors import ApiError, ClientError, ConfigError, ConnectionFailed


class CLIError(Exception):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Reported(Exception):
    """Errors were already printed (per object); exit with status 1 and print nothing more."""

    def __init__(self, exit_code: int = 1):
        super().__init__("errors reported")
        self.exit_code = exit_code


def api_error_text(err: ApiError, context: str = "") -> str:
    if err.reason == "Unauthorized" or err.code == 401:
        return f"error: You must be logged in to the server ({err.message})"
    if err.reason:
        return f"Error from server ({err.reason}): {context}{err.message}"
    return f"Error from server: {context}{err.message}"


def error_text(err: BaseException, context: str = "") -> str:
    """The one line (or block) kubectl would print for `err`."""
    if isinstance(err, ApiError):
        return api_error_text(err, context)
    if isinstance(err, ConnectionFailed):
        return str(err)
    if isinstance(err, ConfigError):
        return f"error: {err}"
    if isinstance(err, CLIError):
        return f"error: {context}{err.message}"
    if isinstance(err, ClientError):
        return f"error: {context}{err}"
    return f"error: {context}{err}"
