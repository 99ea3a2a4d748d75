"""`meshctl get`: list or fetch objects and print them (kubectl get).

Tables come from the server: the request carries
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ..., application/json` and the server
answers with columns and cells (servers that cannot render tables answer with objects, and we
print NAME and AGE, as kubectl's default printer does). Every other format fetches objects.

With several kinds (`get svc,deploy`, `get all`) each kind gets its own table, separated by a
blank line, names prefixed with `kind.group/`. Nothing found prints
`No resources found in <ns> namespace.` on stderr, as kubectl does.

`--watch` lists first, then watches from the list's resourceVersion, printing one row per
event with the column widths of the first table (RememberWidths), until the server ends the
watch or the user presses Ctrl-C.
"""

from __future__ import annotations

import argparse

from meshnet.api.resources import ResourceInfo
from meshnet.client.errors import ApiError
from meshnet.client.rest import TABLE_ACCEPT

from . import jsonpath
from .context import Session, Target, parse_resource_args
from .errors import CLIError, Reported, error_text
from .flags import add_bool, add_filename_flags, add_output_flag, add_selector_flags
from .printers import (OutputSpec, TableOptions, as_table, custom_columns, kind_ref,
                       parse_output, render_objects, strip_managed_fields, table_rows,
                       to_yaml)
from .tabwriter import format_table

DESCRIPTION = """Display one or many resources.

Prints a table of the most important information about the specified resources. You can filter
the list using a label selector and the --selector flag. If the desired resource type is
namespaced you will only see results in the current namespace unless you pass
--all-namespaces."""

