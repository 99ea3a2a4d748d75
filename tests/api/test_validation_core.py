"""Namespace, Node, ConfigMap, Secret, Event and Lease: defaults and validation."""

import base64
import copy

import pytest

from api_cases import CONFIG_MAP, DELETE, TLS_SECRET, assert_causes, b64, causes_of, edit
from meshnet.api.resources import lookup
from meshnet.api.validation import default_object


def defaulted(kind, obj):
    obj = copy.deepcopy(obj)
    default_object(lookup(kind), obj)
    return obj


NAMESPACE = {"metadata": {"name": "dev"}}


def test_namespace_defaults():
    ns = defaulted("namespaces", NAMESPACE)
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"]["phase"] == "Active"


# (description, changes, expected cause prefixes)
NAMESPACE_CASES = [
    ("valid", {}, []),
    ("qualified finalizer", {"spec.finalizers": ["example.com/cleanup"]}, []),
    ("unqualified non-standard finalizer", {"spec.finalizers": ["cleanup"]},
     ['spec.finalizers[0]: Invalid value: "cleanup": name is neither a standard finalizer name '
      "nor is it fully qualified"]),
    ("unknown phase", {"status.phase": "Gone"},
     ['status.phase: Unsupported value: "Gone": supported values: "Active", "Terminating"']),
    ("63-char name", {"metadata.name": "n" * 63}, []),
    ("64-char name", {"metadata.name": "n" * 64},
     ['metadata.name: Invalid value: "' + "n" * 64 + '": must be no more than 63 characters']),
]


@pytest.mark.parametrize("desc,changes,want", NAMESPACE_CASES,
                         ids=[c[0] for c in NAMESPACE_CASES])
def test_namespace(desc, changes, want):
    assert_causes(causes_of("namespaces", edit(NAMESPACE, changes)), want)


NODE = {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.244.1.0/24",
                                                  "podCIDRs": ["10.244.1.0/24"]}}

# (description, changes, expected cause prefixes)
NODE_CASES = [
    ("valid", {}, []),
    ("name with dots", {"metadata.name": "node-a.example.com"}, []),
    ("name uppercase", {"metadata.name": "Node-A"},
     ['metadata.name: Invalid value: "Node-A": a lowercase RFC 1123 subdomain']),
    ("bad podCIDR", {"spec.podCIDR": "10.244.1.0"},
     ['spec.podCIDR: Invalid value: "10.244.1.0": must be a valid CIDR value, (e.g. '
      "10.9.8.0/24 or 2001:db8::/64)"]),
    ("bad podCIDRs entry", {"spec.podCIDRs": ["10.244.1.0/24", "x"]},
     ['spec.podCIDRs[1]: Invalid value: "x": must be a valid CIDR value']),
    ("unschedulable must be a bool", {"spec.unschedulable": "yes"},
     ['spec.unschedulable: Invalid value: "yes": must be a boolean']),
    ("taint effect", {"spec.taints": [{"key": "dedicated", "effect": "Sometimes"}]},
     ['spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoExecute", '
      '"NoSchedule", "PreferNoSchedule"']),
    ("taint effect required", {"spec.taints": [{"key": "dedicated"}]},
     ["spec.taints[0].effect: Required value"]),
]


@pytest.mark.parametrize("desc,changes,want", NODE_CASES, ids=[c[0] for c in NODE_CASES])
def test_node(desc, changes, want):
    assert_causes(causes_of("nodes", edit(NODE, changes)), want)


