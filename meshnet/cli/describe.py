"""`meshctl describe`: kubectl's human descriptions (k8s.io/kubectl/pkg/describe).

Each describer writes tab-separated lines at indent levels (two spaces per level) and the text
goes through Go's tabwriter layout (minwidth 0, padding 2), so the output lines up exactly like
kubectl's, quirks included. Describers for Service, Pod, Deployment, ReplicaSet, Ingress,
Namespace, ConfigMap, Secret (sizes only), Node and Endpoints; anything else gets kubectl's
generic describer (every field, camelCase split into words). The describers live in
`describe_workloads.py` and `describe_resources.py`, their shared text helpers in
`describe_text.py`; this module is the command, the dispatch and the generic describer.

Events are those whose involvedObject is the described object, fetched with
`fieldSelector=involvedObject.name=...,involvedObject.namespace=...,involvedObject.kind=...,
involvedObject.uid=...`. If the server rejects that selector, all events of the namespace are
listed and filtered here; if events cannot be read at all the section is left out (kubectl
does the same).
"""

from __future__ import annotations

import argparse
import re

from meshnet.api.resources import ResourceInfo, lookup
from meshnet.client.errors import ApiError

from .context import Session, Target, parse_resource_args
from .describe_resources import (describe_configmap, describe_endpoints, describe_ingress,
                                 describe_namespace, describe_node, describe_secret,
                                 describe_service)
from .describe_text import Writer, describe_events, object_header
from .describe_workloads import describe_deployment, describe_pod, describe_replicaset
from .errors import Reported, error_text
from .flags import add_all_namespaces, add_bool, add_filename_flags
from .get import targets_from_files

DESCRIPTION = """Show details of a specific resource or group of resources.

Print a detailed description of the selected resources, including related resources such as
events or controllers. You may select a single object by name, all objects of that type, provide
a name prefix, or label selector."""


