"""The shell every meshnet daemon runs in: logging, uvloop, and a clean stop on signals.

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run_daemon("meshnet-dns", serve(args), log_level=args.log_level)

`serve` is a coroutine function taking a `stop` asyncio.Event; it returns when `stop` is set
(SIGTERM/SIGINT) after cleaning up what it created. Errors a user can fix (bad flags, a port in
use, an unreadable kubeconfig) should be raised as `DaemonError` with a message that says what
and where; they are printed without a traceback and exit with status 1.

`light_pyroute2()` (run_daemon calls it first): pyroute2's package __init__ imports every
protocol the library has (NDB, IPDB, nftables, wireguard, ... ~220 modules, ~9 MiB in each
process that says `from pyroute2 import IPRoute`). The package is registered without running
it; `IPRoute` and `NetlinkError` come from the submodules that define them (the same objects
the full package exports), submodules import as usual, and any other name runs the whole
__init__ first, so nothing a caller can see changes but the memory.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import sys
from typing import Awaitable, Callable

# Names the daemons take from the pyroute2 package, and the submodule that defines each.
PYROUTE2_LIGHT = {"IPRoute": "pyroute2.iproute.linux",
                  "NetlinkError": "pyroute2.netlink.exceptions"}


def light_pyroute2() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None:
        return
    package = importlib.util.module_from_spec(spec)

    def attribute(name: str):
        if name in PYROUTE2_LIGHT:
            value = getattr(importlib.import_module(PYROUTE2_LIGHT[name]), name)
        elif importlib.util.find_spec(f"pyroute2.{name}") is not None:
            value = importlib.import_module(f"pyroute2.{name}")  # `from pyroute2 import config`
        else:
            del package.__getattr__
            spec.loader.exec_module(package)
            return getattr(package, name)
        setattr(package, name, value)
        return value
    package.__getattr__ = attribute
    sys.modules["pyroute2"] = package


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """In a worker process: get SIGTERM from the kernel when the parent (the supervisor) dies.
    False when the parent is already gone (the caller should stop at once)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's stop is all there is
        pass
    return os.getppid() == parent_pid


class DaemonError(Exception):
    """A start-up or run-time problem the user can fix; printed as `<prog>: <message>`."""


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_daemon(prog: str, serve: Callable[[asyncio.Event], Awaitable[None]], *,
               log_level: str = "info") -> int:
    import uvloop

    light_pyroute2()
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
