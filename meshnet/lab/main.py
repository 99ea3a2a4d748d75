"""`python -m meshnet.lab VERB`: what the netns-lab/ scripts run (docs/lab.md).

    up        [--name lab] [--data-dir DIR] [--control-planes 1] [--workers 2] [--etcd 1]
              [--store etcd|sqlite] [--underlay 172.29.0.0/24] [--lb-pool RANGE]
              [--dns-upstream ADDR:PORT] [--apiserver-arg=--flag=value ...] [--timeout 90]
    down      [--name lab] [--data-dir DIR]
    status    [--name lab] [--data-dir DIR]
    exec      MEMBER -- CMD ...
    stop      MEMBER [PROCESS ...] [--kill]       (PROCESS: apiserver, etcd, e2, agent, ...)
    start     MEMBER [PROCESS ...]
    cut       MEMBER                              (its underlay link down)
    reconnect MEMBER
    restore   FILE [--credentials DIR] [--apiserver-arg=--flag=value ...]
    demo      [--workers 3] [--replicas N] [--host myapp.com] [--requests N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from meshnet.cli.errors import CLIError
from meshnet.cluster.hostnet import HostNetError
from meshnet.cluster.plan import PlanError

from . import demo, restore, run
from .plan import (DEFAULT_DATA_ROOT, DEFAULT_NAME, DEFAULT_UNDERLAY, LabPlan, make_plan,
                   split_flags)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=DEFAULT_NAME,
                   help=f"lab name: prefixes its namespaces (NAME-w1) and the host veth "
                        f"NAME-h (default {DEFAULT_NAME})")
    p.add_argument("--data-dir", default=None,
                   help=f"state, logs, etcd and API server data (default "
                        f"{DEFAULT_DATA_ROOT}/NAME)")


def _shape(p: argparse.ArgumentParser, workers: int) -> None:
    """The lab's shape: `up`'s flags, and `demo`'s for when it has to bring a lab up."""
    p.add_argument("--control-planes", type=int, default=1,
                   help="control-plane namespaces, each with an API server (1-3, default 1)")
    p.add_argument("--workers", type=int, default=workers,
                   help=f"worker nodes (default {workers})")
    p.add_argument("--etcd", type=int, default=1, help="etcd members: 1 or 3 (default 1)")
    p.add_argument("--store", default="etcd", choices=("etcd", "sqlite"),
                   help="etcd (default) or sqlite (one API server, no etcd)")
    p.add_argument("--underlay", default=DEFAULT_UNDERLAY,
                   help=f"the members' network, a private /24 or larger (default "
                        f"{DEFAULT_UNDERLAY})")
    p.add_argument("--lb-pool", default="",
                   help="LoadBalancer addresses (default .200-.239 of the underlay)")
    p.add_argument("--dns-upstream", default="",
                   help="ADDR:PORT, inside the lab, for names outside the cluster (default: "
                        "none: they fail)")
    p.add_argument("--apiserver-arg", action="append", default=[], metavar="--FLAG=VALUE",
                   help="extra meshnet-apiserver flag (repeatable), e.g. "
                        "--apiserver-arg=--pod-eviction-timeout=5s")
    p.add_argument("--timeout", type=float, default=run.READY_TIMEOUT_S,
                   help="seconds to wait for each step (default 90)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netns-lab", description="A multi-node meshnet cluster "
                                "on this host, built from network namespaces. Needs root.")
    sub = p.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="build and start the lab (or check it is up)")
    _common(up)
    _shape(up, workers=2)
    for verb, text in (("down", "stop everything and remove the lab (also after a crash)"),
                       ("status", "what runs, what is cut off, node readiness")):
        _common(sub.add_parser(verb, help=text))
    ex = sub.add_parser("exec", help="run a command inside a member (cp1, w2, out)")
    _common(ex)
    ex.add_argument("member")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    for verb, text in (("stop", "stop a member's processes (all, or the ones named)"),
                       ("start", "start a member's stopped processes again")):
        sp = sub.add_parser(verb, help=text)
        _common(sp)
        sp.add_argument("member")
        sp.add_argument("process", nargs="*",
                        help="apiserver, etcd (or e1, e2 ...), agent, proxy, dns, ingress")
        if verb == "stop":
            sp.add_argument("--kill", action="store_true", help="SIGKILL (a crash)")
    for verb, text in (("cut", "take a member's underlay link down"),
                       ("reconnect", "bring a cut member's link up again")):
        sp = sub.add_parser(verb, help=text)
        _common(sp)
        sp.add_argument("member")
    rs = sub.add_parser("restore", help="replace the control plane by a new one restored from "
                                        "a `meshctl backup` file (docs/lab.md)")
    _common(rs)
    rs.add_argument("file", metavar="FILE", help="a snapshot written by meshctl backup")
    rs.add_argument("--credentials", default=None, metavar="DIR",
                    help="where ca.crt, ca.key and tokens.csv were kept with the backup "
                         "(default: the first API server's data dir, if it survived)")
    rs.add_argument("--apiserver-arg", action="append", default=[], metavar="--FLAG=VALUE",
                    help="change a flag of the restored API servers (repeatable)")
    rs.add_argument("--timeout", type=float, default=run.READY_TIMEOUT_S,
                    help="seconds to wait for each step (default 90)")
    dm = sub.add_parser("demo", help="the cheat sheet's story across the nodes, ending with "
                                     "curl against the ingress from the outside namespace")
    _common(dm)
    _shape(dm, workers=3)
    dm.add_argument("--app", default="myapp", help="Deployment, Service and Ingress name")
    dm.add_argument("--host", default="myapp.com", help="the Ingress host (default myapp.com)")
    dm.add_argument("--replicas", type=int, default=0, help="default: one per worker")
    dm.add_argument("--requests", type=int, default=0, help="default: three per worker")
    return p