# (description, changes, expected cause prefixes)
CONFIG_MAP_CASES = [
    ("valid", {}, []),
    ("keys may have dots, dashes and underscores", {"data": {"app.conf": "", "A_B-c": "x"}}, []),
    ("bad key", {"data": {"bad key": "x"}},
     ['data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric '
      "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
      "for validation is '[-._a-zA-Z0-9]+')"]),
    ("key ..", {"data": {"..": "x"}}, ['data[..]: Invalid value: "..": must not be \'..\'']),
    ("key starting with ..", {"data": {"..a": "x"}},
     ["data[..a]: Invalid value: \"..a\": must not start with '..'"]),
    ("key too long", {"data": {"k" * 254: "x"}},
     ["data[" + "k" * 254 + "]: Invalid value: \"" + "k" * 254 + "\": must be no more than 253 "
      "characters"]),
    ("non-string value", {"data": {"port": 8080}},
     ["data[port]: Invalid value: 8080: must be a string"]),
    ("binaryData must be base64", {"binaryData": {"bin": "%%%"}},
     ['binaryData[bin]: Invalid value: "<secret contents redacted>": illegal base64 data at '
      "input byte 0"]),
    ("same key in data and binaryData", {"binaryData": {"db_url": b64("x")}},
     ['data[db_url]: Invalid value: "db_url": duplicate of key present in binaryData',
      'binaryData[db_url]: Invalid value: "db_url": duplicate of key present in data']),
    ("over 1 MiB", {"data": {"big": "x" * (1024 * 1024 + 1)}},
     ["data: Too long: may not be more than 1048576 bytes"]),
]


@pytest.mark.parametrize("desc,changes,want", CONFIG_MAP_CASES,
                         ids=[c[0] for c in CONFIG_MAP_CASES])
def test_config_map(desc, changes, want):
    assert_causes(causes_of("configmaps", edit(CONFIG_MAP, changes)), want)


def test_immutable_config_map():
    old = edit(CONFIG_MAP, {"immutable": True})
    assert causes_of("configmaps", old, old) == []
    assert_causes(causes_of("configmaps", edit(old, {"data.db_url": "other"}), old),
                  ["data: Forbidden: field is immutable when `immutable` is set"])
    assert_causes(causes_of("configmaps", edit(old, {"immutable": False}), old),
                  ["immutable: Forbidden: field is immutable when `immutable` is set"])


OPAQUE = {"metadata": {"name": "creds", "namespace": "default"},
          "data": {"password": b64("s3cr3t")}}


def test_secret_defaults_and_string_data():
    secret = defaulted("secrets", edit(OPAQUE, {"stringData": {"user": "admin",
                                                               "password": "override"}}))
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["user"]) == b"admin"
    assert base64.b64decode(secret["data"]["password"]) == b"override"  # stringData wins


