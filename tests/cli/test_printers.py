"""Output formats: YAML/JSON layout, names, -o parsing, table decoration, ages."""

from datetime import datetime, timezone

import pytest

from meshnet.api.resources import lookup
from meshnet.cli.errors import CLIError
from meshnet.cli.printers import (
    OutputSpec, TableOptions, age, as_table, custom_columns, default_table, object_ref,
    parse_output, render_objects, table_rows, to_json, to_yaml,
)
from meshnet.cli.tabwriter import format_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

# (description, object, expected YAML) - the layouts kubectl (go-yaml) produces
YAML_CASES = [
    ("keys sorted, sequences not indented under their key",
     {"spec": {"ports": [{"port": 80, "name": "http"}]}, "kind": "Service"},
     "kind: Service\nspec:\n  ports:\n  - name: http\n    port: 80\n"),
    ("empty maps and nulls", {"status": {}, "metadata": {"creationTimestamp": None}},
     "metadata:\n  creationTimestamp: null\nstatus: {}\n"),
    ("strings that need quotes use double quotes",
     {"a": "443", "b": "true", "c": "", "d": "*x"},
     'a: "443"\nb: "true"\nc: ""\nd: "*x"\n'),
    ("multi-line strings are literal blocks",
     {"data": {"f.txt": "hi\nthere\n"}},
     "data:\n  f.txt: |\n    hi\n    there\n"),
    ("long lines are not wrapped", {"k": "word " * 40 + "end"}, "k: " + "word " * 40 + "end\n"),
]


