"""Table output: the columns and cells `kubectl get` prints, and kubectl's AGE durations."""

from __future__ import annotations

import pytest

from meshnet.api import errors
from meshnet.api.humanize import age, format_timestamp, human_duration, short_human_duration
from meshnet.api.resources import RESOURCES, ResourceInfo, lookup
from meshnet.control.apiserver import table
from meshnet.control.apiserver.table import to_table

NOW = 1_714_560_000.0  # 2024-05-01T10:40:00Z
MINUTE, HOUR, DAY = 60, 3600, 86400


def ts(seconds_ago: float) -> str:
    return format_timestamp(NOW - seconds_ago)


def meta(name: str, seconds_ago: float = 300, **extra) -> dict:
    return {"name": name, "namespace": "default", "creationTimestamp": ts(seconds_ago),
            "resourceVersion": "7", **extra}


def cells(kind: str, obj: dict) -> list:
    return to_table(lookup(kind), [obj], now=NOW)["rows"][0]["cells"]


def cell(kind: str, obj: dict, column: str):
    names = [c["name"] for c in table.columns_for(lookup(kind))]
    return cells(kind, obj)[names.index(column)]


# ---------------------------------------------------------------------------------------------
# Durations

DURATION_CASES = [
    # (description, seconds, HumanDuration)
    ("far in the future is invalid", -3, "<invalid>"),
    ("a little in the future is clock skew", -1.5, "0s"),
    ("now", 0, "0s"),
    ("seconds", 5, "5s"),
    ("seconds up to two minutes", 119.9, "119s"),
    ("two minutes", 120, "2m"),
    ("minutes and seconds under ten minutes", 3 * MINUTE + 2, "3m2s"),
    ("just under ten minutes", 10 * MINUTE - 1, "9m59s"),
    ("ten minutes drops the seconds", 10 * MINUTE + 30, "10m"),
    ("minutes up to three hours", 3 * HOUR - 1, "179m"),
    ("three hours", 3 * HOUR, "3h"),
    ("hours and minutes under eight hours", 5 * HOUR + 3 * MINUTE, "5h3m"),
    ("eight hours drops the minutes", 8 * HOUR + 59 * MINUTE, "8h"),
    ("hours up to two days", 47 * HOUR + 59 * MINUTE, "47h"),
    ("two days", 2 * DAY, "2d"),
    ("days and hours under eight days", 2 * DAY + 5 * HOUR, "2d5h"),
    ("eight days drops the hours", 8 * DAY + 5 * HOUR, "8d"),
    ("days up to two years", 729 * DAY, "729d"),
    ("two years", 730 * DAY, "2y"),
    ("years and days under eight years", 3 * 365 * DAY + 45 * DAY, "3y45d"),
    ("eight years and more is years", 10 * 365 * DAY + 100 * DAY, "10y"),
]


@pytest.mark.parametrize("description,seconds,expected", DURATION_CASES,
                         ids=[c[0] for c in DURATION_CASES])
def test_human_duration(description, seconds, expected):
    assert human_duration(seconds) == expected


SHORT_DURATION_CASES = [
    ("invalid", -5, "<invalid>"),
    ("seconds", 59, "59s"),
    ("minutes", 59 * MINUTE + 59, "59m"),
    ("hours", 23 * HOUR, "23h"),
    ("days", 364 * DAY, "364d"),
    ("years", 800 * DAY, "2y"),
]


@pytest.mark.parametrize("description,seconds,expected", SHORT_DURATION_CASES,
                         ids=[c[0] for c in SHORT_DURATION_CASES])
def test_short_human_duration(description, seconds, expected):
    assert short_human_duration(seconds) == expected


AGE_CASES = [
    ("RFC 3339 with Z", "2024-05-01T10:35:00Z", "5m"),
    ("MicroTime fraction truncates like Go", "2024-05-01T10:39:30.123456Z", "29s"),
    ("explicit offset", "2024-05-01T12:38:00+02:00", "2m"),
    ("missing", None, "<unknown>"),
    ("empty", "", "<unknown>"),
    ("garbage does not raise", "yesterday", "<unknown>"),
]


