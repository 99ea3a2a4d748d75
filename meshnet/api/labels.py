"""Label selectors: the `labelSelector` query grammar, metav1.LabelSelector, Service selectors.

Grammar (k8s.io/apimachinery/pkg/labels, `Parse`)::

    selector    ::= requirement ("," requirement)*          -- comma is AND
    requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")"
                              | ("=" | "==" | "!=" | ">" | "<") VALUE ]

A bare `KEY` means "has the label", `!KEY` means "has not". `in`/`notin` are keywords only where
an operator is expected, so `in in (in)` is a valid selector. Whitespace separates tokens and is
otherwise ignored. Keys are qualified names, values label values (both checked on parse, as kube
does, so a request with an unusable selector fails with 400 instead of silently matching nothing).

Selectors are frozen and compare by value; requirements are kept sorted by key (kube sorts them
too) so `str()` is canonical. Parse errors are `SelectorError` with kube's wording
(`unable to parse requirement: ...`, `found ',', expected: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import Cause, field_forbidden, field_invalid, field_required
from .names import is_qualified_name, is_valid_label_value

IN, NOT_IN = "in", "notin"
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
EXISTS, DOES_NOT_EXIST = "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"


class SelectorError(ValueError):
    """A label selector that cannot be parsed or built; the message says why."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except (KeyError, ValueError, IndexError):
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True)
class Selector:
    """AND of requirements. `nothing` is the selector of a nil metav1.LabelSelector."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.nothing and not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have for a match, if the selector pins one."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


def _selector(reqs: list[Requirement]) -> Selector:
    # Stable sort by key only: kube's ByKey ordering, so equal inputs give equal selectors.
    return Selector(tuple(sorted(reqs, key=lambda r: r.key)))


def new_requirement(key: str, operator: str, values=()) -> Requirement:
    """Build a checked requirement (kube's NewRequirement); raises SelectorError."""
    values = tuple(values)
    errs = []
    key_errs = is_qualified_name(key)
    if key_errs:
        errs.append(f'key: Invalid value: "{key}": ' + "; ".join(key_errs))
    if operator in (IN, NOT_IN):
        if not values:
            errs.append("values: Invalid value: []: for 'in', 'notin' operators, values set "
                        "can't be empty")
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append("values: Invalid value: exact-match compatibility requires one single "
                        "value")
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append("values: Invalid value: values set must be empty for exists and does "
                        "not exist")
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errs.append("values: Invalid value: for 'Gt', 'Lt' operators, exactly one value is "
                        "required")
        for i, v in enumerate(values):
            try:
                int(v, 10)
            except ValueError:
                errs.append(f'values[{i}]: Invalid value: "{v}": for \'Gt\', \'Lt\' operators, '
                            "the value must be an integer")
    else:
        errs.append(f'operator: Unsupported value: "{operator}": supported values: "in", '
                    '"notin", "=", "==", "!=", "exists", "!", "gt", "lt"')
    for i, v in enumerate(values):
        value_errs = is_valid_label_value(v)
        if value_errs:
            errs.append(f'values[{i}][{key}]: Invalid value: "{v}": ' + "; ".join(value_errs))
    if errs:
        raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    if operator in (IN, NOT_IN):
        values = tuple(sorted(set(values)))  # a set in kube: duplicates collapse
    return Requirement(key, operator, values)


# --- lexer ---------------------------------------------------------------------------------

_END, _ID, _COMMA, _LPAREN, _RPAREN = "end", "id", ",", "(", ")"
_OPERATOR_TOKENS = {"!": "!", "=": "=", "==": "==", "!=": "!=", ">": ">", "<": "<"}
_KEYWORDS = {"in": IN, "notin": NOT_IN}
_SPECIAL = frozenset("=!(),><")
_SPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal). Operator runs are matched longest-first (`!=` before `!`)."""
    tokens = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            tokens.append((_END, ""))
            return tokens
        ch = text[i]
        if ch in "(),":
            tokens.append((ch, ch))
            i += 1
        elif ch in _SPECIAL:
            two = text[i:i + 2]
            lit = two if two in _OPERATOR_TOKENS else ch
            tokens.append((lit, lit))
            i += len(lit)
        else:
            j = i
            while j < n and text[j] not in _SPECIAL and text[j] not in _SPACE:
                j += 1
            word = text[i:j]
            tokens.append((_KEYWORDS.get(word, _ID), word))
            i = j


class _Parser:
    def __init__(self, text: str):
        self.tokens = _lex(text)
        self.pos = 0

    # In value position the keywords `in`/`notin` are plain identifiers.
    def peek(self, as_value: bool = True) -> tuple[str, str]:
        kind, lit = self.tokens[self.pos]
        return (_ID if as_value and kind in (IN, NOT_IN) else kind), lit

    def take(self, as_value: bool = True) -> tuple[str, str]:
        tok = self.peek(as_value)
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs = []
        while True:
            kind, lit = self.peek()
            if kind == _END:
                return reqs
            if kind not in (_ID, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            kind, lit = self.take()
            if kind == _END:
                return reqs
            if kind != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in (_ID, "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = False
        kind, lit = self.take()
        if kind == "!":
            negated = True
            kind, lit = self.take()
        if kind != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        key_errs = is_qualified_name(key)
        if key_errs:
            raise SelectorError(f'Invalid value: "{key}": ' + "; ".join(key_errs))
        if negated:
            # `!a` takes no operator; whatever follows is the caller's "expected ','" error.
            return new_requirement(key, DOES_NOT_EXIST)
        if self.peek()[0] in (_END, _COMMA):
            return new_requirement(key, EXISTS)
        kind, lit = self.take(as_value=False)
        op = {IN: IN, NOT_IN: NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS, "!=": NOT_EQUALS,
              ">": GREATER_THAN, "<": LESS_THAN}.get(kind)
        if op is None:
            raise SelectorError(f"found '{lit}', expected: '=', '!=', '==', 'in', 'notin'")
        values = self.set_values() if op in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, op, values)

    def exact_value(self) -> list[str]:
        kind, lit = self.peek()
        if kind in (_END, _COMMA):
            return [""]  # `a=` selects an empty value, as in kube
        kind, lit = self.take()
        if kind != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        return [lit]

    def set_values(self) -> list[str]:
        kind, lit = self.take()
        if kind != _LPAREN:
            raise SelectorError(f"found '{lit}', expected: '('")
        values: list[str] = []
        expect_value = True  # an empty slot (`(,a)`, `(a,)`, `()`) is the empty value
        while True:
            kind, lit = self.take()
            if kind == _RPAREN:
                if expect_value:
                    values.append("")
                return values
            if kind == _ID and expect_value:
                values.append(lit)
                expect_value = False
                nxt, nlit = self.peek()
                if nxt not in (_COMMA, _RPAREN):
                    raise SelectorError(f"found '{nlit}', expected: ',' or ')'")
            elif kind == _COMMA:
                if expect_value:
                    values.append("")
                expect_value = True
            else:
                raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")


def parse_selector(text: str | None) -> Selector:
    """Parse a `labelSelector` query string; "" and None select everything."""
    if not text or not text.strip():
        return EVERYTHING
    return _selector(_Parser(text).parse())


_EXPRESSION_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS,
                         "DoesNotExist": DOES_NOT_EXIST}


def selector_from_label_selector(obj: dict | None) -> Selector:
    """metav1.LabelSelector -> Selector (LabelSelectorAsSelector).

    None selects nothing; `{}` selects everything. Raises SelectorError on a bad operator, key
    or value (validation reports those as field causes first; this is the last line).
    """
    if obj is None:
        return NOTHING
    if not isinstance(obj, dict):
        raise SelectorError(f"a label selector must be an object, not {type(obj).__name__}")
    match_labels = obj.get("matchLabels") or {}
    expressions = obj.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list):
        raise SelectorError("matchLabels must be an object and matchExpressions a list")
    if not match_labels and not expressions:
        return EVERYTHING
    reqs = [new_requirement(_text(k), EQUALS, [_text(v)]) for k, v in match_labels.items()]
    for expr in expressions:
        if not isinstance(expr, dict):
            raise SelectorError("each matchExpressions entry must be an object")
        op = _EXPRESSION_OPERATORS.get(expr.get("operator"))
        if op is None:
            raise SelectorError(f'"{expr.get("operator")}" is not a valid label selector operator')
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise SelectorError("matchExpressions values must be a list")
        reqs.append(new_requirement(_text(expr.get("key", "")), op, [_text(v) for v in values]))
    return _selector(reqs)


def _text(value) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"label keys and values must be strings, not {value!r}")
    return value


def selector_from_map(labels: Mapping[str, str] | None) -> Selector:
    """A Service-style selector (`app: web`): every pair must match.

    An empty or missing map selects everything (kube's SelectorFromSet); a Service without a
    selector means "endpoints are managed by hand", which callers must check before this.
    """
    if not labels:
        return EVERYTHING
    return _selector([Requirement(k, EQUALS, (v,)) for k, v in labels.items()])


# --- validation of labels in objects (used by meshnet.api.validation) ------------------------

def label_key_errors(key: str) -> list[str]:
    return is_qualified_name(key)


def label_value_errors(value: str) -> list[str]:
    return is_valid_label_value(value)


def validate_labels(labels, path: str) -> list[Cause]:
    """metadata.labels / a selector map: keys qualified names, values label values.

    kube reports both kinds of failure on the map's own path (`metadata.labels`), with the
    offending key or value as the value.
    """
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [field_invalid(path, _kind_of(labels), "must be a map of string keys to string "
                              "values")]
    causes = []
    for k, v in labels.items():
        causes.extend(field_invalid(path, k, m) for m in is_qualified_name(k))
        if not isinstance(v, str):
            causes.append(field_invalid(f"{path}[{k}]", _kind_of(v), "must be a string"))
            continue
        causes.extend(field_invalid(path, v, m) for m in is_valid_label_value(v))
    return causes


def validate_label_selector(selector, path: str) -> list[Cause]:
    """metav1.LabelSelector fields (ValidateLabelSelector)."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [field_invalid(path, _kind_of(selector), "must be a label selector object")]
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        return causes + [field_invalid(f"{path}.matchExpressions", _kind_of(expressions),
                                       "must be a list")]
    for i, expr in enumerate(expressions):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(expr, dict):
            causes.append(field_invalid(p, _kind_of(expr), "must be an object"))
            continue
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                causes.append(field_required(
                    f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(field_forbidden(
                    f"{p}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(field_invalid(f"{p}.operator", op, "not a valid selector operator"))
        key = expr.get("key", "")
        if not isinstance(key, str):
            causes.append(field_invalid(f"{p}.key", _kind_of(key), "must be a string"))
        else:
            causes.extend(field_invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        for j, v in enumerate(values if isinstance(values, list) else []):
            if not isinstance(v, str):
                causes.append(field_invalid(f"{p}.values[{j}]", _kind_of(v), "must be a string"))
                continue
            causes.extend(field_invalid(f"{p}.values[{j}]", v, m) for m in is_valid_label_value(v))
    return causes


def _kind_of(value):
    """A value as shown in a cause: strings and scalars as-is, containers by their JSON type."""
    if isinstance(value, (dict, list)):
        return _Shown("object" if isinstance(value, dict) else "array")
    return value


class _Shown:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text
