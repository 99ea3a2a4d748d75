"""PATCH bodies: JSON merge patch, JSON patch, strategic merge patch and (simplified) apply.

Pure functions over decoded JSON; none modifies its arguments, and what they return shares no
mutable part with them. `apply_patch` is what the API server calls: it decodes the body for its
content type, applies it and insists the result is still an object.

- `application/merge-patch+json`: RFC 7386 (`apply_merge_patch`).
- `application/json-patch+json`: RFC 6902 with RFC 6901 pointers (`apply_json_patch`); the ops
  apply in order to a private copy, so a failing op (a `test` included) fails the whole patch
  and nothing is half-applied.
- `application/strategic-merge-patch+json`: Kubernetes' own (`meshnet.api.strategic`).
- `application/apply-patch+yaml`: server-side apply, simplified (see `apply_patch`).

Errors are `PatchError` (a ValueError) naming the op, pointer, field path or line and column.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from meshnet.api.strategic import (
    PATCH_STRATEGIES,
    PatchError,
    PatchStrategy,
    UnsupportedPatchType,
    apply_strategic_merge_patch,
    json_copy,
    json_equal,
    json_text,
    json_type,
    patch_strategy,
)

__all__ = [
    "APPLY_PATCH", "JSON_PATCH", "MERGE_PATCH", "PATCH_TYPES", "STRATEGIC_MERGE_PATCH",
    "MAX_JSON_PATCH_OPS", "PATCH_STRATEGIES", "PatchError", "PatchStrategy",
    "UnsupportedPatchType", "apply_json_patch", "apply_merge_patch", "apply_patch",
    "apply_strategic_merge_patch", "patch_strategy",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

# kube-apiserver refuses JSON patches with more operations than this (maxJSONPatchOperations).
MAX_JSON_PATCH_OPS = 10000


# --- RFC 7386 ----------------------------------------------------------------------------------


def apply_merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes, objects merge recursively, the rest replaces.

    A non-object patch replaces the target wholesale (RFC 7386 section 2), so the result is a
    dict whenever `patch` is one.
    """
    if not isinstance(patch, dict):
        return json_copy(patch)
    target = obj if isinstance(obj, dict) else {}
    result = {k: json_copy(v) for k, v in target.items() if k not in patch}
    for key, value in patch.items():
        if value is not None:
            result[key] = apply_merge_patch(target.get(key), value)
    return result


# --- RFC 6901 / RFC 6902 -----------------------------------------------------------------------


class _OpError(Exception):
    """Why one op failed; apply_json_patch adds which op it was."""


def _parse_pointer(pointer: Any, member: str) -> list[str]:
    if not isinstance(pointer, str):
        raise _OpError(f'"{member}" must be a string JSON pointer, got {json_text(pointer)}')
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _OpError(f'"{member}" {pointer!r} is not a JSON pointer: it must be empty or '
                       'start with "/"')
    tokens = pointer[1:].split("/")
    for token in tokens:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise _OpError(f'"{member}" {pointer!r} has a "~" not followed by 0 or 1 '
                           '(write "~0" for "~" and "~1" for "/")')
    # RFC 6901 section 4: ~1 first, then ~0, so that "~01" means "~1" and not "/".
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _index(container: list, token: str, where: list[str], *, end_ok: bool) -> int:
    """An array index per RFC 6901: digits without leading zeros; `-` is one past the end."""
    if token == "-" and end_ok:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or not token.isascii():
        raise _OpError(f"{_pointer(where) or '/'} is an array; {token!r} is not an array index")
    i = int(token)
    limit = len(container) if end_ok else len(container) - 1
    if i > limit:
        raise _OpError(f"index {i} is out of range for the array of length {len(container)} at "
                       f"{_pointer(where) or '/'}")
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    """The container holding the last token; every step before it must exist."""
    node = doc
    for depth, token in enumerate(tokens[:-1]):
        where = tokens[:depth]
        if isinstance(node, dict):
            if token not in node:
                raise _OpError(f"path not found: {_pointer(tokens[:depth + 1])} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, where, end_ok=False)]
        else:
            raise _OpError(f"path not found: {_pointer(where) or 'the document'} is a "
                           f"{json_type(node)}, not an object or array")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _OpError("path not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, tokens[:-1], end_ok=False)]
    raise _OpError(f"path not found: {_pointer(tokens[:-1]) or 'the document'} is a "
                   f"{json_type(parent)}")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, tokens[:-1], end_ok=True), value)
    else:
        raise _OpError(f"path not found: {_pointer(tokens[:-1]) or 'the document'} is a "
                       f"{json_type(parent)}, not an object or array")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    """Remove and return the value at tokens (which must exist)."""
    if not tokens:
        raise _OpError("cannot remove the whole document")
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _OpError("path not found")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, tokens[:-1], end_ok=False))
    raise _OpError(f"path not found: {_pointer(tokens[:-1]) or 'the document'} is a "
                   f"{json_type(parent)}")


