"""The shell every meshnet daemon runs in: logging, uvloop, and a clean stop on signals.

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run_daemon("meshnet-dns", serve(args), log_level=args.log_level)

`serve` is a coroutine function taking a `stop` asyncio.Event; it returns when `stop` is set
(SIGTERM/SIGINT) after cleaning up what it created. Errors a user can fix (bad flags, a port in
use, an unreadable kubeconfig) should be raised as `DaemonError` with a message that says what
and where; they are printed without a traceback and exit with status 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable


class DaemonError(Exception):
    """A start-up or run-time problem the user can fix; printed as `<prog>: <message>`."""


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_daemon(prog: str, serve: Callable[[asyncio.Event], Awaitable[None]], *,
               log_level: str = "info") -> int:
    import uvloop

    setup_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except (DaemonError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_server_flag(parser) -> None:
    """`--server URL[,URL...]`, shared by every daemon that talks to the API server."""
    parser.add_argument(
        "--server", default="", metavar="URL[,URL...]",
        help="API server(s) to use instead of the kubeconfig's (credentials still come from "
             "the kubeconfig); several, comma-separated, share one store and the daemon fails "
             "over between them (docs/failover.md)")