EXAMPLES = """Examples:
  # List all services in the current namespace, with more columns
  meshctl get services -o wide

  # List deployments and services together
  meshctl get deploy,svc

  # List everything in the 'all' category in every namespace
  meshctl get all -A

  # Print one service as YAML
  meshctl get svc nginx-service -o yaml

  # Print the cluster IPs of all services
  meshctl get svc -o jsonpath='{range .items[*]}{.metadata.name}{"\\t"}{.spec.clusterIP}{"\\n"}{end}'

  # Watch pods with label app=nginx
  meshctl get pods -l app=nginx --watch"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[.VERSION][.GROUP] [NAME ...]",
                   help="resource type(s) and optional names, or TYPE/NAME")
    add_output_flag(p, "Output format. One of: (json, yaml, name, wide, jsonpath=..., "
                       "jsonpath-as-json=..., custom-columns=...).")
    add_selector_flags(p)
    add_filename_flags(p, "identifying the resources to get")
    add_bool(p, "--watch", "-w", help="After listing/getting the requested object, watch for "
                                      "changes.")
    add_bool(p, "--watch-only", help="Watch for changes to the requested object(s), without "
                                     "listing/getting first.")
    add_bool(p, "--output-watch-events", help="Output watch event objects when --watch or "
                                              "--watch-only is used.")
    add_bool(p, "--show-labels", help="When printing, show all labels as the last column.")
    add_bool(p, "--show-kind", help="If present, list the resource type for the requested "
                                    "object(s).")
    add_bool(p, "--no-headers", help="When using the default or custom-column output format, "
                                     "don't print headers.")
    add_bool(p, "--ignore-not-found", help="If the requested object does not exist the command "
                                           "will return exit code 0.")
    add_bool(p, "--show-managed-fields", help="If true, keep the managedFields when printing "
                                              "objects in JSON or YAML format.")
    p.add_argument("-L", "--label-columns", action="append", default=[], metavar="KEY",
                   help="Accepts a comma separated list of labels that are going to be "
                        "presented as columns.")
    p.add_argument("--sort-by", metavar="JSONPATH",
                   help="If non-empty, sort list types using this field specification "
                        "(a JSONPath expression, e.g. '{.metadata.name}').")
    p.add_argument("--raw", metavar="URI", help="Raw URI to request from the server.")
    p.add_argument("--chunk-size", type=int, default=500, metavar="N",
                   help="Return large lists in chunks rather than all at once.")


def run(args, s: Session) -> int:
    if args.raw:
        body = s.client.request("GET", args.raw, accept="application/json, */*").body
        s.out(body.decode("utf-8", "replace"))
        return 0
    spec = parse_output(args.output)
    label_columns = tuple(k.strip() for v in args.label_columns for k in v.split(",") if k.strip())
    if args.filename:
        targets, single = targets_from_files(s, args)
    else:
        targets, single = parse_resource_args(s, args.resources, "get")
    if s.all_namespaces and any(t.names for t in targets) and not args.filename:
        raise CLIError("a resource cannot be retrieved by name across all namespaces")
    if args.watch or args.watch_only:
        if len(targets) != 1:
            raise CLIError("you may only specify a single resource type")
        return _watch(args, s, targets[0], spec, label_columns)
    with_kind = args.show_kind or len(targets) > 1
    if spec.is_table:
        return _print_tables(args, s, targets, spec, label_columns, with_kind)
    return _print_objects(args, s, targets, spec, single)


def targets_from_files(s: Session, args) -> tuple[list[Target], bool]:
    manifests = s.read_manifests(args)
    targets: list[Target] = []
    for m in manifests:
        info = s.mapper.by_kind(m.api_version, m.kind)
        existing = next((t for t in targets if t.info == info), None)
        if existing is None:
            targets.append(Target(info, [m.name]))
        else:
            existing.names.append(m.name)
    return targets, len(manifests) == 1


def _selectors(args) -> dict:
    return {"label_selector": args.selector or None, "field_selector": args.field_selector or None}


def _fetch_tables(args, s: Session, target: Target, params: dict, errors: list) -> dict | None:
    info = target.info
    ns = s.namespace_for(info)
    if target.names:
        table: dict | None = None
        for name in target.names:
            try:
                got = s.client.get(info, name, ns or s.namespace_of(info),
                                   accept=TABLE_ACCEPT, params=params)
            except ApiError as e:
                if e.code == 404 and args.ignore_not_found:
                    continue
                errors.append(error_text(e))
                continue
            one = as_table(got)
            if table is None:
                table = one
            else:
                table["rows"] = (table.get("rows") or []) + (one.get("rows") or [])
        return table
    response = s.client.list_all(info, ns, accept=TABLE_ACCEPT, params=params,
                                 chunk=args.chunk_size, **_selectors(args))
    return as_table(response)


def _sort_rows(table: dict, expr: str) -> None:
    def key(row):
        found = jsonpath.values(expr, row.get("object") or {})
        return _sort_key(found[0] if found else None)
    table["rows"] = sorted(table.get("rows") or [], key=key)


def _sort_key(value):
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, jsonpath.text_of(value))


def _print_tables(args, s: Session, targets: list[Target], spec: OutputSpec,
                  label_columns: tuple[str, ...], with_kind: bool) -> int:
    params = {"includeObject": "Object" if args.sort_by else "Metadata"}
    errors: list = []
    printed_any = False
    for target in targets:
        try:
            table = _fetch_tables(args, s, target, params, errors)
        except ApiError as e:
            if e.code == 404 and args.ignore_not_found:
                continue
            errors.append(error_text(e))
            continue
        if not table or not table.get("rows"):
            continue
        if args.sort_by:
            _sort_rows(table, args.sort_by)
        opts = TableOptions(
            wide=spec.format == "wide",
            with_namespace=s.all_namespaces and target.info.namespaced,
            show_labels=args.show_labels,
            label_columns=label_columns,
            kind_prefix=kind_ref(target.info) if with_kind else "",
            no_headers=args.no_headers,
        )
        if printed_any and not args.no_headers:
            s.out("\n")
        s.out(format_table(table_rows(table, opts)))
        printed_any = True
    if not printed_any and not errors and not args.ignore_not_found:
        _no_resources(s, targets)
    s.flush()
    for text in errors:  # kubectl prints the errors after whatever it could print
        s.err(text)
    if errors:
        raise Reported()
    return 0


def _no_resources(s: Session, targets: list[Target]) -> None:
    if not s.all_namespaces and all(t.info.namespaced for t in targets):
        s.err(f"No resources found in {s.namespace} namespace.")
    else:
        s.err("No resources found")


def _with_type(obj: dict, info: ResourceInfo) -> dict:
    """List items come without apiVersion/kind on the wire; kubectl fills them in."""
    obj = dict(obj)
    obj.setdefault("apiVersion", info.api_version)
    obj.setdefault("kind", info.kind)
    return obj


def _print_objects(args, s: Session, targets: list[Target], spec: OutputSpec,
                   single: bool) -> int:
    objects: list[dict] = []
    infos: list[ResourceInfo] = []
    errors: list = []
    for target in targets:
        info = target.info
        ns = s.namespace_for(info)
        try:
            if target.names:
                for name in target.names:
                    try:
                        obj = s.client.get(info, name, ns or s.namespace_of(info))
                    except ApiError as e:
                        if e.code == 404 and args.ignore_not_found:
                            continue
                        errors.append(error_text(e))
                        continue
                    objects.append(_with_type(obj, info))
                    infos.append(info)
            else:
                listed = s.client.list_all(info, ns, chunk=args.chunk_size, **_selectors(args))
                for obj in listed.get("items") or []:
                    objects.append(_with_type(obj, info))
                    infos.append(info)
        except ApiError as e:
            errors.append(error_text(e))
    if not args.show_managed_fields:
        objects = [strip_managed_fields(o) for o in objects]
    if args.sort_by and objects:
        order = sorted(range(len(objects)), key=lambda i: _sort_key(
            (jsonpath.values(args.sort_by, objects[i]) or [None])[0]))
        objects = [objects[i] for i in order]
        infos = [infos[i] for i in order]
    if objects or spec.format in ("yaml", "json") and not single and not errors:
        if spec.format == "custom-columns":
            s.out(custom_columns(spec.template, objects, args.no_headers))
        else:
            s.out(render_objects(objects, infos, spec, single=single and len(objects) == 1))
    if not objects and not errors and not args.ignore_not_found and \
            spec.format not in ("yaml", "json"):
        _no_resources(s, targets)
    s.flush()
    for text in errors:
        s.err(text)
    if errors:
        raise Reported()
    return 0


# ------------------------------------------------------------------- watch


def _watch(args, s: Session, target: Target, spec: OutputSpec,
           label_columns: tuple[str, ...]) -> int:
    info = target.info
    ns = s.namespace_for(info)
    if target.names and len(target.names) > 1:
        raise CLIError("watch is only supported on individual resources and resource "
                       "collections, but 2 resources were found")
    field_selector = args.field_selector or None
    if target.names:
        by_name = f"metadata.name={target.names[0]}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
        if ns is None and info.namespaced:
            ns = s.namespace
    table_mode = spec.is_table
    accept = TABLE_ACCEPT if table_mode else "application/json"
    opts = TableOptions(wide=spec.format == "wide",
                        with_namespace=s.all_namespaces and info.namespaced,
                        show_labels=args.show_labels, label_columns=label_columns,
                        kind_prefix=kind_ref(info) if args.show_kind else "",
                        no_headers=args.no_headers)
    printer = _WatchPrinter(s, info, ns, spec, opts, args.output_watch_events)
    listed = s.client.list(info, ns, accept=accept, label_selector=args.selector or None,
                           field_selector=field_selector,
                           params={"includeObject": "Metadata"} if table_mode else None)
    version = (listed.get("metadata") or {}).get("resourceVersion")
    if not args.watch_only:
        printer.initial(listed)
    s.flush()
    timeout = s.client.timeout
    stream = s.client.watch(info, ns, resource_version=version,
                            label_selector=args.selector or None,
                            field_selector=field_selector, accept=accept,
                            timeout_seconds=max(1, int(timeout)) if timeout else None)
    try:
        for event in stream:
            if event.get("type") == "BOOKMARK":
                continue
            printer.event(event)
            s.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    return 0


class _WatchPrinter:
    def __init__(self, s: Session, info: ResourceInfo, ns: str | None, spec: OutputSpec,
                 opts: TableOptions, with_events: bool):
        self.s = s
        self.info = info
        self.ns = ns
        self.spec = spec
        self.opts = opts
        self.with_events = with_events
        self.columns: list | None = None
        self.widths: list[int] = []
        self.last_cells: dict[tuple, list] = {}
        self.printed_header = False

    def initial(self, listed: dict) -> None:
        if self.spec.is_table:
            table = as_table(listed)
            self.columns = table.get("columnDefinitions") or self.columns
            self._rows(table, "ADDED" if self.with_events else "")
        else:
            for item in listed.get("items") or []:
                self._object(_with_type(item, self.info), "ADDED")

    def event(self, event: dict) -> None:
        kind = event.get("type") or ""
        obj = event.get("object") or {}
        if not self.spec.is_table:
            self._object(_with_type(obj, self.info), kind)
            return
        if obj.get("kind") == "Table":
            if obj.get("columnDefinitions"):
                self.columns = obj["columnDefinitions"]
            table = dict(obj)
            table["columnDefinitions"] = self.columns or []
            self._rows(table, kind)
            return
        # The server sent a plain object: fetch its row (or reuse the last one when deleted).
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        table = None
        if kind != "DELETED":
            try:
                got = self.s.client.get(self.info, key[1], key[0] or None, accept=TABLE_ACCEPT,
                                        params={"includeObject": "Metadata"})
                table = as_table(got)
            except ApiError:
                table = None
        if table is None:
            cells = self.last_cells.get(key)
            base = as_table(obj)
            if cells is not None:
                base["columnDefinitions"] = self.columns or base["columnDefinitions"]
                base["rows"][0]["cells"] = cells
            table = base
        if table.get("columnDefinitions"):
            self.columns = self.columns or table["columnDefinitions"]
        self._rows(table, kind)

    def _rows(self, table: dict, kind: str) -> None:
        for row in table.get("rows") or []:
            meta = (row.get("object") or {}).get("metadata") or {}
            self.last_cells[(meta.get("namespace") or "", meta.get("name") or "")] = \
                row.get("cells")
        if not table.get("rows"):
            return
        rows = table_rows(table, self.opts, headers=not self.printed_header)
        if self.with_events:
            labels = {"ADDED": "ADDED   ", "MODIFIED": "MODIFIED", "DELETED": "DELETED ",
                      "ERROR": "ERROR   "}
            start = 0
            if not self.printed_header and not self.opts.no_headers:
                rows[0].insert(0, "EVENT")
                start = 1
            for r in rows[start:]:
                r.insert(0, labels.get(kind, kind))
        self.printed_header = True
        self.s.out(format_table(rows, remember=self.widths))

    def _object(self, obj: dict, kind: str) -> None:
        obj = strip_managed_fields(obj)
        doc = {"type": kind, "object": obj} if self.with_events else obj
        if self.spec.format == "yaml":
            self.s.out("---\n" + to_yaml(doc) if self.printed_header else to_yaml(doc))
            self.printed_header = True
        else:
            self.s.out(render_objects([doc], [self.info], self.spec, single=True))
