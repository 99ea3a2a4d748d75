"""Validation entry points: the per-kind table, metadata rules, namespaces, the cheat sheet."""

import copy

import pytest

from api_cases import CHEAT_SHEET, CONFIG_MAP, DELETE, NGINX_SERVICE, assert_causes, causes_of, \
    edit
from meshnet.api.errors import StatusError, invalid
from meshnet.api.resources import RESOURCES, lookup
from meshnet.api.validation import RULES, default_object, ensure_namespace, rules_for, \
    validate_object


@pytest.mark.parametrize("desc,kind,obj", CHEAT_SHEET, ids=[c[0] for c in CHEAT_SHEET])
def test_cheat_sheet_objects_validate_cleanly(desc, kind, obj):
    assert causes_of(kind, obj) == []


@pytest.mark.parametrize("desc,kind,obj", CHEAT_SHEET, ids=[c[0] for c in CHEAT_SHEET])
def test_defaulting_is_idempotent(desc, kind, obj):
    once = copy.deepcopy(obj)
    default_object(lookup(kind), once)
    twice = copy.deepcopy(once)
    default_object(lookup(kind), twice)
    assert once == twice


def test_every_kind_has_rules():
    assert {(r.group, r.kind) for r in RESOURCES} == set(RULES)
    for info in RESOURCES:
        assert rules_for(info) is RULES[(info.group, info.kind)]


LONG_ANNOTATION = "x" * (256 * 1024)

