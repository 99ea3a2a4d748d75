"""Kubernetes protobuf request bodies: the decoder over hand-built wire bytes, then the real
kubectl 1.37 (whose typed `create` commands send protobuf) against a real API server.

The expected dicts are what kube-apiserver's JSON encoding of the same Go object gives; the
oracle test holds the decoder to that with kubectl's own bytes (from its -v=10 request dump)
against kubectl's own JSON (`kubectl create ... --dry-run=client -o json`).
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshnet.api import errors, resources
from meshnet.control.apiserver import protobuf, protobuf_schema, wire
from meshnet.control.apiserver.protobuf import ProtobufError, decode_protobuf_object

KUBECTL = Path(sys.executable).parent / "kubectl"


# --- a tiny encoder, enough to build test bodies ----------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers: 10-byte two's complement, as Go writes them
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def v(number: int, value: int) -> bytes:  # varint field (ints, bools)
    return tag(number, 0) + varint(value)


def b(number: int, data: bytes) -> bytes:  # length-delimited field
    return tag(number, 2) + varint(len(data)) + data


def s(number: int, text: str) -> bytes:
    return b(number, text.encode())


def m(number: int, *fields: bytes) -> bytes:  # embedded message
    return b(number, b"".join(fields))


def entry(number: int, key: str, value: bytes) -> bytes:  # one map<string, V> entry
    return m(number, s(1, key), value)


def envelope(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    return protobuf.MAGIC + m(1, s(1, api_version), s(2, kind)) + b(2, raw) + b"".join(extra)


META = m(1, s(1, "x"))  # ObjectMeta{name: x}


def meta_of(body: bytes) -> dict:
    return {"metadata": {"name": "x"}, **body}


# --- decoding: case table ---------------------------------------------------------------------

# What `kubectl create deployment web --image=nginx --replicas=2 --port=8080` sends (abridged):
# every non-pointer Go field is on the wire, zero or not.
KUBECTL_DEPLOYMENT = (
    m(1, s(1, "web"), s(2, ""), v(7, 0), m(8), entry(11, "app", s(2, "web")))
    + m(2, v(1, 2), m(2, entry(1, "app", s(2, "web"))),
        m(3, m(1, m(8), entry(11, "app", s(2, "web"))),
          m(2, m(2, s(1, "nginx"), s(2, "nginx"), s(5, ""),
                 m(6, s(1, ""), v(2, 0), v(3, 8080), s(4, ""), s(5, "")),
                 m(8), s(13, ""), v(16, 0)),
            s(3, ""), s(6, ""), v(11, 0))),
        m(4, s(1, "")), v(5, 0), v(7, 0))
    + m(3, v(1, 0), v(2, 0)))


def case(desc, api_version, kind, raw, expected):
    return pytest.param(api_version, kind, raw, {"kind": kind, "apiVersion": api_version,
                                                 **expected}, id=desc)


DECODE_CASES = [
    case("namespace with only a name", "v1", "Namespace", META, {"metadata": {"name": "x"}}),
    case("kubectl's zero scalars and empty creationTimestamp are dropped, empty structs kept",
         "v1", "Namespace",
         m(1, s(1, "x"), s(2, ""), s(3, ""), v(7, 0), m(8)) + m(2) + m(3, s(1, "")),
         {"metadata": {"name": "x"}, "spec": {}, "status": {}}),
    case("metadata: generateName, labels, annotations, finalizers, ownerReferences",
         "v1", "ConfigMap",
         m(1, s(2, "gen-"), s(3, "ns"), v(7, 3),
           entry(11, "app", s(2, "web")), entry(11, "tier", s(2, "fe")),
           entry(12, "note", s(2, "a b")),
           s(14, "example.com/f1"), s(14, "example.com/f2"),
           m(13, s(1, "Deployment"), s(3, "web"), s(4, "u-1"), s(5, "apps/v1"), v(6, 1),
             v(7, 0))),
         {"metadata": {"generateName": "gen-", "namespace": "ns", "generation": 3,
                       "labels": {"app": "web", "tier": "fe"}, "annotations": {"note": "a b"},
                       "finalizers": ["example.com/f1", "example.com/f2"],
                       "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u-1",
                                            "apiVersion": "apps/v1", "controller": True,
                                            "blockOwnerDeletion": False}]}}),
    case("map entry without a value is the zero value", "v1", "ConfigMap",
         META + entry(2, "empty", b"") + entry(2, "k", s(2, "v")),
         meta_of({"data": {"empty": "", "k": "v"}})),
    case("bytes become base64, binary included", "v1", "Secret",
         META + entry(2, "a", b(2, b"b")) + entry(2, "bin", b(2, b"\x00\xff\xfe")) + s(3, "Opaque"),
         meta_of({"data": {"a": "Yg==", "bin": "AP/+"}, "type": "Opaque"})),
    case("configmap binaryData and immutable=false kept (a Go pointer)", "v1", "ConfigMap",
         META + entry(3, "blob", b(2, b"\x89PNG")) + v(4, 0),
         meta_of({"binaryData": {"blob": "iVBORw=="}, "immutable": False})),
    case("deployment as kubectl create deployment sends it", "apps/v1", "Deployment",
         KUBECTL_DEPLOYMENT,
         {"metadata": {"name": "web", "labels": {"app": "web"}},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                         "ports": [{"containerPort": 8080}],
                                                         "resources": {}}]}},
                   "strategy": {}},
          "status": {}}),
    case("pointer zeros kept (replicas 0), plain zeros dropped (minReadySeconds, paused)",
         "apps/v1", "Deployment", META + m(2, v(1, 0), v(5, 0), v(7, 0), v(6, 0)),
         meta_of({"spec": {"replicas": 0, "revisionHistoryLimit": 0}})),
    case("IntOrString: int, string, percentage", "apps/v1", "Deployment",
         META + m(2, m(4, s(1, "RollingUpdate"),
                       m(2, m(1, v(1, 1), s(3, "25%")), m(2, v(1, 0), v(2, 3))))),
         meta_of({"spec": {"strategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": "25%",
                                                          "maxSurge": 3}}}})),
    case("service: ports with int and named targetPort, selector, type", "v1", "Service",
         META + m(2, m(1, s(1, "http"), s(2, "TCP"), v(3, 80), m(4, v(1, 0), v(2, 8080)),
                       v(5, 30080)),
                  m(1, s(1, "metrics"), v(3, 9090), m(4, v(1, 1), s(3, "prom")),
                    s(6, "http")),
                  entry(2, "app", s(2, "web")), s(3, "None"), s(4, "NodePort"),
                  v(12, 0), v(13, 0), s(17, "SingleStack"), v(20, 0),
                  m(14, m(1, v(1, 600)))),
         meta_of({"spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                      "targetPort": 8080, "nodePort": 30080},
                                     {"name": "metrics", "port": 9090, "targetPort": "prom",
                                      "appProtocol": "http"}],
                           "selector": {"app": "web"}, "clusterIP": "None", "type": "NodePort",
                           "ipFamilyPolicy": "SingleStack",
                           "allocateLoadBalancerNodePorts": False,
                           "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}})),
    case("container: command, args, env with valueFrom refs (inlined name), envFrom",
         "v1", "Pod",
         META + m(2, m(2, s(1, "c"), s(3, "sh"), s(3, "-c"), s(4, "sleep 1"), s(5, "/w"),
                       m(7, s(1, "A"), s(2, "1")),
                       m(7, s(1, "B"), m(3, m(3, m(1, s(1, "cm")), s(2, "k"), v(3, 1)))),
                       m(7, s(1, "C"), m(3, m(4, m(1, s(1, "sec")), s(2, "pw")))),
                       m(7, s(1, "D"), m(3, m(1, s(1, "v1"), s(2, "metadata.name")))),
                       m(7, s(1, "E"), m(3, m(2, s(2, "limits.cpu"),
                                             m(3, s(1, "1m"))))),
                       m(19, s(1, "P_"), m(2, m(1, s(1, "cm2")))),
                       m(19, m(3, m(1, s(1, "sec2")), v(2, 0))))),
         meta_of({"spec": {"containers": [{
             "name": "c", "command": ["sh", "-c"], "args": ["sleep 1"], "workingDir": "/w",
             "env": [{"name": "A", "value": "1"},
                     {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k",
                                                                     "optional": True}}},
                     {"name": "C", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                     {"name": "D", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                              "fieldPath": "metadata.name"}}},
                     {"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                                      "divisor": "1m"}}}],
             "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cm2"}},
                         {"secretRef": {"name": "sec2", "optional": False}}]}]}})),
    case("resources: Quantity maps", "v1", "Pod",
         META + m(2, m(2, s(1, "c"), m(8, entry(1, "cpu", m(2, s(1, "500m"))),
                                       entry(1, "memory", m(2, s(1, "128Mi"))),
                                       entry(2, "cpu", m(2, s(1, "250m")))))),
         meta_of({"spec": {"containers": [{"name": "c", "resources": {
             "limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}}}]}})),
    case("probes: handler inlined, named port, grpc; lifecycle; securityContext", "v1", "Pod",
         META + m(2, m(2, s(1, "c"),
                       m(11, m(1, m(2, s(1, "/healthz"), m(2, v(1, 1), s(3, "http")),
                                    s(4, "HTTP"), m(5, s(1, "X"), s(2, "y")))),
                         v(2, 5), v(4, 10), v(6, 3)),
                       m(10, m(1, m(3, m(1, v(2, 8080)))), v(7, 0)),
                       m(22, m(1, m(4, v(1, 9000)))),
                       m(12, m(2, m(4, v(1, 5))), m(1, m(1, s(1, "true")))),
                       m(15, m(1, s(1, "NET_ADMIN"), s(2, "ALL")), v(2, 0), v(4, 1000),
                         v(5, 1), v(7, 0), m(11, s(1, "RuntimeDefault"))),
                       s(13, "/dev/termination-log"), s(20, "File"), s(14, "IfNotPresent"),
                       v(16, 1), v(18, 1),
                       m(9, s(1, "data"), s(3, "/data"), v(2, 1), s(4, "sub")))),
         meta_of({"spec": {"containers": [{
             "name": "c",
             "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                            "httpHeaders": [{"name": "X", "value": "y"}]},
                                "initialDelaySeconds": 5, "periodSeconds": 10,
                                "failureThreshold": 3},
             "livenessProbe": {"tcpSocket": {"port": 8080}, "terminationGracePeriodSeconds": 0},
             "startupProbe": {"grpc": {"port": 9000}},
             "lifecycle": {"preStop": {"sleep": {"seconds": 5}},
                           "postStart": {"exec": {"command": ["true"]}}},
             "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                 "privileged": False, "runAsUser": 1000, "runAsNonRoot": True,
                                 "allowPrivilegeEscalation": False,
                                 "seccompProfile": {"type": "RuntimeDefault"}},
             "terminationMessagePath": "/dev/termination-log",
             "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
             "stdin": True, "tty": True,
             "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True,
                               "subPath": "sub"}]}]}})),
    case("pod spec scalars and volumes (source inlined into the volume)", "v1", "Pod",
         META + m(2, s(3, "Always"), v(4, 0), s(6, "ClusterFirst"), s(10, "node-a"),
                  s(16, "h"), s(17, "sub"), s(19, "default-scheduler"), v(21, 0),
                  entry(7, "disk", s(2, "ssd")), v(11, 0),
                  m(1, s(1, "cm"), m(2, m(19, m(1, s(1, "conf")), v(3, 420),
                                          m(2, s(1, "k"), s(2, "p"), v(3, 0))))),
                  m(1, s(1, "sec"), m(2, m(6, s(1, "tls"), v(4, 1)))),
                  m(1, s(1, "tmp"), m(2, m(2, s(1, "Memory"), m(2, s(1, "64Mi"))))),
                  m(1, s(1, "host"), m(2, m(1, s(1, "/var/log"), s(2, "Directory")))),
                  m(22, s(1, "k"), s(2, "Exists"), s(4, "NoExecute"), v(5, 30)),
                  m(14, v(2, 1000), v(4, 1), v(4, 2), b(4, varint(3) + varint(4)),
                    v(5, 2000))),
         meta_of({"spec": {
             "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
             "dnsPolicy": "ClusterFirst", "nodeName": "node-a", "hostname": "h",
             "subdomain": "sub", "schedulerName": "default-scheduler",
             "automountServiceAccountToken": False, "nodeSelector": {"disk": "ssd"},
             "volumes": [{"name": "cm", "configMap": {"name": "conf", "defaultMode": 420,
                                                      "items": [{"key": "k", "path": "p",
                                                                 "mode": 0}]}},
                         {"name": "sec", "secret": {"secretName": "tls", "optional": True}},
                         {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                         {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}}],
             "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                              "tolerationSeconds": 30}],
             "securityContext": {"runAsUser": 1000, "supplementalGroups": [1, 2, 3, 4],
                                 "fsGroup": 2000}}})),
    case("negative int32 and int64 (10-byte varints)", "v1", "Pod",
         META + m(2, v(25, -5), v(5, -(2 ** 40)), m(2, s(1, "c"), m(6, v(3, -1)))),
         meta_of({"spec": {"priority": -5, "activeDeadlineSeconds": -(2 ** 40),
                           "containers": [{"name": "c", "ports": [{"containerPort": -1}]}]}})),
    case("ingress: rules (http inlined), backends by number and by name, tls, class",
         "networking.k8s.io/v1", "Ingress",
         META + m(2, m(3, s(1, "a.example"),
                       m(2, m(1, m(1, s(1, "/"), s(3, "Prefix"),
                                   m(2, m(4, s(1, "web"), m(2, v(2, 80))))),
                                 m(1, s(1, "/api"), s(3, "Exact"),
                                   m(2, m(4, s(1, "api"), m(2, s(1, "http")))))))),
                  m(2, s(1, "a.example"), s(1, "b.example"), s(2, "tls-sec")),
                  m(1, m(4, s(1, "default"), m(2, v(2, 8080)))), s(4, "meshnet"))
         + m(3, m(1)),
         meta_of({"spec": {
             "rules": [{"host": "a.example", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                 {"path": "/api", "pathType": "Exact",
                  "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}],
             "tls": [{"hosts": ["a.example", "b.example"], "secretName": "tls-sec"}],
             "defaultBackend": {"service": {"name": "default", "port": {"number": 8080}}},
             "ingressClassName": "meshnet"},
             "status": {"loadBalancer": {}}})),
    case("ingressclass parameters (proto aPIGroup is JSON apiGroup)", "networking.k8s.io/v1",
         "IngressClass",
         META + m(2, s(1, "meshnet.dev/ingress"),
                  m(2, s(1, "k8s.example.com"), s(2, "Params"), s(3, "p"), s(4, "Cluster"))),
         meta_of({"spec": {"controller": "meshnet.dev/ingress",
                           "parameters": {"apiGroup": "k8s.example.com", "kind": "Params",
                                          "name": "p", "scope": "Cluster"}}})),
    case("lease: MicroTime keeps microseconds, Time drops them", "coordination.k8s.io/v1",
         "Lease",
         m(1, s(1, "x"), m(8, v(1, 1714557600), v(2, 123456789)))
         + m(2, s(1, "node-a"), v(2, 40), m(4, v(1, 1714557600), v(2, 123456789)), v(5, 0)),
         {"metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00Z"},
          "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40,
                   "renewTime": "2024-05-01T10:00:00.123456Z", "leaseTransitions": 0}}),
    case("event: references, source, series, eventTime", "v1", "Event",
         META + m(2, s(1, "Pod"), s(2, "ns"), s(3, "p"), s(7, "spec.containers{c}"))
         + s(3, "Started") + s(4, "started c") + m(5, s(1, "kubelet"), s(2, "node-a"))
         + m(6, v(1, 0), v(2, 0)) + v(8, 2) + s(9, "Normal")
         + m(10, v(1, 1714557600), v(2, 5000)) + m(11, v(1, 2), m(2, v(1, 1714557601))),
         meta_of({"involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p",
                                     "fieldPath": "spec.containers{c}"},
                  "reason": "Started", "message": "started c",
                  "source": {"component": "kubelet", "host": "node-a"}, "count": 2,
                  "type": "Normal", "eventTime": "2024-05-01T10:00:00.000005Z",
                  "series": {"count": 2, "lastObservedTime": "2024-05-01T10:00:01.000000Z"}})),
    case("endpoints: addresses with targetRef, not-ready addresses, ports", "v1", "Endpoints",
         META + m(2, m(1, s(1, "10.0.0.1"), s(4, "node-a"), m(2, s(1, "Pod"), s(3, "p1"))),
                  m(2, s(1, "10.0.0.2")), m(3, s(1, "http"), v(2, 8080), s(3, "TCP"))),
         meta_of({"subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "node-a",
                                              "targetRef": {"kind": "Pod", "name": "p1"}}],
                               "notReadyAddresses": [{"ip": "10.0.0.2"}],
                               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})),
    case("node: spec, capacity quantities, conditions, addresses", "v1", "Node",
         META + m(2, s(1, "10.244.1.0/24"), s(7, "10.244.1.0/24"), v(4, 1),
                  m(5, s(1, "k"), s(3, "NoSchedule")))
         + m(3, entry(1, "cpu", m(2, s(1, "4"))), entry(2, "pods", m(2, s(1, "110"))),
             m(4, s(1, "Ready"), s(2, "True")), m(5, s(1, "InternalIP"), s(2, "10.0.0.5"))),
         meta_of({"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                           "unschedulable": True, "taints": [{"key": "k",
                                                              "effect": "NoSchedule"}]},
                  "status": {"capacity": {"cpu": "4"}, "allocatable": {"pods": "110"},
                             "conditions": [{"type": "Ready", "status": "True"}],
                             "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}})),
    case("statefulset: claim templates, update strategy, pointer partition 0", "apps/v1",
         "StatefulSet",
         META + m(2, v(1, 3), s(5, "db"), s(6, "Parallel"),
                  m(7, s(1, "RollingUpdate"), m(2, v(1, 0))),
                  m(4, m(1, s(1, "data")),
                    m(2, s(1, "ReadWriteOnce"), m(2, entry(2, "storage", m(2, s(1, "1Gi")))),
                      s(5, "")))),
         meta_of({"spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                           "updateStrategy": {"type": "RollingUpdate",
                                              "rollingUpdate": {"partition": 0}},
                           "volumeClaimTemplates": [{
                               "metadata": {"name": "data"},
                               "spec": {"accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}},
                                        "storageClassName": ""}}]}})),
    case("replicaset with a set-based selector", "apps/v1", "ReplicaSet",
         META + m(2, v(1, 1), m(2, m(2, s(1, "tier"), s(2, "In"), s(3, "fe"), s(3, "be")))),
         meta_of({"spec": {"replicas": 1, "selector": {"matchExpressions": [
             {"key": "tier", "operator": "In", "values": ["fe", "be"]}]}}})),
    case("managedFields: FieldsV1 is raw JSON, Time as RFC 3339", "v1", "ConfigMap",
         m(1, s(1, "x"), m(17, s(1, "kubectl"), s(2, "Update"), s(3, "v1"),
                           m(4, v(1, 1714557600)), s(6, "FieldsV1"),
                           m(7, b(1, b'{"f:data":{".":{}}}')))),
         {"metadata": {"name": "x", "managedFields": [{
             "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
             "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {".": {}}}}]}}),
    case("DeleteOptions under any group version", "apps/v1", "DeleteOptions",
         v(1, 0) + m(2, s(1, "uid-1")) + s(4, "Foreground") + s(5, "All"),
         {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"},
          "propagationPolicy": "Foreground", "dryRun": ["All"]}),
    case("unknown fields of every wire type are skipped, at top level and nested",
         "v1", "ConfigMap",
         m(1, s(1, "x"), v(99, 7), s(98, "new")) + tag(50, 1) + b"\x01" * 8
         + tag(51, 5) + b"\x02" * 4 + tag(52, 3) + v(1, 1) + m(2, s(1, "g")) + tag(52, 4)
         + m(53, v(1, 1)) + entry(2, "k", s(2, "v") + v(3, 9)),
         meta_of({"data": {"k": "v"}})),
    case("a field seen twice: scalars last-wins (even to zero), messages merge, lists append",
         "v1", "Service",
         m(1, s(1, "a"), entry(11, "x", s(2, "1"))) + m(1, s(1, "x"), entry(11, "y", s(2, "2")))
         + m(2, s(4, "NodePort"), s(3, "10.0.0.1"), s(5, "1.1.1.1"))
         + m(2, s(4, ""), s(5, "2.2.2.2")),
         {"metadata": {"name": "x", "labels": {"x": "1", "y": "2"}},
          "spec": {"clusterIP": "10.0.0.1", "externalIPs": ["1.1.1.1", "2.2.2.2"]}}),
    case("invalid UTF-8 in a string becomes U+FFFD, as encoding/json writes it", "v1",
         "ConfigMap", META + entry(2, "k", b(2, b"a\xffb")),
         meta_of({"data": {"k": "a\ufffdb"}})),
]


@pytest.mark.parametrize("api_version, kind, raw, expected", DECODE_CASES)
def test_decode(api_version, kind, raw, expected):
    assert decode_protobuf_object(envelope(api_version, kind, raw)) == expected


def test_envelope_content_type_and_unknown_fields_accepted():
    body = envelope("v1", "Namespace", META, s(4, protobuf.CONTENT_TYPE), s(3, ""), v(9, 1))
    assert decode_protobuf_object(body) == {"kind": "Namespace", "apiVersion": "v1",
                                            "metadata": {"name": "x"}}


# --- malformed bodies: what and where ----------------------------------------------------------

def raw_at(api_version: str, kind: str) -> int:
    """Offset of the object's first byte in `envelope(...)` (raw shorter than 128 bytes)."""
    return len(envelope(api_version, kind, b""))