@pytest.mark.parametrize("desc,obj,want", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml(desc, obj, want):
    assert to_yaml(obj) == want


def test_last_applied_annotation_is_a_literal_block_like_kubectl():
    value = '{"apiVersion":"v1","kind":"Service"}\n'
    text = to_yaml({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": value}}})
    assert text == ("metadata:\n  annotations:\n"
                    "    kubectl.kubernetes.io/last-applied-configuration: |\n"
                    '      {"apiVersion":"v1","kind":"Service"}\n')


def test_json_indent_and_key_order():
    assert to_json({"b": 1, "a": [1]}) == '{\n    "a": [\n        1\n    ],\n    "b": 1\n}\n'
    assert to_json({"b": 1, "a": 2}, sort_keys=False).index('"b"') < \
        to_json({"b": 1, "a": 2}, sort_keys=False).index('"a"')


@pytest.mark.parametrize("kind,name,want", [
    ("svc", "web", "service/web"),
    ("deploy", "web", "deployment.apps/web"),
    ("ing", "web", "ingress.networking.k8s.io/web"),
    ("ns", "prod", "namespace/prod"),
])
def test_object_ref(kind, name, want):
    assert object_ref(lookup(kind), name) == want


@pytest.mark.parametrize("value,want", [
    ("", OutputSpec("")),
    ("wide", OutputSpec("wide")),
    ("yaml", OutputSpec("yaml")),
    ("jsonpath={.a}", OutputSpec("jsonpath", "{.a}")),
    ("custom-columns=N:.metadata.name", OutputSpec("custom-columns", "N:.metadata.name")),
])
def test_parse_output(value, want):
    assert parse_output(value) == want


@pytest.mark.parametrize("value,allowed,message", [
    ("xml", (), 'unable to match a printer suitable for the output format "xml"'),
    ("wide", ("json", "yaml", "name"), "allowed formats are: json,yaml,name"),
    ("jsonpath", (), "jsonpath template format specified but no template given"),
    ("jsonpath={.a", (), "error parsing jsonpath {.a, unclosed action"),
])
def test_parse_output_errors(value, allowed, message):
    with pytest.raises(CLIError) as e:
        parse_output(value, allowed)
    assert message in e.value.message


def test_render_single_object_vs_list():
    svc = lookup("svc")
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    assert render_objects([obj], [svc], OutputSpec("yaml"), single=True).startswith(
        "apiVersion: v1\nkind: Service\n")
    listed = render_objects([obj], [svc], OutputSpec("yaml"), single=False)
    assert listed.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n")
    assert listed.endswith('kind: List\nmetadata:\n  resourceVersion: ""\n')
    assert render_objects([obj, obj], [svc, svc], OutputSpec("name"), single=False) == \
        "service/web\nservice/web\n"
    assert render_objects([obj], [svc], OutputSpec("jsonpath", "{.metadata.name}"),
                          single=True) == "web"


SERVER_TABLE = {
    "kind": "Table", "apiVersion": "meta.k8s.io/v1",
    "columnDefinitions": [
        {"name": "Name", "type": "string", "format": "name", "priority": 0},
        {"name": "Type", "type": "string", "format": "", "priority": 0},
        {"name": "Selector", "type": "string", "format": "", "priority": 1},
        {"name": "Age", "type": "string", "format": "", "priority": 0},
    ],
    "rows": [
        {"cells": ["web", "ClusterIP", "app=web", "5m"],
         "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"name": "web", "namespace": "prod",
                                 "labels": {"tier": "front", "app": "web"}}}},
        {"cells": ["db", "ClusterIP", None, "1h"],
         "object": {"metadata": {"name": "db", "namespace": "data"}}},
    ],
}

# (description, options, expected rows)
TABLE_CASES = [
    ("priority 1 columns hidden by default", TableOptions(),
     [["NAME", "TYPE", "AGE"], ["web", "ClusterIP", "5m"], ["db", "ClusterIP", "1h"]]),
    ("-o wide shows them, nil cells are empty", TableOptions(wide=True),
     [["NAME", "TYPE", "SELECTOR", "AGE"], ["web", "ClusterIP", "app=web", "5m"],
      ["db", "ClusterIP", "", "1h"]]),
    ("-A puts NAMESPACE first", TableOptions(with_namespace=True),
     [["NAMESPACE", "NAME", "TYPE", "AGE"], ["prod", "web", "ClusterIP", "5m"],
      ["data", "db", "ClusterIP", "1h"]]),
    ("several kinds prefix the name column", TableOptions(kind_prefix="service"),
     [["NAME", "TYPE", "AGE"], ["service/web", "ClusterIP", "5m"],
      ["service/db", "ClusterIP", "1h"]]),
    ("--show-labels and -L", TableOptions(show_labels=True, label_columns=("example.com/tier",
                                                                           "app")),
     [["NAME", "TYPE", "AGE", "TIER", "APP", "LABELS"],
      ["web", "ClusterIP", "5m", "", "web", "app=web,tier=front"],
      ["db", "ClusterIP", "1h", "", "", "<none>"]]),
    ("--no-headers", TableOptions(no_headers=True),
     [["web", "ClusterIP", "5m"], ["db", "ClusterIP", "1h"]]),
]


@pytest.mark.parametrize("desc,opts,want", TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_table_rows(desc, opts, want):
    assert table_rows(SERVER_TABLE, opts) == want


def test_table_renders_like_kubectl():
    text = format_table(table_rows(SERVER_TABLE, TableOptions(with_namespace=True)))
    assert text == ("NAMESPACE   NAME   TYPE        AGE\n"
                    "prod        web    ClusterIP   5m\n"
                    "data        db     ClusterIP   1h\n")


def test_fallback_table_for_servers_without_tables():
    listed = {"kind": "ServiceList", "items": [
        {"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:55:00Z"}}]}
    table = as_table(listed, NOW)
    assert table_rows(table, TableOptions()) == [["NAME", "AGE"], ["web", "5m"]]
    assert default_table([], NOW)["rows"] == []


@pytest.mark.parametrize("timestamp,want", [
    ("2024-05-01T11:59:30Z", "30s"),
    ("2024-05-01T11:56:58Z", "3m2s"),
    ("2024-05-01T07:00:00Z", "5h"),
    ("2024-04-29T12:00:00Z", "2d"),
    (None, "<unknown>"),
])
def test_age(timestamp, want):
    assert age(timestamp, NOW) == want


def test_custom_columns():
    objs = [{"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 443}]}},
            {"metadata": {"name": "db"}, "spec": {}}]
    assert custom_columns("NAME:.metadata.name,PORTS:.spec.ports[*].port", objs) == (
        "NAME   PORTS\nweb    80,443\ndb     <none>\n")
    with pytest.raises(CLIError, match="expected <header>:<json-path-expr>"):
        custom_columns("NAME", objs)
