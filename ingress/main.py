"""meshnet-ingress: the command line, and the wiring of controller, proxy and listeners.

    meshnet-ingress --kubeconfig FILE --http-listen 127.0.0.1:80 --https-listen 127.0.0.1:443

Listeners come up first and answer 503 until the first sync (the architecture's rule: nothing
is served from a half-built table); `/healthz`, `/ready` and `/metrics` on --status-listen.
It prints `meshnet-ingress ready on http://ADDR:PORT https://ADDR:PORT` on stdout once both
listeners are bound (ports resolved when :0 was asked for). With `--workers N` (N > 1) the
process supervises N of itself sharing the addresses (meshnet/workers.py, `WORKERS` below);
worker 0 alone writes to the API server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import ipaddress
import logging
import os
import sys
import tempfile

from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ClientError
from meshnet.daemon import DaemonError, add_server_flag
from meshnet.ingress.certs import TLSStore, default_certificate, read_pem_pair, write_pem_pair
from meshnet.ingress.controller import IngressController
from meshnet.ingress.proxy import Proxy, ServerSettings
from meshnet.ingress.routes import DEFAULT_CLASS_NAME, RoutingConfig
from meshnet.ingress.server import start_listener
from meshnet.metrics import Registry, serve_status
from meshnet.workers import WorkerSpec, add_worker_flags, announce_status, run

log = logging.getLogger("meshnet.ingress")

SHUTDOWN_GRACE_S = 10.0
STOP_DEADLINE_S = 20.0  # a worker's own drain (SHUTDOWN_GRACE_S) plus its clean-up
READY = "meshnet-ingress ready on "
GC_GEN0_THRESHOLD = 20_000


def parse_addr(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise DaemonError(f"{flag} {text!r}: expected ADDRESS:PORT, such as 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def listen_flags(line: str) -> tuple[str, ...] | None:
    """The ready line -> the flags that put another worker on the same addresses."""
    if not line.startswith(READY):
        return None
    http, https = line[len(READY):].split()
    return ("--http-listen", http.removeprefix("http://"),
            "--https-listen", https.removeprefix("https://"))


def parse_ref(text: str, flag: str) -> str:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise DaemonError(f"{flag} {text!r}: expected NAMESPACE/NAME")
    return text


def parse_cidrs(text: str, flag: str) -> tuple[str, ...]:
    cidrs = tuple(c.strip() for c in text.split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise DaemonError(f"{flag} {cidr!r}: expected an address or network such as "
                              f"10.0.0.0/8 or 192.0.2.7") from None
    return cidrs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshnet-ingress",
                                description="HTTP/HTTPS ingress controller for meshnet")
    p.add_argument("--kubeconfig", help="kubeconfig of the API server (default: $KUBECONFIG, "
                   "~/.kube/config)")
    add_server_flag(p)
    p.add_argument("--http-listen", default="0.0.0.0:80", metavar="ADDR:PORT")
    p.add_argument("--https-listen", default="0.0.0.0:443", metavar="ADDR:PORT")
    p.add_argument("--ingress-class", default=None, metavar="NAME",
                   help=f"serve only this IngressClass (default: every class of controller "
                        f"meshnet.io/ingress-controller; `{DEFAULT_CLASS_NAME}` is created)")
    p.add_argument("--watch-ingress-without-class", action="store_true",
                   help="also serve Ingresses that name no class")
    p.add_argument("--default-backend-service", metavar="NS/NAME", default="",
                   help="Service for requests no rule matches (default: default-http-backend "
                        "in the controller namespace, else 404)")
    p.add_argument("--default-ssl-certificate", metavar="NS/NAME", default="",
                   help="kubernetes.io/tls Secret for unknown SNI names (default: generated)")
    p.add_argument("--status-listen", default="127.0.0.1:10254", metavar="ADDR:PORT",
                   help="/healthz, /ready and /metrics (10254 as ingress-nginx)")
    p.add_argument("--publish-address", default=None, metavar="IP",
                   help="address written to served Ingresses' status (default: the HTTP "
                        "listen address)")
    p.add_argument("--controller-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                   help="where default-http-backend is looked for (default: $POD_NAMESPACE "
                        "or default)")
    p.add_argument("--client-header-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="a request head must arrive within this (408 after)")
    p.add_argument("--keepalive-timeout", type=float, default=75.0, metavar="SECONDS")
    p.add_argument("--trusted-proxies", default="", metavar="CIDR[,CIDR...]",
                   help="peers whose X-Forwarded-* headers are kept and extended (a load "
                        "balancer in front); everyone else's are replaced (default: none)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes serving the same addresses with SO_REUSEPORT, one per core "
                        "(default 1); worker 0 alone writes to the API server; the status port "
                        "sums them up (docs/ingress.md)")
    p.add_argument("--log-level", default="info")
    add_worker_flags(p)  # set by the --workers supervisor on the processes it starts
    # Also set by the supervisor: where the generated default certificate of all its workers
    # is (tls.crt, tls.key), so that an unknown SNI name gets the same one from each.
    p.add_argument("--default-certificate-dir", default="", help=argparse.SUPPRESS)
    return p


async def serve(args, stop: asyncio.Event) -> None:
    """One meshnet-ingress: the single process, or one worker of `--workers` (SO_REUSEPORT
    listeners; only worker 0 writes to the API server)."""
    http_host, http_port = parse_addr(args.http_listen, "--http-listen")
    https_host, https_port = parse_addr(args.https_listen, "--https-listen")
    status_host, status_port = parse_addr(args.status_listen, "--status-listen")
    config = RoutingConfig(
        controller_namespace=args.controller_namespace,
        ingress_class=args.ingress_class or DEFAULT_CLASS_NAME,
        class_flag_given=args.ingress_class is not None,
        watch_without_class=args.watch_ingress_without_class,
        default_backend_service=parse_ref(args.default_backend_service,
                                          "--default-backend-service")
        if args.default_backend_service else "")
    default_cert = parse_ref(args.default_ssl_certificate, "--default-ssl-certificate") \
        if args.default_ssl_certificate else ""
    try:
        client = AsyncClient.from_kubeconfig(args.kubeconfig, server=args.server)
    except (ClientError, OSError, ValueError) as exc:
        raise DaemonError(f"--kubeconfig {args.kubeconfig or '(default)'}: {exc}") from None
    metrics = Registry()
    proxy = Proxy(ServerSettings(header_timeout_s=args.client_header_timeout,
                                 keepalive_timeout_s=args.keepalive_timeout,
                                 https_port=https_port,
                                 trusted_proxies=parse_cidrs(args.trusted_proxies,
                                                             "--trusted-proxies")), metrics)
    try:
        tls = TLSStore(*(read_pem_pair(args.default_certificate_dir)
                         if args.default_certificate_dir else await default_certificate()))
    except OSError as exc:
        raise DaemonError(str(exc)) from None
    controller = IngressController(
        client, proxy, tls, config,
        publish_address=args.publish_address if args.publish_address is not None
        else (http_host if http_host not in ("0.0.0.0", "::") else ""),
        default_certificate=default_cert, writer=args.worker_index == 0)
    servers = []
    try:
        reuse_port = bool(args.worker_of)
        servers.append(await start_listener(proxy, http_host, http_port, reuse_port=reuse_port))
        servers.append(await start_listener(proxy, https_host, https_port, tls.listener_context,
                                            reuse_port=reuse_port))
    except OSError as exc:
        for s in servers:
            s.close()
        raise DaemonError(f"cannot listen: {exc}") from None
    status = await serve_status(status_host, status_port, metrics,
                                ready=lambda: controller.synced)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    # Redirects point at the port really bound (it differs from the flag when :0 was asked).
    proxy.settings = dataclasses.replace(proxy.settings, https_port=ports[1])
    announce_status("meshnet-ingress", args, *status.addresses[0][:2])
    # The ready line tests and scripts wait for (ports resolved when :0 was asked for).
    print(f"{READY}http://{http_host}:{ports[0]} https://{https_host}:{ports[1]}", flush=True)
    task = asyncio.create_task(controller.run(stop))
    # Every proxied request allocates a few dozen short-lived objects; with the default
    # gen-0 threshold (700) the collector ran every ~15 requests. What exists now (modules,
    # clients) is moved out of its sight for good.
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    try:
        await stop.wait()
    finally:
        for s in servers:
            s.close()  # stop accepting; in-flight requests get a grace period
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_GRACE_S
        while any(c.current for c in proxy.connections) and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(proxy.connections):
            conn.transport.close()
        proxy.pool.close()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - shutting down
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("controller stopped with %s", exc)
        await status.cleanup()
        await client.close()


WORKERS = WorkerSpec("meshnet-ingress", "meshnet.ingress.main", listen_flags, parse_addr,
                     STOP_DEADLINE_S)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.workers > 1 and not args.worker_of and not args.default_certificate_dir:
            # The supervisor makes the default certificate once, for all its workers (one
            # ingress-nginx pod has one fake certificate too), in a private directory that
            # lives as long as it does; `--default-ssl-certificate` replaces it as for one
            # process.
            try:
                pair = asyncio.run(default_certificate())
            except OSError as exc:
                print(f"meshnet-ingress: {exc}", file=sys.stderr)
                return 1
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="meshnet-ingress-"))
            write_pem_pair(tmp, *pair)
            argv = [*argv, "--default-certificate-dir", tmp]
        return run(WORKERS, args, argv, lambda stop: serve(args, stop))


if __name__ == "__main__":
    sys.exit(main())