def error_case(desc, body, *expected):
    return pytest.param(body, expected, id=desc)


ERROR_CASES = [
    error_case("no magic number", b'{"kind": "ConfigMap"}', "at byte 0", "magic number"),
    error_case("empty after the magic number", protobuf.MAGIC, "no apiVersion and kind"),
    error_case("envelope tag truncated", protobuf.MAGIC + b"\x0a", "at byte 5",
               "runtime.Unknown", "past the end"),
    error_case("raw length runs past the end",
               protobuf.MAGIC + m(1, s(1, "v1"), s(2, "ConfigMap")) + tag(2, 2) + varint(50)
               + b"\x0a\x00", "at byte 22", "runtime.Unknown", "length 50",
               "2 bytes left"),
    error_case("nested varint truncated, named with its path",
               envelope("apps/v1", "Deployment", m(2, m(3, m(2, m(2, tag(1, 2) + b"\x85"))))),
               f"at byte {raw_at('apps/v1', 'Deployment') + 9}",
               "message Container at spec.template.spec.containers[0]",
               "field 1 (name)", "past the end"),
    error_case("wrong wire type for a known field",
               envelope("v1", "ConfigMap", m(1, v(1, 5))),
               f"at byte {raw_at('v1', 'ConfigMap') + 2}",
               "message ObjectMeta at metadata", "field 1 (name)",
               "expected a length-delimited string, got wire type 0"),
    error_case("message field sent as a varint",
               envelope("v1", "Service", v(2, 1)), f"at byte {raw_at('v1', 'Service')}",
               "message Service, field 2 (spec)",
               "expected an embedded ServiceSpec message"),
    error_case("varint longer than 10 bytes",
               envelope("v1", "ConfigMap", tag(40, 0) + b"\xff" * 11),
               f"at byte {raw_at('v1', 'ConfigMap') + 2}",
               "longer than 10 bytes"),
    error_case("field number 0", envelope("v1", "ConfigMap", b"\x00\x00"),
               f"at byte {raw_at('v1', 'ConfigMap')}",
               "field number 0"),
    error_case("invalid wire type 7 in an unknown field",
               envelope("v1", "ConfigMap", tag(77, 7)), f"at byte {raw_at('v1', 'ConfigMap')}",
               "invalid wire type 7"),
    error_case("end of a group that never started", envelope("v1", "ConfigMap", tag(40, 4)),
               "end of group 40 without its start"),
    error_case("group ended by the wrong field",
               envelope("v1", "ConfigMap", tag(40, 3) + tag(41, 4)), "group 40 ends with field 41"),
    error_case("unterminated group", envelope("v1", "ConfigMap", tag(40, 3) + v(1, 1)),
               "past the end"),
    error_case("fixed64 cut short", envelope("v1", "ConfigMap", tag(40, 1) + b"\x00" * 3),
               "fixed-size field 40"),
    error_case("map entry value of the wrong type",
               envelope("v1", "Secret", entry(2, "k", v(2, 1))), "map entry of data",
               "expected a length-delimited bytes"),
    error_case("Time with nanos out of range",
               envelope("v1", "ConfigMap", m(1, m(8, v(1, 1), v(2, 2_000_000_000)))),
               "message Time at metadata.creationTimestamp", "nanos 2000000000 is out of range"),
    error_case("FieldsV1 that is not JSON",
               envelope("v1", "ConfigMap", m(1, m(17, m(7, b(1, b"{nope"))))),
               "fieldsV1 is not JSON"),
    error_case("a kind meshnet does not serve", envelope("batch/v1", "Job", META),
               "cannot decode a Job in batch/v1", "application/json"),
    error_case("a served kind in the wrong group", envelope("v1", "Deployment", META),
               "cannot decode a Deployment in v1"),
    error_case("compressed content", envelope("v1", "ConfigMap", META, s(3, "gzip")),
               "contentEncoding 'gzip'"),
    error_case("JSON inside the envelope", envelope("v1", "ConfigMap", b"{}",
                                                    s(4, "application/json")),
               "contentType 'application/json'"),
    error_case("unknown groups nested too deeply",
               envelope("v1", "ConfigMap", tag(40, 3) * 105 + tag(40, 4) * 105),
               "nested too deeply"),
]