EXAMPLES = """Examples:
  # Describe a service (with its endpoints and events)
  meshctl describe svc nginx-service

  # Describe all ingresses in a namespace
  meshctl describe ingress -n my-namespace

  # Describe pods whose name starts with 'nginx'
  meshctl describe pods nginx"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE [NAME_PREFIX] | TYPE/NAME)")
    p.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                   help="Selector (label query) to filter on (e.g. -l key1=value1).")
    add_all_namespaces(p)
    add_filename_flags(p, "identifying the resources to describe")
    add_bool(p, "--show-events", default=True,
             help="If true, display events related to the described object.")


def fetch_events(s: Session, obj: dict, info: ResourceInfo) -> list[dict] | None:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    events_info = lookup("events")
    fields = [f"involvedObject.name={meta.get('name', '')}",
              f"involvedObject.namespace={ns}"]
    if info.kind:
        fields.append(f"involvedObject.kind={info.kind}")
    if meta.get("uid"):
        fields.append(f"involvedObject.uid={meta['uid']}")
    try:
        listed = s.client.list_all(events_info, ns or None, field_selector=",".join(fields))
        return list(listed.get("items") or [])
    except ApiError:
        pass
    try:
        listed = s.client.list_all(events_info, ns or None)
    except ApiError:
        return None
    out = []
    for ev in listed.get("items") or []:
        ref = ev.get("involvedObject") or {}
        if ref.get("name") != meta.get("name") or (ref.get("namespace") or "") != ns:
            continue
        if ref.get("kind") and ref.get("kind") != info.kind:
            continue
        if ref.get("uid") and meta.get("uid") and ref["uid"] != meta["uid"]:
            continue
        out.append(ev)
    return out


_ACRONYMS = {"API", "URL", "UID", "GUID"}


def smart_label(field: str) -> str:
    """describe.smartLabelFor: `clusterIP` -> `Cluster IP`, `apiVersion` -> `API Version`."""
    if any(not (c.isalpha() or c == "-") for c in field):
        return field
    # fatih/camelcase: runs of lower case, of upper case (the last upper letter before a
    # lower one starts the next word) and of anything else.
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[^A-Za-z]+", field)
    merged: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        # kubectl merges an acronym with the next capitalised part: CID + Rs -> CIDRs.
        if len(part) >= 2 and part.isupper() and i + 1 < len(parts) and parts[i + 1][:1].isupper():
            merged.append(part + parts[i + 1])
            i += 2
            continue
        merged.append(part)
        i += 1
    out = []
    for part in merged:
        if part == "_":
            continue
        if part.upper() in _ACRONYMS:
            part = part.upper()
        elif part.lower() == part:
            part = part[:1].upper() + part[1:]
        out.append(part)
    return " ".join(out)


_GENERIC_SKIP = {".metadata.managedFields", ".metadata.name", ".metadata.namespace",
                 ".metadata.labels", ".metadata.annotations"}


def _unstructured(w: Writer, level: int, content: dict, prefix: str) -> None:
    for key in sorted(content):
        value = content[key]
        path = f"{prefix}.{key}"
        if path in _GENERIC_SKIP:
            continue
        if isinstance(value, dict):
            w.write(level, f"{smart_label(key)}:\n")
            _unstructured(w, level + 1, value, path)
        elif isinstance(value, list):
            w.write(level, f"{smart_label(key)}:\n")
            for item in value:
                if isinstance(item, dict):
                    _unstructured(w, level + 1, item, path)
                else:
                    w.write(level + 1, f"{_go_value(item)}\n")
        else:
            w.write(level, f"{smart_label(key)}:\t{_go_value(value)}\n")


def _go_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def describe_generic(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    w = Writer()
    object_header(w, meta)
    _unstructured(w, 0, obj, "")
    describe_events(w, events)
    return w.text()


DESCRIBERS = {
    ("", "Service"): describe_service,
    ("", "Endpoints"): describe_endpoints,
    ("", "Pod"): describe_pod,
    ("", "Namespace"): describe_namespace,
    ("", "ConfigMap"): describe_configmap,
    ("", "Secret"): describe_secret,
    ("", "Node"): describe_node,
    ("apps", "Deployment"): describe_deployment,
    ("apps", "ReplicaSet"): describe_replicaset,
    ("networking.k8s.io", "Ingress"): describe_ingress,
}


# kubectl shows no events for these (their describers never search for them).
_NO_EVENTS = {("", "Secret"), ("", "Namespace")}


def describe_object(s: Session, info: ResourceInfo, obj: dict, show_events: bool = True) -> str:
    obj = dict(obj)
    obj.setdefault("apiVersion", info.api_version)
    obj.setdefault("kind", info.kind)
    key = (info.group, info.kind)
    events = None
    if show_events and key not in _NO_EVENTS:
        events = fetch_events(s, obj, info)
    describer = DESCRIBERS.get(key, describe_generic)
    return describer(s, obj, events)


def run(args, s: Session) -> int:
    if args.filename:
        targets, _ = targets_from_files(s, args)
    else:
        targets, _ = parse_resource_args(s, args.resources, "describe")
    outputs: list[str] = []
    errors = 0
    for target in targets:
        found, errs = _collect(s, target, args.selector)
        errors += errs
        for info, obj in found:
            outputs.append(describe_object(s, info, obj, args.show_events))
    if outputs:
        s.out("\n\n".join(outputs))
    elif not errors:
        if not s.all_namespaces and all(t.info.namespaced for t in targets):
            s.err(f"No resources found in {s.namespace} namespace.")
        else:
            s.err("No resources found")
    if errors:
        raise Reported()
    return 0


def _collect(s: Session, target: Target, selector: str) -> tuple[list, int]:
    info = target.info
    ns = s.namespace_for(info)
    found: list = []
    errors = 0
    if not target.names:
        listed = s.client.list_all(info, ns, label_selector=selector or None)
        return [(info, o) for o in listed.get("items") or []], 0
    for name in target.names:
        try:
            found.append((info, s.client.get(info, name, ns if info.namespaced else None)))
            continue
        except ApiError as e:
            if e.code != 404:
                s.err(error_text(e))
                errors += 1
                continue
            not_found = e
        # kubectl falls back to a name prefix match when no object has the exact name.
        listed = s.client.list_all(info, ns, label_selector=selector or None)
        matches = [o for o in listed.get("items") or []
                   if (o.get("metadata") or {}).get("name", "").startswith(name)]
        if not matches:
            s.err(error_text(not_found))
            errors += 1
        found.extend((info, o) for o in matches)
    return found, errors
