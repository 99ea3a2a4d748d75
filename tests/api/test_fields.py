"""Field selectors: parsing, per-kind supported fields, kube's error wording, matching."""

import pytest

from meshnet.api.fields import (
    FieldSelectorError, escape_value, parse_field_selector, supported_fields,
)
from meshnet.api.resources import RESOURCES, lookup

POD = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "default"},
    "status": {"phase": "Running", "podIP": "10.244.1.5"},
}
EVENT = {
    "metadata": {"name": "web-1.17a", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "u-1",
                       "apiVersion": "v1", "resourceVersion": "42",
                       "fieldPath": "spec.containers{web}"},
    "reason": "Scheduled", "source": {"component": "default-scheduler"}, "type": "Normal",
}
SECRET = {"metadata": {"name": "tls", "namespace": "default"}, "type": "kubernetes.io/tls"}
NODE = {"metadata": {"name": "node-a"}, "spec": {"unschedulable": True}}
NODE_SCHEDULABLE = {"metadata": {"name": "node-b"}, "spec": {}}
NAMESPACE = {"metadata": {"name": "dev"}, "status": {"phase": "Terminating"}}
SERVICE = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10"}}
INGRESS = {"metadata": {"name": "dash", "namespace": "kubernetes-dashboard"}}

# (description, kind, selector, object, expected match)
MATCH_CASES = [
    ("name", "pods", "metadata.name=web-1", POD, True),
    ("name ==", "pods", "metadata.name==web-1", POD, True),
    ("name !=", "pods", "metadata.name!=web-1", POD, False),
    ("namespace", "pods", "metadata.namespace=default", POD, True),
    ("pod node", "pods", "spec.nodeName=node-a", POD, True),
    ("pods not on a node (empty value)", "pods", "spec.nodeName=", POD, False),
    ("legacy spec.host alias", "pods", "spec.host=node-a", POD, True),
    ("pod phase", "pods", "status.phase=Running", POD, True),
    ("pod phase !=", "pods", "status.phase!=Running", POD, False),
    ("restartPolicy", "pods", "spec.restartPolicy=Always", POD, True),
    ("schedulerName", "pods", "spec.schedulerName=default-scheduler", POD, True),
    ("serviceAccountName", "pods", "spec.serviceAccountName=default", POD, True),
    ("podIP", "pods", "status.podIP=10.244.1.5", POD, True),
    ("AND of two fields", "pods", "status.phase=Running,spec.nodeName=node-b", POD, False),
    ("kubectl's example", "pods", "status.phase!=Running,spec.restartPolicy=Always", POD, False),
    ("event involvedObject.kind", "events", "involvedObject.kind=Pod", EVENT, True),
    ("event involvedObject.name", "events", "involvedObject.name=web-1", EVENT, True),
    ("event involvedObject.namespace", "events", "involvedObject.namespace=default", EVENT,
     True),
    ("event involvedObject.uid", "events", "involvedObject.uid=u-1", EVENT, True),
    ("event involvedObject.apiVersion", "events", "involvedObject.apiVersion=v1", EVENT, True),
    ("event involvedObject.resourceVersion", "events", "involvedObject.resourceVersion=42",
     EVENT, True),
    ("event involvedObject.fieldPath", "events",
     "involvedObject.fieldPath=spec.containers{web}", EVENT, True),
    ("event reason", "events", "reason=Scheduled", EVENT, True),
    ("event source", "events", "source=default-scheduler", EVENT, True),
    ("event type", "events", "type=Warning", EVENT, False),
    ("secret type", "secrets", "type=kubernetes.io/tls", SECRET, True),
    ("node unschedulable", "nodes", "spec.unschedulable=true", NODE, True),
    ("absent bool reads false", "nodes", "spec.unschedulable=false", NODE_SCHEDULABLE, True),
    ("node name", "nodes", "metadata.name=node-a", NODE, True),
    ("cluster-scoped namespace is empty", "nodes", "metadata.namespace=", NODE, True),
    ("namespace phase", "namespaces", "status.phase=Terminating", NAMESPACE, True),
    ("service type", "services", "spec.type=ClusterIP", SERVICE, True),
    ("service clusterIP", "services", "spec.clusterIP=10.96.0.10", SERVICE, True),
    ("ingress by namespace", "ingresses", "metadata.namespace!=default", INGRESS, True),
    ("empty selector", "pods", "", POD, True),
    ("spaces around the field name", "pods", " status.phase =Running", POD, True),
    ("escaped comma in value", "configmaps", r"metadata.name=a\,b",
     {"metadata": {"name": "a,b"}}, True),
]


@pytest.mark.parametrize("desc,kind,text,obj,want", MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_match(desc, kind, text, obj, want):
    assert parse_field_selector(text, lookup(kind)).matches(obj) is want


# (description, kind, selector, exact error)
ERROR_CASES = [
    ("unsupported pod field (registered kind wording)", "pods", "status.hostIP=1.2.3.4",
     "field label not supported: status.hostIP"),
    ("unsupported service field", "services", "spec.ports=80",
     "field label not supported: spec.ports"),
    ("unsupported node field", "nodes", "spec.podCIDR=x",
     "field label not supported: spec.podCIDR"),
    ("ingress has only metadata fields (generic wording)", "ingresses", "foo.bar=baz",
     '"foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("deployment status field", "deployments", "status.replicas=1",
     '"status.replicas" is not a known field selector: only "metadata.name", '
     '"metadata.namespace"'),
    ("no operator", "pods", "status.phase",
     "invalid selector: 'status.phase'; can't understand 'status.phase'"),
    ("unescaped =", "pods", "metadata.name=a=b",
     "invalid field selector: unescaped character in value: '='"),
    ("bad escape", "pods", r"metadata.name=a\b",
     r"invalid field selector: invalid escape sequence: \b"),
    ("trailing backslash", "pods", "metadata.name=a\\",
     r"invalid field selector: invalid escape sequence: \\"[:-1]),
]


@pytest.mark.parametrize("desc,kind,text,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors(desc, kind, text, message):
    with pytest.raises(FieldSelectorError) as e:
        parse_field_selector(text, lookup(kind))
    assert str(e.value) == message


def test_every_kind_supports_name_and_namespace():
    for info in RESOURCES:
        sel = parse_field_selector("metadata.name=x,metadata.namespace=y", info)
        assert sel.matches({"metadata": {"name": "x", "namespace": "y"}})
        assert {"metadata.name", "metadata.namespace"} <= set(supported_fields(info))


def test_canonical_text_and_alias():
    sel = parse_field_selector("status.phase=Running,spec.host==n1", lookup("pods"))
    assert str(sel) == "spec.nodeName==n1,status.phase=Running"
    assert sel.requires_exact_match("spec.nodeName") == "n1"
    assert sel.requires_exact_match("status.podIP") is None
    assert not sel.empty and parse_field_selector("", lookup("pods")).empty


def test_escape_round_trip():
    value = r"a,b=c\d"
    sel = parse_field_selector("metadata.name=" + escape_value(value), lookup("configmaps"))
    assert sel.requirements[0].value == value
    assert parse_field_selector(str(sel), lookup("configmaps")) == sel


def test_field_selector_error_is_a_value_error():
    assert issubclass(FieldSelectorError, ValueError)