@pytest.mark.parametrize("body, expected", ERROR_CASES)
def test_malformed_bodies_say_what_and_where(body, expected):
    with pytest.raises(ProtobufError) as exc:
        decode_protobuf_object(body)
    for part in expected:
        assert part in str(exc.value)


def test_every_truncation_of_a_real_body_is_an_error_not_a_crash():
    body = envelope("apps/v1", "Deployment", KUBECTL_DEPLOYMENT)
    decode_protobuf_object(body)
    failures = 0
    for cut in range(len(body)):
        try:
            decode_protobuf_object(body[:cut])
        except ProtobufError:
            failures += 1  # anything else (IndexError, KeyError, ...) fails the test
    # Only cuts that end the envelope between two whole fields can decode (to less).
    assert failures >= len(body) - 4


# --- the schema table itself --------------------------------------------------------------------

def test_every_served_kind_has_a_message():
    for r in resources.RESOURCES:
        assert protobuf.message_for(r.api_version, r.kind) in protobuf.SCHEMA, r


def test_json_names_are_unique_per_message():
    for msg, fields in protobuf.SCHEMA.items():
        names = [f.name for f in fields.values() if not f.inline]
        assert len(names) == len(set(names)), msg


def test_a_misspelt_message_name_fails_at_import():
    with pytest.raises(AssertionError, match="unknown message 'Contianer'"):
        protobuf_schema._compile({"Pod": {2: "containers:[]Contianer"}})


