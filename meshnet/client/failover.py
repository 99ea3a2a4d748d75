"""Several API servers behind one client: which one to use, and when to move to the next.

Theory of operation
-------------------
A kubeconfig cluster (the `meshnet.io/servers` extension) or a `--server a,b,c` flag may name
several API servers sharing one store (`meshnet-apiserver`s on one etcd). A client talks to one
of them at a time, the *current* one, and sticks to it while it answers: one keep-alive pool,
one TLS session, watches and requests on the same server. When it fails, the client moves on:

- the connection could not be made (refused, unreachable, connect timeout, TLS handshake): the
  request never reached a server, so it goes to the next server at once, whatever its verb;
- the connection broke after the request was sent, or the answer was 502/503/504 (a proxy or
  load balancer in between that lost its backend, a server shutting down): only reads (GET,
  which includes watches) are sent again to the next server. A write may already have been
  applied, so it is not repeated: the caller gets the error as with a single server (and
  retries through its own loop, which sees AlreadyExists/Conflict if it was applied), and its
  *next* request goes to the next server. client-go retries only GETs after a reset for the
  same reason (rest/request.go, IsRetryableError);
- any other answer, 4xx and 500 included, is the cluster's verdict and is returned as is.

A request tries each server at most once (one round, starting at the current one). The current
server changes only when the current one fails, so concurrent requests failing on the same
server move the client on once, not once each. resourceVersions are global (etcd revisions),
so an informer resumes its watch on the next server from the last version it saw; a 410 there
means a relist, as on one server.

Everything here is pure: the clients (`aio.py`, `rest.py`) do the I/O and ask this module.
"""

from __future__ import annotations

import enum
import logging
import urllib.parse
from typing import Iterable

log = logging.getLogger("meshnet.client")

# kubeconfig: clusters[].cluster.extensions[] entry naming the other API servers. kubectl and
# the official clients keep and ignore unknown extensions (minikube writes one per cluster).
SERVERS_EXTENSION = "meshnet.io/servers"
GATEWAY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Failure(enum.Enum):
    CONNECT = "connect"      # no connection: the request was not sent
    TRANSPORT = "transport"  # sent, then the connection broke or timed out
    GATEWAY = "gateway"      # a 502/503/504 answer


def retry_on_next(method: str, failure: Failure) -> bool:
    """May a request that failed this way on one server be sent to the next one?"""
    if failure is Failure.CONNECT:
        return True
    return method.upper() in IDEMPOTENT_METHODS


def split_servers(value: str | Iterable[str]) -> tuple[str, ...]:
    """`https://a:6443,https://b:6443` (or a list): trimmed, trailing `/` dropped, duplicates
    removed, order kept."""
    items = value.split(",") if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        url = str(item).strip().rstrip("/")
        if url and url not in out:
            out.append(url)
    return tuple(out)


def host_of(server: str) -> str:
    """`https://10.0.0.1:6443/prefix` -> `10.0.0.1:6443`, as errors name servers."""
    return urllib.parse.urlsplit(server).netloc or server


class ServerRotation:
    """The servers of one client and which is current. Not thread-safe; one per client."""

    def __init__(self, servers: Iterable[str]):
        self.servers = split_servers(servers)
        if not self.servers:
            raise ValueError("no API server given")
        self._current = 0
        self.failovers = 0

    def __repr__(self) -> str:
        return (f"<ServerRotation current={self.current} of {len(self.servers)} "
                f"failovers={self.failovers}>")

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def current(self) -> str:
        return self.servers[self._current]

    def round(self) -> tuple[str, ...]:
        """Every server once, the current one first."""
        i = self._current
        return self.servers[i:] + self.servers[:i]

    def failed(self, server: str, reason: object = "") -> None:
        """`server` failed; if it is still the current one, the next becomes current."""
        if len(self.servers) == 1 or server != self.current:
            return
        self._current = (self._current + 1) % len(self.servers)
        self.failovers += 1
        log.info("API server %s failed (%s); switching to %s", host_of(server),
                    reason or "no answer", host_of(self.current))