@pytest.mark.parametrize("description,timestamp,expected", AGE_CASES,
                         ids=[c[0] for c in AGE_CASES])
def test_age(description, timestamp, expected):
    assert age(timestamp, NOW) == expected


# ---------------------------------------------------------------------------------------------
# Pods


def running(name="app", ready=True, restarts=0, last_finished=None):
    status = {"name": name, "ready": ready, "restartCount": restarts,
              "state": {"running": {"startedAt": ts(HOUR)}}}
    if last_finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": ts(last_finished)}}
    return status


def waiting(reason, name="app", restarts=0, last_finished=None):
    status = {"name": name, "ready": False, "restartCount": restarts,
              "state": {"waiting": {"reason": reason}}}
    if last_finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": ts(last_finished)}}
    return status


def terminated(name="app", exit_code=0, reason="", signal=0):
    state = {"exitCode": exit_code, "finishedAt": ts(MINUTE)}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


def pod(phase="Running", statuses=(), *, containers=("app",), init=(), init_statuses=(),
        conditions=(), deleting=False, reason="", **status_extra):
    metadata = meta("web")
    if deleting:
        metadata["deletionTimestamp"] = ts(0)
    status = {"phase": phase, "conditions": list(conditions),
              "containerStatuses": list(statuses), **status_extra}
    if init_statuses:
        status["initContainerStatuses"] = list(init_statuses)
    if reason:
        status["reason"] = reason
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [{"name": c, "image": "img"} for c in containers],
                     "initContainers": list(init)},
            "status": status}


READY = {"type": "Ready", "status": "True"}
INITIALIZED = {"type": "Initialized", "status": "True"}

POD_CASES = [
    # (description, pod, READY, STATUS, RESTARTS)
    ("running and ready", pod(statuses=[running()]), "1/1", "Running", "0"),
    ("pending before scheduling", pod("Pending"), "0/1", "Pending", "0"),
    ("image pull shows the waiting reason",
     pod("Pending", [waiting("ContainerCreating")]), "0/1", "ContainerCreating", "0"),
    ("crash loop shows restarts and when the last one was",
     pod(statuses=[waiting("CrashLoopBackOff", restarts=5, last_finished=2 * MINUTE)]),
     "0/1", "CrashLoopBackOff", "5 (2m ago)"),
    ("restarts without a recorded finish time are a bare count",
     pod(statuses=[running(restarts=3)]), "1/1", "Running", "3"),
    ("completed pod", pod("Succeeded", [terminated(reason="Completed")]), "0/1", "Completed",
     "0"),
    ("failed container shows its reason", pod("Failed", [terminated(exit_code=1,
                                                                    reason="Error")]),
     "0/1", "Error", "0"),
    ("terminated without reason shows the exit code",
     pod("Failed", [terminated(exit_code=137)]), "0/1", "ExitCode:137", "0"),
    ("terminated by a signal", pod("Failed", [terminated(exit_code=0, signal=9)]), "0/1",
     "Signal:9", "0"),
    ("pod-level reason wins over phase", pod("Failed", reason="Evicted"), "0/1", "Evicted",
     "0"),
    ("deletion pending on a running pod", pod(statuses=[running()], deleting=True), "1/1",
     "Terminating", "0"),
    ("a finished pod being deleted keeps its status",
     pod("Succeeded", [terminated(reason="Completed")], deleting=True), "0/1", "Completed",
     "0"),
    ("node lost while deleting is Unknown",
     pod(statuses=[running()], deleting=True, reason="NodeLost"), "1/1", "Unknown", "0"),
    ("scheduling gated", pod("Pending", conditions=[{"type": "PodScheduled",
                                                     "status": "False",
                                                     "reason": "SchedulingGated"}]),
     "0/1", "SchedulingGated", "0"),
    ("one completed container next to a running one, pod ready",
     pod(statuses=[terminated("a", reason="Completed"), running("b")], containers=("a", "b"),
         conditions=[READY]), "1/2", "Running", "0"),
    ("one completed container next to a running one, pod not ready",
     pod(statuses=[terminated("a", reason="Completed"), running("b")], containers=("a", "b")),
     "1/2", "NotReady", "0"),
    ("first init container still running",
     pod("Pending", init=[{"name": "i1"}, {"name": "i2"}],
         init_statuses=[{"name": "i1", "restartCount": 0, "state": {"running": {}}},
                        {"name": "i2", "restartCount": 0,
                         "state": {"waiting": {"reason": "PodInitializing"}}}]),
     "0/1", "Init:0/2", "0"),
    ("second init container crash looping",
     pod("Pending", init=[{"name": "i1"}, {"name": "i2"}],
         init_statuses=[terminated("i1", reason="Completed"),
                        waiting("CrashLoopBackOff", name="i2", restarts=4)]),
     "0/1", "Init:CrashLoopBackOff", "4"),
    ("init container failed without a reason",
     pod("Pending", init=[{"name": "i1"}], init_statuses=[terminated("i1", exit_code=2)]),
     "0/1", "Init:ExitCode:2", "0"),
    ("init container failed with a reason",
     pod("Pending", init=[{"name": "i1"}],
         init_statuses=[terminated("i1", exit_code=1, reason="Error")]),
     "0/1", "Init:Error", "0"),
    ("a started sidecar counts as a container of the pod",
     pod(statuses=[running()], init=[{"name": "proxy", "restartPolicy": "Always"}],
         init_statuses=[{**running("proxy", restarts=1), "started": True}],
         conditions=[INITIALIZED, READY]),
     "2/2", "Running", "1"),
]


