"""Server-side printing: objects as a meta.k8s.io/v1 Table (`kubectl get`'s columns).

Theory of operation
-------------------
kubectl asks `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, application/json` and
prints whatever columns the server sends; so the columns, cells and wording here are what a
user sees. They follow kube-apiserver's printers (pkg/printers/internalversion/printers.go):
same column names (kubectl upper-cases them), same cell text (`<none>`, `<pending>`,
`80:30080/TCP`, `10.244.0.5:8080 + 1 more...`), same status derivation for pods.

Like kube-apiserver, the server always prints the *wide* form: every column definition is
sent, `-o wide` ones with priority 1, and every row carries all cells; kubectl drops the
priority-1 columns unless asked for `-o wide`. Kinds without a printer get kube's default
table: Name and Created At.

`include_object` is the `includeObject` query parameter: `Object` (kubectl's choice) puts the
full object in each row, `Metadata` (the server default) a PartialObjectMetadata, `None`
nothing. Time is injected (`now`, seconds since the epoch) so AGE cells are testable.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from meshnet.api import errors
from meshnet.api.humanize import UNKNOWN, age, human_duration, parse_timestamp
from meshnet.api.resources import ResourceInfo

INCLUDE_OBJECT = ("Object", "Metadata", "None")

NONE = "<none>"

# Column descriptions: kube's (from the API's field docs), shortened.
_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, "
             "although some resources may allow a client to request the generation of an "
             "appropriate name automatically.")
_AGE_DOC = ("CreationTimestamp is a timestamp representing the server time when this object "
            "was created.")
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."


def _col(name: str, description: str, *, type_: str = "string", fmt: str = "",
         priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


NAME = _col("Name", _NAME_DOC, fmt="name")
AGE = _col("Age", _AGE_DOC)


def _get(obj: dict | None, *path, default=None):
    """obj[a][b]... where any level may be missing or null."""
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


def _name(obj: dict) -> str:
    return _get(obj, "metadata", "name", default="")


def _age(obj: dict, now: float) -> str:
    return age(_get(obj, "metadata", "creationTimestamp"), now)


def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: `a=1,b=2` sorted by key; `<none>` when empty."""
    if not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _requirements(selector: dict | None) -> list[str] | None:
    """metav1.LabelSelectorAsSelector's requirements as text, sorted by key; None if invalid."""
    if not selector:
        return []
    reqs: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = sorted(expr.get("values") or [])
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return None
    reqs.sort(key=lambda r: r[0])
    return [text for _, text in reqs]


def selector_string(selector: dict | None) -> str:
    """The Deployment printer's selector: `app=web,tier in (a,b)`; empty selects everything."""
    reqs = _requirements(selector)
    return "<invalid>" if reqs is None else ",".join(reqs)


def format_label_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: like selector_string, but `<none>` for an empty selector."""
    reqs = _requirements(selector)
    if reqs is None:
        return "<error>"
    return ",".join(reqs) or NONE


def _containers(pod_spec: dict | None) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma-joined."""
    containers = _get(pod_spec, "containers", default=[])
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _join_host_port(host: str, port) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


# ---------------------------------------------------------------------------------------------
# Pods

_POD_COLUMNS = [
    NAME,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and "
                     "when the last container in this pod has restarted."),
    AGE,
    _col("IP", "IP address allocated to the pod.", priority=1),
    _col("Node", "NodeName is a request to schedule this pod onto a specific node.",
         priority=1),
    _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on "
                           "the node.", priority=1),
    _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod "
                            "readiness.", priority=1),
]

_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}]


def _has_condition(conditions, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions or [])


def _terminated_at(status: dict) -> float | None:
    return parse_timestamp(_get(status, "lastState", "terminated", "finishedAt"))


