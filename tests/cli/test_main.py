"""Dispatch: command paths, flags anywhere, kubectl-style booleans, help, errors, completion."""

import pytest

from meshnet.cli import completion
from meshnet.cli.context import parse_duration
from meshnet.cli.errors import CLIError
from meshnet.cli.flags import normalize_bools
from meshnet.cli.main import COMMANDS, _all_commands, find_command


def names(path):
    return [c.name for c in path[1:]]


# (description, argv, expected command path, expected remaining tokens)
DISPATCH = [
    ("plain", ["get", "svc"], ["get"], ["svc"]),
    ("global flag before the verb", ["-n", "web", "get", "svc"], ["get"],
     ["-n", "web", "svc"]),
    ("flag with = before the verb", ["--namespace=web", "get", "svc"], ["get"],
     ["--namespace=web", "svc"]),
    ("nested generators", ["create", "secret", "tls", "t", "--cert=c"],
     ["create", "secret", "tls"], ["t", "--cert=c"]),
    ("flags between command words", ["create", "--dry-run=client", "deployment", "x"],
     ["create", "deployment"], ["--dry-run=client", "x"]),
    ("a flag value that looks like a command is not one", ["get", "-o", "name", "svc"],
     ["get"], ["-o", "name", "svc"]),
    ("aliases", ["create", "svc", "nodeport", "np"], ["create", "service", "nodeport"],
     ["np"]),
    ("after the command path words are arguments", ["get", "config", "view"], ["get"],
     ["config", "view"]),
    ("config subcommands", ["config", "use-context", "meshnet"], ["config", "use-context"],
     ["meshnet"]),
]


@pytest.mark.parametrize("desc,argv,path,rest", DISPATCH, ids=[c[0] for c in DISPATCH])
def test_find_command(desc, argv, path, rest):
    found, remaining = find_command(argv)
    assert names(found) == path
    assert remaining == rest


def test_unknown_subcommand():
    with pytest.raises(CLIError, match='unknown command "widget" for "meshctl create"'):
        find_command(["create", "widget", "x"])


@pytest.mark.parametrize("tokens,want", [
    (["--watch=true"], ["--watch"]),
    (["--wait=false"], ["--no-wait"]),
    (["-A=true"], ["-A"]),
    (["-A=false"], []),
    (["--no-headers=false"], []),
    (["--no-headers=true"], ["--no-headers"]),
    (["--selector=a=b"], ["--selector=a=b"]),
])
def test_normalize_bools(tokens, want):
    bools = {"--watch", "--no-watch", "--wait", "--no-wait", "-A", "--no-headers"}
    assert normalize_bools(tokens, bools) == want


def test_bad_boolean_value():
    with pytest.raises(CLIError, match='invalid argument "maybe" for "--watch" flag'):
        normalize_bools(["--watch=maybe"], {"--watch"})


def _paths():
    out = []

    def walk(cmd, prefix):
        for c in cmd.children:
            if c.hidden:
                continue
            out.append(prefix + [c.name])
            walk(c, prefix + [c.name])
    walk(COMMANDS, [])
    return out


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p))
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: meshctl {' '.join(path)}")


def test_top_level_help_lists_commands(cli):
    result = cli()
    assert result.code == 0
    for verb in ("get", "describe", "apply", "delete", "create", "expose", "edit", "label",
                 "annotate", "api-resources", "config", "cluster-info", "version",
                 "completion"):
        assert f"\n  {verb} " in result.out


@pytest.mark.parametrize("argv,message", [
    (["bogus"], 'unknown command "bogus" for "meshctl"'),
    (["get"], 'You must specify the type of resource to get. Use "meshctl api-resources"'),
    (["get", "svc", "--nope"], "unrecognized arguments: --nope"),
    (["logs"], "the following arguments are required: pod"),
    (["exec", "web"], "you must specify at least one command for the container"),
    (["apply"], "must specify one of -f and -k"),
    (["delete"], "You must provide one or more resources by argument or filename."),
    (["get", "svc", "-o", "xml"], 'unable to match a printer suitable for the output format '
                                  '"xml"'),
    (["get", "svc", "--request-timeout=soon"], 'invalid duration for --request-timeout'),
    (["get", "svc"], "no configuration has been provided"),
])
def test_errors_are_kubectl_style(cli, argv, message):
    result = cli(*argv)
    assert result.code == 1
    assert message in result.err
    assert result.err.startswith("error: ")


def test_version_client_only(cli):
    result = cli("version", "--client")
    assert (result.code, result.out) == (0, "Client Version: v0.1.0\n")


def test_completion_scripts(cli):
    assert "complete -o default -F _meshctl meshctl" in cli("completion", "bash").out
    assert "compdef _meshctl meshctl" in cli("completion", "zsh").out


@pytest.mark.parametrize("words,want", [
    ([""], None),
    (["ge"], ["get"]),
    (["create", "se"], ["secret", "service"]),
    (["get", "deplo"], ["deploy", "deployment", "deployments"]),
    (["get", "svc", "we"], ["web"]),
    (["get", "svc/w"], ["svc/web"]),
    (["get", "--sh"], ["--show-kind", "--show-labels", "--show-managed-fields"]),
    (["completion", ""], ["bash", "zsh"]),
])
def test_completion_candidates(words, want):
    commands = {c.name: {x.name for x in c.children} for c in COMMANDS.children
                if not c.hidden}

    def flags_for(path):
        return ["--show-labels", "--show-kind", "--show-managed-fields", "--selector"]

    def names_for(kind):
        assert kind in ("svc",)
        return ["web", "db"]

    got = completion.candidates(words, commands, flags_for, names_for)
    if want is None:
        assert "get" in got and "apply" in got
    else:
        assert got == want


@pytest.mark.parametrize("text,seconds", [
    ("0", None), ("", None), ("30", 30.0), ("30s", 30.0), ("1m30s", 90.0),
    ("500ms", 0.5), ("2h", 7200.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_all_commands_are_reachable():
    assert {c.name for c in _all_commands()} >= {"get", "tls", "clusterip", "use-context"}
