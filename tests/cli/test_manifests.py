"""Reading -f manifests: documents, lists, error locations, paths, all-or-nothing."""

import pytest

from meshnet.cli.manifests import (
    ManifestError, ManifestErrors, expand_paths, parse_documents, read_manifests,
    split_documents,
)

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n"

# (description, text, expected [(kind, name, line)], expected error substrings)
PARSE_CASES = [
    ("one document", SVC.format(name="a"), [("Service", "a", 1)], []),
    ("several documents keep their own first line",
     SVC.format(name="a") + "---\n" + SVC.format(name="b"),
     [("Service", "a", 1), ("Service", "b", 6)], []),
    ("empty and comment-only documents are skipped",
     "---\n# just a comment\n---\n" + SVC.format(name="a") + "---\n",
     [("Service", "a", 4)], []),
    ("a List is flattened",
     "apiVersion: v1\nkind: List\nitems:\n- " + SVC.format(name="a").replace("\n", "\n  ")
     + "\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
     [("Service", "a", 1), ("ConfigMap", "c", 1)], []),
    ("any *List with items is flattened",
     "apiVersion: v1\nkind: ServiceList\nitems:\n- {apiVersion: v1, kind: Service, "
     "metadata: {name: a}}\n", [("Service", "a", 1)], []),
    ("JSON documents",
     '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"}}\n'
     '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "k"}}',
     [("Service", "j", 1), ("Service", "k", 2)], []),
    ("timestamps stay strings and 1:30 is not a number",
     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  creationTimestamp: "
     "2024-01-01T00:00:00Z\ndata:\n  t: 1:30\n", [("ConfigMap", "t", 1)], []),
    ("bad indentation names the file and the line (not the document's line)",
     SVC.format(name="ok") + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n"
     "spec:\n  selector:\n    app: x\n   ports:\n  - port: 80\n",
     [("Service", "ok", 1)],
     ["error parsing f.yaml: line 13: did not find expected key"]),
    ("mapping values in a scalar", "apiVersion: v1\nkind: A: B\n", [],
     ["error parsing f.yaml: line 2: mapping values are not allowed in this context"]),
    ("duplicate keys are an error",
     "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n", [],
     ['error parsing f.yaml: line 5: key "name" already set in map']),
    ("a document that is not an object", "- a\n- b\n", [],
     ["error parsing f.yaml: line 1: expected an object with apiVersion and kind, got a list"]),
    ("kind and apiVersion are required", "metadata:\n  name: x\n", [],
     ['error validating "f.yaml": error validating data: [apiVersion not set, kind not set]']),
    ("JSON syntax error", '{"apiVersion": "v1",\n "kind": }', [],
     ["error parsing f.yaml: line 2: Expecting value"]),
    ("errors in two documents are both reported",
     "a: b: c\n---\nkind: X\n", [],
     ["line 1: mapping values are not allowed", "line 3)"]),
]


@pytest.mark.parametrize("desc,text,want,errors", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_documents(desc, text, want, errors):
    manifests, errs = parse_documents(text, "f.yaml")
    assert [(m.kind, m.name, m.line) for m in manifests] == want
    assert len(errs) == len(errors)
    for err, expected in zip(errs, errors):
        assert expected in err.message


def test_split_documents_line_numbers():
    docs = split_documents("a: 1\n---\nb: 2\n--- # comment\nc: 3\n")
    assert [(line, text) for line, text in docs] == [(1, "a: 1\n"), (3, "b: 2\n"),
                                                     (5, "c: 3\n")]


def test_expand_paths_directories_and_recursion(tmp_path):
    (tmp_path / "b.yaml").write_text(SVC.format(name="b"))
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "Service", '
                                     '"metadata": {"name": "a"}}')
    (tmp_path / "notes.txt").write_text("ignored")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.yml").write_text(SVC.format(name="c"))
    flat = expand_paths([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in flat] == ["a.json", "b.yaml"]
    deep = expand_paths([str(tmp_path)], recursive=True)
    assert [p.rsplit("/", 1)[1] for p in deep] == ["a.json", "b.yaml", "c.yml"]
    with pytest.raises(ManifestError, match='the path "nope.yaml" does not exist'):
        expand_paths(["nope.yaml"])
    with pytest.raises(ManifestError, match="URLs is not supported"):
        expand_paths(["https://example.com/x.yaml"])


def test_read_manifests_reports_every_error_and_returns_nothing(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(SVC.format(name="fine"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n name: y\n")
    with pytest.raises(ManifestErrors) as e:
        read_manifests([str(good), str(bad)])
    assert len(e.value.errors) == 1
    assert e.value.errors[0].message.startswith(f"error parsing {bad}: line 5:")
    assert e.value.errors[0].source == str(bad)


def test_read_manifests_from_stdin():
    import io
    found = read_manifests(["-"], stdin=io.StringIO(SVC.format(name="piped")))
    assert [(m.source, m.name) for m in found] == [("STDIN", "piped")]
