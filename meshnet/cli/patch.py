"""Patch computation for `apply`, `label` and `annotate` (pure).

`apply` is client-side apply as kubectl does it: the object's
`kubectl.kubernetes.io/last-applied-configuration` annotation remembers what was applied last
(the *original*), the file holds what is wanted now (*modified*), the server holds the live
object (*current*). The patch

- sets every field of modified whose value differs from current (additions and changes), and
- sets to null every field present in original but gone from modified (the user deleted it
  from the file), recursing into maps,

and is sent as a JSON merge patch (RFC 7386). kubectl sends a strategic merge patch for
built-in kinds, which merges lists by key; we send merge patches (simpler, and exactly right for
meshnet's server), so a list is always replaced whole. To keep re-applying an unchanged file
from replacing lists the server has defaulted (a Service port gains `protocol: TCP`), a list is
left out of the patch when modified's list is "covered" by current's (same length, every
element a subset of the live element) and unchanged since last-applied. An empty patch means
`unchanged`.

The annotation is the object as applied, serialized like kubectl's (compact JSON, keys sorted,
`metadata.annotations` kept as `{}` when it held only the annotation itself, trailing newline),
so that kubectl and meshctl can take turns applying the same object.
"""

from __future__ import annotations

import copy
import json

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_MISSING = object()


def go_json(obj) -> str:
    """encoding/json's compact output: sorted keys, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def last_applied_value(obj: dict) -> str:
    """The annotation value for `obj` (any existing last-applied annotation left out)."""
    doc = copy.deepcopy(obj)
    meta = doc.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    meta["annotations"] = annotations
    return go_json(doc) + "\n"


def with_last_applied(obj: dict) -> dict:
    """A copy of `obj` carrying its own last-applied annotation."""
    value = last_applied_value(obj)
    doc = copy.deepcopy(obj)
    meta = doc.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations[LAST_APPLIED] = value
    meta["annotations"] = annotations
    return doc


def original_from(current: dict) -> dict | None:
    """The last-applied configuration recorded on a live object, if any (and if readable)."""
    value = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not value:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def covered(want, have) -> bool:
    """True if applying `want` onto `have` would change nothing that `want` mentions."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and covered(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(covered(w, h) for w, h in zip(want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have or want == have and type(want) is type(have)
    return want == have


def three_way_merge_patch(original: dict | None, modified: dict, current: dict) -> dict:
    """The merge patch that takes `current` to `modified`, deleting what left `original`."""
    return _diff(original if isinstance(original, dict) else None, modified, current)


def _diff(original: dict | None, modified: dict, current: dict) -> dict:
    patch: dict = {}
    if original is not None:
        for key in original:
            if key not in modified and key in current:
                patch[key] = None
    for key, want in modified.items():
        have = current.get(key, _MISSING) if isinstance(current, dict) else _MISSING
        before = original.get(key, _MISSING) if original is not None else _MISSING
        if isinstance(want, dict) and isinstance(have, dict):
            sub = _diff(before if isinstance(before, dict) else None, want, have)
            if sub:
                patch[key] = sub
        elif isinstance(want, list) and isinstance(have, list):
            changed_since_applied = before is not _MISSING and before != want
            if changed_since_applied or not covered(want, have):
                patch[key] = want
        elif have is _MISSING or not covered(want, have) or not covered(have, want):
            patch[key] = want
    return patch


# ---------------------------------------------------------- label/annotate


class UpdateError(ValueError):
    pass


def metadata_map_patch(field: str, current: dict | None, updates: dict[str, str],
                       removals: list[str], *, overwrite: bool, noun: str) -> tuple[dict, bool]:
    """Merge patch for `metadata.<field>` and whether anything changes.

    Raises UpdateError with kubectl's wording when a key already has a different value and
    --overwrite is not set.
    """
    current = dict(current or {})
    if not overwrite:
        clashes = [k for k, v in updates.items() if k in current and current[k] != v]
        if clashes:
            if noun == "label":
                k = clashes[0]
                raise UpdateError(f"'{k}' already has a value ({current[k]}), and --overwrite "
                                  f"is false")
            listing = "; ".join(f"'{k}' already has a value ({current[k]})" for k in clashes)
            raise UpdateError(f"--overwrite is false but found the following declared "
                              f"annotation(s): {listing}")
    changes: dict = {}
    for k, v in updates.items():
        if current.get(k) != v:
            changes[k] = v
    for k in removals:
        if k in current:
            changes[k] = None
    return {"metadata": {field: changes}}, bool(changes)
