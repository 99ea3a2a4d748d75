"""What the TCP and UDP relays share: the published table, balancers, options and metrics.

`Forwarding.table` is the one attribute the sync loop swaps to publish a new table. A relay
reads it once, when a connection (or UDP flow) starts, and keeps the `Route` it got: that is
what lets established connections outlive any number of swaps.

`FlowControl` is the one helper for pausing reading on a transport. Reading is paused while
any reason holds ("connecting": no upstream yet; "peer-full": the other side's write buffer is
over its high-water mark) and resumed when the last reason goes (encode/uvicorn's
flow_control.py does this for HTTP).

Connect budgets are kept in a `meshnet.deadlines.Deadlines` (one loop timer for all
connections being connected instead of one per connection).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

from meshnet.deadlines import Deadlines
from meshnet.metrics import Registry
from meshnet.proxy.balancer import Balancer
from meshnet.proxy.table import ProxyTable, Route

# Connect budget per new connection: kube-proxy's userspace proxier tried endpoints with
# timeouts of 250 ms, 500 ms, 1 s, 2 s; we try up to three endpoints within two seconds.
CONNECT_ATTEMPTS = 3
CONNECT_BUDGET_S = 2.0
UDP_IDLE_TIMEOUT_S = 30.0
# Fine below 100 ms, where the programming-latency target (p99 < 100 ms) is judged.
SYNC_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                  0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Options:
    connect_attempts: int = CONNECT_ATTEMPTS
    connect_budget_s: float = CONNECT_BUDGET_S
    udp_idle_timeout_s: float = UDP_IDLE_TIMEOUT_S


class ProxyMetrics:
    def __init__(self, registry: Registry | None = None):
        r = self.registry = registry or Registry()
        self.connections = r.counter("meshnet_proxy_connections_total",
                                     "Connections (TCP) and flows (UDP) accepted, per service "
                                     "port.", ["service"])
        self.active = r.gauge("meshnet_proxy_active_connections",
                              "Connections and UDP flows open now.", ["service"])
        self.bytes = r.counter("meshnet_proxy_bytes_total",
                               "Bytes relayed, counted when a connection or flow ends.",
                               ["service", "direction"])
        self.errors = r.counter("meshnet_proxy_errors_total",
                                "Forwarding errors: no_endpoints, connect_failed "
                                "(an endpoint refused or timed out), exhausted (the retry "
                                "budget ran out).", ["service", "reason"])
        self.sync_duration = r.histogram("meshnet_proxy_sync_duration_seconds",
                                         "Time to compile, diff and apply one sync.",
                                         buckets=SYNC_BUCKETS_S)
        self.programming_latency = r.histogram(
            "meshnet_proxy_network_programming_latency_seconds",
            "From a Service or Endpoints change reaching the proxy to the table swap that "
            "carries it.", buckets=SYNC_BUCKETS_S)
        self.listeners = r.gauge("meshnet_proxy_listeners", "Listeners bound.", ["protocol"])
        self.lb_candidates = r.gauge("meshnet_proxy_lb_candidate_nodes",
                                     "Nodes this proxy sees as able to announce LoadBalancer "
                                     "IPs (Ready, with a live proxy lease).")
        self.lb_announced = r.gauge("meshnet_proxy_lb_announced_ips",
                                    "LoadBalancer IPs this node announces on its uplink.")
        self.sync_errors = r.counter("meshnet_proxy_sync_errors_total",
                                     "Services that could not be fully programmed.",
                                     ["reason"])


class ServiceCounters:
    """The TCP connection metrics of one service label, updated with two calls per connection
    (`opened`, `closed`) instead of five `Counter.inc` calls: the label tuples are made once
    here and the counters' dicts are updated in place, which is all `Counter.inc` does."""

    __slots__ = ("connections", "active", "bytes", "errors", "service", "one", "to_endpoint",
                 "to_client")

    def __init__(self, metrics: ProxyMetrics, service: str):
        self.connections = metrics.connections.values
        self.active = metrics.active.values
        self.bytes = metrics.bytes.values
        self.errors = metrics.errors
        self.service = service
        self.one = (service,)
        self.to_endpoint = (service, "to_endpoint")
        self.to_client = (service, "to_client")

    def __repr__(self) -> str:
        return f"<ServiceCounters {self.service} active={self.active.get(self.one, 0.0):g}>"

    def opened(self) -> None:
        """A connection was accepted and is being forwarded."""
        one = self.one
        self.connections[one] = self.connections.get(one, 0.0) + 1
        self.active[one] = self.active.get(one, 0.0) + 1

    def refused(self, reason: str) -> None:
        """A connection was accepted and refused at once (`reason`, e.g. no_endpoints)."""
        self.connections[self.one] = self.connections.get(self.one, 0.0) + 1
        self.errors.inc(self.service, reason)

    def error(self, reason: str) -> None:
        self.errors.inc(self.service, reason)

    def closed(self, to_endpoint: int | None = None, to_client: int | None = None) -> None:
        """An opened connection ended; with the bytes relayed if it was joined."""
        one = self.one
        self.active[one] = self.active.get(one, 0.0) - 1
        if to_endpoint is not None:
            values = self.bytes
            values[self.to_endpoint] = values.get(self.to_endpoint, 0.0) + to_endpoint
            values[self.to_client] = values.get(self.to_client, 0.0) + to_client


class Forwarding:
    def __init__(self, options: Options | None = None, metrics: ProxyMetrics | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.table = ProxyTable()
        self.options = options or Options()
        self.metrics = metrics or ProxyMetrics()
        self.clock = clock
        self.balancers: dict[tuple, Balancer] = {}
        self.connections: set = set()  # open relays, for a graceful shutdown
        self.deadlines = Deadlines()
        self.counters: dict[str, ServiceCounters] = {}

    def __repr__(self) -> str:
        return f"<Forwarding {self.table!r} connections={len(self.connections)}>"

    def balancer(self, route: Route) -> Balancer:
        bal = self.balancers.get(route.balancer_key)
        if bal is None:
            bal = self.balancers[route.balancer_key] = Balancer()
        return bal

    def counters_for(self, service: str) -> ServiceCounters:
        counters = self.counters.get(service)
        if counters is None:
            counters = self.counters[service] = ServiceCounters(self.metrics, service)
        return counters

    def forget_balancers(self, keep: set) -> None:
        for key in list(self.balancers):
            if key not in keep:
                del self.balancers[key]


class FlowControl:
    __slots__ = ("transport", "reasons")

    def __init__(self, transport: asyncio.BaseTransport):
        self.transport = transport
        self.reasons: set[str] = set()

    def __repr__(self) -> str:
        return f"<FlowControl paused={sorted(self.reasons)}>"

    def pause(self, reason: str) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        if not self.reasons and not self.transport.is_closing():
            self.transport.resume_reading()


_LINGER_ZERO = struct.pack("ii", 1, 0)


def reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client learns at once that nobody is there."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass
    transport.abort()
