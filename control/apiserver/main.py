"""`meshnet-apiserver`: the Kubernetes-compatible API server with its controllers.

Start-up order: credentials (CA, serving cert, token, admin.kubeconfig) -> store -> registry ->
admission hooks -> HTTPS listener -> controllers. Shutdown on SIGTERM/SIGINT in reverse: stop
controllers, stop accepting, let in-flight requests finish (watches end), close the store.

`--restore FILE` does not serve: it validates a `meshctl backup` file, fills the (empty) store
with it and exits, before any API server runs on that store (see docs/apiserver.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from meshnet.client.kubeconfig import meshnet_data_dir

log = logging.getLogger("meshnet.apiserver")

# As meshnet.control.store.DEFAULT_BUMP_REVISION (not imported: --help stays fast).
DEFAULT_BUMP_REVISION = 1_000_000_000

SHUTDOWN_GRACE_S = 5.0


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """`127.0.0.1:6443`, `[::1]:6443`, `0.0.0.0`, `:6443`."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    try:
        port_num = int(port) if port else default_port
        if not 0 <= port_num <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: the port must be a "
                                         f"number from 0 to 65535") from None
    return host or "0.0.0.0", port_num


@dataclass(frozen=True)
class Options:
    data_dir: Path
    listen_host: str
    listen_port: int
    store: str
    service_cidr: str
    node_port_range: str
    lb_pool: str
    cluster_domain: str
    advertise_address: tuple[str, ...]
    log_level: str = "info"
    history_seconds: float = 900.0
    history_min_events: int = 50_000
    compaction_interval_s: float = 30.0
    bookmark_interval_s: float = 30.0
    cluster_cidr: str = "10.244.0.0/16"
    node_monitor_grace_period_s: float = 40.0
    pod_eviction_timeout_s: float = 300.0
    leader_elect: bool = True
    leader_lease_duration_s: float = 15.0
    etcd_tls: tuple[str | None, str | None, str | None] = (None, None, None)
    restore: str | None = None
    bump_revision: int = 1_000_000_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshnet-apiserver",
        description="Kubernetes-compatible API server (HTTPS) with meshnet's controllers. "
                    "On first start it writes a CA, a serving certificate, an admin token and "
                    "admin.kubeconfig into the data dir.")
    p.add_argument("--data-dir", default=meshnet_data_dir(),
                   help="where credentials and the embedded store live (default: "
                        "$MESHNET_DATA_DIR, else /var/lib/meshnet as root, else "
                        "~/.local/share/meshnet)")
    p.add_argument("--listen", default="127.0.0.1:6443",
                   help="HTTPS listen address HOST:PORT (default 127.0.0.1:6443; port 0 picks "
                        "a free port and writes it into the kubeconfig)")
    p.add_argument("--store", default="",
                   help="storage backend: empty = embedded SQLite in the data dir, "
                        "sqlite:///path.db, etcd://host:port[,host:port][?prefix=/meshnet], or "
                        "etcds://... for TLS to etcd (with --etcd-cafile etc.)")
    p.add_argument("--etcd-cafile", default=None,
                   help="with an etcds:// store: the CA that signed etcd's serving certificate "
                        "(default: the system's CAs)")
    p.add_argument("--etcd-certfile", default=None,
                   help="with an etcds:// store: client certificate for etcd's "
                        "--client-cert-auth (with --etcd-keyfile)")
    p.add_argument("--etcd-keyfile", default=None,
                   help="with an etcds:// store: the client certificate's private key")
    p.add_argument("--restore", default=None, metavar="FILE",
                   help="do not serve: fill the empty store with a `meshctl backup` file "
                        "(validated first) and exit; start the API servers afterwards")
    p.add_argument("--bump-revision", type=int, default=DEFAULT_BUMP_REVISION,
                   help="with --restore: restored resourceVersions start this far above the "
                        "backup's, so that anything written after the backup was taken is "
                        f"older still (default {DEFAULT_BUMP_REVISION:,})")
    p.add_argument("--service-cidr", default="10.96.0.0/12",
                   help="ClusterIP range (default 10.96.0.0/12)")
    p.add_argument("--node-port-range", default="30000-32767",
                   help="NodePort range (default 30000-32767)")
    p.add_argument("--lb-pool", default="",
                   help="LoadBalancer addresses: comma-separated IPs, CIDRs or A-B ranges "
                        "(default empty: LoadBalancer services stay <pending>)")
    p.add_argument("--cluster-domain", default="cluster.local",
                   help="cluster DNS domain (default cluster.local)")
    p.add_argument("--advertise-address", action="append", default=[],
                   help="address clients and the kubernetes Service use to reach this server "
                        "(repeatable; added to the certificate's SANs)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="pod address range; each node gets a /24 of it (default 10.244.0.0/16)")
    p.add_argument("--node-monitor-grace-period", default="40s",
                   help="a node whose Lease is not renewed for this long goes NotReady "
                        "(default 40s)")
    p.add_argument("--pod-eviction-timeout", default="5m",
                   help="pods of a node NotReady for this long are deleted (default 5m)")
    p.add_argument("--leader-elect", default="true", choices=["true", "false"],
                   help="run the controllers only while holding the Lease "
                        "kube-system/meshnet-controller-manager, so that several API servers "
                        "can share one store (default true)")
    p.add_argument("--leader-lease-duration", default="15s",
                   help="a leader (and an API server's identity Lease) not renewed for this "
                        "long is replaced (default 15s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--watch-history-seconds", type=float, default=900.0,
                   help="keep watch history at least this long (default 900); older "
                        "resourceVersions get 410 Gone")
    p.add_argument("--watch-history-min-events", type=int, default=50_000,
                   help="and always at least this many events (default 50000)")
    p.add_argument("--compaction-interval-seconds", type=float, default=30.0,
                   help="how often history is compacted (default 30)")
    p.add_argument("--watch-bookmark-interval-seconds", type=float, default=30.0,
                   help="how often a quiet watch that asked for bookmarks gets one (default 30)")
    return p


def parse_options(argv: list[str] | None) -> Options:
    from meshnet.control.controllers.config import parse_duration_s

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        grace_s = parse_duration_s(args.node_monitor_grace_period)
        eviction_s = parse_duration_s(args.pod_eviction_timeout)
        lease_s = parse_duration_s(args.leader_lease_duration)
        if lease_s < 1:
            raise ValueError(f"--leader-lease-duration {args.leader_lease_duration!r}: must be "
                             f"at least 1s")
        ipaddress.ip_network(args.cluster_cidr, strict=True)
        host, port = parse_host_port(args.listen, 6443)
        ipaddress.ip_network(args.service_cidr, strict=False)
        for addr in args.advertise_address:
            ipaddress.ip_address(addr)
        if args.bump_revision < 0:
            raise ValueError(f"--bump-revision {args.bump_revision}: must be >= 0")
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    return Options(Path(args.data_dir), host, port, args.store, args.service_cidr,
                   args.node_port_range, args.lb_pool, args.cluster_domain,
                   tuple(args.advertise_address), args.log_level, args.watch_history_seconds,
                   args.watch_history_min_events, args.compaction_interval_seconds,
                   args.watch_bookmark_interval_seconds, args.cluster_cidr, grace_s, eviction_s,
                   args.leader_elect == "true", lease_s,
                   (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile), args.restore,
                   args.bump_revision)


def advertise_address(opts: Options) -> str:
    """The IP the `kubernetes` Endpoints publish: --advertise-address, else the listen IP."""
    if opts.advertise_address:
        return opts.advertise_address[0]
    host = opts.listen_host
    if host in ("0.0.0.0", "::", "localhost"):
        return "127.0.0.1" if host != "::" else "::1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)


def _ssl_context(creds) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(creds.serving_cert, creds.serving_key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def serve(opts: Options, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    from meshnet.control.apiserver.app import make_app
    from meshnet.control.apiserver.certs import ensure_credentials, write_kubeconfig, admin_token
    from meshnet.control.apiserver.registry import Registry
    from meshnet.control.controllers import ControllerConfig, install_admission, start_controllers
    from meshnet.control.controllers.leader import IdentityLease, LeaderElector
    address = advertise_address(opts)
    config = ControllerConfig(
        service_cidr=opts.service_cidr, node_port_range=opts.node_port_range,
        lb_pool=opts.lb_pool, cluster_domain=opts.cluster_domain,
        advertise_address=address, advertise_port=opts.listen_port or 6443,
        cluster_cidr=opts.cluster_cidr, node_monitor_grace_period_s=opts.node_monitor_grace_period_s,
        pod_eviction_timeout_s=opts.pod_eviction_timeout_s)
    service_ip = str(config.kubernetes_service_ip)
    creds = ensure_credentials(opts.data_dir, listen_host=opts.listen_host,
                               listen_port=opts.listen_port, advertise=list(opts.advertise_address),
                               cluster_domain=opts.cluster_domain, service_ip=service_ip)
    store = _open_store(opts)
    await store.start()
    registry = Registry(store)
    runner = None
    manager = None
    identity_lease = None
    try:
        app = make_app(registry, creds.tokens, f"{address}:{opts.listen_port}",
                       bookmark_interval_s=opts.bookmark_interval_s, masters=creds.masters)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        site = web.TCPSite(runner, opts.listen_host, opts.listen_port,
                           ssl_context=_ssl_context(creds), backlog=1024, reuse_address=True)
        await site.start()
        port = runner.addresses[0][1] if opts.listen_port == 0 else opts.listen_port
        if opts.listen_port == 0:
            host = opts.listen_host if opts.listen_host not in ("0.0.0.0", "::") else "127.0.0.1"
            write_kubeconfig(creds.kubeconfig, f"https://{host}:{port}",
                             creds.ca_cert.read_bytes(), admin_token(creds.tokens))
        config = dataclasses.replace(config, advertise_port=port)
        install_admission(registry, config)
        identity = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        elector = None
        if opts.leader_elect:
            elector = LeaderElector(registry, identity,
                                    lease_duration_s=opts.leader_lease_duration_s)
        manager = start_controllers(registry, config, elector=elector)
        await manager.start()
        # After the built-in namespaces exist (start() ensures them on every server).
        identity_lease = IdentityLease(registry, identity,
                                       lease_duration_s=opts.leader_lease_duration_s)
        await identity_lease.start()
        log.info("meshnet-apiserver serving on https://%s:%d (data dir %s, kubeconfig %s)",
                 opts.listen_host, port, opts.data_dir, creds.kubeconfig)
        print(f"meshnet-apiserver ready on https://{opts.listen_host}:{port} "
              f"kubeconfig={creds.kubeconfig}", flush=True)
        if ready is not None:
            ready.set()
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        if identity_lease is not None:
            await identity_lease.stop()
        if manager is not None:
            await manager.stop()
        if runner is not None:
            await runner.cleanup()
        await store.close()


def _open_store(opts: Options):
    from meshnet.control.store import EtcdTLS, open_store

    return open_store(opts.store, str(opts.data_dir), etcd_tls=EtcdTLS(*opts.etcd_tls),
                      history_seconds=opts.history_seconds,
                      history_min_events=opts.history_min_events,
                      compaction_interval_s=opts.compaction_interval_s)


async def restore(opts: Options) -> str:
    """--restore: validate the file, then fill the empty store; returns a summary line."""
    from meshnet.control.store import read_snapshot, restore_snapshot

    snapshot = read_snapshot(opts.restore)  # every line checked before the store is opened
    if opts.store in ("", "sqlite"):  # as ensure_credentials: the store holds every Secret
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(opts.data_dir, 0o700)
    store = _open_store(opts)
    await store.start()
    try:
        revision = await restore_snapshot(store, snapshot, opts.bump_revision)
    finally:
        await store.close()
    return (f"restored {len(snapshot.items)} keys from {opts.restore} (taken at revision "
            f"{snapshot.revision}, {snapshot.created_at}) into "
            f"{opts.store or opts.data_dir / 'store.db'}; the store is at revision {revision}: "
            "older resourceVersions get 410 Gone")


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(opts.log_level.upper())
    import uvloop

    from meshnet.control.store import StoreError

    async def run() -> None:
        if opts.restore is not None:
            print(await restore(opts), flush=True)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(opts, stop=stop)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except (OSError, ValueError, StoreError) as exc:
        print(f"meshnet-apiserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