@pytest.mark.parametrize("spec, field", [
    ("name", protobuf.Field(1, "name", "string")),
    ("replicas:int32?", protobuf.Field(1, "replicas", "int32", pointer=True)),
    ("ports:[]ServicePort", protobuf.Field(1, "ports", "ServicePort", repeated=True)),
    ("limits:{}Quantity", protobuf.Field(1, "limits", "Quantity", map=True)),
    ("~LocalObjectReference", protobuf.Field(1, "", "LocalObjectReference", inline=True)),
])
def test_field_spec_notation(spec, field):
    assert protobuf_schema._parse_field(1, spec) == field


# --- the HTTP boundary ------------------------------------------------------------------------

def test_wire_decodes_protobuf_and_turns_errors_into_400():
    body = envelope("v1", "Namespace", META)
    assert wire.decode_object(body, "application/vnd.kubernetes.protobuf")["metadata"] == {
        "name": "x"}
    with pytest.raises(errors.StatusError) as exc:
        wire.decode_object(body[:-1], "application/vnd.kubernetes.protobuf")
    assert exc.value.code == 400 and "invalid protobuf body at byte" in exc.value.message
    with pytest.raises(errors.StatusError) as exc:
        wire.decode_object(b"\x00\x01", "application/cbor")
    assert exc.value.code == 415 and "application/vnd.kubernetes.protobuf" in exc.value.message


