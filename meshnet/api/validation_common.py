"""Shared pieces of object validation: field paths, typed reads of JSON, metadata rules.

Objects arrive as decoded JSON, so any field may hold the wrong type. The `*_at` readers return
a usable value (or None / an empty container) and record one cause for a wrong type, so the
per-kind validators never raise on odd input and still report every other failing field.

Paths are written the way kube-apiserver writes them: `spec.ports[0].port`, map entries as
`data[tls.crt]`, the root as "".
"""

from __future__ import annotations

import json
from typing import Callable

from .errors import Cause, field_forbidden, field_invalid, field_required
from .labels import validate_labels
from .names import is_dns1123_label, is_qualified_name

Causes = list[Cause]
NameCheck = Callable[[str], list[str]]

# metav1 TotalAnnotationSizeLimitB: annotations (keys + values) share 256 KiB.
TOTAL_ANNOTATION_SIZE_LIMIT_BYTES = 256 * 1024


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def at(path: str, index) -> str:
    """`path[0]` for a list index, `path[key]` for a map key."""
    return f"{path}[{index}]"


class Shown:
    """A value displayed verbatim in a cause (`map[string]string{"app":"web"}`)."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def go_map(value) -> Shown:
    """Labels the way kube prints them in causes (Go's %#v of a map, keys sorted)."""
    if not value:
        return Shown("map[string]string(nil)")
    items = ",".join(f"{json.dumps(str(k))}:{json.dumps(str(v))}"
                     for k, v in sorted(value.items()))
    return Shown(f"map[string]string{{{items}}}")


def shown(value):
    """What to pass as the value of a cause: scalars as they are, containers as JSON."""
    if isinstance(value, (dict, list)):
        return Shown(json.dumps(value, separators=(",", ":"), sort_keys=True))
    return value


def too_long(path: str, limit_bytes: int) -> Cause:
    return Cause(path, f"Too long: may not be more than {limit_bytes} bytes", "FieldValueTooLong")


def immutable(path: str, value) -> Cause:
    return field_invalid(path, shown(value), "field is immutable")


def has_cause(causes: Causes, path: str) -> bool:
    """Whether `path` already failed (e.g. a wrong type), so "Required" would only repeat it."""
    return any(c.field == path for c in causes)


def invalid_each(path: str, value, messages: list[str]) -> Causes:
    """One cause per broken rule, as kube reports them."""
    return [field_invalid(path, value, m) for m in messages]


# --- typed reads ---------------------------------------------------------------------------

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               bool: "a boolean"}


def _typed(parent: dict, key: str, path: str, causes: Causes, kind: type):
    if not isinstance(parent, dict):
        return None
    value = parent.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        causes.append(field_invalid(child(path, key), shown(value), f"must be {_TYPE_NAMES[kind]}"))
        return None
    return value


def dict_at(parent: dict, key: str, path: str, causes: Causes) -> dict:
    return _typed(parent, key, path, causes, dict) or {}


def list_at(parent: dict, key: str, path: str, causes: Causes) -> list:
    return _typed(parent, key, path, causes, list) or []


def str_at(parent: dict, key: str, path: str, causes: Causes) -> str | None:
    return _typed(parent, key, path, causes, str)


def int_at(parent: dict, key: str, path: str, causes: Causes) -> int | None:
    return _typed(parent, key, path, causes, int)


def bool_at(parent: dict, key: str, path: str, causes: Causes) -> bool | None:
    return _typed(parent, key, path, causes, bool)


def str_map_at(parent: dict, key: str, path: str, causes: Causes) -> dict[str, str]:
    """A map[string]string; entries with non-string values are reported and dropped."""
    value = dict_at(parent, key, path, causes)
    out = {}
    for k, v in value.items():
        if isinstance(v, str):
            out[k] = v
        else:
            causes.append(field_invalid(at(child(path, key), k), shown(v), "must be a string"))
    return out


def objects_at(parent: dict, key: str, path: str, causes: Causes) -> list[tuple[str, dict]]:
    """A list of objects as (path, object) pairs; non-object entries are reported and skipped."""
    out = []
    base = child(path, key)
    for i, item in enumerate(list_at(parent, key, path, causes)):
        if isinstance(item, dict):
            out.append((at(base, i), item))
        else:
            causes.append(field_invalid(at(base, i), shown(item), "must be an object"))
    return out


