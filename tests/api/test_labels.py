"""Label selectors: the query grammar, matching, canonical text, errors, and label validation."""

import pytest

from meshnet.api.labels import (
    EVERYTHING, NOTHING, Requirement, Selector, SelectorError, label_key_errors,
    label_value_errors, new_requirement, parse_selector, selector_from_label_selector,
    selector_from_map, validate_label_selector, validate_labels,
)

WEB = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3"}

# (description, selector text, canonical str(), labels, expected match)
MATCH_CASES = [
    ("equality", "app=web", "app=web", WEB, True),
    ("equality mismatch", "app=db", "app=db", WEB, False),
    ("double equals", "app==web", "app==web", WEB, True),
    ("not equals, key present with other value", "app!=db", "app!=db", WEB, True),
    ("not equals, same value", "app!=web", "app!=web", WEB, False),
    ("not equals matches a missing key", "zone!=a", "zone!=a", WEB, True),
    ("in", "env in (prod,staging)", "env in (prod,staging)", WEB, True),
    ("in without the value", "env in (dev)", "env in (dev)", WEB, False),
    ("in needs the key", "zone in (a)", "zone in (a)", WEB, False),
    ("notin", "env notin (dev,qa)", "env notin (dev,qa)", WEB, True),
    ("notin with the value", "env notin (prod)", "env notin (prod)", WEB, False),
    ("notin matches a missing key", "zone notin (a)", "zone notin (a)", WEB, True),
    ("exists", "tier", "tier", WEB, True),
    ("exists, missing", "zone", "zone", WEB, False),
    ("does not exist", "!zone", "!zone", WEB, True),
    ("does not exist, present", "!tier", "!tier", WEB, False),
    ("comma is AND", "app=web,tier=frontend", "app=web,tier=frontend", WEB, True),
    ("AND with one failing", "app=web,tier=backend", "app=web,tier=backend", WEB, False),
    ("whitespace tolerant", "  app = web ,  env in ( prod , qa )  ,!zone ",
     "app=web,env in (prod,qa),!zone", WEB, True),
    ("tabs and newlines are whitespace", "app\t=\nweb", "app=web", WEB, True),
    ("no space before the set", "env in(prod)", "env in (prod)", WEB, True),
    ("requirements sorted by key", "tier,app=web", "app=web,tier", WEB, True),
    ("set values sorted and deduplicated", "env in (qa,prod,qa)", "env in (prod,qa)", WEB, True),
    ("empty value with =", "zone=", "zone=", {"zone": ""}, True),
    ("empty value in a set", "zone in (,a)", "zone in (,a)", {"zone": ""}, True),
    ("keywords as key and value", "in in (in)", "in in (in)", {"in": "in"}, True),
    ("notin as a value", "x=notin", "x=notin", {"x": "notin"}, True),
    ("prefixed key", "example.com/team=net", "example.com/team=net",
     {"example.com/team": "net"}, True),
    ("greater than", "replicas>2", "replicas>2", WEB, True),
    ("less than", "replicas<2", "replicas<2", WEB, False),
    ("greater than on a non-number label", "app>1", "app>1", WEB, False),
    ("empty selector matches all", "", "", WEB, True),
    ("blank selector matches all", "   ", "", {}, True),
]


@pytest.mark.parametrize("desc,text,canonical,labels,want", MATCH_CASES,
                         ids=[c[0] for c in MATCH_CASES])
def test_parse_and_match(desc, text, canonical, labels, want):
    sel = parse_selector(text)
    assert sel.matches(labels) is want
    assert str(sel) == canonical
    assert parse_selector(str(sel)) == sel  # canonical text round-trips


