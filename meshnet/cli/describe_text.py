"""Text building blocks shared by the describers (k8s.io/kubectl/pkg/describe helpers).

A `Writer` collects tab-separated lines at indent levels (two spaces per level, kubectl's
PrefixWriter) and lays them out with Go's tabwriter (minwidth 0, padding 2). The helpers print
labels, annotations, selectors, endpoints and events exactly as kubectl does, `<none>` included.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .printers import age, format_labels, parse_time
from .tabwriter import DESCRIBE, format_tabbed


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


MAX_ANNOTATION_LEN = 140


class Writer:
    """kubectl's PrefixWriter: `write(level, text)` with two spaces per level."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.parts.append("  " * level + text)

    def line(self, text: str = "") -> None:
        self.parts.append(text + "\n")

    def text(self) -> str:
        return format_tabbed("".join(self.parts), **DESCRIBE)


def name_and_namespace(w: Writer, meta: dict) -> None:
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace', '')}\n")


def labels_and_annotations(w: Writer, meta: dict) -> None:
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))


def object_header(w: Writer, meta: dict) -> None:
    """The Name, Namespace, Labels and Annotations lines most describers open with."""
    name_and_namespace(w, meta)
    labels_and_annotations(w, meta)


def optional_fields(w: Writer, level: int, source: dict, fields: tuple) -> None:
    """`Title:\tvalue` for each (key, title) in `fields` whose value is set; kubectl leaves
    unset ones out."""
    for key, title in fields:
        if source.get(key):
            w.write(level, f"{title}:\t{source[key]}\n")


def quantities(w: Writer, level: int, title: str, values: dict) -> None:
    """A resource list (limits, capacity, ...): the title, then one `name:\tvalue` per line."""
    w.write(level, f"{title}:\n")
    for name in sorted(values):
        w.write(level + 1, f"{name}:\t{values[name]}\n")


def labels_multiline(w: Writer, title: str, labels: dict | None, indent: str = "") -> None:
    w.write(0, f"{indent}{title}:\t")
    keys = sorted((labels or {}).keys())
    if not keys:
        w.line("<none>")
        return
    for i, k in enumerate(keys):
        if i:
            w.write(0, f"{indent}\t")
        w.write(0, f"{k}={labels[k]}\n")


def annotations_multiline(w: Writer, title: str, annotations: dict | None) -> None:
    w.write(0, f"{title}:\t")
    keys = sorted(k for k in (annotations or {}) if k != LAST_APPLIED)
    if not keys:
        w.line("<none>")
        return
    for i, k in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = str(annotations[k]).removesuffix("\n")
        if len(value) + len(k) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{k}:\n")
            for part in value.split("\n"):
                short = part if len(part) <= MAX_ANNOTATION_LEN - 2 else \
                    part[:MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {short}\n")
        else:
            w.write(0, f"{k}: {value}\n")


def selector_text(selector: dict | None) -> str:
    """metav1.FormatLabelSelector."""
    if selector is None:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        values = ",".join(expr.get("values") or [])
        key = expr.get("key", "")
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    text = ",".join(parts)
    return text if text else "<none>"


def selector_map_text(selector: dict | None) -> str:
    """labels.FormatLabels for a plain map selector (Service.spec.selector)."""
    return format_labels(selector)


def _event_time(ev: dict):
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        t = parse_time(ev.get(key))
        if t is not None:
            return t
    t = parse_time((ev.get("metadata") or {}).get("creationTimestamp"))
    return t


def describe_events(w: Writer, events: list[dict] | None) -> None:
    if events is None:
        return
    if not events:
        w.write(0, "Events:\t<none>\n")
        return
    floor = datetime.min.replace(tzinfo=timezone.utc)
    events = sorted(events, key=lambda e: _event_time(e) or floor)
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in events:
        first = age(e.get("eventTime")) if e.get("eventTime") else age(e.get("firstTimestamp"))
        series = e.get("series")
        count = e.get("count") or 0
        if series:
            interval = f"{age(series.get('lastObservedTime'))} (x{series.get('count', 0)} over " \
                       f"{first})"
        elif count > 1:
            interval = f"{age(e.get('lastTimestamp'))} (x{count} over {first})"
        else:
            interval = first
        source = (e.get("source") or {}).get("component") or e.get("reportingController") or ""
        message = str(e.get("message") or "").strip()
        field_path = (e.get("involvedObject") or {}).get("fieldPath")
        if field_path:
            message = f"{field_path}: {message}"
        w.write(1, f"{e.get('type', '')}\t{e.get('reason', '')}\t{interval}\t{source}\t"
                   f"{message}\n")


def format_endpoints(endpoints: dict | None, port_names: set[str] | None) -> str:
    """kubectl's formatEndpoints over a v1 Endpoints object (first three, then `+ N more...`)."""
    subsets = (endpoints or {}).get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit, count, more = 3, 0, False
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            for addr in addresses:
                if len(shown) == limit:
                    more = True
                if not more:
                    shown.append(addr.get("ip", ""))
                count += 1
            continue
        for port in ports:
            if port_names is None or (port.get("name") or "") in port_names:
                for addr in addresses:
                    if len(shown) == limit:
                        more = True
                    if not more:
                        ip = addr.get("ip", "")
                        host = f"[{ip}]" if ":" in ip else ip
                        shown.append(f"{host}:{port.get('port')}")
                    count += 1
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text
