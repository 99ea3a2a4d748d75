"""Kubernetes strategic merge patch, applied server-side.

`kubectl apply`, `kubectl edit`, `kubectl label/annotate`, `kubectl rollout restart` and the
official Python client (for `patch_namespaced_*` with a dict body) send
`application/strategic-merge-patch+json`. It is JSON merge patch (RFC 7386) plus two things:

- a per-field schema saying which lists are *merged* element by element instead of replaced:
  by a merge key for lists of objects (containers by `name`), as a set for lists of scalars
  (`metadata.finalizers`). Every other list is atomic. Kubernetes reads this from struct tags
  (`patchStrategy:"merge" patchMergeKey:"name"`); meshnet keeps it as `PATCH_STRATEGIES`, a table
  of field paths per kind, checked field by field against kubectl 1.32's own
  `kubectl patch --local --type strategic`.
- directives, keys beginning with `$`:
  `$patch: replace|delete|merge` in a map or as a list element, `$retainKeys: [...]` (drop every
  other key of the live map), `$setElementOrder/<list>: [...]` (final order of a merged list),
  `$deleteFromPrimitiveList/<list>: [...]` (remove scalars from a set-like list).

Theory of operation: both inputs are deep-copied once, then `_Merger.map` walks the patch and
mutates the copy of the live object in place, carrying two paths: the schema path
(`spec.template.spec.containers[].env`, looked up in the table) and the display path
(`spec.template.spec.containers[name="web"].env`, used in errors). Within one map the order is
fixed: `$patch`, `$retainKeys`, `$setElementOrder/*`, `$deleteFromPrimitiveList/*`, then the
fields. The order of a merged list follows apimachinery's `mergeSlice`/`normalizeElementOrder`:
elements named in the patch keep the patch's order, live-only elements keep theirs, and the two
are interleaved by live position (`_order`, `_live_after_merge`). Results were compared with
kubectl 1.32's `kubectl patch --local --type strategic` on table rows and randomized patches.

Deliberate differences from apimachinery (where it stores directive keys verbatim, or refuses
something harmless):
- a patch value inserted where the live object has nothing is still processed (directives and
  nulls inside it are applied, not stored verbatim);
- `$patch: delete` on a map removes the key (Kubernetes leaves `{}`, which decodes the same);
- `$patch: merge` is accepted as the explicit default (Kubernetes rejects it);
- `$deleteFromPrimitiveList/x` on an absent list does nothing (Kubernetes stores the list);
- unknown `$` directives are errors (Kubernetes stores them).

`PatchError` lives here, the lower of the two patch modules, so that `meshnet.api.patch` can
import this module without a cycle; import it from `meshnet.api.patch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshnet.api.resources import RESOURCES


class PatchError(ValueError):
    """A patch that cannot be parsed or applied; the message says what failed and where.

    kube-apiserver answers an undecodable body with 400 BadRequest and a patch that decodes but
    cannot be applied (failed `test`, missing path, bad directive) with 422; `parse_error` tells
    the HTTP layer which.
    """

    def __init__(self, message: str, *, parse_error: bool = False):
        super().__init__(message)
        self.parse_error = parse_error


class UnsupportedPatchType(PatchError):
    """A content type that is not a patch type, or a patch type this kind does not support.

    The HTTP layer maps it to 415 UnsupportedMediaType (`errors.unsupported_media_type`).
    """

    def __init__(self, content_type: str, detail: str):
        self.content_type = content_type
        super().__init__(detail, parse_error=True)


# --- the schema --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchStrategy:
    """How one field is patched: `x-kubernetes-patch-strategy` / `-merge-key` in OpenAPI terms.

    strategy: "merge" (a merging list), "retainKeys" (a map whose patch carries `$retainKeys`),
    or "merge,retainKeys" (a merging list whose elements do). Fields not in the table are
    atomic when they are lists and merged key by key when they are maps.
    """

    strategy: str
    merge_key: str | None = None  # None for a set of scalars (finalizers, podCIDRs)

    @property
    def merges_list(self) -> bool:
        return "merge" in self.strategy.split(",")


def _by(key: str) -> PatchStrategy:
    return PatchStrategy("merge", key)


_SET = PatchStrategy("merge")

_OBJECT_META = {
    "finalizers": _SET,
    "ownerReferences": _by("uid"),
}

_CONTAINER = {
    "ports": _by("containerPort"),
    "env": _by("name"),
    "volumeMounts": _by("mountPath"),
    "volumeDevices": _by("devicePath"),
    # envFrom, args, command, resizePolicy: atomic.
}

_POD_SPEC = {
    "containers": _by("name"),
    "initContainers": _by("name"),
    "ephemeralContainers": _by("name"),
    "volumes": PatchStrategy("merge,retainKeys", "name"),
    "imagePullSecrets": _by("name"),
    "hostAliases": _by("ip"),
    "topologySpreadConstraints": _by("topologyKey"),
    "schedulingGates": _by("name"),
    "resourceClaims": PatchStrategy("merge,retainKeys", "name"),
    # tolerations, readinessGates: atomic.
    **{f"{c}[].{f}": s for c in ("containers", "initContainers", "ephemeralContainers")
       for f, s in _CONTAINER.items()},
}

_POD_STATUS = {
    "conditions": _by("type"),
    "podIPs": _by("ip"),
    "hostIPs": _by("ip"),
    "resourceClaimStatuses": _by("name"),
    # containerStatuses, initContainerStatuses: atomic.
}

_CONDITIONS = {"conditions": _by("type")}


def _at(prefix: str, fields: dict[str, PatchStrategy]) -> dict[str, PatchStrategy]:
    return {f"{prefix}.{path}": s for path, s in fields.items()}


def _workload(status: dict[str, PatchStrategy], **extra: PatchStrategy) -> dict:
    """Deployment/ReplicaSet/StatefulSet: a pod template at spec.template."""
    return {**_at("spec.template.metadata", _OBJECT_META),
            **_at("spec.template.spec", _POD_SPEC),
            **_at("status", status), **extra}


_BY_KIND: dict[str, dict[str, PatchStrategy]] = {
    "Namespace": _at("status", _CONDITIONS),  # spec.finalizers is atomic
    "Node": {"spec.podCIDRs": _SET,
             **_at("status", {**_CONDITIONS, "addresses": _by("type")})},
    "Pod": {**_at("spec", _POD_SPEC), **_at("status", _POD_STATUS)},
    # Kubernetes >= 1.20 also declares list-map keys (port, protocol) for server-side apply;
    # strategic merge patch itself merges by port alone.
    "Service": {"spec.ports": _by("port"), **_at("status", _CONDITIONS)},
    "Endpoints": {},  # subsets are atomic
    "ConfigMap": {},
    "Secret": {},
    "Event": {},
    "Deployment": _workload(_CONDITIONS, **{"spec.strategy": PatchStrategy("retainKeys")}),
    "ReplicaSet": _workload(_CONDITIONS),
    "StatefulSet": _workload(_CONDITIONS),  # volumeClaimTemplates are atomic
    "Ingress": {},  # rules, tls, status.loadBalancer.ingress are atomic
    "IngressClass": {},
    "Lease": {},
    # The scale subresource (autoscaling/v1 Scale) has no lists.
    "Scale": {},
}

PATCH_STRATEGIES: dict[str, dict[str, PatchStrategy]] = {
    kind: {**_at("metadata", _OBJECT_META), **fields} for kind, fields in _BY_KIND.items()
}
"""Field path -> strategy, per kind. List elements are written `[]`: `spec.containers[].env`."""

_missing = sorted({r.kind for r in RESOURCES} - PATCH_STRATEGIES.keys())
assert not _missing, f"kinds without a strategic merge patch schema: {_missing}"


def patch_strategy(kind: str, path: str) -> PatchStrategy | None:
    """The strategy of the field at `path` (e.g. `spec.template.spec.containers`), or None."""
    return PATCH_STRATEGIES.get(kind, {}).get(path)


# --- JSON helpers shared with meshnet.api.patch ------------------------------------------------


def json_copy(value: Any) -> Any:
    """Deep copy of a decoded JSON value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 (Python's `==` says True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(json_equal(x, y) for x, y in zip(a, b)))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def json_text(value: Any, limit: int = 80) -> str:
    """A value as JSON for an error message, cut to `limit` characters."""
    text = json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "number")