# (description, selector text, exact error message)
ERROR_CASES = [
    ("two identifiers", "a b",
     "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', 'notin'"),
    ("trailing comma", "a=b,", "found '', expected: identifier after ','"),
    ("leading comma", ",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("operator after !key", "!a=b", "found '=', expected: ',' or 'end of string'"),
    ("value missing its set", "a in x", "unable to parse requirement: found 'x', expected: '('"),
    ("unclosed set", "a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("set opened by an operator", "a in (=",
     "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("two values without comma", "a in (x y)",
     "unable to parse requirement: found 'y', expected: ',' or ')'"),
    ("operator as value", "a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("junk after requirement", "a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("lone !", "!", "unable to parse requirement: found '', expected: identifier"),
    ("non-integer for >", "a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": "
                                 "for 'Gt', 'Lt' operators, the value must be an integer"),
]


@pytest.mark.parametrize("desc,text,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_parse_errors(desc, text, message):
    with pytest.raises(SelectorError) as e:
        parse_selector(text)
    assert str(e.value) == message


# (description, selector text, start of the error message)
INVALID_NAME_CASES = [
    ("key with a space is two tokens", "my key=a", "unable to parse requirement: found 'key'"),
    ("uppercase prefix", "Example.com/a=b",
     'unable to parse requirement: Invalid value: "Example.com/a": prefix part a lowercase RFC '
     "1123 subdomain"),
    ("two slashes", "a/b/c", 'unable to parse requirement: Invalid value: "a/b/c": a qualified '
                             "name must consist of"),
    ("key too long", "k" * 64, f'unable to parse requirement: Invalid value: "{"k" * 64}": name '
                               "part must be no more than 63 characters"),
    ("bad value", "a=-x", 'unable to parse requirement: values[0][a]: Invalid value: "-x": a '
                          "valid label must be an empty string"),
    ("value too long", "a=" + "v" * 64, "unable to parse requirement: values[0][a]: Invalid "
                                        f'value: "{"v" * 64}": must be no more than 63 '
                                        "characters"),
]


@pytest.mark.parametrize("desc,text,prefix", INVALID_NAME_CASES,
                         ids=[c[0] for c in INVALID_NAME_CASES])
def test_invalid_keys_and_values(desc, text, prefix):
    with pytest.raises(SelectorError) as e:
        parse_selector(text)
    assert str(e.value).startswith(prefix), str(e.value)


def test_selector_error_is_a_value_error():
    assert issubclass(SelectorError, ValueError)


def test_selector_is_frozen_and_hashable():
    sel = parse_selector("app=web,!zone")
    with pytest.raises(AttributeError):
        sel.nothing = True
    assert {sel: 1}[parse_selector("!zone, app=web")] == 1


def test_empty_and_nothing():
    assert parse_selector("").empty and EVERYTHING.empty
    assert not parse_selector("a").empty
    assert not NOTHING.empty and not NOTHING.matches({})
    assert EVERYTHING.matches(None)


def test_requires_exact_match():
    sel = parse_selector("app=web,env in (prod),tier in (a,b),!zone")
    assert sel.requires_exact_match("app") == "web"
    assert sel.requires_exact_match("env") == "prod"
    assert sel.requires_exact_match("tier") is None
    assert sel.requires_exact_match("zone") is None
    assert sel.requires_exact_match("other") is None


# (description, metav1.LabelSelector, labels, expected match)
LABEL_SELECTOR_CASES = [
    ("nil selects nothing", None, WEB, False),
    ("empty selects everything", {}, WEB, True),
    ("matchLabels", {"matchLabels": {"app": "web"}}, WEB, True),
    ("matchLabels mismatch", {"matchLabels": {"app": "db"}}, WEB, False),
    ("In", {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, WEB,
     True),
    ("NotIn", {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
     WEB, False),
    ("Exists", {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, WEB, True),
    ("DoesNotExist", {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, WEB,
     False),
    ("labels and expressions ANDed",
     {"matchLabels": {"app": "web"},
      "matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, WEB, True),
]


@pytest.mark.parametrize("desc,obj,labels,want", LABEL_SELECTOR_CASES,
                         ids=[c[0] for c in LABEL_SELECTOR_CASES])
def test_selector_from_label_selector(desc, obj, labels, want):
    assert selector_from_label_selector(obj).matches(labels) is want


# (description, metav1.LabelSelector, error message)
LABEL_SELECTOR_ERRORS = [
    ("unknown operator", {"matchExpressions": [{"key": "a", "operator": "Equals"}]},
     '"Equals" is not a valid label selector operator'),
    ("In without values", {"matchExpressions": [{"key": "a", "operator": "In"}]},
     "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"),
    ("Exists with values",
     {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     "values: Invalid value: values set must be empty for exists and does not exist"),
    ("non-string label value", {"matchLabels": {"a": 1}},
     "label keys and values must be strings, not 1"),
]


@pytest.mark.parametrize("desc,obj,message", LABEL_SELECTOR_ERRORS,
                         ids=[c[0] for c in LABEL_SELECTOR_ERRORS])
def test_selector_from_label_selector_errors(desc, obj, message):
    with pytest.raises(SelectorError) as e:
        selector_from_label_selector(obj)
    assert str(e.value) == message


def test_selector_from_map():
    sel = selector_from_map({"tier": "frontend", "app": "web"})
    assert str(sel) == "app=web,tier=frontend"
    assert sel.matches(WEB)
    assert not sel.matches({"app": "web"})
    assert selector_from_map({}) == EVERYTHING and selector_from_map(None) == EVERYTHING


def test_new_requirement_collects_every_problem():
    with pytest.raises(SelectorError) as e:
        new_requirement("a/b/c", "in", [])
    assert str(e.value).startswith('[key: Invalid value: "a/b/c"')
    assert "values set can't be empty" in str(e.value)
    assert new_requirement("a", "in", ["y", "x", "y"]) == Requirement("a", "in", ("x", "y"))


# (description, key or value, checker, number of messages)
SYNTAX_CASES = [
    ("plain key", "app", label_key_errors, 0),
    ("prefixed key", "app.kubernetes.io/name", label_key_errors, 0),
    ("63-char name part", "a" * 63, label_key_errors, 0),
    ("64-char name part", "a" * 64, label_key_errors, 1),
    ("253-char prefix", ".".join(["a" * 63] * 3) + "." + "a" * 61 + "/x", label_key_errors, 0),
    ("254-char prefix", ".".join(["a" * 63] * 3) + "." + "a" * 62 + "/x", label_key_errors, 1),
    ("empty prefix", "/x", label_key_errors, 1),
    ("empty name", "example.com/", label_key_errors, 2),
    ("name with underscores and dots", "My_Name.v1", label_key_errors, 0),
    ("name ends with dash", "name-", label_key_errors, 1),
    ("empty value", "", label_value_errors, 0),
    ("63-char value", "v" * 63, label_value_errors, 0),
    ("64-char value", "v" * 64, label_value_errors, 1),
    ("value with a slash", "a/b", label_value_errors, 1),
]


@pytest.mark.parametrize("desc,text,check,count", SYNTAX_CASES, ids=[c[0] for c in SYNTAX_CASES])
def test_label_syntax(desc, text, check, count):
    assert len(check(text)) == count, check(text)


def test_validate_labels_reports_on_the_map_path():
    causes = validate_labels({"ok": "fine", "bad key": "v", "k": "bad value!", "n": 5},
                             "metadata.labels")
    assert [c.field for c in causes] == ["metadata.labels", "metadata.labels",
                                         "metadata.labels[n]"]
    assert causes[0].message.startswith('Invalid value: "bad key": name part must consist')
    assert causes[1].message.startswith('Invalid value: "bad value!": a valid label must be')
    assert causes[2].message == "Invalid value: 5: must be a string"


def test_validate_label_selector():
    causes = validate_label_selector({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Equals", "values": ["x"]},
            {"key": "d e", "operator": "NotIn", "values": ["ok", "not ok"]},
        ]}, "spec.selector")
    assert [c.text for c in causes] == [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when "
        "`operator` is 'In' or 'NotIn'",
        "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when "
        "`operator` is 'Exists' or 'DoesNotExist'",
        'spec.selector.matchExpressions[2].operator: Invalid value: "Equals": not a valid '
        "selector operator",
        causes[3].text, causes[4].text,
    ]
    assert causes[3].text.startswith('spec.selector.matchExpressions[3].key: Invalid value: "d e"')
    assert causes[4].text.startswith('spec.selector.matchExpressions[3].values[1]: Invalid value: '
                                     '"not ok"')


def test_selector_equality_ignores_order():
    assert parse_selector("b,a=1") == Selector((Requirement("a", "=", ("1",)),
                                                Requirement("b", "exists")))
