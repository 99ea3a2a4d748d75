"""kubectl's JSONPath dialect: templates, ranges, filters, relaxed expressions, errors."""

import pytest

from meshnet.cli import jsonpath

SVC_LIST = {
    "kind": "List",
    "items": [
        {"metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80},
                                                      {"name": "https", "port": 443}]},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "db"},
         "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}},
    ],
}

# (description, template, expected output)
CASES = [
    ("field of every item", "{.items[*].metadata.name}", "web db"),
    ("literal text around an action", "names: {.items[*].metadata.name}!", "names: web db!"),
    ("range with tab and newline literals",
     '{range .items[*]}{.metadata.name}{"\\t"}{.spec.clusterIP}{"\\n"}{end}',
     "web\t10.96.0.5\ndb\tNone\n"),
    ("nested lists", "{.items[*].spec.ports[*].port}", "80 443 5432"),
    ("index", "{.items[0].metadata.name}", "web"),
    ("negative index", "{.items[-1].metadata.name}", "db"),
    ("slice", "{.items[0:1].metadata.name}", "web"),
    ("slice from the end", "{.items[-1:].metadata.name}", "db"),
    ("union of indexes", "{.items[0].spec.ports[0,1].name}", "http https"),
    ("filter on a string", '{.items[*].spec.ports[?(@.name=="https")].port}', "443"),
    ("filter on a number", "{.items[*].spec.ports[?(@.port>100)].port}", "443 5432"),
    ("filter on existence", "{.items[*].spec.ports[?(@.name)].name}", "http https"),
    ("filter on a nested path", '{.items[?(@.metadata.labels.app=="web")].metadata.name}',
     "web"),
    ("condition lookup",
     '{.items[0].status.conditions[?(@.type=="Ready")].status}', "True"),
    ("recursive descent", "{..clusterIP}", "10.96.0.5 None"),
    ("maps print as compact JSON with sorted keys", "{.items[0].metadata}",
     '{"labels":{"app":"web"},"name":"web"}'),
    ("lists print as JSON", "{.items[1].spec.ports}", '[{"port":5432}]'),
    ("missing keys print nothing", "[{.items[0].metadata.nope}]", "[]"),
    ("bracket field names", "{.items[0]['metadata'].name}", "web"),
    ("root marker", "{$.kind}", "List"),
    ("wildcard on a map", "{.items[0].metadata.labels.*}", "web"),
    ("no braces is plain text", ".metadata.name", ".metadata.name"),
]


@pytest.mark.parametrize("desc,template,want", CASES, ids=[c[0] for c in CASES])
def test_execute(desc, template, want):
    assert jsonpath.execute(template, SVC_LIST) == want


ERRORS = [
    ("unclosed action", "{.items[*]", "unclosed action"),
    ("range without end", "{range .items[*]}{.metadata.name}", "range without end"),
    ("end without range", "{end}", "not in range"),
    ("bad character", "{.items[*]}{!}", "unrecognized character in action: U+0021 '!'"),
    ("bad filter", "{.items[?@.x]}", "invalid filter"),
]


@pytest.mark.parametrize("desc,template,message", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_name_the_template(desc, template, message):
    with pytest.raises(jsonpath.JSONPathError) as e:
        jsonpath.execute(template, SVC_LIST)
    assert f"error parsing jsonpath {template}, " in str(e.value)
    assert message in str(e.value)


@pytest.mark.parametrize("expr,want", [
    (".metadata.name", "{.metadata.name}"),
    ("metadata.name", "{.metadata.name}"),
    ("{.metadata.name}", "{.metadata.name}"),
    ("$.metadata.name", "{.metadata.name}"),
])
def test_relaxed_expressions(expr, want):
    assert jsonpath.relaxed(expr) == want


def test_values_for_custom_columns():
    assert jsonpath.values(".spec.ports[*].port", SVC_LIST["items"][0]) == [80, 443]
    assert jsonpath.values(".spec.nope", SVC_LIST["items"][0]) == []