@pytest.mark.parametrize("description,obj,ready,status,restarts", POD_CASES,
                         ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_restarts(description, obj, ready, status, restarts):
    row = cells("pods", obj)
    assert row[:4] == ["web", ready, status, restarts]
    assert row[4] == "5m"


POD_WIDE_CASES = [
    # (description, spec and status additions, IP, NODE, NOMINATED NODE, READINESS GATES)
    ("nothing assigned yet", {}, {}, "<none>", "<none>", "<none>", "<none>"),
    ("podIPs first entry", {"nodeName": "node-1"},
     {"podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}], "podIP": "10.244.0.5"},
     "10.244.0.5", "node-1", "<none>", "<none>"),
    ("podIP alone", {}, {"podIP": "10.244.0.9", "nominatedNodeName": "node-2"},
     "10.244.0.9", "<none>", "node-2", "<none>"),
    ("readiness gates count true conditions",
     {"readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
     {"conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]},
     "<none>", "<none>", "<none>", "1/2"),
]


@pytest.mark.parametrize("description,spec,status,ip,node,nominated,gates", POD_WIDE_CASES,
                         ids=[c[0] for c in POD_WIDE_CASES])
def test_pod_wide_cells(description, spec, status, ip, node, nominated, gates):
    obj = pod(statuses=[running()])
    obj["spec"].update(spec)
    obj["status"].update(status)
    assert cells("pods", obj)[5:] == [ip, node, nominated, gates]


ROW_CONDITION_CASES = [
    ("succeeded pods are marked completed", "Succeeded",
     [{"type": "Completed", "status": "True", "reason": "Succeeded",
       "message": "The pod has completed successfully."}]),
    ("failed pods are marked completed", "Failed",
     [{"type": "Completed", "status": "True", "reason": "Failed",
       "message": "The pod failed."}]),
    ("running pods carry no conditions", "Running", None),
]


@pytest.mark.parametrize("description,phase,expected", ROW_CONDITION_CASES,
                         ids=[c[0] for c in ROW_CONDITION_CASES])
def test_pod_row_conditions(description, phase, expected):
    row = to_table(lookup("pods"), [pod(phase)], now=NOW)["rows"][0]
    assert row.get("conditions") == expected


# ---------------------------------------------------------------------------------------------
# Services, Endpoints, Ingresses


def service(svc_type="ClusterIP", ports=(), *, cluster_ip="10.96.0.10", external_ips=(),
            lb_ingress=(), external_name="", selector=None):
    spec = {"type": svc_type, "ports": list(ports)}
    if cluster_ip:
        spec["clusterIP"], spec["clusterIPs"] = cluster_ip, [cluster_ip]
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if external_name:
        spec["externalName"] = external_name
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta("svc"), "spec": spec,
            "status": {"loadBalancer": {"ingress": list(lb_ingress)}}}


def port(number, node_port=None, protocol="TCP"):
    out = {"port": number, "protocol": protocol}
    if node_port:
        out["nodePort"] = node_port
    return out


SERVICE_CASES = [
    # (description, service, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), SELECTOR)
    ("cluster IP with UDP and TCP", service(ports=[port(53, protocol="UDP"), port(53)],
                                            selector={"k8s-app": "kube-dns"}),
     "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "k8s-app=kube-dns"),
    ("node ports", service("NodePort", [port(80, 30080), port(443, 30443)]),
     "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,443:30443/TCP", "<none>"),
    ("load balancer still pending", service("LoadBalancer", [port(80, 30080), port(443)]),
     "LoadBalancer", "10.96.0.10", "<pending>", "80:30080/TCP,443/TCP", "<none>"),
    ("load balancer IPs sorted and unique",
     service("LoadBalancer", [port(80, 31000)],
             lb_ingress=[{"ip": "192.0.2.20"}, {"ip": "192.0.2.3"}, {"ip": "192.0.2.20"}]),
     "LoadBalancer", "10.96.0.10", "192.0.2.20,192.0.2.3", "80:31000/TCP", "<none>"),
    ("load balancer hostname when no IP",
     service("LoadBalancer", [port(80, 31000)], lb_ingress=[{"hostname": "lb.example"}]),
     "LoadBalancer", "10.96.0.10", "lb.example", "80:31000/TCP", "<none>"),
    ("load balancer IPs then external IPs",
     service("LoadBalancer", [port(80, 31000)], external_ips=["198.51.100.1"],
             lb_ingress=[{"ip": "192.0.2.3"}]),
     "LoadBalancer", "10.96.0.10", "192.0.2.3,198.51.100.1", "80:31000/TCP", "<none>"),
    ("external IPs on a cluster IP service",
     service(ports=[port(80)], external_ips=["198.51.100.1", "198.51.100.2"]),
     "ClusterIP", "10.96.0.10", "198.51.100.1,198.51.100.2", "80/TCP", "<none>"),
    ("external name", service("ExternalName", cluster_ip="", external_name="db.example.com"),
     "ExternalName", "<none>", "db.example.com", "<none>", "<none>"),
    ("headless", service(cluster_ip="None", ports=[port(80)], selector={"app": "web",
                                                                       "tier": "fe"}),
     "ClusterIP", "None", "<none>", "80/TCP", "app=web,tier=fe"),
]


@pytest.mark.parametrize("description,obj,svc_type,cluster_ip,external,ports,selector",
                         SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
def test_service_cells(description, obj, svc_type, cluster_ip, external, ports, selector):
    assert cells("svc", obj) == ["svc", svc_type, cluster_ip, external, ports, "5m", selector]


def subset(ips, ports=(8080,), not_ready=()):
    out = {"addresses": [{"ip": ip} for ip in ips]}
    if ports:
        out["ports"] = [{"port": p, "protocol": "TCP"} for p in ports]
    if not_ready:
        out["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return out


ENDPOINTS_CASES = [
    ("no subsets", [], "<none>"),
    ("two endpoints", [subset(["10.244.0.5", "10.244.0.6"])],
     "10.244.0.5:8080,10.244.0.6:8080"),
    ("three fit exactly", [subset(["10.244.0.5", "10.244.0.6", "10.244.0.7"])],
     "10.244.0.5:8080,10.244.0.6:8080,10.244.0.7:8080"),
    ("four are truncated", [subset(["10.244.0.5", "10.244.0.6", "10.244.0.7", "10.244.0.8"])],
     "10.244.0.5:8080,10.244.0.6:8080,10.244.0.7:8080 + 1 more..."),
    ("address-port pairs are counted", [subset(["10.244.0.5", "10.244.0.6"], (80, 443))],
     "10.244.0.5:80,10.244.0.6:80,10.244.0.5:443 + 1 more..."),
    ("across subsets", [subset(["10.244.0.5", "10.244.0.6"]), subset(["10.244.1.5",
                                                                      "10.244.1.6"], (9090,))],
     "10.244.0.5:8080,10.244.0.6:8080,10.244.1.5:9090 + 1 more..."),
    ("headless without ports lists IPs", [subset(["10.244.0.5", "10.244.0.6"], ports=())],
     "10.244.0.5,10.244.0.6"),
    ("IPv6 in brackets", [subset(["fd00::5"], (80,))], "[fd00::5]:80"),
    ("only not-ready addresses show nothing", [subset([], not_ready=["10.244.0.5"])], ""),
]


@pytest.mark.parametrize("description,subsets,expected", ENDPOINTS_CASES,
                         ids=[c[0] for c in ENDPOINTS_CASES])
def test_endpoints_cell(description, subsets, expected):
    obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("svc"),
           "subsets": subsets}
    assert cells("ep", obj) == ["svc", expected, "5m"]


def ingress(rules=(), tls=False, class_name=None, lb=()):
    spec = {"rules": [{"host": h} if h else {} for h in rules]}
    if tls:
        spec["tls"] = [{"hosts": ["a.example"], "secretName": "tls"}]
    if class_name:
        spec["ingressClassName"] = class_name
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("ing"),
            "spec": spec, "status": {"loadBalancer": {"ingress": list(lb)}}}


INGRESS_CASES = [
    # (description, ingress, CLASS, HOSTS, ADDRESS, PORTS)
    ("no rules, no class", ingress(), "<none>", "*", "", "80"),
    ("hosts and TLS", ingress(["a.example", "b.example"], tls=True, class_name="meshnet",
                              lb=[{"ip": "192.0.2.1"}]),
     "meshnet", "a.example,b.example", "192.0.2.1", "80, 443"),
    ("rules without hosts are a wildcard", ingress(["", ""]), "<none>", "*", "", "80"),
    ("more than three hosts", ingress(["a", "b", "c", "d", "e"]), "<none>",
     "a,b,c + 2 more...", "", "80"),
    ("exactly three hosts", ingress(["a", "b", "c"]), "<none>", "a,b,c", "", "80"),
]


@pytest.mark.parametrize("description,obj,klass,hosts,address,ports", INGRESS_CASES,
                         ids=[c[0] for c in INGRESS_CASES])
def test_ingress_cells(description, obj, klass, hosts, address, ports):
    assert cells("ing", obj) == ["ing", klass, hosts, address, ports, "5m"]


INGRESS_CLASS_CASES = [
    ("no parameters", None, "<none>"),
    ("parameters with an API group", {"apiGroup": "k8s.example.com", "kind": "Params",
                                      "name": "p"}, "Params.k8s.example.com/p"),
    ("core parameters", {"kind": "ConfigMap", "name": "cfg"}, "ConfigMap/cfg"),
]


@pytest.mark.parametrize("description,params,expected", INGRESS_CLASS_CASES,
                         ids=[c[0] for c in INGRESS_CLASS_CASES])
def test_ingress_class_cells(description, params, expected):
    spec = {"controller": "meshnet.io/ingress"}
    if params:
        spec["parameters"] = params
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
           "metadata": meta("meshnet"), "spec": spec}
    assert cells("ingressclasses", obj) == ["meshnet", "meshnet.io/ingress", expected, "5m"]


# ---------------------------------------------------------------------------------------------
# Nodes, namespaces, events, leases, config


def node(conditions=(), labels=None, unschedulable=False, addresses=(), info=None):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {**meta("node-1", 2 * DAY), "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": list(conditions), "addresses": list(addresses),
                       "nodeInfo": info or {"kubeletVersion": "v1.30.0-meshnet"}}}


NODE_CASES = [
    # (description, node, STATUS, ROLES)
    ("ready", node([{"type": "Ready", "status": "True"}]), "Ready", "<none>"),
    ("not ready and cordoned", node([{"type": "Ready", "status": "False"}],
                                    unschedulable=True), "NotReady,SchedulingDisabled",
     "<none>"),
    ("no Ready condition yet", node(), "Unknown", "<none>"),
    ("roles from both label styles, sorted",
     node([{"type": "Ready", "status": "Unknown"}],
          labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge",
                  "node-role.kubernetes.io/": ""}),
     "NotReady", "control-plane,edge"),
]


@pytest.mark.parametrize("description,obj,status,roles", NODE_CASES,
                         ids=[c[0] for c in NODE_CASES])
def test_node_status_and_roles(description, obj, status, roles):
    assert cells("nodes", obj)[:5] == ["node-1", status, roles, "2d", "v1.30.0-meshnet"]


def test_node_wide_cells():
    obj = node(addresses=[{"type": "Hostname", "address": "node-1"},
                          {"type": "InternalIP", "address": "10.0.0.2"}],
               info={"kubeletVersion": "v1.30.0", "kernelVersion": "6.8.0",
                     "containerRuntimeVersion": "netns://meshnet"})
    assert cells("nodes", obj)[5:] == ["10.0.0.2", "<none>", "<unknown>", "6.8.0",
                                       "netns://meshnet"]


def test_namespace_cells():
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("kube-system", DAY),
           "status": {"phase": "Active"}}
    assert cells("ns", obj) == ["kube-system", "Active", "24h"]