# --- end to end: the real kubectl against a real API server ----------------------------------

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    crt, pem = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.fixture(scope="module")
def kubectl(apiserver, tmp_path_factory):
    files = tmp_path_factory.mktemp("kubectl-files")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(KUBECTL), "--kubeconfig", str(apiserver.kubeconfig),
                *(a.format(files=files) for a in args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv[3:])} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    (files / "app.properties").write_text("color=blue\nsize=2\n")
    (files / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (files / "key.bin").write_bytes(b"\x00\x01\xfe\xff")
    run.files = files
    run.tls = _self_signed(files)
    return run


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_contains(actual, expected, path="$"):
    """Every key of `expected` is in `actual` with that value; lists match element-wise."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing from {actual!r}"
            assert_contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {len(expected)} items, got {actual!r}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_contains(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


def e2e(desc, commands, get, expected):
    return pytest.param(commands, get, expected, id=desc)


E2E_CASES = [
    e2e("create namespace", [["create", "namespace", "team-a"]], ["namespace", "team-a"],
        {"kind": "Namespace", "metadata": {"name": "team-a"}}),
    e2e("create deployment --replicas --port",
        [["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=8080"]],
        ["deployment", "web"],
        {"metadata": {"labels": {"app": "web"}},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{
                                   "name": "nginx", "image": "nginx",
                                   "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}}),
    e2e("create deployment with a command, in another namespace",
        [["create", "namespace", "team-b"],
         ["create", "deployment", "sleeper", "-n", "team-b", "--image=busybox", "--replicas=0",
          "--", "sleep", "3600"]],
        ["deployment", "sleeper", "-n", "team-b"],
        {"metadata": {"namespace": "team-b"},
         "spec": {"replicas": 0, "template": {"spec": {"containers": [{
             "name": "busybox", "image": "busybox", "command": ["sleep", "3600"]}]}}}}),
    e2e("create service clusterip",
        [["create", "service", "clusterip", "svc-a", "--tcp=80:8080", "--tcp=443:https"]],
        ["service", "svc-a"],
        {"spec": {"type": "ClusterIP", "selector": {"app": "svc-a"},
                  "ports": [{"name": "80-8080", "port": 80, "targetPort": 8080,
                             "protocol": "TCP"},
                            {"name": "443-https", "port": 443, "targetPort": "https",
                             "protocol": "TCP"}]}}),
    e2e("create service clusterip headless",
        [["create", "service", "clusterip", "headless", "--clusterip=None", "--tcp=80:80"]],
        ["service", "headless"], {"spec": {"clusterIP": "None", "type": "ClusterIP"}}),
    e2e("create service nodeport --node-port",
        [["create", "service", "nodeport", "svc-np", "--tcp=80:8080", "--node-port=30080"]],
        ["service", "svc-np"],
        {"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080,
                                                 "nodePort": 30080, "protocol": "TCP",
                                                 "name": "80-8080"}]}}),
    e2e("create service loadbalancer",
        [["create", "service", "loadbalancer", "svc-lb", "--tcp=80:8080"]], ["service", "svc-lb"],
        {"spec": {"type": "LoadBalancer", "selector": {"app": "svc-lb"},
                  "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP",
                             "name": "80-8080"}]}}),
    e2e("create service externalname",
        [["create", "service", "externalname", "svc-ext", "--external-name=db.example.com"]],
        ["service", "svc-ext"],
        {"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    e2e("create configmap --from-literal --from-file (text and binary)",
        [["create", "configmap", "cm", "--from-literal=mode=fast", "--from-literal=empty=",
          "--from-file={files}/app.properties", "--from-file={files}/blob.bin"]],
        ["configmap", "cm"],
        {"data": {"mode": "fast", "empty": "", "app.properties": "color=blue\nsize=2\n"},
         "binaryData": {"blob.bin": b64(b"\x89PNG\r\n\x1a\n\x00\xff")}}),
    e2e("create secret generic (bytes survive exactly)",
        [["create", "secret", "generic", "sec", "--from-literal=user=admin",
          "--from-file=key={files}/key.bin"]],
        ["secret", "sec"],
        {"type": "Opaque", "data": {"user": b64(b"admin"), "key": b64(b"\x00\x01\xfe\xff")}}),
    e2e("create ingress with rules, tls, class and default backend",
        [["create", "ingress", "web", "--class=meshnet", "--default-backend=web:80",
          "--rule=a.example/*=web:80", "--rule=b.example/api=web:http,tls=tls-sec"]],
        ["ingress", "web"],
        {"spec": {"ingressClassName": "meshnet",
                  "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                  "rules": [{"host": "a.example", "http": {"paths": [{
                      "path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
                            {"host": "b.example", "http": {"paths": [{
                                "path": "/api", "pathType": "Exact",
                                "backend": {"service": {"name": "web",
                                                        "port": {"name": "http"}}}}]}}],
                  "tls": [{"hosts": ["b.example"], "secretName": "tls-sec"}]}}),
    e2e("run a pod with labels and a port",
        [["run", "pod1", "--image=nginx", "--labels=app=x", "--port=80"]], ["pod", "pod1"],
        {"metadata": {"labels": {"app": "x"}},
         "spec": {"containers": [{"name": "pod1", "image": "nginx",
                                  "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}),
    e2e("expose a deployment",
        [["create", "deployment", "api", "--image=nginx", "--port=8080"],
         ["expose", "deployment", "api", "--port=80", "--target-port=8080", "--name=api-svc"]],
        ["service", "api-svc"],
        {"spec": {"selector": {"app": "api"}, "type": "ClusterIP",
                  "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
]


@pytest.mark.parametrize("commands, get, expected", E2E_CASES)
def test_kubectl_commands_round_trip(kubectl, commands, get, expected):
    for command in commands:
        kubectl(*command)
    obj = json.loads(kubectl("get", *get, "-o", "json").stdout)
    assert_contains(obj, expected)


# The oracle: kubectl's own protobuf bytes (from its -v=10 hex dump of the request), decoded,
# equal kubectl's own JSON encoding of the same object (`--dry-run=client -o json`, whose only
# difference is `creationTimestamp: null`). `--dry-run=server` so that nothing is stored.
ORACLE_CASES = [
    ["create", "namespace", "oracle"],
    ["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=8080"],
    ["create", "deployment", "multi", "--image=nginx", "--image=redis"],
    ["create", "deployment", "cmd", "--image=busybox", "--replicas=0", "--", "sleep", "3600"],
    ["create", "service", "clusterip", "svc", "--tcp=80:8080", "--tcp=443:https"],
    ["create", "service", "clusterip", "headless", "--clusterip=None"],
    ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30081"],
    ["create", "service", "loadbalancer", "lb", "--tcp=80:8080"],
    ["create", "service", "externalname", "ext", "--external-name=x.example"],
    ["create", "configmap", "cm", "--from-literal=a=b", "--from-literal=empty=",
     "--from-file={files}/app.properties", "--from-file={files}/blob.bin"],
    ["create", "secret", "generic", "sec", "--from-literal=a=b", "--from-file={files}/key.bin",
     "--type=example.com/custom"],
    ["create", "secret", "tls", "tls", "--cert={files}/tls.crt", "--key={files}/tls.key"],
    ["create", "secret", "docker-registry", "reg", "--docker-server=r.example",
     "--docker-username=u", "--docker-password=p", "--docker-email=e@example.com"],
    ["create", "ingress", "ing", "--class=meshnet", "--default-backend=web:80",
     "--rule=a.example/*=web:80", "--rule=b.example/api=web:http,tls=sec", "--annotation=a=b"],
]


def _with_flags(argv: list[str], *flags: str) -> list[str]:
    """Flags go before a `--` (after it they would become the container's command)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return [*argv[:cut], *flags, *argv[cut:]]


def _request_body(log: str) -> bytes:
    """The body of the one request whose log shows a `"Request Body"` hex dump."""
    dump = log.split('"Request Body" body=<', 1)[1].split("\n >", 1)[0]
    # hex.Dump lines: `00000010  73 70 61 63 65 12 1d 0a  15 0a 05 76 ...  |space......vtest|`
    return bytes.fromhex("".join("".join(line.split("|", 1)[0].split()[1:])
                                 for line in dump.splitlines()[1:]))


def _without_nulls(obj):
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(x) for x in obj]
    return obj


@pytest.mark.parametrize("argv", ORACLE_CASES, ids=lambda a: " ".join(a[:4]))
def test_decoded_kubectl_bytes_equal_kubectl_json(kubectl, argv):
    expected = json.loads(kubectl(*_with_flags(argv, "--dry-run=client", "-o", "json")).stdout)
    sent = kubectl(*_with_flags(argv, "--dry-run=server", "-o", "name", "-v=10"))
    body = _request_body(sent.stderr)
    assert body.startswith(protobuf.MAGIC), "kubectl no longer sends protobuf for this command"
    assert decode_protobuf_object(body) == _without_nulls(expected)


def test_kubectl_create_secret_tls(kubectl):
    crt, key = kubectl.tls
    kubectl("create", "secret", "tls", "tls-sec", f"--cert={crt}", f"--key={key}")
    obj = json.loads(kubectl("get", "secret", "tls-sec", "-o", "json").stdout)
    assert obj["type"] == "kubernetes.io/tls"
    assert base64.b64decode(obj["data"]["tls.crt"]) == crt.read_bytes()
    assert base64.b64decode(obj["data"]["tls.key"]) == key.read_bytes()


def test_kubectl_create_secret_docker_registry(kubectl):
    kubectl("create", "secret", "docker-registry", "reg", "--docker-server=r.example",
            "--docker-username=u", "--docker-password=p")
    obj = json.loads(kubectl("get", "secret", "reg", "-o", "json").stdout)
    assert obj["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(obj["data"][".dockerconfigjson"]))
    assert config["auths"]["r.example"]["auth"] == b64(b"u:p")


def test_kubectl_dry_run_server_decodes_without_storing(kubectl):
    out = kubectl("create", "deployment", "dry", "--image=nginx", "--dry-run=server",
                  "-o", "json").stdout
    assert json.loads(out)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert "NotFound" in kubectl("get", "deployment", "dry", check=False).stderr


def test_malformed_protobuf_is_a_400_over_https(apiserver):
    """A broken body is a 400 naming the byte offset; the server keeps serving."""
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=apiserver.ca)
    req = urllib.request.Request(
        f"{apiserver.url}/api/v1/namespaces", method="POST",
        data=envelope("v1", "Namespace", m(1, v(1, 5))),
        headers={"Content-Type": "application/vnd.kubernetes.protobuf",
                 "Authorization": f"Bearer {apiserver.token}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    status = json.loads(exc.value.read())
    assert exc.value.code == 400 and status["reason"] == "BadRequest"
    assert "at byte" in status["message"] and "ObjectMeta" in status["message"]