def _scalar_key(value: Any) -> tuple:
    """Hashable identity of a scalar or merge-key value, keeping true and 1 apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, (dict, list)):
        return ("json", json.dumps(value, sort_keys=True))
    return (type(value).__name__, value)


# --- applying a patch --------------------------------------------------------------------------

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

_DELETE = object()  # a map that carried `$patch: delete`


def apply_strategic_merge_patch(obj: dict, patch: dict, kind: str) -> dict:
    """Apply a strategic merge patch for an object of `kind` (`Deployment`, ...).

    Returns a new dict; neither argument is modified. Raises PatchError (what, where) when the
    patch cannot be applied, UnsupportedPatchType for a kind without a patch schema.
    """
    table = PATCH_STRATEGIES.get(kind)
    if table is None:
        raise UnsupportedPatchType(
            "application/strategic-merge-patch+json",
            f"strategic merge patch is not supported for kind {kind!r}: it has no patch "
            f"schema (kinds with one: {', '.join(sorted(PATCH_STRATEGIES))}); "
            "send application/merge-patch+json instead")
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object, got "
                         f"{json_type(patch)}")
    original = json_copy(obj) if isinstance(obj, dict) else {}
    merged = _Merger(kind, table).map(original, json_copy(patch), "", "")
    return {} if merged is _DELETE else merged


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Merger:
    """One patch application: the kind's table plus the error wording."""

    def __init__(self, kind: str, table: dict[str, PatchStrategy]):
        self.kind = kind
        self.table = table

    def error(self, where: str, detail: str) -> PatchError:
        return PatchError(f"strategic merge patch for {self.kind} at "
                          f"{where or '<root>'}: {detail}")

    def strategy(self, spath: str) -> PatchStrategy | None:
        s = self.table.get(spath)
        return s if s is not None and s.merges_list else None

    # maps

    def map(self, original: dict, patch: dict, spath: str, dpath: str) -> Any:
        """Merge `patch` into `original` (both owned by us); returns the result or _DELETE."""
        directive = patch.pop(DIRECTIVE, None)
        if directive == "replace":
            return self.map({}, patch, spath, dpath)
        if directive == "delete":
            return _DELETE
        if directive not in (None, "merge"):
            raise self.error(dpath, f'unknown $patch directive {json_text(directive)} (use '
                                    '"replace", "delete" or "merge")')
        if RETAIN_KEYS in patch:
            self.retain_keys(original, patch, patch.pop(RETAIN_KEYS), dpath)
        for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
            self.set_element_order(original, patch, key, spath, dpath)
        # Deletions before additions, so a patch that deletes and adds the same value keeps
        # it. (kube-apiserver takes the keys in Go map order, so there it is a coin toss.)
        for key in [k for k in patch if k.startswith(DELETE_FROM_PRIMITIVE_LIST)]:
            self.delete_from_primitive_list(original, key, patch.pop(key), dpath)
        for key, value in patch.items():
            if key.startswith("$"):
                raise self.error(dpath, f"unknown directive {key!r} (known: $patch, "
                                        "$retainKeys, $setElementOrder/<list>, "
                                        "$deleteFromPrimitiveList/<list>)")
            elif value is None:
                original.pop(key, None)
            else:
                merged = self.value(original.get(key), value, _join(spath, key),
                                    _join(dpath, key))
                if merged is _DELETE:
                    original.pop(key, None)
                else:
                    original[key] = merged
        return original

    def value(self, live: Any, patch: Any, spath: str, dpath: str) -> Any:
        if isinstance(patch, dict):
            return self.map(live if isinstance(live, dict) else {}, patch, spath, dpath)
        if isinstance(patch, list):
            if isinstance(live, list) and self.strategy(spath):
                return self.list(live, patch, spath, dpath)
            return self.fresh_list(patch, spath, dpath)
        return patch

    def retain_keys(self, original: dict, patch: dict, keep: Any, dpath: str) -> None:
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise self.error(dpath, f"$retainKeys must be a list of field names, got "
                                    f"{json_text(keep)}")
        for key, value in patch.items():
            if value is not None and not key.startswith("$") and key not in keep:
                raise self.error(dpath, f"field {key!r} is set in the patch but missing from "
                                        f"$retainKeys {json_text(keep)}")
        for key in [k for k in original if k not in keep]:
            del original[key]

    # lists

    def fresh_list(self, patch: list, spath: str, dpath: str) -> list:
        """A list with nothing live to merge into: apply directives, drop deletions."""
        strategy = self.strategy(spath)
        if strategy is not None and strategy.merge_key is not None:
            return self.list([], patch, spath, dpath)
        return [self.map({}, e, spath + "[]", f"{dpath}[{i}]") if isinstance(e, dict) else e
                for i, e in enumerate(patch)]

    def list(self, live: list, patch: list, spath: str, dpath: str) -> list:
        strategy = self.strategy(spath)
        key = strategy.merge_key
        if key is None:
            self.check_scalars(live, patch, dpath)
            merged = _unique(live + patch, _scalar_key)
            return _order(merged, patch, live, _scalar_key)
        self.check_maps(live, patch, key, dpath)
        ident = _merge_key_of(key)
        rest, replace = [], False
        for i, element in enumerate(patch):
            directive = element.get(DIRECTIVE)
            if directive is None or directive == "merge":
                element.pop(DIRECTIVE, None)
                if key not in element:
                    raise self.error(f"{dpath}[{i}]", f"element has no merge key {key!r}; "
                                                      f"every element of {dpath} needs one")
                rest.append(element)
            elif directive == "replace":
                replace = True  # the list becomes the patch's other elements
            elif directive == "delete":
                if key not in element:
                    raise self.error(f"{dpath}[{i}]", f'"$patch": "delete" needs the merge key '
                                                      f"{key!r} to say which element to delete")
                gone = ident(element)
                live = [e for e in live if ident(e) != gone]
            else:
                raise self.error(f"{dpath}[{i}]", f"unknown $patch directive "
                                                  f'{json_text(directive)} in a list element '
                                                  '(use "replace", "delete" or "merge")')
        espath = spath + "[]"
        if replace:
            return [self.element({}, e, key, espath, dpath) for e in rest]
        merged = list(live)
        position = {}
        for i, e in enumerate(merged):
            position.setdefault(ident(e), i)
        for element in rest:
            i = position.get(ident(element))
            if i is None:
                position[ident(element)] = len(merged)
                merged.append(self.element({}, element, key, espath, dpath))
            else:
                merged[i] = self.element(merged[i], element, key, espath, dpath)
        return _order(merged, rest, live, ident)

    def element(self, live: dict, patch: dict, key: str, spath: str, dpath: str) -> dict:
        here = f"{dpath}[{key}={json_text(patch.get(key))}]"
        merged = self.map(live, patch, spath, here)
        return {} if merged is _DELETE else merged

    def check_maps(self, live: list, patch: list, key: str, dpath: str) -> None:
        for side, items in (("patch", patch), ("live object", live)):
            for i, e in enumerate(items):
                if not isinstance(e, dict):
                    raise self.error(f"{dpath}[{i}]", f"the {side} has {_a(json_type(e))} in a "
                                                      f"list of objects merged by {key!r}")

    def check_scalars(self, live: list, patch: list, dpath: str) -> None:
        for side, items in (("patch", patch), ("live object", live)):
            for i, e in enumerate(items):
                if isinstance(e, (dict, list)):
                    raise self.error(f"{dpath}[{i}]", f"the {side} has {_a(json_type(e))} in a "
                                                      "list of scalars merged as a set")

    def delete_from_primitive_list(self, original: dict, key: str, value: Any,
                                   dpath: str) -> None:
        field = key[len(DELETE_FROM_PRIMITIVE_LIST):]
        if not field or not isinstance(value, list):
            raise self.error(dpath, f"{key} must name a list and hold a list of values to "
                                    f"delete, got {json_text(value)}")
        live = original.get(field)
        if isinstance(live, list):
            gone = {_scalar_key(v) for v in value if not isinstance(v, (dict, list))}
            original[field] = [e for e in live if _scalar_key(e) not in gone]

    def set_element_order(self, original: dict, patch: dict, key: str, spath: str,
                          dpath: str) -> None:
        """`$setElementOrder/<field>`: merge the field's patch list, then order it as given."""
        order = patch.pop(key)
        field = key[len(SET_ELEMENT_ORDER):]
        fspath, fdpath = _join(spath, field), _join(dpath, field)
        if not field or not isinstance(order, list):
            raise self.error(dpath, f"{key} must name a list and hold its elements in order, "
                                    f"got {json_text(order)}")
        strategy = self.strategy(fspath)
        if strategy is None:
            return  # an atomic list: the patch's list (if any) replaces it, order included
        ident = _scalar_key if strategy.merge_key is None else _merge_key_of(strategy.merge_key)
        if strategy.merge_key is not None:
            self.check_maps([], order, strategy.merge_key, f"{dpath}.{key}")
        live = original.get(field)
        live = live if isinstance(live, list) else None
        if field in patch and patch[field] is None:
            return  # the field is deleted by the main loop; nothing to order
        changes = patch.pop(field, None)
        if changes is not None:
            if not isinstance(changes, list):
                raise self.error(fdpath, f"{key} orders a list, but the patch sets "
                                         f"{field} to {json_type(changes)}")
            self.check_order(changes, order, ident, strategy.merge_key, key, fdpath)
        server_order = live or []
        if live is not None and changes is not None:
            if strategy.merge_key is not None:
                server_order = _live_after_merge(live, changes, ident)
            merged = self.list(live, changes, fspath, fdpath)
        elif live is not None:
            merged = live
        elif changes is not None:
            merged = self.fresh_list(changes, fspath, fdpath)
        else:
            return
        original[field] = _order(merged, order, server_order, ident)

    def check_order(self, changes: list, order: list, ident, merge_key: str | None,
                    key: str, dpath: str) -> None:
        """The patch list must name its elements in the order $setElementOrder gives them."""
        if not order:
            return  # apimachinery checks nothing against an empty order
        wanted = iter(ident(o) for o in order)
        for e in changes:
            if isinstance(e, dict) and merge_key is not None and DIRECTIVE in e:
                continue  # deletions and replace markers are not ordered
            if merge_key is not None and not isinstance(e, dict):
                continue  # reported by check_maps
            if ident(e) not in wanted:  # consumes `wanted` up to the match
                raise self.error(dpath, f"the patch lists {json_text(e)} but {key} "
                                        f"{json_text(order)} does not, or lists it in another "
                                        "order")