def _plan(args) -> LabPlan:
    if args.verb in ("up", "demo"):
        return make_plan(name=args.name, data_dir=args.data_dir,
                         control_planes=args.control_planes, workers=args.workers,
                         etcd=args.etcd, store=args.store, underlay=args.underlay,
                         lb_pool=args.lb_pool, dns_upstream=args.dns_upstream,
                         apiserver_args=split_flags(args.apiserver_arg))
    return make_plan(name=args.name, data_dir=args.data_dir, control_planes=1, workers=1,
                     etcd=1, store="etcd", underlay=DEFAULT_UNDERLAY)


_line_open = [False]  # the last output ended in the middle of a line ("  step ...")


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
    if text:
        _line_open[0] = not text.endswith("\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = _plan(args)
        if args.verb == "exec":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                raise CLIError("netns-lab exec MEMBER -- CMD ...: no command given")
            _, lab = run._loaded(plan)
            member = lab.member(args.member)
            os.execvp("ip", ["ip", "netns", "exec", member.netns, *command])
        if os.geteuid() != 0:
            raise CLIError(f"netns-lab {args.verb} needs root (network namespaces, veths, "
                           f"routes)")
        if args.verb == "up":
            run.up(plan, _out, args.timeout)
            return 0
        if args.verb == "demo":
            return demo.demo(plan, _out, name=args.app, host=args.host,
                             replicas=args.replicas, requests=args.requests,
                             timeout=args.timeout)
        if args.verb == "restore":
            return restore.restore(plan, Path(args.file),
                                   Path(args.credentials) if args.credentials else None,
                                   split_flags(args.apiserver_arg), _out, args.timeout)
        if args.verb == "down":
            return run.down(plan, _out)
        if args.verb == "status":
            return run.status(plan, _out)
        if args.verb == "stop":
            return run.stop(plan, args.member, args.process, args.kill, _out)
        if args.verb == "start":
            return run.start(plan, args.member, args.process, _out)
        return run.cut(plan, args.member, args.verb == "reconnect", _out)
    except (CLIError, PlanError, HostNetError) as exc:
        if _line_open[0]:
            _out(" failed\n")
        print(f"netns-lab {args.verb}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
