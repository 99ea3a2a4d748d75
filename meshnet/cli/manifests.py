"""Reading `-f` manifests: files, directories (`-R`), stdin; multi-document YAML and JSON.

Theory of operation
-------------------
`read_manifests()` is the only I/O here; `parse_documents()` turns one file's text into
`Manifest`s and `ManifestError`s and is pure.

- A file is cut into documents at `---` lines (as kubectl's YAMLReader does) so that each
  document is parsed on its own and an error names the line *in the file*, not in the document:
  `error parsing nginx.yaml: line 7: mapping values are not allowed here`.
- Every document of every file is parsed and checked before anything is sent; the caller gets
  all errors at once and sends nothing if there is one. A half-applied directory is worse than
  an error.
- YAML is read with YAML 1.1 scalars as go-yaml reads them, except that timestamps stay
  strings and `1:30` is not a sexagesimal number; duplicate keys are an error (sigs.k8s.io/yaml
  refuses them too); non-string keys become strings (YAML `1: x` is JSON `"1": "x"`).
- `kind: List` (and any `*List` with `items`) is flattened into its items, each remembering the
  file and line of the list.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass

import yaml

EXTENSIONS = (".json", ".yaml", ".yml")
STDIN = "STDIN"


@dataclass(frozen=True)
class Manifest:
    source: str  # the path as given, or "STDIN"
    line: int  # 1-based line of the document's first line in the source
    obj: dict

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "")

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion") or "")

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")

    def __repr__(self) -> str:
        return f"<Manifest {self.source}:{self.line} {self.kind}/{self.name}>"


class ManifestError(Exception):
    """One problem in one file; `str()` is the text after `error: `."""

    def __init__(self, message: str, source: str = "", line: int = 0):
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line


# ----------------------------------------------------------------- loader


class _Loader(yaml.SafeLoader):
    pass


def _timestamp_as_string(loader, node):
    return loader.construct_scalar(node)


def _int_without_sexagesimal(loader, node):
    text = loader.construct_scalar(node)
    if ":" in text:
        return text
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _float_without_sexagesimal(loader, node):
    text = loader.construct_scalar(node)
    if ":" in text:
        return text
    return yaml.SafeLoader.construct_yaml_float(loader, node)


def _mapping_without_duplicates(loader, node, deep=False):
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
    loader.flatten_mapping(node)
    result = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, bool):
            key = "true" if key else "false"
        elif key is None:
            key = "null"
        elif not isinstance(key, str):
            try:
                key = str(key)
            except Exception:  # noqa: BLE001 - any unprintable key is a user error below
                key = repr(key)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f'key "{key}" already set in map', key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)
_Loader.add_constructor("tag:yaml.org,2002:int", _int_without_sexagesimal)
_Loader.add_constructor("tag:yaml.org,2002:float", _float_without_sexagesimal)
_Loader.add_constructor("tag:yaml.org,2002:map", _mapping_without_duplicates)


def load_yaml(text: str):
    """One YAML document with the rules above (also used by `edit`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# PyYAML's wording -> go-yaml's (what kubectl users know from "error converting YAML to JSON").
_GO_YAML_WORDING = (
    ("expected <block end>, but found", "did not find expected key"),
    ("mapping values are not allowed here", "mapping values are not allowed in this context"),
    ("found character '\\t' that cannot start any token",
     "found character that cannot start any token"),
    ("expected <document start>, but found", "did not find expected <document start>"),
)


def _go_wording(problem: str) -> str:
    for py, go in _GO_YAML_WORDING:
        if problem.startswith(py):
            return go
    return problem


def yaml_error_text(e: yaml.YAMLError, line_offset: int = 0) -> str:
    """`line N: problem` with N counted in the whole file."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = _go_wording(getattr(e, "problem", None) or str(e))
    context = getattr(e, "context", None)
    text = problem
    if context and context not in problem:
        ctx_mark = getattr(e, "context_mark", None)
        where = f" at line {ctx_mark.line + 1 + line_offset}" if ctx_mark is not None and \
            mark is not None and ctx_mark.line != mark.line else ""
        text = f"{problem} ({context}{where})"
    if mark is not None:
        return f"line {mark.line + 1 + line_offset}: {text}"
    return text


# ---------------------------------------------------------------- parsing

_SEPARATOR = re.compile(r"^---(\s.*)?$")


def split_documents(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each `---`-separated document."""
    docs: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _SEPARATOR.match(line.rstrip("\r\n")):
            docs.append((start, "".join(current)))
            current = []
            start = number + 1
            rest = line.rstrip("\r\n")[3:].strip()
            if rest and not rest.startswith("#"):
                # `--- {...}` puts content on the separator line itself.
                current.append(" " * 4 + rest + "\n")
                start = number
            continue
        current.append(line)
    docs.append((start, "".join(current)))
    return docs


def _is_blank(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())


def _type_name(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def _first_content_line(text: str) -> int:
    for i, ln in enumerate(text.splitlines()):
        if ln.strip() and not ln.lstrip().startswith("#"):
            return i
    return 0


def parse_documents(text: str, source: str) -> tuple[list[Manifest], list[ManifestError]]:
    """Parse one file's text into manifests (Lists flattened) and errors."""
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        # JSON (possibly a stream of objects): YAML would choke on tabs and is slower.
        decoder = json.JSONDecoder()
        pos = len(text) - len(stripped)
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                errors.append(ManifestError(
                    f"error parsing {source}: line {e.lineno}: {e.msg}", source, e.lineno))
                break
            line = text.count("\n", 0, pos) + 1
            _collect(obj, source, line, manifests, errors)
            pos = end
        return manifests, errors
    for start, doc in split_documents(text):
        if _is_blank(doc):
            continue
        offset = start - 1
        try:
            obj = load_yaml(doc)
        except yaml.YAMLError as e:
            err_line = getattr(getattr(e, "problem_mark", None), "line", None)
            errors.append(ManifestError(
                f"error parsing {source}: {yaml_error_text(e, offset)}", source,
                (err_line or 0) + 1 + offset))
            continue
        if obj is None:
            continue
        _collect(obj, source, start + _first_content_line(doc), manifests, errors)
    return manifests, errors


def _collect(obj, source: str, line: int, manifests: list, errors: list) -> None:
    if not isinstance(obj, dict):
        errors.append(ManifestError(
            f"error parsing {source}: line {line}: expected an object with apiVersion and kind, "
            f"got {_type_name(obj)}", source, line))
        return
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            _collect(item, source, line, manifests, errors)
        return
    problems = []
    if not obj.get("apiVersion"):
        problems.append("apiVersion not set")
    if not obj.get("kind"):
        problems.append("kind not set")
    if problems:
        listing = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        errors.append(ManifestError(
            f'error validating "{source}": error validating data: {listing} (document at line '
            f"{line}); every object needs apiVersion and kind", source, line))
        return
    if not isinstance(obj.get("metadata", {}), dict):
        errors.append(ManifestError(
            f'error validating "{source}": error validating data: metadata must be an object '
            f"(line {line})", source, line))
        return
    manifests.append(Manifest(source, line, obj))


# ------------------------------------------------------------------- I/O


def expand_paths(paths: list[str], recursive: bool = False) -> list[str]:
    """Files to read, in order: directories expand to their manifest files (sorted)."""
    out: list[str] = []
    for path in paths:
        if path == "-":
            out.append(path)
            continue
        if re.match(r"^[a-z]+://", path):
            raise ManifestError(f'reading manifests from URLs is not supported: "{path}"; '
                                f"download it and pass the file", path)
        if not os.path.exists(path):
            raise ManifestError(f'the path "{path}" does not exist', path)
        if os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith(EXTENSIONS):
                        found.append(os.path.join(root, name))
                if not recursive:
                    break
            out.extend(sorted(found) if not recursive else found)
        else:
            out.append(path)
    return out


def read_manifests(paths: list[str], recursive: bool = False, stdin=None) -> list[Manifest]:
    """Read and parse everything; raises ManifestErrors (all of them) before returning any."""
    files = expand_paths(paths, recursive)
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    for path in files:
        if path == "-":
            text = (stdin or sys.stdin).read()
            source = STDIN
        else:
            source = path
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError:
                errors.append(ManifestError(f"error parsing {path}: not UTF-8 text", path))
                continue
            except OSError as e:
                errors.append(ManifestError(f"error reading {path}: {e.strerror}", path))
                continue
        found, errs = parse_documents(text, source)
        manifests.extend(found)
        errors.extend(errs)
    if errors:
        raise ManifestErrors(errors)
    return manifests


class ManifestErrors(Exception):
    def __init__(self, errors: list[ManifestError]):
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors
