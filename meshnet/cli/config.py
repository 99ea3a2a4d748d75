"""`meshctl config`: view and change kubeconfig files (kubectl config).

Reading merges every file in the chain; writing goes to the file client-go would pick (see
`meshnet.client.kubeconfig`). Nothing here talks to the server.
"""

from __future__ import annotations

import argparse

from meshnet.client.errors import ConfigError

from .context import Session
from .errors import CLIError
from .flags import add_bool, add_output_flag
from .printers import parse_output, to_json, to_yaml
from .tabwriter import format_table
from . import jsonpath


def configure_view(p: argparse.ArgumentParser) -> None:
    add_bool(p, "--minify", help="Remove all information not used by current-context from the "
                                 "output")
    add_bool(p, "--raw", help="Display raw byte data and sensitive data")
    add_bool(p, "--flatten", help="Flatten the resulting kubeconfig file into self-contained "
                                  "output (useful for creating portable kubeconfig files)")
    add_output_flag(p, "Output format. One of: (json, yaml, jsonpath=...).")


def run_view(args, s: Session) -> int:
    try:
        doc = s.kubeconfig.view(minify=args.minify, raw=args.raw or args.flatten,
                                flatten=args.flatten, context=args.context)
    except ConfigError as e:
        raise CLIError(str(e)) from None
    spec = parse_output(args.output or "yaml", ("yaml", "json", "jsonpath"))
    if spec.format == "yaml":
        s.out(to_yaml(doc))
    elif spec.format == "json":
        s.out(to_json(doc))
    else:
        s.out(jsonpath.execute(spec.template, doc))
    return 0


def configure_get_contexts(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="CONTEXT_NAME")
    add_bool(p, "--no-headers", help="When using the default or custom-column output format, "
                                     "don't print headers (default print headers).")
    add_output_flag(p, "Output format. One of: (name).")


def run_get_contexts(args, s: Session) -> int:
    contexts = s.kubeconfig.contexts()
    current = s.kubeconfig.current_context
    names = args.names or sorted(contexts)
    missing = [n for n in names if n not in contexts]
    if args.output:
        parse_output(args.output, ("name",))
        for n in names:
            if n in contexts:
                s.out(f"{n}\n")
    else:
        rows = [] if args.no_headers else [["CURRENT", "NAME", "CLUSTER", "AUTHINFO",
                                            "NAMESPACE"]]
        for n in names:
            if n not in contexts:
                continue
            c = contexts[n]
            rows.append(["*" if n == current else "", n, str(c.get("cluster") or ""),
                         str(c.get("user") or ""), str(c.get("namespace") or "")])
        s.out(format_table(rows))
    if missing:
        raise CLIError(f'context {missing[0]} not found')
    return 0


def run_current_context(args, s: Session) -> int:
    current = s.kubeconfig.current_context
    if not current:
        raise CLIError("current-context is not set")
    s.out(f"{current}\n")
    return 0


def configure_use_context(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="CONTEXT_NAME")


def run_use_context(args, s: Session) -> int:
    try:
        s.kubeconfig.use_context(args.name)
    except ConfigError as e:
        raise CLIError(str(e)) from None
    s.out(f'Switched to context "{args.name}".\n')
    return 0


def configure_set_context(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="CONTEXT_NAME")
    add_bool(p, "--current", help="Modify the current context")
    # --cluster, --user and --namespace are the global flags, read from the same args.


def run_set_context(args, s: Session) -> int:
    name = args.name
    if args.current:
        if name:
            raise CLIError("you cannot specify both a context name and --current")
        name = s.kubeconfig.current_context
        if not name:
            raise CLIError("no current context is set")
    if not name:
        raise CLIError("you must specify a non-empty context name or --current")
    try:
        created = s.kubeconfig.set_context(name, cluster=args.cluster, user=args.user,
                                           namespace=args.namespace)
    except ConfigError as e:
        raise CLIError(str(e)) from None
    s.out(f'Context "{name}" {"created" if created else "modified"}.\n')
    return 0


def configure_delete_context(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="CONTEXT_NAME")


def run_delete_context(args, s: Session) -> int:
    try:
        path = s.kubeconfig.delete_context(args.name)
    except ConfigError as e:
        raise CLIError(str(e)) from None
    if s.kubeconfig.current_context == args.name:
        s.err("warning: this removed your active context, use \"meshctl config use-context\" "
              "to select a different one")
    s.out(f"deleted context {args.name} from {path}\n")
    return 0


def run_get_clusters(args, s: Session) -> int:
    s.out("NAME\n" + "".join(f"{n}\n" for n in sorted(s.kubeconfig.clusters())))
    return 0


def run_unset_current(args, s: Session) -> int:
    s.kubeconfig.unset_current_context()
    s.out('Property "current-context" unset.\n')
    return 0

