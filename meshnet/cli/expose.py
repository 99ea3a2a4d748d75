"""`meshctl expose`: a Service for a deployment, replica set, pod or service (kubectl expose).

The selector comes from the exposed object (a controller's `spec.selector.matchLabels`, a
pod's labels, a service's selector) unless `--selector` is given; ports from `--port`, else
from the object (its container ports, or the service's ports); the target port is
`--target-port`, else the port itself. The Service is named after the object unless `--name`
is given and carries the object's labels, exactly as kubectl's ServiceGeneratorV2 builds it.
"""

from __future__ import annotations

import argparse

from meshnet.api.resources import lookup

from .context import Session
from .create import create_and_print
from .errors import CLIError
from .flags import add_dry_run, add_output_flag
from .printers import parse_output

EXPOSABLE = {"Deployment", "ReplicaSet", "StatefulSet", "Pod", "Service", "ReplicationController"}

DESCRIPTION = """Expose a resource as a new Kubernetes service.

Looks up a deployment, service, replica set or pod by name and uses the selector for that
resource as the selector for a new service on the specified port."""

EXAMPLES = """Examples:
  # Create a service for an nginx deployment, which serves on port 80 and connects to the
  # containers on port 8000
  meshctl expose deployment nginx --port=80 --target-port=8000

  # Expose it on every node instead
  meshctl expose deployment nginx --port=80 --type=NodePort --name=nginx-nodeport"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resource", nargs="+", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--port", default="", help="The port that the service should serve on.")
    p.add_argument("--target-port", default="",
                   help="Name or number for the port on the container that the service should "
                        "direct traffic to.")
    p.add_argument("--protocol", default="",
                   help="The network protocol for the service to be created. Default is 'TCP'.")
    p.add_argument("--type", default="",
                   help="Type for this service: ClusterIP, NodePort, LoadBalancer, or "
                        "ExternalName.")
    p.add_argument("--name", default="", help="The name for the newly created object.")
    p.add_argument("--selector", default="",
                   help="A label selector to use for this service. Only equality-based "
                        "selector requirements are supported.")
    p.add_argument("--labels", "-l", default="", help="Labels to apply to the service created "
                                                      "by this call.")
    p.add_argument("--external-ip", default="", help="Additional external IP address (not "
                                                     "managed by the cluster).")
    p.add_argument("--cluster-ip", default="", help="ClusterIP to be assigned to the service. "
                                                    "Leave empty to auto-allocate.")
    p.add_argument("--load-balancer-ip", default="", help=argparse.SUPPRESS)
    p.add_argument("--session-affinity", default="",
                   help="If non-empty, set the session affinity for the service to this; "
                        "legal values: 'None', 'ClientIP'")
    add_dry_run(p)
    add_output_flag(p, "Output format. One of: (json, yaml, name).")


def _parse_map(text: str, flag: str) -> dict:
    out = {}
    for part in [p for p in text.split(",") if p]:
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise CLIError(f"invalid {flag} {text!r}: expected key=value[,key=value]")
        out[k.strip()] = v.strip()
    return out


def selector_of(obj: dict) -> dict:
    kind = obj.get("kind", "")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not labels:
            raise CLIError("couldn't retrieve selectors via --selector flag or introspection: "
                           "the pod has no labels and cannot be exposed")
        return dict(labels)
    if kind in ("Service", "ReplicationController"):
        selector = spec.get("selector") or {}
        if not selector:
            raise CLIError(f"couldn't retrieve selectors via --selector flag or introspection: "
                           f"the {kind.lower()} has no selector and cannot be exposed")
        return dict(selector)
    selector = spec.get("selector") or {}
    if selector.get("matchExpressions"):
        raise CLIError(f"couldn't convert expressions - \"{selector['matchExpressions']}\" to "
                       f"map-based selector format")
    labels = selector.get("matchLabels") or {}
    if not labels:
        raise CLIError(f"couldn't retrieve selectors via --selector flag or introspection: "
                       f"the {kind.lower()} has no selector")
    return dict(labels)


def ports_of(obj: dict) -> list[tuple[int, str]]:
    """(port, protocol) pairs the object already declares."""
    kind = obj.get("kind", "")
    spec = obj.get("spec") or {}
    if kind == "Service":
        return [(p.get("port"), p.get("protocol") or "TCP") for p in spec.get("ports") or []]
    pod_spec = spec if kind == "Pod" else ((spec.get("template") or {}).get("spec") or {})
    out = []
    for c in pod_spec.get("containers") or []:
        for p in c.get("ports") or []:
            out.append((p.get("containerPort"), p.get("protocol") or "TCP"))
    return out


def build_exposed_service(obj: dict, *, port: str = "", target_port: str = "",
                          protocol: str = "", svc_type: str = "", name: str = "",
                          selector: str = "", labels: str = "", external_ip: str = "",
                          cluster_ip: str = "", session_affinity: str = "",
                          namespace: str | None = None) -> dict:
    meta = obj.get("metadata") or {}
    if obj.get("kind") not in EXPOSABLE:
        raise CLIError(f"cannot expose a {obj.get('kind')}")
    sel = _parse_map(selector, "selector") if selector else selector_of(obj)
    if port:
        try:
            ports = [(int(port), protocol or "TCP")]
        except ValueError:
            raise CLIError(f'invalid --port "{port}": must be a number') from None
    else:
        ports = [(p, protocol or proto) for p, proto in ports_of(obj)]
        if not ports:
            raise CLIError("couldn't find port via --port flag or introspection")
    target: int | str | None = None
    if target_port:
        target = int(target_port) if target_port.isdigit() else target_port
    svc_ports = []
    for i, (number, proto) in enumerate(ports):
        entry: dict = {}
        if len(ports) > 1:
            entry["name"] = f"port-{i + 1}"
        entry["protocol"] = proto
        entry["port"] = number
        entry["targetPort"] = target if target is not None else number
        svc_ports.append(entry)
    svc_meta: dict = {"name": name or meta.get("name", "")}
    if namespace:
        svc_meta["namespace"] = namespace
    svc_labels = _parse_map(labels, "labels") if labels else dict(meta.get("labels") or {})
    if svc_labels:
        svc_meta["labels"] = svc_labels
    spec: dict = {"ports": svc_ports, "selector": sel}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    if svc_type:
        spec["type"] = svc_type
    if external_ip:
        spec["externalIPs"] = [external_ip]
    if session_affinity:
        spec["sessionAffinity"] = session_affinity
    return {"kind": "Service", "apiVersion": "v1", "metadata": svc_meta, "spec": spec,
            "status": {"loadBalancer": {}}}


def run(args, s: Session) -> int:
    words = args.resource
    if len(words) == 1 and "/" in words[0]:
        kind, _, name = words[0].partition("/")
    elif len(words) == 2:
        kind, name = words
    else:
        raise CLIError("You must provide the resource type and name to expose, e.g. "
                       "'meshctl expose deployment nginx --port=80'")
    obj = s.get_object(s.lookup(kind), name)
    svc = build_exposed_service(
        obj, port=args.port, target_port=args.target_port, protocol=args.protocol,
        svc_type=args.type, name=args.name, selector=args.selector, labels=args.labels,
        external_ip=args.external_ip, cluster_ip=args.cluster_ip,
        session_affinity=args.session_affinity,
        namespace=s.namespace if s.namespace_explicit else None)
    spec = parse_output(args.output, ("json", "yaml", "name")) if args.output else None
    return create_and_print(s, lookup("services"), svc, s.namespace, spec, args.dry_run,
                            "exposed")
