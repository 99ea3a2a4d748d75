"""Errors of meshnet-dns. Third-party exceptions (dnslib, OSError) are translated at the
boundary they cross: malformed packets become FORMERR in `protocol.py`, upstream failures
become `ForwardError` in `forward.py`, bind failures become `DaemonError` in `main.py`."""

from __future__ import annotations


class DnsError(Exception):
    """Base class for meshnet-dns errors."""


class ForwardError(DnsError):
    """No upstream gave a usable answer in time (the client gets SERVFAIL)."""


class Overloaded(ForwardError):
    """Too many questions in flight upstream (the client gets REFUSED)."""


class ConfigError(DnsError):
    """A bad flag value: the message names the flag and what is expected."""


class WireError(DnsError):
    """A message that does not parse: says what is wrong and at which byte offset (the query
    gets FORMERR; an upstream answer is ignored, as if it never came)."""
