"""Flags shared by several commands, spelled and explained as kubectl's.

Boolean flags accept kubectl's `--flag`, `--flag=true` and `--flag=false`: argparse knows
`--flag` / `--no-flag` (BooleanOptionalAction) and `normalize_bools()` rewrites the `=value`
forms before parsing.
"""

from __future__ import annotations

import argparse

from .errors import CLIError

_TRUE = {"true", "1", "t", "yes", "y"}
_FALSE = {"false", "0", "f", "no", "n"}


def add_bool(p: argparse.ArgumentParser, *names: str, help: str, default: bool = False,
             dest: str | None = None) -> None:
    long_names = [n for n in names if n.startswith("--")]
    short = [n for n in names if not n.startswith("--")]
    kwargs = {"dest": dest} if dest else {}
    if long_names[0].startswith("--no-"):
        # `--no-headers` is itself the positive flag; `--no-headers=false` just drops it.
        p.add_argument(*long_names, action="store_true", default=default, help=help, **kwargs)
    else:
        p.add_argument(*long_names, action=argparse.BooleanOptionalAction, default=default,
                       help=help, **kwargs)
    if short:
        p.add_argument(*short, action="store_true", dest=dest or long_names[0][2:]
                       .replace("-", "_"), help=argparse.SUPPRESS, default=argparse.SUPPRESS)


def bool_options(p: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in p._actions:
        if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
            out.update(action.option_strings)
    return out


def value_options(p: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in p._actions:
        if action.option_strings and action.nargs != 0 and not isinstance(
                action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction,
                         argparse._HelpAction, argparse._StoreConstAction,
                         argparse._CountAction)):
            out.update(action.option_strings)
    return out


def normalize_bools(tokens: list[str], bools: set[str]) -> list[str]:
    """`--watch=true` -> `--watch`, `--wait=false` -> `--no-wait`, `-A=true` -> `-A`."""
    out = []
    for tok in tokens:
        if tok == "--":
            out.append(tok)
            continue
        name, sep, value = tok.partition("=")
        if sep and name in bools:
            v = value.strip().lower()
            if v in _TRUE:
                out.append(name)
            elif v in _FALSE:
                if name.startswith("--") and not name.startswith("--no-"):
                    out.append("--no-" + name[2:])
                # a short flag, or a --no-x flag, set to false is simply not given
            else:
                raise CLIError(f'invalid argument "{value}" for "{name}" flag: '
                               f'strconv.ParseBool: parsing "{value}": invalid syntax')
            continue
        out.append(tok)
    return out


def add_global_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("global flags")
    g.add_argument("--kubeconfig", metavar="PATH",
                   help="Path to the kubeconfig file to use for CLI requests.")
    g.add_argument("--context", metavar="NAME",
                   help="The name of the kubeconfig context to use")
    g.add_argument("--cluster", metavar="NAME",
                   help="The name of the kubeconfig cluster to use")
    g.add_argument("--user", metavar="NAME", help="The name of the kubeconfig user to use")
    g.add_argument("-n", "--namespace", metavar="NAMESPACE",
                   help="If present, the namespace scope for this CLI request")
    g.add_argument("-s", "--server", metavar="URL",
                   help="The address and port of the Kubernetes API server")
    g.add_argument("--token", metavar="TOKEN",
                   help="Bearer token for authentication to the API server")
    g.add_argument("--certificate-authority", metavar="PATH",
                   help="Path to a cert file for the certificate authority")
    g.add_argument("--tls-server-name", metavar="NAME",
                   help="Server name to use for server certificate validation.")
    g.add_argument("--insecure-skip-tls-verify", action="store_true", default=None,
                   help="If true, the server's certificate will not be checked for validity.")
    g.add_argument("--request-timeout", metavar="DURATION", default="0",
                   help="The length of time to wait before giving up on a single server "
                        "request (e.g. 1s, 2m, 3h); 0 means no timeout.")


def add_all_namespaces(p: argparse.ArgumentParser, help: str | None = None) -> None:
    add_bool(p, "--all-namespaces", "-A", help=help or (
        "If present, list the requested object(s) across all namespaces. Namespace in current "
        "context is ignored even if specified with --namespace."))


def add_output_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("-o", "--output", metavar="FORMAT", default="", help=help)


def add_selector_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--selector", metavar="SELECTOR", default="",
                   help="Selector (label query) to filter on, supports '=', '==', '!=', 'in', "
                        "'notin' (e.g. -l key1=value1,key2=value2).")
    p.add_argument("--field-selector", metavar="SELECTOR", default="",
                   help="Selector (field query) to filter on, supports '=', '==', and '!=' "
                        "(e.g. --field-selector key1=value1,key2=value2).")
    add_all_namespaces(p)


def add_filename_flags(p: argparse.ArgumentParser, purpose: str) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help=f"Filename, directory, or '-' (stdin) of manifests {purpose}.")
    add_bool(p, "--recursive", "-R", help="Process the directory used in -f, --filename "
                                          "recursively.")


def add_dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", nargs="?", const="client", default="none",
                   choices=("none", "client", "server"), metavar="none|client|server",
                   help='Must be "none", "server", or "client". If client strategy, only print '
                        "the object that would be sent, without sending it. If server "
                        "strategy, submit server-side request without persisting the resource.")