def _value(op: dict) -> Any:
    if "value" not in op:
        raise _OpError('missing "value"')
    return json_copy(op["value"])


def _apply_op(doc: Any, op: dict) -> Any:
    name = op["op"]
    tokens = _parse_pointer(op["path"], "path")
    if name == "add":
        return _add(doc, tokens, _value(op))
    if name == "remove":
        _remove(doc, tokens)
        return doc
    if name == "replace":
        value = _value(op)
        _get(doc, tokens)  # RFC 6902 4.3: the target location MUST exist
        if not tokens:
            return value
        _remove(doc, tokens)
        return _add(doc, tokens, value)
    if name in ("move", "copy"):
        if "from" not in op:
            raise _OpError('missing "from"')
        source = _parse_pointer(op["from"], "from")
        if name == "copy":
            return _add(doc, tokens, json_copy(_get(doc, source)))
        if source == tokens:
            _get(doc, source)
            return doc
        if tokens[: len(source)] == source:
            raise _OpError(f"cannot move {op['from']} into its own child {op['path']}")
        return _add(doc, tokens, _remove(doc, source))
    if name == "test":
        expected = _value(op)
        actual = _get(doc, tokens)
        if not json_equal(actual, expected):
            raise _OpError(f"test failed: the value is {json_text(actual)}, expected "
                           f"{json_text(expected)}")
        return doc
    raise _OpError(f"unknown op {json_text(name)} (use add, remove, replace, move, copy "
                   "or test)")


def apply_json_patch(obj: Any, ops: list) -> Any:
    """RFC 6902 JSON patch. All ops apply or none: any failure (a `test` too) raises PatchError.

    The error names the op: `json patch op 2 (remove /spec/foo): path not found`.

    This follows RFC 6902 where kube-apiserver's library (evanphx/json-patch v4) is looser:
    there, `replace` of a missing object member adds it, `test` of a missing path against null
    passes, and indices such as `01` and `-1` are accepted. Here all three are errors.
    """
    if not isinstance(ops, list):
        raise PatchError(f"a json patch must be a JSON array of operations, got {json_type(ops)}")
    if len(ops) > MAX_JSON_PATCH_OPS:
        raise PatchError(f"a json patch may have at most {MAX_JSON_PATCH_OPS} operations, "
                         f"this one has {len(ops)}")
    doc = json_copy(obj)
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"json patch op {i}: must be an object, got {json_type(op)}")
        if "op" not in op:
            raise PatchError(f'json patch op {i}: missing "op"')
        if "path" not in op:
            raise PatchError(f'json patch op {i} ({op["op"]}): missing "path"')
        try:
            doc = _apply_op(doc, op)
        except _OpError as e:
            raise PatchError(f"json patch op {i} ({op['op']} {op['path']}): {e}") from None
    return doc


# --- bodies ------------------------------------------------------------------------------------