def _merge_key_of(key: str):
    def ident(element: Any) -> tuple:
        return _scalar_key(element.get(key)) if isinstance(element, dict) else ("", None)
    return ident


def _live_after_merge(live: list, changes: list, ident) -> list:
    """The live list as apimachinery's `$setElementOrder` step sees it after merging into it.

    apimachinery merges a list in place: a deletion shifts the later elements left inside the
    same backing array, leaving stale copies at the end, and appended elements land in those
    freed slots while there is room (objects converted from structs have capacity == length).
    The order step then reads the live list through the original slice, so an element added
    in place of a deleted one counts as live at that slot: renaming a container that has a
    server-added sidecar after it keeps the sidecar first. Reproduced here so that
    `kubectl apply` orders lists as it does against kube-apiserver.
    """
    slots, length = list(live), len(live)
    for change in changes:  # all deletions happen before any append
        if isinstance(change, dict) and change.get(DIRECTIVE) == "delete":
            gone = ident(change)
            for i in [i for i in range(length) if ident(slots[i]) == gone][::-1]:
                slots[i:length - 1] = slots[i + 1:length]
                length -= 1
    if any(isinstance(c, dict) and c.get(DIRECTIVE) == "replace" for c in changes):
        return slots
    present = {ident(e) for e in slots[:length]}
    for change in changes:
        if not isinstance(change, dict) or change.get(DIRECTIVE) not in (None, "merge"):
            continue
        key = ident(change)
        if key in present:
            continue
        if length == len(slots):
            break  # the array is full: Go reallocates and the live slice sees no more
        slots[length] = change
        length += 1
        present.add(key)
    return slots