def pod_status(pod: dict) -> tuple[str, int, int, int, float | None]:
    """kubectl's pod STATUS: (reason, ready, total, restarts, last restart time).

    The precedence is the printer's: phase, then status.reason, SchedulingGated, the first
    failing init container (`Init:CrashLoopBackOff`, `Init:0/2`), the last container with a
    waiting or terminated reason (`CrashLoopBackOff`, `Completed`, `ExitCode:1`), and finally
    `Terminating` when a deletion is pending on a pod that has not finished.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    # Sidecars (restartPolicy: Always init containers) count as containers of the pod.
    sidecars = {n for n, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = None

    def later(a, b):
        return b if a is None or (b is not None and b > a) else a

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        last_restart = later(last_restart, _terminated_at(cs))
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = later(last_sidecar_restart, _terminated_at(cs))
        terminated = _get(cs, "state", "terminated")
        waiting = _get(cs, "state", "waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting is not None and waiting.get("reason") \
                and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _has_condition(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = later(last_restart, _terminated_at(cs))
            waiting = _get(cs, "state", "waiting")
            terminated = _get(cs, "state", "terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                reason = f"Signal:{terminated['signal']}" if terminated.get("signal") \
                    else f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and _get(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        # A container that completed next to one still running: the pod is still running.
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(conditions, "Ready") else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp") is not None
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_conditions(pod: dict) -> list[dict]:
    """Row conditions kube attaches to finished pods (kubectl may use them to hide rows)."""
    phase = _get(pod, "status", "phase")
    return [dict(c) for c in {"Succeeded": _POD_SUCCEEDED, "Failed": _POD_FAILED}.get(phase, [])]


def _pod_row(pod: dict, now: float) -> list:
    reason, ready, total, restarts, last_restart = pod_status(pod)
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else status.get("podIP")) or NONE
    gates = spec.get("readinessGates") or []
    gates_cell = NONE
    if gates:
        conditions = status.get("conditions") or []
        true = 0
        for gate in gates:
            for cond in conditions:
                if cond.get("type") == gate.get("conditionType"):
                    true += cond.get("status") == "True"
                    break
        gates_cell = f"{true}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_cell, _age(pod, now),
            ip, spec.get("nodeName") or NONE, status.get("nominatedNodeName") or NONE,
            gates_cell]


# ---------------------------------------------------------------------------------------------
# Services, Endpoints, Ingresses

_SERVICE_COLUMNS = [
    NAME,
    _col("Type", "type determines how the Service is exposed."),
    _col("Cluster-IP", "clusterIP is the IP address of the service."),
    _col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster "
                        "will also accept traffic for this service."),
    _col("Port(s)", "The list of ports that are exposed by this service."),
    AGE,
    _col("Selector", "Route service traffic to pods with label keys and values matching this "
                     "selector.", priority=1),
]


def _lb_ingress(ingress: list | None) -> str:
    """loadBalancerStatusStringer (wide): sorted unique IPs, else hostnames."""
    found = set()
    for entry in ingress or []:
        if entry.get("ip"):
            found.add(entry["ip"])
        elif entry.get("hostname"):
            found.add(entry["hostname"])
    return ",".join(sorted(found))


def service_external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else NONE
    if svc_type == "LoadBalancer":
        lb = _lb_ingress(_get(svc, "status", "loadBalancer", "ingress"))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName", "")
    return UNKNOWN


def service_ports(ports: list | None) -> str:
    """makePortString: `80/TCP`, `80:30080/TCP` with a node port, comma-joined."""
    pieces = []
    for port in ports or []:
        proto = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            pieces.append(f"{port.get('port')}:{port['nodePort']}/{proto}")
        else:
            pieces.append(f"{port.get('port')}/{proto}")
    return ",".join(pieces)


def _service_row(svc: dict, now: float) -> list:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or []
    cluster_ip = ips[0] if ips else (spec.get("clusterIP") or NONE)
    return [_name(svc), spec.get("type") or "ClusterIP", cluster_ip, service_external_ip(svc),
            service_ports(spec.get("ports")) or NONE, _age(svc, now),
            format_labels(spec.get("selector"))]


_ENDPOINTS_COLUMNS = [NAME, _col("Endpoints", "The set of all endpoints is the union of all "
                                              "subsets."), AGE]
MAX_ENDPOINTS_SHOWN = 3


def format_endpoints(subsets: list | None) -> str:
    """formatEndpoints: up to three `ip:port`, then ` + N more...`; `<none>` when empty."""
    if not subsets:
        return NONE
    shown: list[str] = []
    count, more = 0, False
    for subset in subsets:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or []
        # A headless service with no ports lists bare IPs.
        for port in ports or [None]:
            count += len(addresses)
            for addr in addresses:
                if len(shown) == MAX_ENDPOINTS_SHOWN:
                    more = True
                    break
                ip = addr.get("ip", "")
                shown.append(ip if port is None else _join_host_port(ip, port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - MAX_ENDPOINTS_SHOWN} more..." if more else text


def _endpoints_row(ep: dict, now: float) -> list:
    return [_name(ep), format_endpoints(ep.get("subsets")), _age(ep, now)]


_INGRESS_COLUMNS = [
    NAME,
    _col("Class", "The name of the IngressClass resource that should be used for additional "
                  "configuration"),
    _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
    _col("Address", "Address is a list containing ingress points for the load-balancer"),
    _col("Ports", "Ports of TLS configurations that open"),
    AGE,
]


def ingress_hosts(rules: list | None) -> str:
    """formatHosts: up to three hosts, then ` + N more...`; `*` when no rule names a host.

    As in kube, "more" means a rule follows the third host, and N counts rules (with a host
    or not) beyond three.
    """
    rules = rules or []
    shown: list[str] = []
    more = False
    for rule in rules:
        if len(shown) == MAX_ENDPOINTS_SHOWN:
            more = True
        if not more and rule.get("host"):
            shown.append(rule["host"])
    if not shown:
        return "*"
    text = ",".join(shown)
    return f"{text} + {len(rules) - MAX_ENDPOINTS_SHOWN} more..." if more else text


def _ingress_row(ing: dict, now: float) -> list:
    spec = ing.get("spec") or {}
    return [_name(ing), spec.get("ingressClassName") or NONE, ingress_hosts(spec.get("rules")),
            _lb_ingress(_get(ing, "status", "loadBalancer", "ingress")),
            "80, 443" if spec.get("tls") else "80", _age(ing, now)]


_INGRESS_CLASS_COLUMNS = [
    NAME,
    _col("Controller", "Controller that is responsible for handling this class"),
    _col("Parameters", "A reference to a resource with additional parameters"),
    AGE,
]


def _ingress_class_row(ic: dict, now: float) -> list:
    spec = ic.get("spec") or {}
    params = spec.get("parameters")
    text = NONE
    if params:
        text = params.get("kind", "")
        if params.get("apiGroup") is not None:
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [_name(ic), spec.get("controller", ""), text, _age(ic, now)]


# ---------------------------------------------------------------------------------------------
# Cluster objects: namespaces, nodes, events, leases

_NAMESPACE_COLUMNS = [NAME, _col("Status", "The status of the namespace"), AGE]


def _namespace_row(ns: dict, now: float) -> list:
    return [_name(ns), _get(ns, "status", "phase", default=""), _age(ns, now)]


_NODE_COLUMNS = [
    NAME,
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    AGE,
    _col("Version", "Kubelet Version reported by the node."),
    _col("Internal-IP", "List of addresses reachable to the node.", priority=1),
    _col("External-IP", "List of addresses reachable to the node.", priority=1),
    _col("OS-Image", "OS Image reported by the node from /etc/os-release.", priority=1),
    _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", priority=1),
    _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime "
                              "remote API.", priority=1),
]

_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_roles(node: dict) -> str:
    roles = set()
    for key, value in (_get(node, "metadata", "labels") or {}).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX):]:
            roles.add(key[len(_ROLE_PREFIX):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def node_status(node: dict) -> str:
    status = []
    for cond in _get(node, "status", "conditions", default=[]):
        if cond.get("type") == "Ready":
            status = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if _get(node, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_address(node: dict, type_: str) -> str:
    for addr in _get(node, "status", "addresses", default=[]):
        if addr.get("type") == type_:
            return addr.get("address", "")
    return NONE


def _node_row(node: dict, now: float) -> list:
    info = _get(node, "status", "nodeInfo", default={})
    return [_name(node), node_status(node), node_roles(node), _age(node, now),
            info.get("kubeletVersion", ""),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or UNKNOWN, info.get("kernelVersion") or UNKNOWN,
            info.get("containerRuntimeVersion") or UNKNOWN]


_EVENT_COLUMNS = [
    _col("Last Seen", "The time at which the most recent occurrence of this event was "
                      "recorded."),
    _col("Type", "Type of this event (Normal, Warning), new types could be added in the "
                 "future"),
    _col("Reason", "This should be a short, machine understandable string that gives the "
                   "reason for the transition into the object's current status."),
    _col("Object", "The object that this event is about."),
    _col("Subobject", "If referring to a piece of an object instead of an entire object, this "
                      "string should contain a valid JSON/Go field access statement.",
         priority=1),
    _col("Source", "The component reporting this event.", priority=1),
    _col("Message", "A human-readable description of the status of this operation."),
    _col("First Seen", "The time at which the event was first recorded.", priority=1),
    _col("Count", "The number of times this event has occurred.", priority=1),
    _col("Name", _NAME_DOC, fmt="name", priority=1),
]


def _event_row(ev: dict, now: float) -> list:
    first = age(ev.get("firstTimestamp"), now)
    if parse_timestamp(ev.get("firstTimestamp")) is None:
        first = age(ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now)
    if parse_timestamp(ev.get("lastTimestamp")) is None:
        last = first
    count = ev.get("count") or 0
    series = ev.get("series")
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = ev.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    return [last, ev.get("type", ""), ev.get("reason", ""), target,
            involved.get("fieldPath", ""), f"{component}, {instance}" if instance else component,
            (ev.get("message") or "").strip(), first, count, _name(ev)]


_LEASE_COLUMNS = [NAME, _col("Holder", "holderIdentity contains the identity of the holder of "
                                       "a current lease."), AGE]


def _lease_row(lease: dict, now: float) -> list:
    return [_name(lease), _get(lease, "spec", "holderIdentity", default=""), _age(lease, now)]


# ---------------------------------------------------------------------------------------------
# Config

_CONFIGMAP_COLUMNS = [NAME, _col("Data", "Data contains the configuration data."), AGE]


def _configmap_row(cm: dict, now: float) -> list:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
            _age(cm, now)]


_SECRET_COLUMNS = [
    NAME,
    _col("Type", "Used to facilitate programmatic handling of secret data."),
    _col("Data", "Data contains the secret data."),
    AGE,
]


def _secret_row(secret: dict, now: float) -> list:
    # stringData is folded into data on write; count the union in case an object still has it.
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return [_name(secret), secret.get("type") or "Opaque", len(keys), _age(secret, now)]


# ---------------------------------------------------------------------------------------------
# Workloads

_DEPLOYMENT_COLUMNS = [
    NAME,
    _col("Ready", "Number of the pod with ready state"),
    _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that "
                       "have the desired template spec."),
    _col("Available", "Total number of available pods (ready for at least minReadySeconds) "
                      "targeted by this deployment."),
    AGE,
    _col("Containers", _CONTAINERS_DOC, priority=1),
    _col("Images", _IMAGES_DOC, priority=1),
    _col("Selector", "Label selector for pods.", priority=1),
]


def _replicas(obj: dict) -> int:
    value = _get(obj, "spec", "replicas")
    return 1 if value is None else value  # the API defaults replicas to 1


def _deployment_row(dep: dict, now: float) -> list:
    status = dep.get("status") or {}
    names, images = _containers(_get(dep, "spec", "template", "spec"))
    return [_name(dep), f"{status.get('readyReplicas', 0)}/{_replicas(dep)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            _age(dep, now), names, images, selector_string(_get(dep, "spec", "selector"))]


_REPLICASET_COLUMNS = [
    NAME,
    _col("Desired", "Replicas is the number of desired replicas.", type_="integer"),
    _col("Current", "Replicas is the most recently observed number of replicas.",
         type_="integer"),
    _col("Ready", "The number of ready replicas for this replica set.", type_="integer"),
    AGE,
    _col("Containers", _CONTAINERS_DOC, priority=1),
    _col("Images", _IMAGES_DOC, priority=1),
    _col("Selector", "Selector is a label query over pods that should match the replica "
                     "count.", priority=1),
]


def _replicaset_row(rs: dict, now: float) -> list:
    status = rs.get("status") or {}
    names, images = _containers(_get(rs, "spec", "template", "spec"))
    return [_name(rs), _replicas(rs), status.get("replicas", 0), status.get("readyReplicas", 0),
            _age(rs, now), names, images,
            format_label_selector(_get(rs, "spec", "selector"))]


_STATEFULSET_COLUMNS = [
    NAME,
    _col("Ready", "Number of the pod with ready state"),
    AGE,
    _col("Containers", _CONTAINERS_DOC, priority=1),
    _col("Images", _IMAGES_DOC, priority=1),
]


def _statefulset_row(sts: dict, now: float) -> list:
    names, images = _containers(_get(sts, "spec", "template", "spec"))
    return [_name(sts), f"{_get(sts, 'status', 'readyReplicas', default=0)}/{_replicas(sts)}",
            _age(sts, now), names, images]


# ---------------------------------------------------------------------------------------------
# Dispatch

Printer = Callable[[dict, float], list]

_DEFAULT_COLUMNS = [NAME, _col("Created At", _AGE_DOC, type_="date")]


def _default_row(obj: dict, now: float) -> list:
    return [_name(obj), _get(obj, "metadata", "creationTimestamp", default="")]


PRINTERS: dict[tuple[str, str], tuple[list[dict], Printer]] = {
    ("", "Pod"): (_POD_COLUMNS, _pod_row),
    ("", "Service"): (_SERVICE_COLUMNS, _service_row),
    ("", "Endpoints"): (_ENDPOINTS_COLUMNS, _endpoints_row),
    ("", "Namespace"): (_NAMESPACE_COLUMNS, _namespace_row),
    ("", "Node"): (_NODE_COLUMNS, _node_row),
    ("", "ConfigMap"): (_CONFIGMAP_COLUMNS, _configmap_row),
    ("", "Secret"): (_SECRET_COLUMNS, _secret_row),
    ("", "Event"): (_EVENT_COLUMNS, _event_row),
    ("apps", "Deployment"): (_DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "ReplicaSet"): (_REPLICASET_COLUMNS, _replicaset_row),
    ("apps", "StatefulSet"): (_STATEFULSET_COLUMNS, _statefulset_row),
    ("networking.k8s.io", "Ingress"): (_INGRESS_COLUMNS, _ingress_row),
    ("networking.k8s.io", "IngressClass"): (_INGRESS_CLASS_COLUMNS, _ingress_class_row),
    ("coordination.k8s.io", "Lease"): (_LEASE_COLUMNS, _lease_row),
}


ROW_CONDITIONS: dict[tuple[str, str], Callable[[dict], list[dict]]] = {
    ("", "Pod"): _pod_conditions,
}


def columns_for(info: ResourceInfo) -> list[dict]:
    return PRINTERS.get((info.group, info.kind), (_DEFAULT_COLUMNS, None))[0]


def _row_object(obj: dict, include_object: str):
    if include_object == "Object":
        return obj
    if include_object == "Metadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {}}
    return None


def to_table(info: ResourceInfo, objects: list[dict], *, list_rv: str = "",
             include_object: str = "Metadata", now: float, continue_token: str = "",
             no_headers: bool = False) -> dict:
    """A meta.k8s.io/v1 Table of `objects` (all of kind `info`).

    `list_rv` is the list's resourceVersion; for a single object without one, the object's
    own is used (as kube-apiserver does for a GET). `no_headers` leaves out the column
    definitions (kube sends them only on the first event of a Table watch).
    Raises a 400 StatusError for an includeObject value other than Object/Metadata/None.
    """
    if include_object not in INCLUDE_OBJECT:
        raise errors.bad_request(f'invalid includeObject "{include_object}": must be one of '
                                 f'{", ".join(INCLUDE_OBJECT)}')
    columns, printer = PRINTERS.get((info.group, info.kind), (_DEFAULT_COLUMNS, _default_row))
    conditions_of = ROW_CONDITIONS.get((info.group, info.kind))
    rows = []
    for obj in objects:
        row = {"cells": printer(obj, now)}
        conditions = conditions_of(obj) if conditions_of else []
        if conditions:
            row["conditions"] = conditions
        row["object"] = _row_object(obj, include_object)
        rows.append(row)
    metadata: dict = {}
    rv = list_rv
    if not rv and len(objects) == 1:
        rv = _get(objects[0], "metadata", "resourceVersion", default="")
    if rv:
        metadata["resourceVersion"] = rv
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [] if no_headers else [dict(c) for c in columns],
        "rows": rows,
    }
