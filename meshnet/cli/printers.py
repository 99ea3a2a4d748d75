"""Output formats: kubectl's YAML/JSON layout, `-o name`, jsonpath, custom-columns, tables.

Everything here is pure: objects in, text out. The rules follow kubectl so that scripts written
against kubectl keep working:

- YAML: keys sorted, block style, sequences not indented under their key, multi-line strings
  as `|` blocks, strings that need quoting in double quotes (go-yaml's choices, which
  sigs.k8s.io/yaml uses), no line wrapping.
- JSON: 4-space indent; keys sorted for objects read from the server (kubectl prints them from
  a map), in Go struct order for objects `create --dry-run` builds.
- `-o name`: `deployment.apps/web`, `service/web`: lowercase kind, then `.group` if any.
- Tables: the server's `Table` (columns + cells), decorated like cli-runtime's
  `decorateTable`: NAMESPACE first under `-A`, label columns (`-L`) and LABELS
  (`--show-labels`) last, `kind/name` in the name column when several kinds are printed,
  priority > 0 columns only with `-o wide`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import yaml

from meshnet.api import humanize
from meshnet.api.resources import ResourceInfo

from . import jsonpath
from .errors import CLIError
from .tabwriter import format_table

# ------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    """go-yaml's look: double quotes where quoting is needed, `|` for multi-line text."""

    def choose_scalar_style(self):
        style = super().choose_scalar_style()
        return '"' if style == "'" else style

    def ignore_aliases(self, data):
        return True  # never emit &anchors: the same dict may appear twice in a List


def _represent_str(dumper: yaml.SafeDumper, value: str):
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj) -> str:
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=10**9)