def sub(obj: dict, key: str) -> dict | None:
    """For defaulting: obj[key] as a dict, created when absent; None when it has another type."""
    if not isinstance(obj, dict):
        return None
    value = obj.setdefault(key, {})
    return value if isinstance(value, dict) else None


def sub_list(obj: dict, key: str) -> list[dict]:
    """For defaulting: the dict entries of obj[key] (absent or mistyped -> nothing to default)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- metadata ------------------------------------------------------------------------------

def validate_object_meta(obj: dict, *, namespaced: bool, name_check: NameCheck,
                         path: str = "metadata") -> Causes:
    """ObjectMeta rules shared by every kind (kube's ValidateObjectMeta)."""
    causes: Causes = []
    if not isinstance(obj.get("metadata"), dict):
        if obj.get("metadata") is not None:
            return [field_invalid(path, shown(obj.get("metadata")), "must be an object")]
        return [field_required(child(path, "name"), "name or generateName is required")]
    meta = obj["metadata"]
    name = str_at(meta, "name", path, causes)
    if not name:
        # generateName is resolved into a name before validation, so a missing name is final.
        causes.append(field_required(child(path, "name"), "name or generateName is required"))
    else:
        causes.extend(invalid_each(child(path, "name"), name, name_check(name)))
    namespace = str_at(meta, "namespace", path, causes)
    if namespaced:
        if not namespace:
            causes.append(field_required(child(path, "namespace")))
        else:
            causes.extend(invalid_each(child(path, "namespace"), namespace,
                                       is_dns1123_label(namespace)))
    elif namespace:
        causes.append(field_forbidden(child(path, "namespace"), "not allowed on this type"))
    labels = _typed(meta, "labels", path, causes, dict)
    causes.extend(validate_labels(labels, child(path, "labels")))
    causes.extend(validate_annotations(_typed(meta, "annotations", path, causes, dict),
                                       child(path, "annotations")))
    causes.extend(_validate_owner_references(meta, path))
    for i, fin in enumerate(list_at(meta, "finalizers", path, causes)):
        fpath = at(child(path, "finalizers"), i)
        if not isinstance(fin, str):
            causes.append(field_invalid(fpath, shown(fin), "must be a string"))
        else:
            causes.extend(invalid_each(fpath, fin, is_qualified_name(fin)))
    return causes


def validate_annotations(annotations: dict | None, path: str) -> Causes:
    if not annotations:
        return []
    causes: Causes = []
    total = 0
    for k, v in annotations.items():
        # Annotation keys are qualified names in which case does not matter.
        causes.extend(invalid_each(path, k, is_qualified_name(k.lower())))
        if not isinstance(v, str):
            causes.append(field_invalid(at(path, k), shown(v), "must be a string"))
            continue
        total += len(k.encode()) + len(v.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES:
        causes.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))
    return causes


def _validate_owner_references(meta: dict, path: str) -> Causes:
    causes: Causes = []
    refs = objects_at(meta, "ownerReferences", path, causes)
    controllers = []
    for rpath, ref in refs:
        api_version = ref.get("apiVersion") or ""
        if not isinstance(api_version, str) or not api_version.rpartition("/")[2]:
            causes.append(field_invalid(child(rpath, "apiVersion"), shown(api_version),
                                        "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                causes.append(field_invalid(child(rpath, key), shown(ref.get(key, "")),
                                            f"{key} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        causes.append(field_invalid(child(path, "ownerReferences"), Shown(", ".join(controllers)),
                                    "Only one reference can have Controller set to true"))
    return causes


def validate_object_meta_update(new: dict, old: dict, path: str = "metadata") -> Causes:
    """Identity fields may not change (a value that is absent is filled from the stored one)."""
    new_meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
    old_meta = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
    causes: Causes = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        have, was = new_meta.get(key), old_meta.get(key)
        if have and was and have != was:
            causes.append(immutable(child(path, key), have))
    return causes
