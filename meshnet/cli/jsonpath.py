"""kubectl's JSONPath templates (`-o jsonpath=...`, `custom-columns`, `--sort-by`).

The dialect is k8s.io/client-go/util/jsonpath, not RFC 9535:

- Text outside `{...}` is printed as is; `{"\\n"}` and `{"\\t"}` print escapes.
- Paths start at the root: `{.metadata.name}`; `$` is the root, `@` the current element.
- `[*]`, `[0]`, `[-1]`, `[1:3]`, `[::2]`, unions `[0,2]` and `['a','b']`, wildcard `.*`,
  recursive descent `..name`, filters `[?(@.type=="Ready")]`, `[?(@.port>80)]`,
  `[?(@.nodePort)]` (present and not empty).
- `{range .items[*]}...{end}` repeats the inner template with `@` bound to each element.
- Each action prints its results separated by spaces; strings raw, numbers and booleans as
  text, maps and lists as compact JSON (sorted keys), like kubectl.
- Missing keys print nothing (kubectl sets allowMissingKeys for `get`).

`parse()` is pure and reports syntax errors with kubectl's wording
(`unclosed action`, `unrecognized character in action: U+0021 '!'`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


class JSONPathError(ValueError):
    pass


# ----------------------------------------------------------------- tree


@dataclass
class Text:
    text: str


@dataclass
class Path:
    steps: list  # of step tuples, see _parse_path


@dataclass
class Literal:
    value: object


@dataclass
class Action:
    items: list  # Path | Literal


@dataclass
class Range:
    path: Path
    body: list = field(default_factory=list)


_MISSING = object()


def parse(template: str) -> list:
    """Template -> list of Text / Action / Range nodes."""
    segments = _split(template)
    root: list = []
    stack = [root]
    for kind, value in segments:
        if kind == "text":
            if value:
                stack[-1].append(Text(value))
            continue
        stripped = value.strip()
        if stripped == "end":
            if len(stack) == 1:
                raise JSONPathError("not in range, nothing to end")
            stack.pop()
            continue
        if stripped.startswith("range ") or stripped == "range":
            expr = stripped[len("range"):].strip()
            if not expr:
                raise JSONPathError("range needs a path, e.g. {range .items[*]}")
            node = Range(_parse_path(expr))
            stack[-1].append(node)
            stack.append(node.body)
            continue
        stack[-1].append(Action(_parse_action(value)))
    if len(stack) != 1:
        raise JSONPathError("range without end: add {end}")
    return root


def _split(template: str) -> list[tuple[str, str]]:
    out = []
    i = 0
    text_start = 0
    while i < len(template):
        if template[i] == "{":
            out.append(("text", template[text_start:i]))
            j = _scan(template, i + 1, lambda c, depth: c == "}" and depth <= 0)
            if j >= len(template):
                raise JSONPathError("unclosed action")
            out.append(("action", template[i + 1:j]))
            i = j + 1
            text_start = i
        else:
            i += 1
    out.append(("text", template[text_start:]))
    return out


def _parse_action(src: str) -> list:
    items: list = []
    i = 0
    while i < len(src):
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            value, i = _parse_string(src, i)
            items.append(Literal(value))
            continue
        if c in ".@$[" or c.isalpha() or c == "_":
            j = _path_end(src, i)
            items.append(_parse_path(src[i:j]))
            i = j
            continue
        if c.isdigit() or c == "-":
            m = re.match(r"-?\d+(\.\d+)?", src[i:])
            if m:
                items.append(Literal(_number(m.group(0))))
                i += m.end()
                continue
        raise JSONPathError(f"unrecognized character in action: U+{ord(c):04X} '{c}'")
    return items


def _scan(src: str, i: int, stop) -> int:
    """The index of the first character from `i` on, outside quotes, where `stop(c, depth)`
    holds; `depth` counts the brackets and parentheses open after `c`. Past the end if none.

    Inside quotes a backslash escapes the next character, so `'a\\'}'` does not end an action.
    """
    depth = 0
    quote = None
    while i < len(src):
        c = src[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        else:
            if c in "[(":
                depth += 1
            elif c in "])":
                depth -= 1
            if stop(c, depth):
                return i
        i += 1
    return i


def _path_end(src: str, i: int) -> int:
    return _scan(src, i, lambda c, depth: c.isspace() and depth == 0)


def _parse_string(src: str, i: int) -> tuple[str, int]:
    quote = src[i]
    j = i + 1
    buf = []
    while j < len(src):
        c = src[j]
        if c == "\\" and j + 1 < len(src):
            nxt = src[j + 1]
            buf.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
                       .get(nxt, "\\" + nxt))
            j += 2
            continue
        if c == quote:
            return "".join(buf), j + 1
        buf.append(c)
        j += 1
    raise JSONPathError("unterminated quoted string")


def _number(text: str):
    return float(text) if "." in text else int(text)


# Steps: ("root",), ("current",), ("field", name), ("wild",), ("recursive",),
#        ("index", [selectors]) where a selector is int | slice | str,
#        ("filter", left, op, right)
_FIELD_END = re.compile(r"[.\[\]\s()]")


def _parse_path(src: str) -> Path:
    steps: list = []
    i = 0
    if src and (src[0].isalpha() or src[0] == "_"):
        src = "." + src  # relaxed: `metadata.name`
    while i < len(src):
        c = src[i]
        if c == "$":
            steps.append(("root",))
            i += 1
        elif c == "@":
            steps.append(("current",))
            i += 1
        elif src.startswith("..", i):
            steps.append(("recursive",))
            i += 1  # the second dot starts the field
        elif c == ".":
            i += 1
            j = i
            name = []
            while j < len(src):
                if src[j] == "\\" and j + 1 < len(src):
                    name.append(src[j + 1])
                    j += 2
                    continue
                if _FIELD_END.match(src[j]):
                    break
                name.append(src[j])
                j += 1
            name = "".join(name)
            if name == "*":
                steps.append(("wild",))
            elif name:
                steps.append(("field", name))
            i = j
        elif c == "[":
            j = _matching(src, i)
            steps.append(_parse_bracket(src[i + 1:j]))
            i = j + 1
        else:
            raise JSONPathError(f"unrecognized character in action: U+{ord(c):04X} '{c}'")
    return Path(steps)


def _matching(src: str, i: int) -> int:
    """The index of the bracket closing the one at `i`."""
    j = _scan(src, i, lambda c, depth: c in "])" and depth == 0)
    if j >= len(src):
        raise JSONPathError("unclosed array expect ]")
    return j


_OPS = ("==", "!=", "<=", ">=", "<", ">")


def _parse_bracket(body: str):
    body = body.strip()
    if body.startswith("?"):
        inner = body[1:].strip()
        if not (inner.startswith("(") and inner.endswith(")")):
            raise JSONPathError(f"invalid filter: [{body}], expect [?(@.x==\"y\")]")
        return _parse_filter(inner[1:-1].strip())
    if body == "*":
        return ("wild",)
    selectors: list = []
    for part in _split_top(body, ","):
        part = part.strip()
        if not part:
            raise JSONPathError(f"invalid array index [{body}]")
        if part[0] in "\"'":
            value, end = _parse_string(part, 0)
            selectors.append(value)
        elif ":" in part:
            pieces = part.split(":")
            if len(pieces) > 3:
                raise JSONPathError(f"invalid array index {part}")
            try:
                nums = [int(p) if p.strip() else None for p in pieces]
            except ValueError:
                raise JSONPathError(f"invalid array index {part}") from None
            while len(nums) < 3:
                nums.append(None)
            if nums[2] == 0:
                raise JSONPathError("step must be > 0")
            selectors.append(slice(*nums))
        else:
            try:
                selectors.append(int(part))
            except ValueError:
                selectors.append(part)  # bare name in brackets: [name]
    return ("index", selectors)


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_filter(expr: str):
    quote = None
    for i, c in enumerate(expr):
        if quote:
            if c == quote:
                quote = None
            continue
        if c in "\"'":
            quote = c
            continue
        for op in _OPS:
            if expr.startswith(op, i):
                return ("filter", _operand(expr[:i].strip()), op,
                        _operand(expr[i + len(op):].strip()))
    return ("filter", _operand(expr), None, None)


def _operand(text: str):
    if not text:
        raise JSONPathError("invalid filter: missing operand")
    if text[0] in "\"'":
        value, _ = _parse_string(text, 0)
        return Literal(value)
    if text in ("true", "false"):
        return Literal(text == "true")
    if text == "null":
        return Literal(None)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return Literal(_number(text))
    return _parse_path(text)


# ------------------------------------------------------------ evaluation


def evaluate(path: Path, root, current=_MISSING) -> list:
    """All values `path` selects (missing keys select nothing)."""
    values = [root if current is _MISSING else current]
    recursive = False
    for step in path.steps:
        kind = step[0]
        if kind == "root":
            values = [root]
            continue
        if kind == "current":
            values = [root if current is _MISSING else current]
            continue
        if kind == "recursive":
            recursive = True
            continue
        if recursive:
            values = [d for v in values for d in _descendants(v)]
            recursive = False
        values = _apply(step, values, root)
    if recursive:
        values = [d for v in values for d in _descendants(v)]
    return values


def _descendants(value) -> list:
    out = [value]
    if isinstance(value, dict):
        for k in sorted(value):
            out.extend(_descendants(value[k]))
    elif isinstance(value, list):
        for v in value:
            out.extend(_descendants(v))
    return out


def _apply(step, values: list, root) -> list:
    kind = step[0]
    out: list = []
    if kind == "field":
        for v in values:
            if isinstance(v, dict) and step[1] in v:
                out.append(v[step[1]])
        return out
    if kind == "wild":
        for v in values:
            if isinstance(v, dict):
                out.extend(v[k] for k in sorted(v))
            elif isinstance(v, list):
                out.extend(v)
        return out
    if kind == "index":
        for v in values:
            for sel in step[1]:
                if isinstance(sel, str):
                    if isinstance(v, dict) and sel in v:
                        out.append(v[sel])
                elif isinstance(v, list):
                    if isinstance(sel, slice):
                        out.extend(v[sel])
                    elif -len(v) <= sel < len(v):
                        out.append(v[sel])
        return out
    if kind == "filter":
        _, left, op, right = step
        for v in values:
            items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
            for item in items:
                if _test(left, op, right, item, root):
                    out.append(item)
        return out
    raise JSONPathError(f"unknown step {kind}")


def _operand_values(operand, item, root) -> list:
    if isinstance(operand, Literal):
        return [operand.value]
    return evaluate(operand, root, item)


def _test(left, op, right, item, root) -> bool:
    lv = _operand_values(left, item, root)
    if op is None:
        return any(v not in (None, "", [], {}, False) for v in lv)
    rv = _operand_values(right, item, root)
    for a in lv:
        for b in rv:
            if _compare(a, op, b):
                return True
    return False


def _compare(a, op: str, b) -> bool:
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if op in ("==", "!="):
        equal = a == b if numeric or type(a) is type(b) else False
        return equal if op == "==" else not equal
    if not numeric and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def text_of(value) -> str:
    """How kubectl prints one result."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def render(nodes: list, root, current=_MISSING) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Action):
            results: list = []
            for item in node.items:
                if isinstance(item, Literal):
                    results.append(item.value)
                else:
                    results.extend(evaluate(item, root, current))
            out.append(" ".join(text_of(r) if not isinstance(r, str) else r for r in results))
        elif isinstance(node, Range):
            for element in evaluate(node.path, root, current):
                out.append(render(node.body, root, element))
    return "".join(out)


def execute(template: str, obj) -> str:
    """Parse and render in one go; raises JSONPathError with kubectl's framing."""
    try:
        nodes = parse(template)
    except JSONPathError as e:
        raise JSONPathError(f"error parsing jsonpath {template}, {e}") from None
    return render(nodes, obj)


def relaxed(expr: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `.a.b`, `a.b`, `{.a.b}` all mean `{.a.b}`."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    if not expr.startswith(".") and not expr.startswith("$"):
        expr = "." + expr
    if expr.startswith("$"):
        expr = expr[1:] or "."
    return "{" + expr + "}"


def values(expr: str, obj) -> list:
    """The values a relaxed expression selects (for custom-columns and --sort-by)."""
    nodes = parse(relaxed(expr))
    out: list = []
    for node in nodes:
        if isinstance(node, Action):
            for item in node.items:
                if isinstance(item, Path):
                    out.extend(evaluate(item, obj))
                else:
                    out.append(item.value)
    return out
