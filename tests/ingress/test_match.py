"""match_route against the Kubernetes Ingress v1 specification's tables.

PATH_CASES is the "Examples" table of https://kubernetes.io/docs/concepts/services-networking/
ingress/#examples row by row (plus ImplementationSpecific, which meshnet treats as Prefix), and
HOST_CASES the hostname-wildcard table; each row compiles its rules and matches one request.
"""

from __future__ import annotations

import pytest

from meshnet.ingress.match import match_route, normalize_host, split_target
from meshnet.ingress.routes import compile_routes

from fakes import ingress, path, views


def table_for(rules: dict, default: tuple | None = None):
    ings, classes, svcs, eps = views([ingress("ing", rules, default=default)])
    table, _ = compile_routes(ings, classes, svcs, eps)
    return table


def matched(table, host, request_path):
    route = match_route(table, host, request_path)
    if route is None:
        return None
    return (route.path_type or "default", route.path)


P, E, I = "Prefix", "Exact", "ImplementationSpecific"

PATH_CASES = [
    # (description, [(type, path)...], request path, expected (type, path) or "default")
    ("Prefix / matches all paths", [(P, "/")], "/anything/at/all", (P, "/")),
    ("Prefix / matches /", [(P, "/")], "/", (P, "/")),
    ("Exact /foo matches /foo", [(E, "/foo")], "/foo", (E, "/foo")),
    ("Exact /foo does not match /bar", [(E, "/foo")], "/bar", "default"),
    ("Exact /foo does not match /foo/", [(E, "/foo")], "/foo/", "default"),
    ("Exact /foo/ does not match /foo", [(E, "/foo/")], "/foo", "default"),
    ("Exact is case-sensitive", [(E, "/foo")], "/FOO", "default"),
    ("Prefix /foo matches /foo", [(P, "/foo")], "/foo", (P, "/foo")),
    ("Prefix /foo matches /foo/", [(P, "/foo")], "/foo/", (P, "/foo")),
    ("Prefix /foo/ matches /foo", [(P, "/foo/")], "/foo", (P, "/foo/")),
    ("Prefix /foo/ matches /foo/", [(P, "/foo/")], "/foo/", (P, "/foo/")),
    ("Prefix /aaa/bb does not match /aaa/bbb", [(P, "/aaa/bb")], "/aaa/bbb", "default"),
    ("Prefix /aaa/bbb matches /aaa/bbb", [(P, "/aaa/bbb")], "/aaa/bbb", (P, "/aaa/bbb")),
    ("Prefix /aaa/bbb/ matches /aaa/bbb (ignores trailing slash)", [(P, "/aaa/bbb/")],
     "/aaa/bbb", (P, "/aaa/bbb/")),
    ("Prefix /aaa/bbb matches /aaa/bbb/ (matches trailing slash)", [(P, "/aaa/bbb")],
     "/aaa/bbb/", (P, "/aaa/bbb")),
    ("Prefix /aaa/bbb matches /aaa/bbb/ccc (subpath)", [(P, "/aaa/bbb")], "/aaa/bbb/ccc",
     (P, "/aaa/bbb")),
    ("Prefix /aaa/bbb does not match /aaa/bbbxyz (not a string prefix)", [(P, "/aaa/bbb")],
     "/aaa/bbbxyz", "default"),
    ("Prefix /, /aaa: /aaa/ccc matches /aaa", [(P, "/"), (P, "/aaa")], "/aaa/ccc", (P, "/aaa")),
    ("Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches /aaa/bbb",
     [(P, "/"), (P, "/aaa"), (P, "/aaa/bbb")], "/aaa/bbb", (P, "/aaa/bbb")),
    ("Prefix /, /aaa, /aaa/bbb: /ccc matches /", [(P, "/"), (P, "/aaa"), (P, "/aaa/bbb")],
     "/ccc", (P, "/")),
    ("Prefix /aaa: /ccc uses the default backend", [(P, "/aaa")], "/ccc", "default"),
    ("Mixed /foo Prefix and Exact: /foo prefers Exact", [(P, "/foo"), (E, "/foo")], "/foo",
     (E, "/foo")),
    ("Mixed, Exact listed first: still Exact", [(E, "/foo"), (P, "/foo")], "/foo", (E, "/foo")),
    ("Mixed /foo: /foo/bar goes to the Prefix", [(P, "/foo"), (E, "/foo")], "/foo/bar",
     (P, "/foo")),
    ("Longest wins over Exact of a shorter path", [(E, "/a"), (P, "/a/b")], "/a/b/c",
     (P, "/a/b")),
    ("Exact longer than a Prefix wins", [(P, "/a"), (E, "/a/b")], "/a/b", (E, "/a/b")),
    ("Exact /foo/ with Prefix /foo: /foo/ is Exact", [(P, "/foo"), (E, "/foo/")], "/foo/",
     (E, "/foo/")),
    ("ImplementationSpecific is a Prefix", [(I, "/img")], "/img/a.png", (I, "/img")),
    ("ImplementationSpecific is element-wise", [(I, "/img")], "/imgs", "default"),
    ("Query-less path: a dot segment is just text", [(P, "/a")], "/a.b", "default"),
]


