"""compile_routes: backends, defaults, class filtering, merging across Ingresses, problems."""

from __future__ import annotations

import pytest

from meshnet.ingress.match import match_route
from meshnet.ingress.routes import RoutingConfig, compile_routes, serves_ingress
from meshnet.ingress.views import view_ingress, view_ingress_class

from fakes import endpoints, ingress, ingress_class, path, service, views

WEB = [service("web", {"http": 80, "admin": 9000}),
       endpoints("web", ["10.0.0.1", "10.0.0.2"], {"http": 8080, "admin": 9090},
                 not_ready=["10.0.0.9"])]


def compile_(ingresses, objects=(), classes=None, config=RoutingConfig()):
    svcs = [o for o in objects if o["kind"] == "Service"]
    eps = [o for o in objects if o["kind"] == "Endpoints"]
    ings, cls, s, e = views(ingresses, svcs, eps, classes)
    return compile_routes(ings, cls, s, e, config)


BACKEND_CASES = [
    # (description, backend port, objects, expected endpoints, expected problem reason)
    ("port by number -> ready endpoints of that port", 80, WEB,
     (("10.0.0.1", 8080), ("10.0.0.2", 8080)), None),
    ("port by name", "admin", WEB, (("10.0.0.1", 9090), ("10.0.0.2", 9090)), None),
    ("second port by number", 9000, WEB, (("10.0.0.1", 9090), ("10.0.0.2", 9090)), None),
    ("unknown port number: 503 and a problem", 81, WEB, (), "InvalidBackend"),
    ("unknown port name: 503 and a problem", "nope", WEB, (), "InvalidBackend"),
    ("no Service: 503 and a problem", 80, [], (), "BackendNotFound"),
    ("Service without Endpoints: 503, no problem", 80, [service("web")], (), None),
    ("Endpoints with only not-ready addresses: 503", 80,
     [service("web"), endpoints("web", [], not_ready=["10.0.0.3"])], (), None),
    ("unnamed single port", 80, [service("web", {"": 80}), endpoints("web", ["10.1.1.1"], {"": 80})],
     (("10.1.1.1", 80),), None),
]


@pytest.mark.parametrize("desc,port,objects,expected,problem", BACKEND_CASES,
                         ids=[c[0] for c in BACKEND_CASES])
def test_backend_resolution(desc, port, objects, expected, problem):
    table, problems = compile_(
        [ingress("ing", {"a.com": [path("/", "web", port)]})], objects)
    route = match_route(table, "a.com", "/x")
    assert route.endpoints == expected, desc
    assert [p.reason for p in problems] == ([problem] if problem else []), desc
    if problem:
        assert problems[0].kind == "Ingress" and problems[0].name == "ing"
        assert "answering 503" in problems[0].message


DEFAULT_SVC = [service("default-http-backend", {"http": 80}, ns="ingress"),
               endpoints("default-http-backend", ["10.9.9.9"], ns="ingress")]
OTHER_SVC = [service("fallback", {"http": 80}), endpoints("fallback", ["10.8.8.8"])]

DEFAULT_CASES = [
    # (description, ingresses, objects, config, host, path, expected service or None for 404)
    ("no rule, no default: 404", [ingress("i", {"a.com": [path("/x", "web")]})], [],
     RoutingConfig(), "a.com", "/y", None),
    ("unknown host, no default: 404", [ingress("i", {"a.com": [path("/", "web")]})], [],
     RoutingConfig(), "b.com", "/", None),
    ("Ingress defaultBackend serves its host's unmatched paths",
     [ingress("i", {"a.com": [path("/x", "web")]}, default=("fallback", 80))], OTHER_SVC,
     RoutingConfig(), "a.com", "/y", "default/fallback:80"),
    ("an Ingress defaultBackend with rules is not the catch-all",
     [ingress("i", {"a.com": [path("/x", "web")]}, default=("fallback", 80))], OTHER_SVC,
     RoutingConfig(), "b.com", "/", None),
    ("a rule-less Ingress's defaultBackend is the catch-all",
     [ingress("i", None, default=("fallback", 80))], OTHER_SVC, RoutingConfig(),
     "any.com", "/z", "default/fallback:80"),
    ("cluster default-http-backend in the controller namespace",
     [ingress("i", {"a.com": [path("/x", "web")]})], DEFAULT_SVC,
     RoutingConfig(controller_namespace="ingress"), "b.com", "/",
     "ingress/default-http-backend:http"),
    ("cluster default also for a known host's unmatched path",
     [ingress("i", {"a.com": [path("/x", "web")]})], DEFAULT_SVC,
     RoutingConfig(controller_namespace="ingress"), "a.com", "/y",
     "ingress/default-http-backend:http"),
    ("default-http-backend in another namespace is not used",
     [], DEFAULT_SVC, RoutingConfig(controller_namespace="default"), "b.com", "/", None),
    ("--default-backend-service", [], OTHER_SVC,
     RoutingConfig(default_backend_service="default/fallback"), "b.com", "/",
     "default/fallback:http"),
    ("the Ingress default beats the cluster default",
     [ingress("i", {"a.com": [path("/x", "web")]}, default=("fallback", 80))],
     OTHER_SVC + DEFAULT_SVC, RoutingConfig(controller_namespace="ingress"), "a.com", "/y",
     "default/fallback:80"),
    ("no-host rules before the catch-all",
     [ingress("i", {"": [path("/n", "web")]}), ingress("j", None, default=("fallback", 80))],
     OTHER_SVC, RoutingConfig(), "b.com", "/n/1", "default/web:80"),
    ("known host does not fall through to no-host rules",
     [ingress("i", {"": [path("/n", "web")], "a.com": [path("/x", "web2")]})], [],
     RoutingConfig(), "a.com", "/n", None),
]