# (description, base, changes, expected cause prefixes)
SECRET_CASES = [
    ("valid Opaque", OPAQUE, {}, []),
    ("valid TLS", TLS_SECRET, {}, []),
    ("stringData only", OPAQUE, {"data": DELETE, "stringData": {"token": "abc"}}, []),
    ("TLS needs the certificate and key", TLS_SECRET, {"data": {}},
     ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
    ("TLS via stringData", TLS_SECRET, {"data": DELETE, "stringData": {"tls.crt": "c",
                                                                       "tls.key": "k"}}, []),
    ("data must be base64", OPAQUE, {"data.password": "not base64!"},
     ['data[password]: Invalid value: "<secret contents redacted>": illegal base64 data at input '
      "byte 3"]),
    ("base64 needs its padding", OPAQUE, {"data.password": "YWJj"[:3]},
     ['data[password]: Invalid value: "<secret contents redacted>": illegal base64 data']),
    ("line breaks are tolerated", OPAQUE, {"data.password": "czNj\ncjN0"}, []),
    ("bad key", OPAQUE, {"data": {"my key": b64("x")}},
     ['data[my key]: Invalid value: "my key": a valid config key']),
    ("basic-auth needs username or password", OPAQUE,
     {"type": "kubernetes.io/basic-auth", "data": {}},
     ["data[username]: Required value", "data[password]: Required value"]),
    ("ssh-auth needs the key", OPAQUE, {"type": "kubernetes.io/ssh-auth"},
     ["data[ssh-privatekey]: Required value"]),
    ("service account token needs its annotation", OPAQUE,
     {"type": "kubernetes.io/service-account-token"},
     ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
    ("custom types are free-form", OPAQUE, {"type": "example.com/custom"}, []),
    ("over 1 MiB decoded", OPAQUE, {"data": {"big": b64("x" * (1024 * 1024 + 1))}},
     ["data: Too long: may not be more than 1048576 bytes"]),
]


@pytest.mark.parametrize("desc,base,changes,want", SECRET_CASES,
                         ids=[c[0] for c in SECRET_CASES])
def test_secret(desc, base, changes, want):
    assert_causes(causes_of("secrets", edit(base, changes)), want)


def test_secret_type_is_immutable():
    assert_causes(causes_of("secrets", edit(OPAQUE, {"type": "kubernetes.io/tls",
                                                     "data": TLS_SECRET["data"]}), OPAQUE),
                  ['type: Invalid value: "kubernetes.io/tls": field is immutable'])


EVENT = {
    "metadata": {"name": "web.17a3", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u-1"},
    "reason": "Scheduled", "message": "Successfully assigned default/web to node-a",
    "type": "Normal", "count": 1, "source": {"component": "default-scheduler"},
}

# (description, changes, expected cause prefixes)
EVENT_CASES = [
    ("valid", {}, []),
    ("Warning", {"type": "Warning"}, []),
    ("event about a cluster-scoped object lives in default",
     {"involvedObject": {"kind": "Node", "name": "node-a"}}, []),
    ("involvedObject required", {"involvedObject": DELETE}, ["involvedObject: Required value"]),
    ("namespace mismatch", {"involvedObject.namespace": "other"},
     ['involvedObject.namespace: Invalid value: "other": does not match event.namespace']),
    ("unknown type", {"type": "Error"},
     ['type: Unsupported value: "Error": supported values: "Normal", "Warning"']),
    ("reason too long", {"reason": "R" * 129},
     ["reason: Too long: may not be more than 128 bytes"]),
    ("message too long", {"message": "m" * 4097},
     ["message: Too long: may not be more than 4096 bytes"]),
    ("negative count", {"count": -1},
     ["count: Invalid value: -1: must be greater than or equal to 0"]),
]


@pytest.mark.parametrize("desc,changes,want", EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_event(desc, changes, want):
    assert_causes(causes_of("events", edit(EVENT, changes)), want)


LEASE = {"metadata": {"name": "meshnet-controller-manager", "namespace": "kube-system"},
         "spec": {"holderIdentity": "apiserver-1", "leaseDurationSeconds": 15,
                  "acquireTime": "2024-05-01T10:00:00.000000Z",
                  "renewTime": "2024-05-01T10:00:10.123456Z", "leaseTransitions": 0}}

# (description, changes, expected cause prefixes)
LEASE_CASES = [
    ("valid", {}, []),
    ("empty spec", {"spec": {}}, []),
    ("duration must be positive", {"spec.leaseDurationSeconds": 0},
     ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]),
    ("duration must be an integer", {"spec.leaseDurationSeconds": "15s"},
     ['spec.leaseDurationSeconds: Invalid value: "15s": must be an integer']),
    ("negative transitions", {"spec.leaseTransitions": -1},
     ["spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]),
    ("holder must be a string", {"spec.holderIdentity": 7},
     ["spec.holderIdentity: Invalid value: 7: must be a string"]),
    ("renewTime must be a timestamp", {"spec.renewTime": "yesterday"},
     ['spec.renewTime: Invalid value: "yesterday": must be an RFC 3339 time with microseconds']),
]


@pytest.mark.parametrize("desc,changes,want", LEASE_CASES, ids=[c[0] for c in LEASE_CASES])
def test_lease(desc, changes, want):
    assert_causes(causes_of("leases", edit(LEASE, changes)), want)