@pytest.mark.parametrize("desc,rules,request_path,expected", PATH_CASES,
                         ids=[c[0] for c in PATH_CASES])
def test_path_matching(desc, rules, request_path, expected):
    table = table_for({"foo.com": [path(p, "svc", 80, t) for t, p in rules]},
                      default=("fallback", 80))
    assert matched(table, "foo.com", request_path) == \
        (("default", "") if expected == "default" else expected), desc


HOST_CASES = [
    # (description, rule hosts, request Host, index of the host that matches or None)
    ("exact host", ["foo.bar.com"], "foo.bar.com", "foo.bar.com"),
    ("exact host does not match another", ["foo.bar.com"], "bar.bar.com", None),
    ("wildcard covers one label", ["*.foo.com"], "bar.foo.com", "*.foo.com"),
    ("wildcard does not cover two labels", ["*.foo.com"], "baz.bar.foo.com", None),
    ("wildcard does not cover the bare domain", ["*.foo.com"], "foo.com", None),
    ("exact beats wildcard", ["*.foo.com", "bar.foo.com"], "bar.foo.com", "bar.foo.com"),
    ("wildcard beats no-host rules", ["", "*.foo.com"], "x.foo.com", "*.foo.com"),
    ("no-host rule catches other hosts", ["", "a.com"], "b.com", ""),
    ("no-host rule catches a missing Host", ["", "a.com"], "", ""),
    ("Host header is case-insensitive", ["foo.com"], "FOO.Com", "foo.com"),
    ("port is stripped", ["foo.com"], "foo.com:8080", "foo.com"),
    ("trailing dot is stripped", ["foo.com"], "foo.com.", "foo.com"),
    ("port and trailing dot", ["foo.com"], "foo.com.:80", "foo.com"),
    ("rule host is case-insensitive", ["Foo.COM"], "foo.com", "foo.com"),
    ("wildcard with port", ["*.foo.com"], "a.foo.com:443", "*.foo.com"),
    ("IP literal matches no host rule", ["foo.com"], "127.0.0.1:80", None),
]


@pytest.mark.parametrize("desc,hosts,request_host,expected", HOST_CASES,
                         ids=[c[0] for c in HOST_CASES])
def test_host_matching(desc, hosts, request_host, expected):
    table = table_for({h: [path("/", f"svc-{h or 'nohost'}", 80)] for h in hosts})
    route = match_route(table, request_host, "/")
    assert (route.host if route else None) == (expected.lower() if expected is not None
                                                 else None), desc


@pytest.mark.parametrize("raw,expected", [
    ("Example.COM", "example.com"), ("example.com:80", "example.com"),
    ("example.com.", "example.com"), ("[::1]:8080", "::1"), ("[::1]", "::1"),
    ("  a.b  ", "a.b"), ("", ""),
])
def test_normalize_host(raw, expected):
    assert normalize_host(raw) == expected


@pytest.mark.parametrize("target,expected", [
    ("/a/b?x=1&y=2", ("/a/b", "?x=1&y=2")),
    ("/a/b", ("/a/b", "")),
    ("/?", ("/", "?")),
    ("http://foo.com/a?q", ("/a", "?q")),
    ("http://foo.com", ("/", "")),
    ("*", ("*", "")),
])
def test_split_target(target, expected):
    assert split_target(target) == expected
