"""`meshctl edit`: open an object in $EDITOR as YAML and save it back with PUT.

Theory of operation (kubectl's editor loop, pkg/cmd/util/editor):

1. GET the object, drop `metadata.managedFields`, write it as YAML under kubectl's header
   comment to a temporary file and run `$KUBE_EDITOR`, `$EDITOR` or `vi` on it.
2. Lines starting with `#` are ignored. An empty file cancels (`Edit cancelled, saved file
   was empty.`); a file identical to what was shown cancels (`Edit cancelled, no changes
   made.`, or, after a failed attempt, an error and a copy of the edit kept on disk).
3. Otherwise the YAML is parsed and PUT (the object still carries its resourceVersion, so a
   concurrent change is a Conflict, not a lost update). Any failure - bad YAML, a changed
   name or kind, a server error - reopens the editor on the user's own text with the errors as
   `#` comments at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile

import yaml

from meshnet.client.errors import ApiError

from .context import Session, parse_resource_args
from .errors import CLIError
from .manifests import load_yaml, yaml_error_text
from .printers import object_ref, strip_managed_fields, to_yaml

HEADER = ("# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
          "# and an empty file will abort the edit. If an error occurs while saving this file "
          "will be\n"
          "# reopened with the relevant failures.\n"
          "#\n")

DESCRIPTION = """Edit a resource from the default editor.

The edit command allows you to directly edit any API resource you can retrieve via the command
line tools. It will open the editor defined by your KUBE_EDITOR, or EDITOR environment
variables, or fall back to 'vi'. The object is saved with a PUT; if another change happened
meanwhile the save fails with a conflict and the editor reopens."""

EXAMPLES = """Examples:
  # Edit the service named 'nginx-service'
  meshctl edit svc/nginx-service

  # Use an alternative editor
  KUBE_EDITOR="nano" meshctl edit deployment nginx-deployment"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="+", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("-o", "--output", default="yaml", choices=("yaml", "json"),
                   help="Output format to edit in: yaml (default) or json.")


def strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.lstrip().startswith("#"))


def error_comments(kind_plural: str, name: str, err: BaseException) -> str:
    """The `#` block kubectl prints above a re-opened edit."""
    lines = []
    if isinstance(err, ApiError) and err.reason == "Invalid" and err.causes:
        lines.append(f'# {kind_plural} "{name}" was not valid:')
        for cause in err.causes:
            field = cause.get("field", "")
            message = cause.get("message", "")
            lines.append(f"# * {field}: {message}" if field else f"# * {message}")
    else:
        message = err.message if isinstance(err, (ApiError, CLIError)) else str(err)
        for part in str(message).split("\n"):
            lines.append(f"# {part}")
    return "\n".join(lines) + "\n#\n"


def editor_command(env: dict) -> list[str]:
    for var in ("KUBE_EDITOR", "EDITOR"):
        value = env.get(var)
        if value:
            return shlex.split(value)
    return ["vi"]


def run(args, s: Session) -> int:
    targets, _ = parse_resource_args(s, args.resources, "edit")
    pairs = [(t.info, n) for t in targets for n in t.names]
    if len(pairs) != 1 or len(targets) != 1:
        raise CLIError("meshctl edit takes exactly one object: TYPE NAME or TYPE/NAME")
    info, name = pairs[0]
    ns = s.namespace_of(info)
    obj = strip_managed_fields(s.get_object(info, name))
    body = to_yaml(obj) if args.output == "yaml" else json.dumps(obj, indent=4) + "\n"
    shown = body
    comments = ""
    had_error = False
    command = editor_command(s.io.env)
    fd, path = tempfile.mkstemp(prefix="meshctl-edit-", suffix=f".{args.output}")
    os.close(fd)
    try:
        while True:
            with open(path, "w", encoding="utf-8") as f:
                f.write(HEADER + comments + shown)
            try:
                result = subprocess.run(command + [path], env=s.io.env)
            except OSError as e:
                raise CLIError(f'there was a problem with the editor "{" ".join(command)}": '
                               f"{e.strerror}") from None
            if result.returncode != 0:
                raise CLIError(f'there was a problem with the editor "{" ".join(command)}"')
            with open(path, encoding="utf-8") as f:
                edited = strip_comments(f.read())
            if not edited.strip():
                s.out("Edit cancelled, saved file was empty.\n")
                return 0
            if edited == strip_comments(shown):
                if not had_error:
                    s.out("Edit cancelled, no changes made.\n")
                    return 0
                keep = tempfile.NamedTemporaryFile("w", prefix="meshctl-edit-",
                                                   suffix=f".{args.output}", delete=False)
                with keep:
                    keep.write(edited)
                s.err(f'A copy of your changes has been stored to "{keep.name}"')
                raise CLIError("Edit cancelled, no valid changes were saved.")
            try:
                new = _parse(edited, args.output)
                _check_identity(obj, new)
                s.client.replace(info, name, new, ns)
            except (ApiError, CLIError) as e:
                had_error = True
                shown = edited
                comments = error_comments(info.qualified, name, e)
                continue
            s.out(f"{object_ref(info, name)} edited\n")
            return 0
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _parse(text: str, fmt: str) -> dict:
    if fmt == "json":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise CLIError(f"The edited file had a syntax error: {e}") from None
    else:
        try:
            obj = load_yaml(text)
        except yaml.YAMLError as e:
            raise CLIError(f"The edited file had a syntax error: {yaml_error_text(e)}") from None
    if not isinstance(obj, dict):
        raise CLIError("The edited file had a syntax error: expected an object")
    return obj


def _check_identity(before: dict, after: dict) -> None:
    def ident(o):
        m = o.get("metadata") or {}
        return (o.get("apiVersion"), o.get("kind"), m.get("name"))
    if ident(before) != ident(after):
        raise CLIError("At least one of apiVersion, kind and name was changed")
