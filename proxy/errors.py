"""meshnet-proxy's errors. Start-up problems a user can fix are DaemonErrors (printed without a
traceback); the rest are recorded per service and never stop a sync."""

from __future__ import annotations

from meshnet.daemon import DaemonError


class ProxyError(Exception):
    """Something the proxy could not program; the message says what and where."""


class NetlinkError(ProxyError, DaemonError):
    """Adding or removing an address or link failed (usually: missing CAP_NET_ADMIN)."""


class BindError(ProxyError):
    """A listener could not be bound (the port is taken, or the address is not local)."""
