"""describe's text: the describers that need no server, and the shared formatting helpers."""

from datetime import datetime, timedelta, timezone

import pytest

from meshnet.cli.describe import describe_generic, smart_label
from meshnet.cli.describe_resources import describe_configmap, describe_secret
from meshnet.cli.describe_text import (
    Writer, annotations_multiline, describe_events, format_endpoints, labels_multiline,
)


def stamp(seconds_ago: float) -> str:
    when = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_configmap():
    cm = {"metadata": {"name": "cfg", "namespace": "web", "labels": {"b": "2", "a": "1"}},
          "data": {"z": "last", "url": "mysql-service.database"},
          "binaryData": {"blob": "AAEC"}}
    assert describe_configmap(None, cm, []) == (
        "Name:         cfg\n"
        "Namespace:    web\n"
        "Labels:       a=1\n"
        "              b=2\n"
        "Annotations:  <none>\n"
        "\n"
        "Data\n====\n"
        "url:\n----\nmysql-service.database\n\n"
        "z:\n----\nlast\n\n"
        "\nBinaryData\n====\n"
        "blob: 3 bytes\n"
        "\n"
        "Events:  <none>\n")


def test_secret_shows_sizes_only():
    secret = {"metadata": {"name": "tls", "namespace": "default"}, "type": "kubernetes.io/tls",
              "data": {"tls.key": "c2VjcmV0", "tls.crt": "Y2VydGlmaWNhdGU="}}
    text = describe_secret(None, secret, None)
    assert text == ("Name:         tls\n"
                    "Namespace:    default\n"
                    "Labels:       <none>\n"
                    "Annotations:  <none>\n"
                    "\n"
                    "Type:  kubernetes.io/tls\n"
                    "\n"
                    "Data\n====\n"
                    "tls.crt:  11 bytes\n"
                    "tls.key:  6 bytes\n")
    assert "secret" not in text.split("Data")[1]


def test_generic_describer_splits_field_names():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l", "namespace": "default", "uid": "u-1",
                          "managedFields": [{"manager": "x"}]},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                      "preferredHolders": ["a", "b"]}}
    text = describe_generic(None, lease, None)
    assert text == ("Name:         l\n"
                    "Namespace:    default\n"
                    "Labels:       <none>\n"
                    "Annotations:  <none>\n"
                    "API Version:  coordination.k8s.io/v1\n"
                    "Kind:         Lease\n"
                    "Metadata:\n"
                    "  UID:  u-1\n"
                    "Spec:\n"
                    "  Holder Identity:         me\n"
                    "  Lease Duration Seconds:  15\n"
                    "  Preferred Holders:\n"
                    "    a\n"
                    "    b\n")


@pytest.mark.parametrize("field,label", [
    ("clusterIP", "Cluster IP"), ("apiVersion", "API Version"), ("uid", "UID"),
    ("holderIdentity", "Holder Identity"), ("podCIDRs", "Pod CIDRs"),
    ("some_field", "some_field"), ("x-y", "X - Y"), ("podIPs", "Pod I Ps"),
    ("loadBalancerIP", "Load Balancer IP"),
])
def test_smart_label(field, label):
    assert smart_label(field) == label


ENDPOINTS = {"subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}],
                          "ports": [{"name": "http", "port": 8080},
                                    {"name": "metrics", "port": 9090}]}]}


@pytest.mark.parametrize("endpoints,ports,want", [
    (None, None, "<none>"),
    ({"subsets": []}, {"http"}, "<none>"),
    (ENDPOINTS, {"http"}, "10.244.0.5:8080,10.244.0.6:8080"),
    (ENDPOINTS, None, "10.244.0.5:8080,10.244.0.6:8080,10.244.0.5:9090 + 1 more..."),
    (ENDPOINTS, {"other"}, ""),
    ({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}, {""},
     "[fd00::1]:80"),
    ({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}, {""}, "10.0.0.1"),
])
def test_format_endpoints(endpoints, ports, want):
    assert format_endpoints(endpoints, ports) == want


def test_annotations_skip_last_applied_and_fold_long_values():
    w = Writer()
    annotations_multiline(w, "Annotations", {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "short": "value",
        "long": "x" * 150,
    })
    labels_multiline(w, "Labels", {})
    text = w.text()
    assert "last-applied" not in text
    assert text.startswith("Annotations:  long:\n                " + "x" * 138 + "...\n"
                           "              short: value\nLabels:       <none>\n")


def test_events_table_and_ages():
    w = Writer()
    describe_events(w, [
        {"type": "Warning", "reason": "Failed", "message": " pull failed ",
         "count": 3, "firstTimestamp": stamp(600), "lastTimestamp": stamp(30),
         "source": {"component": "kubelet"}, "involvedObject": {"fieldPath": "spec.c{web}"}},
        {"type": "Normal", "reason": "Scheduled", "message": "assigned",
         "firstTimestamp": stamp(700), "lastTimestamp": stamp(700),
         "reportingController": "scheduler"},
    ])
    assert w.text() == (
        "Events:\n"
        "  Type     Reason     Age                From       Message\n"
        "  ----     ------     ----               ----       -------\n"
        "  Normal   Scheduled  11m                scheduler  assigned\n"
        "  Warning  Failed     30s (x3 over 10m)  kubelet    spec.c{web}: pull failed\n")
    none = Writer()
    describe_events(none, [])
    assert none.text() == "Events:  <none>\n"
    skipped = Writer()
    describe_events(skipped, None)
    assert skipped.text() == ""