class _YAMLLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): timestamps stay strings.

    PyYAML's SafeLoader would turn `creationTimestamp: 2024-01-01T00:00:00Z` into a datetime,
    which is not JSON.
    """


_YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _text(body: bytes | str, what: str) -> str:
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise PatchError(f"{what}: not UTF-8 (byte {e.start})", parse_error=True) from None
    if not body.strip():
        raise PatchError(f"{what}: the body is empty", parse_error=True)
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes | str, what: str) -> Any:
    """Decode a JSON body; errors say line and column."""
    text = _text(body, what)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise PatchError(f"{what}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                         parse_error=True) from None
    except ValueError as e:  # NaN / Infinity
        raise PatchError(f"{what}: invalid JSON: {e}", parse_error=True) from None


def parse_yaml(body: bytes | str, what: str) -> Any:
    """Decode a YAML (or JSON) body; errors say line and column (1-based)."""
    text = _text(body, what)
    try:
        return yaml.load(text, Loader=_YAMLLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = e.problem or e.context or "unreadable"
        raise PatchError(f"{what}: invalid YAML{where}: {problem}", parse_error=True) from None
    except yaml.YAMLError as e:
        raise PatchError(f"{what}: invalid YAML: {e}", parse_error=True) from None


def _directives(value: Any, path: str = "") -> str | None:
    """The path of the first `$` key in an apply configuration, if any."""
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else k
            if isinstance(k, str) and k.startswith("$"):
                return here
            found = _directives(v, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _directives(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _not_json(value: Any, path: str = "") -> str | None:
    """Where a YAML document holds something JSON cannot (`1: x`, `!!set`, `!!binary`, `.nan`)."""
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if not isinstance(k, str):
                return f"{here}: keys must be strings"
            found = _not_json(v, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _not_json(v, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{path}: {value} is not a JSON number"
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        return f"{path}: a YAML {type(value).__name__} has no JSON form"
    return None


def apply_patch(obj: dict, body: bytes | str, content_type: str, kind: str) -> dict:
    """Decode `body` as `content_type` and apply it to `obj` (an object of `kind`).

    `application/apply-patch+yaml` (server-side apply) is simplified: the body, YAML or JSON,
    is a full or partial object and is applied as a strategic merge patch, so every field it
    sets wins over the live object. meshnet keeps no field managers and no ownership: a field
    removed from the applied configuration is NOT removed from the object (Kubernetes would
    remove it if this manager was its only owner), and conflicts with other managers are never
    reported. An explicit null still deletes. `$` directives are refused, since an apply
    configuration is an object and not a patch.

    Raises UnsupportedPatchType for a content type that is not a patch type, PatchError for
    anything else.
    """
    try:
        return _apply_patch(obj, body, content_type, kind)
    except RecursionError:
        # json.loads and the appliers recurse per nesting level; only a hostile body gets here.
        raise PatchError("the patch or the object nests too deeply", parse_error=True) from None


def _apply_patch(obj: dict, body: bytes | str, content_type: str, kind: str) -> dict:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        result = apply_json_patch(obj, parse_json(body, "json patch"))
    elif media == MERGE_PATCH:
        result = apply_merge_patch(obj, _object(parse_json(body, "merge patch"), "merge patch"))
    elif media == STRATEGIC_MERGE_PATCH:
        patch = _object(parse_json(body, "strategic merge patch"), "strategic merge patch")
        result = apply_strategic_merge_patch(obj, patch, kind)
    elif media == APPLY_PATCH:
        config = _object(parse_yaml(body, "apply configuration"), "apply configuration")
        not_json = _not_json(config)
        if not_json:
            raise PatchError(f"apply configuration: {not_json}", parse_error=True)
        if config.get("kind", kind) != kind:
            raise PatchError(f"apply configuration: kind is {config['kind']!r}, but the "
                             f"object being applied to is a {kind}")
        directive = _directives(config)
        if directive:
            raise PatchError(f"apply configuration: {directive}: $ directives belong to "
                             "strategic merge patches, not to an applied object")
        result = apply_strategic_merge_patch(obj, config, kind)
    else:
        raise UnsupportedPatchType(
            content_type, f"{content_type!r} is not a patch type; use one of "
                          f"{', '.join(PATCH_TYPES)}")
    if not isinstance(result, dict):
        raise PatchError(f"the patched object must be a JSON object, the patch made it "
                         f"{json_type(result)}")
    return result


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise PatchError(f"{what}: must be a JSON object, got {json_type(value)}")
    return value