@pytest.mark.parametrize("desc,ings,objects,config,host,req,expected", DEFAULT_CASES,
                         ids=[c[0] for c in DEFAULT_CASES])
def test_default_backends(desc, ings, objects, config, host, req, expected):
    table, _ = compile_(ings, objects, config=config)
    route = match_route(table, host, req)
    assert (route.service if route else None) == expected, desc


def test_missing_flag_default_backend_answers_503():
    table, _ = compile_([], [], config=RoutingConfig(default_backend_service="x/missing"))
    route = match_route(table, "a.com", "/")
    assert route.service == "x/missing" and route.endpoints == ()


CLASS_CASES = [
    # (description, class_name, annotation, classes, config, served?)
    ("ingressClassName of our class", "meshnet", None, [ingress_class("meshnet")],
     RoutingConfig(), True),
    ("ingressClassName of another controller's class", "nginx", None,
     [ingress_class("meshnet"), ingress_class("nginx", "k8s.io/ingress-nginx")],
     RoutingConfig(), False),
    ("ingressClassName of a class that does not exist", "ghost", None,
     [ingress_class("meshnet")], RoutingConfig(), False),
    ("a second class of ours is served", "internal", None,
     [ingress_class("meshnet"), ingress_class("internal")], RoutingConfig(), True),
    ("--ingress-class restricts to that class", "internal", None,
     [ingress_class("meshnet"), ingress_class("internal")],
     RoutingConfig(class_flag_given=True), False),
    ("--ingress-class internal serves internal", "internal", None,
     [ingress_class("meshnet"), ingress_class("internal")],
     RoutingConfig(ingress_class="internal", class_flag_given=True), True),
    ("no class: not served by default", None, None, [ingress_class("meshnet")],
     RoutingConfig(), False),
    ("no class with --watch-ingress-without-class", None, None, [ingress_class("meshnet")],
     RoutingConfig(watch_without_class=True), True),
    ("no class, our class is the default IngressClass", None, None,
     [ingress_class("meshnet", default=True)], RoutingConfig(), True),
    ("no class, another controller's class is the default", None, None,
     [ingress_class("meshnet"), ingress_class("nginx", "k8s.io/ingress-nginx", default=True)],
     RoutingConfig(), False),
    ("legacy annotation naming our class", None, "meshnet", [], RoutingConfig(), True),
    ("legacy annotation naming another class", None, "nginx", [ingress_class("meshnet")],
     RoutingConfig(watch_without_class=True), False),
    ("ingressClassName wins over the annotation", "nginx", "meshnet",
     [ingress_class("nginx", "k8s.io/ingress-nginx")], RoutingConfig(), False),
]


@pytest.mark.parametrize("desc,class_name,annotation,classes,config,served", CLASS_CASES,
                         ids=[c[0] for c in CLASS_CASES])
def test_class_filtering(desc, class_name, annotation, classes, config, served):
    ann = {"kubernetes.io/ingress.class": annotation} if annotation else None
    ing = view_ingress(ingress("i", {"a.com": [path("/", "web")]}, class_name=class_name,
                               annotations=ann))
    assert serves_ingress(ing, [view_ingress_class(c) for c in classes], config) is served, desc
    table, _ = compile_([ingress("i", {"a.com": [path("/", "web")]}, class_name=class_name,
                                 annotations=ann)], classes=classes, config=config)
    assert (table.served == ("default/i",)) is served
    assert (match_route(table, "a.com", "/") is not None) is served


