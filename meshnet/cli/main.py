"""meshctl: argument parsing and dispatch.

Theory of operation
-------------------
kubectl lets flags and arguments come in any order (`meshctl -n web get svc api -o yaml`,
`meshctl get svc -n web api`). argparse cannot do that with subparsers, so dispatch is in two
steps: `find_command()` walks the words to find the command path (`create secret tls`),
skipping flags and their values, then that command's own parser (global flags included)
parses everything else with `parse_intermixed_args`. Every command has `--help`.

Errors are printed once, here, in kubectl's words (see `errors.py`); the exit status is 1 for
every failure, as kubectl's.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Callable

from meshnet.client.errors import ApiError, ClientError, ConfigError, ConnectionFailed

from . import (apply, backup, completion, config, create, delete, describe, edit, expose, get,
               info, label, logs, rollout, up)
from .context import IO, Session
from .errors import CLIError, Reported, error_text
from .flags import add_global_flags, bool_options, normalize_bools, value_options
from .manifests import ManifestError

PROG = "meshctl"


@dataclass
class Command:
    name: str
    summary: str
    configure: Callable | None = None
    run: Callable | None = None
    children: list["Command"] = field(default_factory=list)
    aliases: tuple[str, ...] = ()
    description: str = ""
    examples: str = ""
    hidden: bool = False

    def child(self, word: str) -> "Command | None":
        for c in self.children:
            if word == c.name or word in c.aliases:
                return c
        return None


def _service(kind: str, summary: str) -> Command:
    return Command(kind, summary, create.configure_service(kind), create.run_service(kind),
                   description=f"Create a {kind} service with the specified name.",
                   examples=f"Examples:\n  meshctl create service {kind} my-svc --tcp=5678:8080")


def _complete_configure(p):
    p.add_argument("words", nargs="*")


COMMANDS = Command(PROG, "meshctl controls a meshnet (or any Kubernetes) cluster.", children=[
    Command("get", "Display one or many resources", get.configure, get.run,
            description=get.DESCRIPTION, examples=get.EXAMPLES),
    Command("describe", "Show details of a specific resource or group of resources",
            describe.configure, describe.run, description=describe.DESCRIPTION,
            examples=describe.EXAMPLES),
    Command("apply", "Apply a configuration to a resource by file name or stdin",
            apply.configure, apply.run, description=apply.DESCRIPTION, examples=apply.EXAMPLES),
    Command("create", "Create a resource from a file or from stdin", create.configure_root,
            create.run_root, description="Create a resource from a file or from stdin, or "
                                         "with one of the generators below.", children=[
        Command("namespace", "Create a namespace with the specified name",
                create.configure_namespace, create.run_namespace, aliases=("ns",),
                examples="Examples:\n  meshctl create namespace my-namespace"),
        Command("deployment", "Create a deployment with the specified name",
                create.configure_deployment, create.run_deployment, aliases=("deploy",),
                examples="Examples:\n  meshctl create deployment my-dep --image=nginx "
                         "--replicas=3 --port=80"),
        Command("service", "Create a service using a specified subcommand", aliases=("svc",),
                children=[
                    _service("clusterip", "Create a ClusterIP service"),
                    _service("nodeport", "Create a NodePort service"),
                    _service("loadbalancer", "Create a LoadBalancer service"),
                    _service("externalname", "Create an ExternalName service"),
                ]),
        Command("configmap", "Create a config map from a local file, directory or literal value",
                create.configure_configmap, create.run_configmap, aliases=("cm",),
                examples="Examples:\n  meshctl create configmap my-config "
                         "--from-literal=key1=config1 --from-file=path/to/bar"),
        Command("secret", "Create a secret using a specified subcommand", children=[
            Command("generic", "Create a secret from a local file, directory, or literal value",
                    create.configure_secret_generic, create.run_secret_generic,
                    examples="Examples:\n  meshctl create secret generic my-secret "
                             "--from-literal=key1=supersecret"),
            Command("tls", "Create a TLS secret", create.configure_secret_tls,
                    create.run_secret_tls,
                    examples="Examples:\n  meshctl create secret tls tls-secret "
                             "--cert=path/to/tls.crt --key=path/to/tls.key"),
        ]),
    ]),
    Command("expose", "Take a deployment, service or pod and expose it as a new Kubernetes "
                      "service", expose.configure, expose.run, description=expose.DESCRIPTION,
            examples=expose.EXAMPLES),
    Command("delete", "Delete resources by file names, stdin, resources and names, or by "
                      "resources and label selector", delete.configure, delete.run,
            description=delete.DESCRIPTION, examples=delete.EXAMPLES),
    Command("edit", "Edit a resource on the server", edit.configure, edit.run,
            description=edit.DESCRIPTION, examples=edit.EXAMPLES),
    Command("label", "Update the labels on a resource", label.configure,
            label.run_for("label"), description=label.LABEL_DESCRIPTION,
            examples=label.LABEL_EXAMPLES),
    Command("annotate", "Update the annotations on a resource", label.configure,
            label.run_for("annotate"), description=label.ANNOTATE_DESCRIPTION,
            examples=label.ANNOTATE_EXAMPLES),
    Command("scale", "Set a new size for a deployment, replica set, or stateful set",
            rollout.configure_scale, rollout.run_scale, description=rollout.SCALE_DESCRIPTION,
            examples=rollout.SCALE_EXAMPLES),
    Command("rollout", "Manage the rollout of a resource", examples=rollout.ROLLOUT_EXAMPLES,
            children=[
        Command("status", "Show the status of the rollout", rollout.configure_status,
                rollout.run_status),
        Command("history", "View rollout history", rollout.configure_history,
                rollout.run_history),
        Command("undo", "Undo a previous rollout", rollout.configure_undo, rollout.run_undo),
    ]),
    Command("api-resources", "Print the supported API resources on the server",
            info.configure_api_resources, info.run_api_resources,
            examples="Examples:\n  meshctl api-resources --namespaced=false -o wide"),
    Command("cluster-info", "Display cluster information", None, info.run_cluster_info),
    Command("config", "Modify kubeconfig files", children=[
        Command("view", "Display merged kubeconfig settings or a specified kubeconfig file",
                config.configure_view, config.run_view),
        Command("get-contexts", "Describe one or many contexts", config.configure_get_contexts,
                config.run_get_contexts),
        Command("get-clusters", "Display clusters defined in the kubeconfig", None,
                config.run_get_clusters),
        Command("current-context", "Display the current-context", None,
                config.run_current_context),
        Command("use-context", "Set the current-context in a kubeconfig file",
                config.configure_use_context, config.run_use_context, aliases=("use",)),
        Command("set-context", "Set a context entry in kubeconfig",
                config.configure_set_context, config.run_set_context,
                examples="Examples:\n  meshctl config set-context --current --namespace=web"),
        Command("delete-context", "Delete the specified context from the kubeconfig",
                config.configure_delete_context, config.run_delete_context),
        Command("unset-current-context", "Unset the current-context", None,
                config.run_unset_current, hidden=True),
    ]),
    Command("version", "Print the client and server version information",
            info.configure_version, info.run_version),
    Command("completion", "Output shell completion code for the specified shell (bash or zsh)",
            lambda p: p.add_argument("shell", choices=("bash", "zsh")),
            lambda args, s: s.out(completion.script(args.shell)) or 0,
            examples="Examples:\n  source <(meshctl completion bash)"),
    Command("logs", "Print the logs for a container in a pod", logs.configure_logs,
            logs.run_logs, examples=logs.LOGS_EXAMPLES),
    Command("exec", "Execute a command in a container", logs.configure_exec, logs.run_exec,
            examples=logs.EXEC_EXAMPLES),
    Command("up", "Start a single-node meshnet cluster on this host", up.configure_up, up.run_up,
            description=up.DESCRIPTION, examples=up.EXAMPLES),
    Command("down", "Stop the cluster `meshctl up` started and remove all it made",
            up.configure_down, up.run_down),
    Command("status", "Show what `meshctl up` runs and whether the node is Ready",
            up.configure_down, up.run_status),
    Command("backup", "Write a snapshot of the whole cluster store to a file",
            backup.configure_backup, backup.run_backup, description=backup.BACKUP_DESCRIPTION,
            examples=backup.BACKUP_EXAMPLES),
    Command("restore", "Fill a new control plane's empty store from a backup (offline)",
            backup.configure_restore, backup.run_restore,
            description=backup.RESTORE_DESCRIPTION, examples=backup.RESTORE_EXAMPLES),
    Command("__complete", "", _complete_configure, None, hidden=True),
])


# --------------------------------------------------------------- parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # kubectl: "error: ..." and a pointer to --help, exit 1
        raise CLIError(f"{message}\nSee '{self.prog} --help' for usage.")


def _all_commands(cmd: Command = COMMANDS):
    yield cmd
    for c in cmd.children:
        yield from _all_commands(c)


def build_parser(path: list[Command]) -> argparse.ArgumentParser:
    cmd = path[-1]
    prog = " ".join(c.name for c in path)
    epilog_parts = []
    if cmd.children:
        width = max(len(c.name) for c in cmd.children)
        lines = [f"  {c.name.ljust(width)}  {c.summary}" for c in cmd.children if not c.hidden]
        epilog_parts.append("Available Commands:\n" + "\n".join(lines))
    if cmd.examples:
        epilog_parts.append(cmd.examples)
    if cmd.children:
        epilog_parts.append(f"Use \"{prog} <command> --help\" for more information about a "
                            f"given command.")
    p = _Parser(prog=prog, description=cmd.description or cmd.summary,
                epilog="\n\n".join(epilog_parts) or None,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    if cmd.configure is not None:
        cmd.configure(p)
    names = {o for a in p._actions for o in a.option_strings}
    if "--namespace" not in names:
        add_global_flags(p)
    else:  # config set-context reuses -n; keep the other global flags
        g = argparse.ArgumentParser(add_help=False)
        add_global_flags(g)
        for action in g._actions:
            if not set(action.option_strings) & names:
                p._add_action(action)
    return p


_VALUE_FLAGS: set[str] | None = None


def _value_flags() -> set[str]:
    global _VALUE_FLAGS
    if _VALUE_FLAGS is None:
        flags: set[str] = set()
        for cmd in _all_commands():
            path = [COMMANDS] if cmd is COMMANDS else [COMMANDS, cmd]
            flags |= value_options(build_parser(path))
        _VALUE_FLAGS = flags
    return _VALUE_FLAGS


def find_command(argv: list[str]) -> tuple[list[Command], list[str]]:
    """The command path named by argv and the remaining tokens (command words removed)."""
    path = [COMMANDS]
    rest: list[str] = []
    i = 0
    values = _value_flags()
    descending = True
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        if tok.startswith("-") and tok != "-":
            rest.append(tok)
            if "=" not in tok and tok in values and i + 1 < len(argv):
                rest.append(argv[i + 1])
                i += 1
            elif len(tok) > 2 and not tok.startswith("--") and tok[:2] in values:
                pass  # -nfoo: value attached
            i += 1
            continue
        if descending:
            child = path[-1].child(tok)
            if child is not None:
                path.append(child)
                i += 1
                continue
            descending = False
            if path[-1].children and path[-1] is not COMMANDS:
                where = " ".join(c.name for c in path)
                raise CLIError(f'unknown command "{tok}" for "{where}"\nRun \'{where} --help\' '
                               f"for usage.")
        rest.append(tok)
        i += 1
    return path, rest


def _help_text(path: list[Command]) -> str:
    return build_parser(path).format_help()


def main(argv: list[str] | None = None, *, stdout=None, stderr=None, stdin=None,
         env: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    io = IO(stdout, stderr, stdin, env or {})
    session: Session | None = None
    try:
        path, rest = find_command(argv)
        cmd = path[-1]
        if cmd is COMMANDS or (cmd.run is None and cmd.name != "__complete"):
            if any(t in ("-h", "--help") for t in rest) or not rest:
                io.stdout.write(_help_text(path))
                return 0
            unknown = next((t for t in rest if not t.startswith("-")), rest[0])
            where = " ".join(c.name for c in path)
            raise CLIError(f'unknown command "{unknown}" for "{where}"\nRun \'{where} --help\' '
                           f"for usage.")
        if cmd.name == "__complete":
            return _complete(rest, io)
        parser = build_parser(path)
        before_dashes = rest[:rest.index("--")] if "--" in rest else rest
        if "-h" in before_dashes or "--help" in before_dashes:
            io.stdout.write(parser.format_help())
            return 0
        tokens = normalize_bools(rest, bool_options(parser))
        args = parser.parse_intermixed_args(tokens)
        session = Session(args, io)
        result = cmd.run(args, session)
        return int(result or 0)
    except SystemExit as e:  # argparse --help
        return int(e.code or 0)
    except Reported as e:
        return e.exit_code
    except CLIError as e:
        io.stderr.write(error_text(e) + "\n")
        return e.exit_code
    except ManifestError as e:
        io.stderr.write(f"error: {e.message}\n")
        return 1
    except (ApiError, ConnectionFailed, ConfigError, ClientError) as e:
        io.stderr.write(error_text(e) + "\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if session is not None:
            session.close()
        try:
            io.stdout.flush()
        except (OSError, ValueError):
            pass


def _complete(words: list[str], io: IO) -> int:
    subcommands = {c.name: {x.name for x in c.children if not x.hidden}
                   for c in COMMANDS.children if not c.hidden}

    def flags_for(path_words: list[str]) -> list[str]:
        path = [COMMANDS]
        for w in path_words:
            child = path[-1].child(w)
            if child is None:
                break
            path.append(child)
        parser = build_parser(path)
        return [o for a in parser._actions for o in a.option_strings
                if a.help != argparse.SUPPRESS]

    def names_for(kind: str) -> list[str]:
        session = Session(argparse.Namespace(request_timeout="2s"), io)
        target = session.lookup(kind)
        listed = session.client.list(target, session.namespace_for(target))
        return [(o.get("metadata") or {}).get("name", "") for o in listed.get("items") or []]

    for c in completion.candidates(words, subcommands, flags_for, names_for):
        io.stdout.write(c + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