def event(**fields):
    base = {"apiVersion": "v1", "kind": "Event", "metadata": meta("web.17a"),
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Started", "message": " Started container app\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"}}
    base.update(fields)
    return base


EVENT_CASES = [
    # (description, event, LAST SEEN, OBJECT, SOURCE, FIRST SEEN, COUNT)
    ("classic event", event(firstTimestamp=ts(HOUR), lastTimestamp=ts(MINUTE), count=3),
     "60s", "pod/web", "kubelet, node-1", "60m", 3),
    ("no last timestamp uses the first", event(firstTimestamp=ts(5 * MINUTE)),
     "5m", "pod/web", "kubelet, node-1", "5m", 1),
    ("new-style event: eventTime, series, reporting fields",
     event(eventTime=ts(HOUR), series={"count": 7, "lastObservedTime": ts(30)}, source={},
           reportingComponent="meshnet-endpoints", reportingInstance=""),
     "30s", "pod/web", "meshnet-endpoints", "60m", 7),
    ("no time at all", event(involvedObject={"kind": "Node"}), "<unknown>", "node", "kubelet, "
     "node-1", "<unknown>", 1),
]


@pytest.mark.parametrize("description,obj,last,target,source,first,count", EVENT_CASES,
                         ids=[c[0] for c in EVENT_CASES])
def test_event_cells(description, obj, last, target, source, first, count):
    row = cells("ev", obj)
    assert row[0] == last and row[3] == target and row[5] == source
    assert row[6] == "Started container app"  # trimmed
    assert row[7:] == [first, count, "web.17a"]
    assert row[1:3] == ["Normal", "Started"]


def test_lease_cells():
    obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": meta("meshnet-controllers"), "spec": {"holderIdentity": "host-a_1234"}}
    assert cells("leases", obj) == ["meshnet-controllers", "host-a_1234", "5m"]
    del obj["spec"]["holderIdentity"]
    assert cells("leases", obj) == ["meshnet-controllers", "", "5m"]


CONFIG_CASES = [
    ("configmap counts data and binaryData", "cm",
     {"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}, ["cfg", 3, "5m"]),
    ("empty configmap", "cm", {}, ["cfg", 0, "5m"]),
    ("secret type and data", "secrets", {"type": "kubernetes.io/tls",
                                         "data": {"tls.crt": "", "tls.key": ""}},
     ["cfg", "kubernetes.io/tls", 2, "5m"]),
    ("secret without a type is Opaque, stringData keys count once", "secrets",
     {"data": {"a": "MQ=="}, "stringData": {"a": "1", "b": "2"}}, ["cfg", "Opaque", 2, "5m"]),
]


@pytest.mark.parametrize("description,kind,fields,expected", CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_config_cells(description, kind, fields, expected):
    obj = {"apiVersion": "v1", "metadata": meta("cfg"), **fields}
    assert cells(kind, obj) == expected


# ---------------------------------------------------------------------------------------------
# Workloads

TEMPLATE = {"spec": {"containers": [{"name": "web", "image": "meshnet/echo"},
                                    {"name": "proxy", "image": "envoy:1.30"}]}}


def workload(kind, replicas=3, status=None, selector=None):
    spec = {"template": TEMPLATE}
    if replicas is not None:
        spec["replicas"] = replicas
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta("web", HOUR),
            "spec": spec, "status": status or {}}


WORKLOAD_CASES = [
    ("deployment rolling out", "deploy",
     workload("Deployment", status={"readyReplicas": 2, "updatedReplicas": 3,
                                    "availableReplicas": 2},
              selector={"matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In",
                                              "values": ["fe", "api"]}]}),
     ["web", "2/3", 3, 2, "60m", "web,proxy", "meshnet/echo,envoy:1.30",
      "app=web,tier in (api,fe)"]),
    ("deployment defaults to one replica, empty selector prints empty", "deploy",
     workload("Deployment", replicas=None),
     ["web", "0/1", 0, 0, "60m", "web,proxy", "meshnet/echo,envoy:1.30", ""]),
    ("replicaset", "rs",
     workload("ReplicaSet", status={"replicas": 3, "readyReplicas": 1},
              selector={"matchLabels": {"pod-template-hash": "abc", "app": "web"}}),
     ["web", 3, 3, 1, "60m", "web,proxy", "meshnet/echo,envoy:1.30",
      "app=web,pod-template-hash=abc"]),
    ("replicaset with an empty selector prints <none>", "rs", workload("ReplicaSet", 0),
     ["web", 0, 0, 0, "60m", "web,proxy", "meshnet/echo,envoy:1.30", "<none>"]),
    ("replicaset selector operators", "rs",
     workload("ReplicaSet", 1, selector={"matchExpressions": [
         {"key": "b", "operator": "DoesNotExist"}, {"key": "a", "operator": "Exists"},
         {"key": "c", "operator": "NotIn", "values": ["x"]}]}),
     ["web", 1, 0, 0, "60m", "web,proxy", "meshnet/echo,envoy:1.30", "a,!b,c notin (x)"]),
    ("statefulset", "sts", workload("StatefulSet", 2, {"readyReplicas": 1}),
     ["web", "1/2", "60m", "web,proxy", "meshnet/echo,envoy:1.30"]),
]


@pytest.mark.parametrize("description,kind,obj,expected", WORKLOAD_CASES,
                         ids=[c[0] for c in WORKLOAD_CASES])
def test_workload_cells(description, kind, obj, expected):
    assert cells(kind, obj) == expected


# ---------------------------------------------------------------------------------------------
# Columns and the Table envelope

HEADER_CASES = [
    # kubectl's header (priority-0 names upper-cased), then the -o wide additions.
    ("pods", "NAME READY STATUS RESTARTS AGE", "IP NODE NOMINATED NODE READINESS GATES"),
    ("services", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "SELECTOR"),
    ("endpoints", "NAME ENDPOINTS AGE", ""),
    ("namespaces", "NAME STATUS AGE", ""),
    ("nodes", "NAME STATUS ROLES AGE VERSION",
     "INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"),
    ("configmaps", "NAME DATA AGE", ""),
    ("secrets", "NAME TYPE DATA AGE", ""),
    ("events", "LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE FIRST SEEN COUNT NAME"),
    ("deployments", "NAME READY UP-TO-DATE AVAILABLE AGE", "CONTAINERS IMAGES SELECTOR"),
    ("replicasets", "NAME DESIRED CURRENT READY AGE", "CONTAINERS IMAGES SELECTOR"),
    ("statefulsets", "NAME READY AGE", "CONTAINERS IMAGES"),
    ("ingresses", "NAME CLASS HOSTS ADDRESS PORTS AGE", ""),
    ("ingressclasses", "NAME CONTROLLER PARAMETERS AGE", ""),
    ("leases", "NAME HOLDER AGE", ""),
]


@pytest.mark.parametrize("kind,default,wide", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_headers_as_kubectl_prints_them(kind, default, wide):
    columns = table.columns_for(lookup(kind))
    assert " ".join(c["name"].upper() for c in columns if c["priority"] == 0) == default
    assert " ".join(c["name"].upper() for c in columns if c["priority"] == 1) == wide
    for column in columns:
        assert set(column) == {"name", "type", "format", "description", "priority"}
        assert column["description"]


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.qualified)
def test_every_kind_prints_a_bare_object(info):
    """A printer never fails on an object with nothing but a name, and fills every column."""
    obj = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "x"}}
    result = to_table(info, [obj], now=NOW)
    assert info.kind in {k for _, k in table.PRINTERS}
    assert len(result["rows"][0]["cells"]) == len(result["columnDefinitions"])
    assert result["rows"][0]["cells"][[c["name"] for c in result["columnDefinitions"]]
                                      .index("Name")] == "x"