def to_json(obj, *, sort_keys: bool = True) -> str:
    return json.dumps(obj, indent=4, sort_keys=sort_keys, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ names


def kind_ref(info: ResourceInfo) -> str:
    """`deployment.apps`, `service`, `ingress.networking.k8s.io` (kubectl's GroupKind)."""
    kind = info.kind.lower()
    return f"{kind}.{info.group}" if info.group else kind


def object_ref(info: ResourceInfo, name: str) -> str:
    return f"{kind_ref(info)}/{name}"


def qualified_plural(info: ResourceInfo) -> str:
    return info.qualified


# ------------------------------------------------------------------- time


def parse_time(value) -> datetime | None:
    epoch = humanize.parse_timestamp(value)
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


human_duration = humanize.human_duration


def age(timestamp, now: datetime | None = None) -> str:
    """kubectl's translateTimestampSince (AGE columns, describe's event ages)."""
    now_s = (now or datetime.now(timezone.utc)).timestamp()
    return humanize.age(timestamp, now_s)


def rfc1123z(timestamp) -> str:
    """Go's time.RFC1123Z in local time, as describe prints timestamps."""
    when = parse_time(timestamp)
    if when is None:
        return "<unknown>"
    return when.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


# ----------------------------------------------------------------- -o spec


@dataclass(frozen=True)
class OutputSpec:
    """A parsed `-o` value."""

    format: str  # "" (table), wide, yaml, json, name, jsonpath, custom-columns
    template: str = ""

    @property
    def is_table(self) -> bool:
        return self.format in ("", "wide")


_FORMATS = ("wide", "yaml", "json", "name")


def parse_output(value: str | None, allowed: tuple[str, ...] = ()) -> OutputSpec:
    value = (value or "").strip()
    if not value:
        return OutputSpec("")
    fmt, sep, template = value.partition("=")
    fmt = fmt.strip()
    if fmt in ("jsonpath", "jsonpath-as-json", "custom-columns"):
        if not sep or not template:
            raise CLIError(f"{fmt} template format specified but no template given")
        if fmt.startswith("jsonpath"):
            try:
                jsonpath.parse(template)
            except jsonpath.JSONPathError as e:
                raise CLIError(f"error parsing jsonpath {template}, {e}") from None
        spec = OutputSpec(fmt, template)
    elif fmt in _FORMATS and not sep:
        spec = OutputSpec(fmt)
    else:
        choices = list(allowed or ("json", "yaml", "name", "wide", "jsonpath", "custom-columns"))
        raise CLIError(f'unable to match a printer suitable for the output format "{value}", '
                       f"allowed formats are: {','.join(choices)}")
    if allowed and spec.format not in allowed:
        raise CLIError(f'unable to match a printer suitable for the output format "{value}", '
                       f"allowed formats are: {','.join(allowed)}")
    return spec


# ------------------------------------------------------------ object output


def as_list(objects: list[dict]) -> dict:
    """kubectl's wrapper when more than one object (or a list query) is printed."""
    return {"apiVersion": "v1", "items": objects, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def render_objects(objects: list[dict], infos: list[ResourceInfo], spec: OutputSpec, *,
                   single: bool, sort_keys: bool = True) -> str:
    """yaml / json / name / jsonpath / custom-columns output for already fetched objects."""
    if spec.format == "name":
        return "".join(object_ref(i, (o.get("metadata") or {}).get("name", "")) + "\n"
                       for o, i in zip(objects, infos))
    doc = objects[0] if single and len(objects) == 1 else as_list(objects)
    if spec.format == "yaml":
        return to_yaml(doc)
    if spec.format == "json":
        return to_json(doc, sort_keys=sort_keys)
    if spec.format == "jsonpath":
        try:
            return jsonpath.execute(spec.template, doc)
        except jsonpath.JSONPathError as e:
            raise CLIError(str(e)) from None
    if spec.format == "jsonpath-as-json":
        found = []
        for node in jsonpath.parse(spec.template):
            if isinstance(node, jsonpath.Action):
                for item in node.items:
                    if isinstance(item, jsonpath.Path):
                        found.extend(jsonpath.evaluate(item, doc))
        return to_json(found)
    if spec.format == "custom-columns":
        return custom_columns(spec.template, objects)
    raise CLIError(f"output format {spec.format!r} cannot print objects")


def custom_columns(template: str, objects: list[dict], no_headers: bool = False) -> str:
    columns = []
    for part in template.split(","):
        header, sep, expr = part.partition(":")
        if not sep or not header:
            raise CLIError(f'expected <header>:<json-path-expr> in custom-columns, got "{part}"')
        try:
            jsonpath.parse(jsonpath.relaxed(expr))
        except jsonpath.JSONPathError as e:
            raise CLIError(f"error parsing jsonpath {expr}, {e}") from None
        columns.append((header, expr))
    rows = [] if no_headers else [[h for h, _ in columns]]
    for obj in objects:
        row = []
        for _, expr in columns:
            found = jsonpath.values(expr, obj)
            row.append(",".join(jsonpath.text_of(v) for v in found) if found else "<none>")
        rows.append(row)
    return format_table(rows)


# ------------------------------------------------------------------ tables


@dataclass
class TableOptions:
    wide: bool = False
    with_namespace: bool = False
    show_labels: bool = False
    label_columns: tuple[str, ...] = ()
    kind_prefix: str = ""  # "deployment.apps" when several kinds are printed
    no_headers: bool = False


def cell_text(cell) -> str:
    if cell is None:
        return ""
    return jsonpath.text_of(cell)


def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted k=v joined by commas, `<none>` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def row_metadata(row: dict) -> dict:
    obj = row.get("object") or {}
    return obj.get("metadata") or {}


def table_rows(table: dict, opts: TableOptions, *, headers: bool = True) -> list[list[str]]:
    """A server Table -> display rows (header first unless no_headers/headers=False)."""
    columns = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(columns) if opts.wide or not c.get("priority")]
    name_index = next((i for i, c in enumerate(columns)
                       if c.get("format") == "name" and c.get("type") == "string"), None)
    out: list[list[str]] = []
    if headers and not opts.no_headers:
        head = [str(columns[i].get("name", "")).upper() for i in keep]
        if opts.with_namespace:
            head.insert(0, "NAMESPACE")
        head.extend(k.rsplit("/", 1)[-1].upper() for k in opts.label_columns)
        if opts.show_labels:
            head.append("LABELS")
        out.append(head)
    for row in table.get("rows") or []:
        cells = list(row.get("cells") or [])
        meta = row_metadata(row)
        shown = []
        for i in keep:
            value = cell_text(cells[i]) if i < len(cells) else ""
            if i == name_index and opts.kind_prefix:
                value = f"{opts.kind_prefix}/{value}"
            shown.append(value)
        if opts.with_namespace:
            shown.insert(0, meta.get("namespace") or "")
        labels = meta.get("labels") or {}
        shown.extend(str(labels.get(k, "")) for k in opts.label_columns)
        if opts.show_labels:
            shown.append(format_labels(labels))
        out.append(shown)
    return out


_DEFAULT_COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "priority": 0,
     "description": "Name must be unique within a namespace."},
    {"name": "Age", "type": "string", "format": "", "priority": 0,
     "description": "CreationTimestamp is a timestamp representing the server time when this "
                    "object was created."},
]


def default_table(objects: list[dict], now: datetime | None = None) -> dict:
    """NAME/AGE for servers that do not render tables (kubectl's default handler)."""
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        rows.append({"cells": [meta.get("name", ""), age(meta.get("creationTimestamp"), now)],
                     "object": {"kind": "PartialObjectMetadata",
                                "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": list(_DEFAULT_COLUMNS), "rows": rows}


def as_table(response: dict, now: datetime | None = None) -> dict:
    """A response to a Table request: the Table itself, or a fallback built from objects."""
    if response.get("kind") == "Table":
        return response
    if "items" in response:
        return default_table(response.get("items") or [], now)
    return default_table([response], now)


def strip_managed_fields(obj: dict) -> dict:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return obj
