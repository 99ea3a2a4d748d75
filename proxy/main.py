"""meshnet-proxy: the node proxy's command line and process shell.

    meshnet-proxy --kubeconfig FILE --node-name NAME [--vip-interface meshnet0]
                  [--nodeport-addresses CIDR,...]

See docs/proxy.md. Start-up problems (unreadable kubeconfig, no CAP_NET_ADMIN, a status port
in use) are printed as one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import socket

from meshnet.client.aio import AsyncClient
from meshnet.daemon import DaemonError, add_server_flag, run_daemon
from meshnet.metrics import serve_status
from meshnet.proxy.announce import LEASE_DURATION_S
from meshnet.proxy.announcer import Announcer, Uplink
from meshnet.proxy.addresses import AsyncVip, VipInterface, node_addresses
from meshnet.proxy.apply import DataPlane, NoAddresses
from meshnet.proxy.forwarding import (CONNECT_ATTEMPTS, CONNECT_BUDGET_S, UDP_IDLE_TIMEOUT_S,
                                      Forwarding, Options)
from meshnet.proxy.proxier import FULL_SYNC_INTERVAL_S, MIN_SYNC_INTERVAL_S, Proxier
from meshnet.proxy.table import NodeInfo

log = logging.getLogger("meshnet.proxy")
DRAIN_S = 2.0


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT") from None


def _cidrs(value: str) -> list[str]:
    out = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a CIDR (e.g. 192.168.0.0/16)") \
                from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshnet-proxy",
                                description="Node proxy: forwards Service ClusterIPs, "
                                            "NodePorts, externalIPs and LoadBalancer IPs to "
                                            "ready endpoints, in userspace (no iptables).")
    p.add_argument("--kubeconfig", help="kubeconfig of the API server (default: $KUBECONFIG "
                                        "or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context to use")
    add_server_flag(p)
    p.add_argument("--node-name", default=socket.gethostname(),
                   help="this node's name, for traffic policy Local (default: host name)")
    p.add_argument("--vip-interface", default="meshnet0",
                   help="dummy interface carrying service IPs as /32 (default: meshnet0)")
    p.add_argument("--no-vip-interface", action="store_true",
                   help="do not manage addresses: service IPs must already be local")
    p.add_argument("--nodeport-addresses", type=_cidrs, default=[],
                   help="CIDR,... : NodePorts listen on node addresses within these "
                        "(default: every IPv4 address of the node)")
    p.add_argument("--status-address", type=_host_port, default=("127.0.0.1", 10256),
                   help="HOST:PORT for /healthz, /ready and /metrics (default 127.0.0.1:10256)")
    p.add_argument("--min-sync-interval", type=float, default=MIN_SYNC_INTERVAL_S,
                   help=f"seconds between syncs at least; changes in between are coalesced "
                        f"(default {MIN_SYNC_INTERVAL_S})")
    p.add_argument("--full-sync-interval", type=float, default=FULL_SYNC_INTERVAL_S,
                   help=f"seconds between full resyncs (default {FULL_SYNC_INTERVAL_S:g})")
    p.add_argument("--udp-idle-timeout", type=float, default=UDP_IDLE_TIMEOUT_S,
                   help=f"seconds before an idle UDP flow ends (default {UDP_IDLE_TIMEOUT_S:g})")
    p.add_argument("--connect-attempts", type=int, default=CONNECT_ATTEMPTS,
                   help=f"endpoints tried per new connection (default {CONNECT_ATTEMPTS})")
    p.add_argument("--connect-budget", type=float, default=CONNECT_BUDGET_S,
                   help=f"seconds for all connect attempts of one connection "
                        f"(default {CONNECT_BUDGET_S:g})")
    p.add_argument("--lb-interface", default="",
                   help="interface to announce LoadBalancer IPs on (default: per IP, the "
                        "interface of the on-link route containing it, else of the default "
                        "route)")
    p.add_argument("--lease-duration", type=int, default=LEASE_DURATION_S,
                   help=f"seconds without a renewal of this proxy's lease before other nodes "
                        f"take over its LoadBalancer IPs (default {LEASE_DURATION_S})")
    p.add_argument("--no-lb-announce", action="store_true",
                   help="never announce LoadBalancer IPs (another speaker does it)")
    p.add_argument("--keep-on-exit", action="store_true",
                   help="leave addresses and the VIP interface in place on exit")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    return p


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    try:
        client = AsyncClient.from_kubeconfig(args.kubeconfig, args.context, server=args.server)
    except Exception as exc:
        raise DaemonError(f"cannot load kubeconfig {args.kubeconfig or '(default)'}: "
                          f"{exc}") from None
    vip = None if args.no_vip_interface else AsyncVip(VipInterface(args.vip_interface))
    fwd = Forwarding(Options(connect_attempts=args.connect_attempts,
                             connect_budget_s=args.connect_budget,
                             udp_idle_timeout_s=args.udp_idle_timeout))
    dataplane = DataPlane(fwd, vip if vip is not None else NoAddresses())
    proxier = Proxier(client, NodeInfo(args.node_name, ()), fwd, dataplane,
                      min_interval_s=args.min_sync_interval,
                      full_interval_s=args.full_sync_interval)
    # The first lists (2 s at 10,000 Services) load while the VIP interface is set up (0.4 s,
    # most of it importing pyroute2); nothing is programmed before both are done.
    proxier.start_informers()
    try:
        if vip is not None:
            await vip.ensure()
            addresses = await vip.node_addresses(args.nodeport_addresses)
        else:
            # In a thread, as AsyncVip does: pyroute2's IPRoute runs an event loop of its own,
            # which fails inside the running one.
            addresses = await asyncio.to_thread(node_addresses, args.nodeport_addresses,
                                                args.vip_interface)
    except BaseException:
        await proxier.stop_informers()
        await client.close()
        raise
    node = proxier.node = NodeInfo(args.node_name, addresses)
    proxier.on_first_sync = lambda table: _after_first_sync(vip, table)
    announcer = None
    if vip is not None and not args.no_lb_announce:
        announcer = Announcer(client, node.name, uplink=Uplink(args.lb_interface),
                              lease_duration_s=args.lease_duration,
                              renew_interval_s=max(0.2, args.lease_duration / 4),
                              metrics=fwd.metrics)
        proxier.on_synced.append(announcer.services_changed)
    host, port = args.status_address
    try:
        status = await serve_status(host, port, fwd.metrics.registry,
                                    ready=proxier.first_synced.is_set)
    except OSError as exc:
        raise DaemonError(f"cannot serve status on {host}:{port}: {exc.strerror or exc} "
                          f"(choose another with --status-address)") from None
    log.info("meshnet-proxy on node %s; NodePort addresses %s; status on http://%s:%d",
             node.name, ", ".join(node.addresses) or "(none)", host,
             status.addresses[0][1] if status.addresses else port)
    announcing = None
    if announcer is not None:
        announcing = asyncio.create_task(announcer.run(stop, proxier.first_synced),
                                         name="announcer")
    try:
        await proxier.run(stop)
    finally:
        if announcing is not None:
            # Withdraw LB IPs and drop the lease before draining: others take over at once.
            stop.set()
            await asyncio.gather(announcing, return_exceptions=True)
        await dataplane.close_all(drain_s=DRAIN_S)
        await status.cleanup()
        await client.close()
        if vip is not None and not args.keep_on_exit:
            await vip.cleanup()
        log.info("meshnet-proxy stopped")


async def _after_first_sync(vip: AsyncVip | None, table) -> None:
    if vip is not None:
        # Not awaited: the sync loop must not wait for the sweep (up to a second).
        sweep = vip.remove_stale_soon(set(table.addresses))
        sweep.add_done_callback(lambda f: _swept(vip, f))
    # The first table and the informer caches are most of the heap and live long: move them
    # out of the cyclic GC's sight (they hold no cycles; refcounting still frees them). At
    # 10,000 Services a full collection otherwise took 0.5-2 s, stalling every sync behind it
    # (bench_proxy.py measured a 2 s programming-latency p99 before this).
    gc.collect()
    gc.freeze()


def _swept(vip: AsyncVip, future: asyncio.Future) -> None:
    if future.cancelled():
        return
    if future.exception() is not None:
        log.warning("removing stale addresses from %s: %s", vip.name, future.exception())
    elif future.result():
        log.info("removed %d stale addresses from %s", len(future.result()), vip.name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_daemon("meshnet-proxy", lambda stop: serve(args, stop), log_level=args.log_level)


if __name__ == "__main__":
    raise SystemExit(main())
