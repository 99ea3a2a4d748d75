"""label/annotate argument parsing: resources vs updates, KEY=VAL, KEY-, validation."""

import pytest

from meshnet.cli.errors import CLIError
from meshnet.cli.label import parse_updates, split_args


@pytest.mark.parametrize("args,resources,updates", [
    (["svc", "web", "app=web"], ["svc", "web"], ["app=web"]),
    (["svc/web", "tier-", "app=x"], ["svc/web"], ["tier-", "app=x"]),
    (["svc", "web"], ["svc", "web"], []),
])
def test_split_args(args, resources, updates):
    assert split_args(args) == (resources, updates)


# (description, specs, noun, expected sets, expected removes)
OK = [
    ("set one", ["app=web"], "label", {"app": "web"}, []),
    ("empty value is allowed", ["app="], "label", {"app": ""}, []),
    ("prefixed key", ["example.com/team=net"], "label", {"example.com/team": "net"}, []),
    ("remove", ["tier-"], "label", {}, ["tier"]),
    ("set and remove different keys", ["a=1", "b-"], "label", {"a": "1"}, ["b"]),
    ("annotation values may hold anything", ["note=a=b c, d!"], "annotation",
     {"note": "a=b c, d!"}, []),
    ("annotation JSON", ['cfg={"x": 1}'], "annotation", {"cfg": '{"x": 1}'}, []),
]


@pytest.mark.parametrize("desc,specs,noun,sets,removes", OK, ids=[c[0] for c in OK])
def test_parse_updates(desc, specs, noun, sets, removes):
    assert parse_updates(specs, noun) == (sets, removes)


BAD = [
    ("label value with '='", ["a=b=c"], "label", "invalid label spec: a=b=c"),
    ("label value with a space", ["a=b c"], "label",
     'invalid label value: "a=b c": a valid label must be an empty string'),
    ("label value too long", ["a=" + "x" * 64], "label", "must be no more than 63 characters"),
    ("bad key", ["-bad=1"], "label", 'invalid label spec: -bad=1: invalid key "-bad"'),
    ("bad annotation key", ["a/b/c=1"], "annotation", 'invalid annotation spec: a/b/c=1'),
    ("modify and remove the same key", ["a=1", "a-"], "label",
     "can not both modify and remove labels in the same command"),
]


@pytest.mark.parametrize("desc,specs,noun,message", BAD, ids=[c[0] for c in BAD])
def test_parse_update_errors(desc, specs, noun, message):
    with pytest.raises(CLIError) as e:
        parse_updates(specs, noun)
    assert message in e.value.message


def test_label_needs_an_update(cli):
    result = cli("label", "svc", "web")
    assert (result.code, result.err) == (1, "error: at least one label update is required\n")
    result = cli("annotate", "svc", "web")
    assert result.err == "error: at least one annotation update is required\n"
