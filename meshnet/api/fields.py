"""Field selectors: the `fieldSelector` query (`status.phase=Running,spec.nodeName!=n1`).

Grammar (k8s.io/apimachinery/pkg/fields): terms split on unescaped commas (AND); each term is
`field` `=`|`==`|`!=` `value`, the first operator found wins. In values `\\`, `\\,` and `\\=`
escape a backslash, comma and equals sign; any other escape, or a bare `,`/`=`, is an error.

Only some fields are selectable, per kind, as in kube-apiserver: every kind has `metadata.name`
and `metadata.namespace`; pods, events, secrets, nodes, namespaces and services add their own.
Kinds kube registers a field-label conversion for reject others with
`field label not supported: <field>`; the rest use kube's generic wording
`"<field>" is not a known field selector: only "metadata.name", "metadata.namespace"`.

A field an object does not have reads as "" (as kube's field sets do), booleans as
"true"/"false".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .resources import ResourceInfo


class FieldSelectorError(ValueError):
    """A field selector that cannot be parsed or names an unsupported field."""


Getter = Callable[[dict], str]


def _path(*keys: str) -> Getter:
    def get(obj: dict) -> str:
        cur = obj
        for k in keys:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(k)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)
    return get


def _bool(*keys: str) -> Getter:
    inner = _path(*keys)
    return lambda obj: inner(obj) or "false"  # an absent bool is false, as in Go


def _event_source(obj: dict) -> str:
    # core/v1 events set source.component; events.k8s.io ones reportingController.
    return _path("source", "component")(obj) or _path("reportingComponent")(obj)


_META: dict[str, Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

# (group, kind) -> extra selectable fields. Kinds listed here reject unknown fields with
# "field label not supported" (kube registers a conversion func for them).
_KIND_FIELDS: dict[tuple[str, str], dict[str, Getter]] = {
    ("", "Pod"): {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("", "Event"): {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _event_source,
        "type": _path("type"),
    },
    ("", "Secret"): {"type": _path("type")},
    ("", "Node"): {"spec.unschedulable": _bool("spec", "unschedulable")},
    ("", "Namespace"): {"status.phase": _path("status", "phase")},
    ("", "Service"): {"spec.clusterIP": _path("spec", "clusterIP"),
                      "spec.type": _path("spec", "type")},
}

# Old clients send these names; kube rewrites them before matching.
_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {"spec.host": "spec.nodeName"},
}


def supported_fields(info: ResourceInfo) -> tuple[str, ...]:
    return tuple(_META) + tuple(_KIND_FIELDS.get((info.group, info.kind), {}))


def _getter(info: ResourceInfo, field: str) -> tuple[str, Getter]:
    gk = (info.group, info.kind)
    field = _ALIASES.get(gk, {}).get(field, field)
    getter = _META.get(field) or _KIND_FIELDS.get(gk, {}).get(field)
    if getter is not None:
        return field, getter
    if gk in _KIND_FIELDS:
        raise FieldSelectorError(f"field label not supported: {field}")
    raise FieldSelectorError(
        f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"')


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=", "==" or "!="
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    info: ResourceInfo
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict) -> bool:
        for r in self.requirements:
            have = _getter(self.info, r.field)[1](obj)
            if (have == r.value) == (r.operator == "!="):
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def requires_exact_match(self, field: str) -> str | None:
        """The value `field` must equal, if the selector pins it (e.g. spec.nodeName)."""
        for r in self.requirements:
            if r.field == field and r.operator in ("=", "=="):
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_value(value: str) -> str:
    out = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise FieldSelectorError(
                    f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise FieldSelectorError(
                f"invalid field selector: unescaped character in value: '{ch}'")
        else:
            out.append(ch)
    if escaped:
        raise FieldSelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(text: str | None, info: ResourceInfo) -> FieldSelector:
    """Parse a `fieldSelector` query for one kind; raises FieldSelectorError."""
    reqs = []
    for term in sorted(_split_terms(text or "")):
        if not term.strip():
            continue
        parts = _split_term(term)
        if parts is None:
            raise FieldSelectorError(
                f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = parts
        field, _ = _getter(info, field.strip())
        reqs.append(FieldRequirement(field, op, unescape_value(value)))
    return FieldSelector(info, tuple(reqs))