# (description, kind, base object, changes, expected cause prefixes)
METADATA_CASES = [
    ("missing name", "configmaps", CONFIG_MAP, {"metadata.name": DELETE},
     ["metadata.name: Required value: name or generateName is required"]),
    ("missing metadata", "configmaps", CONFIG_MAP, {"metadata": DELETE},
     ["metadata.name: Required value: name or generateName is required"]),
    ("uppercase name (DNS-1123 subdomain)", "configmaps", CONFIG_MAP, {"metadata.name": "Web"},
     ['metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower '
      "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
      "character (e.g. 'example.com', regex used for validation is "
      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
    ("dots allowed in a ConfigMap name", "configmaps", CONFIG_MAP, {"metadata.name": "a.b.c"},
     []),
    ("254-char name", "configmaps", CONFIG_MAP, {"metadata.name": "a" * 254},
     ["metadata.name: Invalid value: \"" + "a" * 254 + "\": must be no more than 253 characters"]),
    ("Service names are DNS-1035 labels: no dots", "services", NGINX_SERVICE,
     {"metadata.name": "a.b"},
     ['metadata.name: Invalid value: "a.b": a DNS-1035 label must consist of lower case']),
    ("Service names may not start with a digit", "services", NGINX_SERVICE,
     {"metadata.name": "1web"},
     ['metadata.name: Invalid value: "1web": a DNS-1035 label']),
    ("Service name of 64 chars", "services", NGINX_SERVICE, {"metadata.name": "a" * 64},
     ['metadata.name: Invalid value: "' + "a" * 64 + '": must be no more than 63 characters']),
    ("Namespace names are DNS labels", "namespaces", {"metadata": {"name": "my.ns"}}, {},
     ['metadata.name: Invalid value: "my.ns": must not contain dots']),
    ("namespaced kind without namespace", "configmaps", CONFIG_MAP,
     {"metadata.namespace": DELETE}, ["metadata.namespace: Required value"]),
    ("invalid namespace", "configmaps", CONFIG_MAP, {"metadata.namespace": "My_NS"},
     ['metadata.namespace: Invalid value: "My_NS": a lowercase RFC 1123 label']),
    ("namespace on a cluster-scoped kind", "nodes",
     {"metadata": {"name": "n1", "namespace": "default"}}, {},
     ["metadata.namespace: Forbidden: not allowed on this type"]),
    ("bad label key and value", "configmaps", CONFIG_MAP,
     {"metadata.labels": {"-bad": "ok", "good": "bad value"}},
     ['metadata.labels: Invalid value: "-bad": name part must consist',
      'metadata.labels: Invalid value: "bad value": a valid label must be an empty string']),
    ("labels of the wrong type", "configmaps", CONFIG_MAP, {"metadata.labels": ["a"]},
     ['metadata.labels: Invalid value: ["a"]: must be an object']),
    ("annotation keys are case-insensitive qualified names", "configmaps", CONFIG_MAP,
     {"metadata.annotations": {"Example.COM/Key": "v", "bad key": "v"}},
     ['metadata.annotations: Invalid value: "bad key": name part must consist']),
    ("annotations over 256 KiB", "configmaps", CONFIG_MAP,
     {"metadata.annotations": {"big": LONG_ANNOTATION}},
     ["metadata.annotations: Too long: may not be more than 262144 bytes"]),
    ("owner reference without uid", "configmaps", CONFIG_MAP,
     {"metadata.ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}]},
     ['metadata.ownerReferences[0].uid: Invalid value: "": uid must not be empty']),
    ("finalizer that is not a qualified name", "configmaps", CONFIG_MAP,
     {"metadata.finalizers": ["a b"]},
     ['metadata.finalizers[0]: Invalid value: "a b": name part must consist']),
]


@pytest.mark.parametrize("desc,kind,base,changes,want", METADATA_CASES,
                         ids=[c[0] for c in METADATA_CASES])
def test_metadata(desc, kind, base, changes, want):
    assert_causes(causes_of(kind, edit(base, changes)), want)


# (description, changes to the stored object's copy, expected cause prefixes)
METADATA_UPDATE_CASES = [
    ("unchanged", {}, []),
    ("uid may not change", {"metadata.uid": "u-2"},
     ['metadata.uid: Invalid value: "u-2": field is immutable']),
    ("an absent uid is filled from storage, not an error", {"metadata.uid": DELETE}, []),
    ("namespace may not change", {"metadata.namespace": "other"},
     ['metadata.namespace: Invalid value: "other": field is immutable']),
    ("creationTimestamp may not change", {"metadata.creationTimestamp": "2030-01-01T00:00:00Z"},
     ['metadata.creationTimestamp: Invalid value: "2030-01-01T00:00:00Z": field is immutable']),
    ("labels may change", {"metadata.labels": {"a": "b"}}, []),
]


@pytest.mark.parametrize("desc,changes,want", METADATA_UPDATE_CASES,
                         ids=[c[0] for c in METADATA_UPDATE_CASES])
def test_metadata_update(desc, changes, want):
    old = edit(CONFIG_MAP, {"metadata.uid": "u-1",
                            "metadata.creationTimestamp": "2024-01-01T00:00:00Z"})
    assert_causes(causes_of("configmaps", edit(old, changes), old), want)


def test_every_failing_field_at_once():
    """One bad Service: every rule it breaks is reported, and the Status lists them all."""
    svc = edit(NGINX_SERVICE, {
        "metadata.name": "Web",
        "metadata.labels": {"a": "-"},
        "spec.type": "Bogus",
        "spec.ports": [{"name": "http", "port": 70000, "targetPort": "x" * 16},
                       {"name": "http", "port": 80, "protocol": "ICMP"}],
        "spec.sessionAffinity": "Sticky",
    })
    got = causes_of("services", svc)
    assert_causes(got, [
        'metadata.name: Invalid value: "Web": a DNS-1035 label',
        'metadata.labels: Invalid value: "-": a valid label',
        'spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"',
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.ports[0].targetPort: Invalid value: "xxxxxxxxxxxxxxxx": must be no more than 15 '
        "characters",
        'spec.ports[1].name: Duplicate value: "http"',
        'spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", '
        '"UDP"',
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"',
    ])
    info = lookup("services")
    err = invalid(info.kind, "Web", validate_object(info, _defaulted(info, svc)), info.group)
    assert err.code == 422 and len(err.to_status()["details"]["causes"]) == len(got)
    assert err.message.startswith('Service "Web" is invalid: [metadata.name: Invalid value')


def _defaulted(info, obj):
    obj = copy.deepcopy(obj)
    default_object(info, obj)
    return obj


def test_non_object_is_one_cause():
    assert [c.text for c in validate_object(lookup("pods"), [])] == \
        [": Invalid value: the object must be a JSON object"]


# (description, kind, object namespace, request namespace, resulting namespace or error)
NAMESPACE_CASES = [
    ("filled from the request", "configmaps", None, "dev", "dev"),
    ("same on both", "configmaps", "dev", "dev", "dev"),
    ("mismatch is a 400", "configmaps", "prod", "dev", StatusError),
    ("cluster-wide request keeps the object's", "configmaps", "prod", None, "prod"),
    ("cluster-scoped kinds lose any namespace", "nodes", "dev", None, None),
]


@pytest.mark.parametrize("desc,kind,have,request_ns,want", NAMESPACE_CASES,
                         ids=[c[0] for c in NAMESPACE_CASES])
def test_ensure_namespace(desc, kind, have, request_ns, want):
    obj = {"metadata": {"name": "x"}}
    if have:
        obj["metadata"]["namespace"] = have
    if want is StatusError:
        with pytest.raises(StatusError) as e:
            ensure_namespace(lookup(kind), obj, request_ns)
        assert e.value.code == 400
        assert "does not match the namespace sent on the request" in e.value.message
    else:
        ensure_namespace(lookup(kind), obj, request_ns)
        assert obj["metadata"].get("namespace") == want


def _client_objects():
    """The cheat-sheet objects as the official Python client serializes them."""
    from kubernetes import client
    from kubernetes.client import ApiClient

    meta = client.V1ObjectMeta
    deployment = client.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=meta(name="nginx-deployment", namespace="default", labels={"app": "nginx"}),
        spec=client.V1DeploymentSpec(
            replicas=3, selector=client.V1LabelSelector(match_labels={"app": "nginx"}),
            template=client.V1PodTemplateSpec(
                metadata=meta(labels={"app": "nginx"}),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="nginx", image="nginx:1.16",
                    ports=[client.V1ContainerPort(container_port=8080)])]))))
    service = client.V1Service(
        api_version="v1", kind="Service", metadata=meta(name="nginx-service", namespace="default"),
        spec=client.V1ServiceSpec(selector={"app": "nginx"}, ports=[client.V1ServicePort(
            port=80, protocol="TCP", target_port=8080)]))
    ingress = client.V1Ingress(
        api_version="networking.k8s.io/v1", kind="Ingress",
        metadata=meta(name="dashboard-ingress", namespace="kubernetes-dashboard"),
        spec=client.V1IngressSpec(rules=[client.V1IngressRule(
            host="dashboard.com", http=client.V1HTTPIngressRuleValue(paths=[
                client.V1HTTPIngressPath(
                    path="/", path_type="Prefix", backend=client.V1IngressBackend(
                        service=client.V1IngressServiceBackend(
                            name="kubernetes-dashboard",
                            port=client.V1ServiceBackendPort(number=80))))]))]))
    serialize = ApiClient().sanitize_for_serialization
    return [("deployments", serialize(deployment)), ("services", serialize(service)),
            ("ingresses", serialize(ingress))]


def test_objects_from_the_official_client_validate():
    for kind, obj in _client_objects():
        assert causes_of(kind, obj) == [], kind
