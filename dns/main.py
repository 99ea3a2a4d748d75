"""`meshnet-dns`: the cluster DNS daemon (flags, wiring, start and stop).

    meshnet-dns --kubeconfig FILE --listen ADDR:PORT [--upstream ADDR:PORT,...]
                [--cluster-domain cluster.local] [--ttl 5] [--status-listen ADDR:PORT]
                [--workers N]

It prints one line `meshnet-dns listening on udp+tcp ADDR:PORT` on stdout once its sockets are
bound (port 0 picks a free port for both), so that scripts and tests can find it. With
`--workers N` (N > 1) the process supervises N server processes sharing the address
(meshnet/workers.py, `WORKERS` below) and prints the same line once all of them are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from meshnet.client.aio import AsyncClient
from meshnet.daemon import DaemonError, add_server_flag
from meshnet.dns.forward import DEFAULT_MAX_CONCURRENT, DEFAULT_TIMEOUT_S, Forwarder
from meshnet.dns.server import DnsServer
from meshnet.dns.stats import DnsMetrics
from meshnet.dns.sync import ZoneSync
from meshnet.dns.zone import DEFAULT_TTL_S, PODS_MODES, ZoneConfig, ZoneTable
from meshnet.metrics import serve_status
from meshnet.workers import WorkerSpec, add_worker_flags, announce_status, run

log = logging.getLogger("meshnet.dns")

RESOLV_CONF = "/etc/resolv.conf"
DNS_PORT = 53
LISTENING = "meshnet-dns listening on udp+tcp "
STOP_DEADLINE_S = 5.0  # a worker's own stop takes up to 2 s (server.STOP_DEADLINE_S)


def parse_hostport(text: str, flag: str, default_port: int | None = None) -> tuple[str, int]:
    """`1.2.3.4:53`, `[::1]:53`, or (with a default port) a bare address."""
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port) if port is not None else default_port
        if number is None or not 0 <= number <= 65535:
            raise ValueError
    except (ValueError, TypeError):
        want = "ADDR:PORT" if default_port is None else "ADDR[:PORT]"
        raise DaemonError(f"{flag} {text!r}: expected {want} with an IP address "
                          f"(e.g. 127.0.0.1:53 or [::1]:53)") from None
    return host, number


def show_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_flags(line: str) -> tuple[str, ...] | None:
    """The ready line -> the flag that puts another worker on the same address."""
    if line.startswith(LISTENING):
        return "--listen", line[len(LISTENING):].strip()
    return None


def upstreams_from_resolv_conf(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The host's nameservers (the default --upstream); a missing file means none."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        found.append((str(ipaddress.ip_address(parts[1].split("%")[0])),
                                      DNS_PORT))
                    except ValueError:
                        log.warning("%s: ignoring nameserver %r", path, parts[1])
    except OSError:
        pass
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshnet-dns",
        description="Cluster DNS per the Kubernetes DNS spec 1.1.0, fed by a meshnet (or any "
                    "Kubernetes) API server; other names are forwarded upstream.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to follow")
    add_server_flag(p)
    p.add_argument("--listen", default="0.0.0.0:53",
                   help="UDP and TCP address ADDR:PORT (default 0.0.0.0:53; port 0 = any)")
    p.add_argument("--upstream", default="",
                   help="comma-separated ADDR[:PORT] resolvers for names outside the cluster "
                        f"zones (default: the nameservers in {RESOLV_CONF})")
    p.add_argument("--cluster-domain", default="cluster.local", help="(default cluster.local)")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL_S,
                   help=f"TTL of cluster records, seconds (default {DEFAULT_TTL_S})")
    p.add_argument("--status-listen", default="",
                   help="ADDR:PORT for /healthz, /ready and /metrics (default: off)")
    p.add_argument("--reverse-cidr", default="10.96.0.0/12,10.244.0.0/16",
                   help="service and pod CIDRs whose reverse zones are answered locally "
                        "(default 10.96.0.0/12,10.244.0.0/16)")
    p.add_argument("--pods", choices=PODS_MODES, default="verified",
                   help="pod records: verified against existing pods (default), insecure "
                        "(any IP), disabled")
    p.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
                   help=f"forwarded questions in flight (default {DEFAULT_MAX_CONCURRENT})")
    p.add_argument("--upstream-timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds per forwarded question (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the address with SO_REUSEPORT, each with "
                        "its own API watches and zone; the kernel spreads clients over them "
                        "(default 1: this process serves; see docs/dns.md)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_worker_flags(p)  # set by the --workers supervisor on the processes it starts
    return p


def config_from_args(args) -> ZoneConfig:
    if not 0 <= args.ttl <= 2 ** 31 - 1:
        raise DaemonError(f"--ttl {args.ttl}: must be between 0 and 2147483647 seconds")
    cidrs = tuple(c.strip() for c in args.reverse_cidr.split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise DaemonError(f"--reverse-cidr {cidr!r}: not a CIDR (e.g. 10.96.0.0/12)") \
                from None
    domain = args.cluster_domain.strip(".")
    if not domain:
        raise DaemonError("--cluster-domain: must not be empty (e.g. cluster.local)")
    return ZoneConfig.make(domain, ttl=args.ttl, reverse_cidrs=cidrs, pods=args.pods)


async def serve(args, stop: asyncio.Event) -> None:
    config = config_from_args(args)
    host, port = parse_hostport(args.listen, "--listen")
    if args.upstream:
        upstreams = [parse_hostport(u, "--upstream", DNS_PORT)
                     for u in args.upstream.split(",") if u.strip()]
    else:
        upstreams = upstreams_from_resolv_conf()
    try:
        client = AsyncClient.from_kubeconfig(args.kubeconfig, server=args.server)
    except Exception as exc:  # kubeconfig errors of every kind end up here
        raise DaemonError(f"--kubeconfig {args.kubeconfig}: {exc}") from None
    metrics = DnsMetrics()
    forwarder = Forwarder(upstreams, timeout_s=args.upstream_timeout,
                          max_concurrent=args.max_concurrent) if upstreams else None
    if forwarder is None:
        log.warning("no upstream resolvers: names outside the cluster zones get REFUSED")
    server = DnsServer(ZoneTable.unsynced(config), forwarder, metrics)
    try:
        bound = await server.start(host, port, reuse_port=bool(args.worker_of))
    except OSError as exc:
        raise DaemonError(f"--listen {args.listen}: cannot bind UDP and TCP: {exc}") from None
    sync = ZoneSync(client, server, config, metrics)
    status = None
    if args.status_listen:
        shost, sport = parse_hostport(args.status_listen, "--status-listen")
        if forwarder is not None:
            metrics.registry.metrics.insert(0, _CacheCollector(forwarder, metrics))
        status = await serve_status(shost, sport, metrics.registry, ready=lambda: sync.synced)
    task = asyncio.create_task(sync.run(), name="zone-sync")
    shown = show_hostport(*bound)
    if status is not None:
        announce_status("meshnet-dns", args, *status.addresses[0][:2])
    print(f"{LISTENING}{shown}", flush=True)
    log.info("serving %s on %s; upstreams %s", config.origin, shown,
             ", ".join(f"{h}:{p}" for h, p in upstreams) or "none")
    try:
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception():
            raise DaemonError(f"zone sync failed: {task.exception()}")
    finally:
        task.cancel()
        await sync.stop()
        await server.stop()
        if forwarder:
            forwarder.close()
        if status:
            await status.cleanup()
        await client.close()


class _CacheCollector:
    """Refreshes the cache gauges at scrape time (no work on the query path)."""

    def __init__(self, forwarder: Forwarder, metrics: DnsMetrics):
        self.forwarder, self.metrics = forwarder, metrics

    def render(self) -> list[str]:
        self.metrics.cache.set(value=len(self.forwarder.cache))
        self.metrics.cache_hits.set(value=self.forwarder.cache.hits)
        return []


WORKERS = WorkerSpec("meshnet-dns", "meshnet.dns.main", listen_flags, parse_hostport,
                     STOP_DEADLINE_S)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    return run(WORKERS, args, argv, lambda stop: serve(args, stop))


if __name__ == "__main__":
    sys.exit(main())
