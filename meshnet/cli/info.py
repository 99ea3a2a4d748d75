"""Cluster information: `api-resources`, `cluster-info`, `version`.

`api-resources` reads the server's discovery documents (`/api/v1`, `/apis`, each group's
preferred version), sorted by group with the core group first as kubectl does.
"""

from __future__ import annotations

import argparse
import platform

from meshnet import __version__
from meshnet.api.resources import lookup
from meshnet.client.discovery import Discovery
from meshnet.client.errors import ApiError, ClientError

from .context import Session
from .errors import CLIError, error_text
from .flags import add_bool, add_output_flag
from .printers import parse_output, to_json, to_yaml
from .tabwriter import format_table


def configure_api_resources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespaced", default=None, metavar="true|false",
                   help="If false, non-namespaced resources will be returned, otherwise "
                        "returning namespaced resources by default.")
    p.add_argument("--api-group", default=None, metavar="GROUP",
                   help="Limit to resources in the specified API group.")
    p.add_argument("--verbs", action="append", default=[], metavar="VERB",
                   help="Limit to resources that support the specified verbs.")
    p.add_argument("--sort-by", default="", metavar="name|kind",
                   help="If non-empty, sort list of resources using specified field.")
    add_bool(p, "--no-headers", help="When using the default or custom-column output format, "
                                     "don't print headers (default print headers).")
    add_output_flag(p, "Output format. One of: (wide, name).")


def run_api_resources(args, s: Session) -> int:
    spec = parse_output(args.output, ("wide", "name")) if args.output else None
    namespaced = None
    if args.namespaced is not None:
        value = str(args.namespaced).lower()
        if value not in ("true", "false"):
            raise CLIError(f'invalid argument "{args.namespaced}" for "--namespaced" flag: '
                           f'strconv.ParseBool: parsing "{args.namespaced}": invalid syntax')
        namespaced = value == "true"
    discovery = Discovery(s.client)
    resources = discovery.resources()
    verbs = {v for item in args.verbs for v in item.split(",") if v}
    rows = []
    for r in resources:
        if namespaced is not None and r.namespaced != namespaced:
            continue
        if args.api_group is not None and r.group != args.api_group:
            continue
        if verbs and not verbs.issubset(set(r.verbs)):
            continue
        rows.append(r)
    key = {"name": lambda r: r.plural, "kind": lambda r: r.kind}.get(args.sort_by,
                                                                    lambda r: r.group)
    if args.sort_by not in ("", "name", "kind"):
        raise CLIError('--sort-by accepts only name or kind')
    rows.sort(key=key)  # stable: discovery order within a group
    if spec is not None and spec.format == "name":
        s.out("".join(f"{r.qualified}\n" for r in rows))
    else:
        wide = spec is not None and spec.format == "wide"
        table = [] if args.no_headers else [
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"] +
            (["VERBS", "CATEGORIES"] if wide else [])]
        for r in rows:
            row = [r.plural, ",".join(r.short_names), r.api_version,
                   "true" if r.namespaced else "false", r.kind]
            if wide:
                row += [",".join(r.verbs), ",".join(r.categories)]
            table.append(row)
        s.out(format_table(table))
    for gv, message in discovery.failed_groups.items():
        s.err(f"error: unable to retrieve the complete list of server APIs: {gv}: {message}")
    return 0


def _color(s: Session, text: str, code: str) -> str:
    try:
        tty = s.io.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return f"\x1b[0;{code}m{text}\x1b[0m" if tty else text


def run_cluster_info(args, s: Session) -> int:
    server = s.connection.server
    s.client.get_json("/version")  # fail here, with kubectl's wording, if unreachable
    s.out(f"{_color(s, 'Kubernetes control plane', '32')} is running at "
          f"{_color(s, server, '33')}\n")
    try:
        services = s.client.list_all(lookup("services"), "kube-system",
                                     label_selector="kubernetes.io/cluster-service=true")
    except ApiError:
        services = {}
    for svc in services.get("items") or []:
        meta = svc.get("metadata") or {}
        name = (meta.get("labels") or {}).get("kubernetes.io/name") or meta.get("name", "")
        ports = (svc.get("spec") or {}).get("ports") or []
        target = meta.get("name", "")
        if ports and ports[0].get("name"):
            target = f"{target}:{ports[0]['name']}"
        link = f"{server}/api/v1/namespaces/kube-system/services/{target}/proxy"
        s.out(f"{_color(s, name, '32')} is running at {_color(s, link, '33')}\n")
    s.out("\nTo further debug and diagnose cluster problems, use 'meshctl get all -A' and "
          "'meshctl describe'.\n")
    return 0


def client_version() -> dict:
    major, minor, *_ = (__version__.split(".") + ["0", "0"])
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                          platform.machine())
    return {"major": major, "minor": minor, "gitVersion": f"v{__version__}",
            "pythonVersion": platform.python_version(),
            "platform": f"{platform.system().lower()}/{machine}"}


def configure_version(p: argparse.ArgumentParser) -> None:
    add_bool(p, "--client", help="If true, shows client version only (no server required).")
    add_output_flag(p, "One of 'yaml' or 'json'.")


def run_version(args, s: Session) -> int:
    spec = parse_output(args.output, ("yaml", "json")) if args.output else None
    doc: dict = {"clientVersion": client_version()}
    error = None
    if not args.client:
        try:
            doc["serverVersion"] = s.client.get_json("/version")
        except ClientError as e:
            error = e
    if spec is None:
        s.out(f"Client Version: {doc['clientVersion']['gitVersion']}\n")
        if "serverVersion" in doc:
            s.out(f"Server Version: {doc['serverVersion'].get('gitVersion', '')}\n")
    elif spec.format == "json":
        s.out(to_json(doc))
    else:
        s.out(to_yaml(doc))
    if error is not None:
        s.err(error_text(error))
        return 1
    return 0


def not_yet(verb: str, why: str):
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
        p.add_argument("-c", "--container", help=argparse.SUPPRESS)
        p.add_argument("-f", "--follow", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("-i", "--stdin", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("-t", "--tty", action="store_true", help=argparse.SUPPRESS)

    def run(args, s: Session) -> int:
        raise CLIError(f"meshctl {verb} is not supported yet: {why}")
    return configure, run