INCLUDE_CASES = [
    ("whole object, as kubectl asks", "Object", lambda obj: obj),
    ("metadata only, the server default", "Metadata",
     lambda obj: {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                  "metadata": obj["metadata"]}),
    ("nothing", "None", lambda obj: None),
]


@pytest.mark.parametrize("description,include,expected", INCLUDE_CASES,
                         ids=[c[0] for c in INCLUDE_CASES])
def test_include_object(description, include, expected):
    obj = pod(statuses=[running()])
    row = to_table(lookup("pods"), [obj], include_object=include, now=NOW)["rows"][0]
    assert row["object"] == expected(obj)


def test_invalid_include_object_is_a_bad_request():
    with pytest.raises(errors.StatusError) as exc:
        to_table(lookup("pods"), [], include_object="Everything", now=NOW)
    assert exc.value.code == 400 and "includeObject" in str(exc.value)


ENVELOPE_CASES = [
    # (description, objects, kwargs, metadata)
    ("a list carries the list's resourceVersion", 2, {"list_rv": "42"},
     {"resourceVersion": "42"}),
    ("a single object carries its own", 1, {}, {"resourceVersion": "7"}),
    ("an empty list without a version", 0, {}, {}),
    ("continue token", 2, {"list_rv": "42", "continue_token": "abc"},
     {"resourceVersion": "42", "continue": "abc"}),
]


@pytest.mark.parametrize("description,count,kwargs,metadata", ENVELOPE_CASES,
                         ids=[c[0] for c in ENVELOPE_CASES])
def test_table_envelope(description, count, kwargs, metadata):
    objects = [{"metadata": meta(f"cm-{i}")} for i in range(count)]
    result = to_table(lookup("cm"), objects, now=NOW, **kwargs)
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == metadata
    assert [r["cells"][0] for r in result["rows"]] == [f"cm-{i}" for i in range(count)]


def test_no_headers_leaves_out_column_definitions():
    result = to_table(lookup("cm"), [{"metadata": meta("a")}], now=NOW, no_headers=True)
    assert result["columnDefinitions"] == [] and len(result["rows"]) == 1


def test_kinds_without_a_printer_get_kubes_default_table():
    info = ResourceInfo("example.com", "v1", "Widget", "widgets", "widget", True)
    result = to_table(info, [{"metadata": meta("w")}], now=NOW)
    assert [c["name"] for c in result["columnDefinitions"]] == ["Name", "Created At"]
    assert result["columnDefinitions"][1]["type"] == "date"
    assert result["rows"][0]["cells"] == ["w", ts(300)]