def _unique(items: list, ident) -> list:
    seen, out = set(), []
    for item in items:
        k = ident(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _order(merged: list, patch_order: list, live_order: list, ident) -> list:
    """Order a merged list as apimachinery's normalizeElementOrder does.

    Elements named in `patch_order` come in that order; the others ("server-only") in their
    live order; the two runs are interleaved so that a server-only element goes before a patch
    element whenever both are live and it was before it in the live list.
    """
    in_patch = {}
    for i, e in enumerate(patch_order):
        in_patch.setdefault(ident(e), i)
    live_pos = {}
    for i, e in enumerate(live_order):
        live_pos.setdefault(ident(e), i)
    end = len(live_order) + len(patch_order)
    ours = sorted((e for e in merged if ident(e) in in_patch), key=lambda e: in_patch[ident(e)])
    theirs = sorted((e for e in merged if ident(e) not in in_patch),
                    key=lambda e: live_pos.get(ident(e), end))
    out, i, j = [], 0, 0
    while i < len(theirs) or j < len(ours):
        if j >= len(ours):
            out.append(theirs[i])
            i += 1
        elif i >= len(theirs):
            out.append(ours[j])
            j += 1
        else:
            left, right = live_pos.get(ident(theirs[i])), live_pos.get(ident(ours[j]))
            if left is not None and right is not None and left < right:
                out.append(theirs[i])
                i += 1
            else:
                out.append(ours[j])
                j += 1
    return out