def test_merge_across_ingresses_oldest_wins_duplicates():
    old = ingress("old", {"a.com": [path("/api", "v1")]}, created="2024-01-01T00:00:00Z")
    new = ingress("new", {"a.com": [path("/api", "v2"), path("/web", "web")]},
                  created="2024-02-01T00:00:00Z")
    for order in ([old, new], [new, old]):  # input order must not matter
        table, problems = compile_(order)
        assert match_route(table, "a.com", "/api/x").service == "default/v1:80"
        assert match_route(table, "a.com", "/web").service == "default/web:80"
        assert [(p.name, p.reason) for p in problems if p.reason == "Conflict"] == \
            [("new", "Conflict")]
        assert "older Ingress default/old" in \
            [p for p in problems if p.reason == "Conflict"][0].message
    assert compile_([old, new])[0] == compile_([new, old])[0]


def test_same_path_different_types_do_not_conflict():
    table, problems = compile_([
        ingress("a", {"h.com": [path("/x", "exact", path_type="Exact")]}),
        ingress("b", {"h.com": [path("/x", "prefix")]}, created="2024-03-01T00:00:00Z")])
    assert not [p for p in problems if p.reason == "Conflict"]
    assert match_route(table, "h.com", "/x").service == "default/exact:80"
    assert match_route(table, "h.com", "/x/y").service == "default/prefix:80"


REDIRECT_CASES = [
    # (description, tls hosts, annotations, request host, expected ssl_redirect)
    ("TLS host redirects", ["a.com"], None, "a.com", True),
    ("host without TLS does not", ["a.com"], None, "b.com", False),
    ("meshnet.io/ssl-redirect false", ["a.com"], {"meshnet.io/ssl-redirect": "false"},
     "a.com", False),
    ("nginx ssl-redirect false", ["a.com"],
     {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}, "a.com", False),
    ("meshnet annotation wins over nginx", ["a.com"],
     {"meshnet.io/ssl-redirect": "true", "nginx.ingress.kubernetes.io/ssl-redirect": "false"},
     "a.com", True),
    ("wildcard TLS host covers the wildcard rule", ["*.w.com"], None, "x.w.com", True),
]


@pytest.mark.parametrize("desc,tls_hosts,ann,host,expected", REDIRECT_CASES,
                         ids=[c[0] for c in REDIRECT_CASES])
def test_ssl_redirect(desc, tls_hosts, ann, host, expected):
    ing = ingress("i", {"a.com": [path("/", "web")], "b.com": [path("/", "web")],
                        "*.w.com": [path("/", "web")]},
                  tls=[(tls_hosts, "cert")], annotations=ann, default=("web", 80))
    table, _ = compile_([ing])
    assert match_route(table, host, "/").ssl_redirect is expected, desc
    assert match_route(table, host, "/nothing-here/..").ssl_redirect is expected


def test_annotations_set_route_options_and_bad_ones_are_problems():
    ing = ingress("i", {"a.com": [path("/", "web")]}, annotations={
        "meshnet.io/proxy-read-timeout": "2m", "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "meshnet.io/proxy-connect-timeout": "soon"})
    table, problems = compile_([ing], WEB)
    route = match_route(table, "a.com", "/")
    assert (route.read_timeout_s, route.max_body_bytes, route.connect_timeout_s) == \
        (120.0, 8 << 20, 5.0)
    assert [p.reason for p in problems] == ["InvalidAnnotation"]
    assert "meshnet.io/proxy-connect-timeout" in problems[0].message


def test_bad_path_type_is_a_problem_and_the_rest_builds():
    ing = ingress("i", {"a.com": [path("/ok", "web"), path("/bad", "web", path_type="Regex")]})
    table, problems = compile_([ing], WEB)
    assert match_route(table, "a.com", "/ok").path == "/ok"
    assert match_route(table, "a.com", "/bad") is None
    assert [p.reason for p in problems] == ["InvalidPath"]


def test_tables_compare_by_value():
    a, _ = compile_([ingress("i", {"a.com": [path("/", "web")]})], WEB)
    b, _ = compile_([ingress("i", {"a.com": [path("/", "web")]})], WEB)
    c, _ = compile_([ingress("i", {"a.com": [path("/", "web")]})], WEB[:1])
    assert a == b and a != c
