"""Ingress and IngressClass validation, including the extensions/v1beta1 shapes users paste."""

import pytest

from api_cases import DASHBOARD_INGRESS, DELETE, TLS_INGRESS, assert_causes, causes_of, edit
from meshnet.api.validation_networking import LEGACY_BACKEND_DETAIL

ING = DASHBOARD_INGRESS
P0 = "spec.rules[0].http.paths[0]"
SERVICE_BACKEND = {"service": {"name": "web", "port": {"number": 80}}}


def test_legacy_backend_exact_message():
    """The cheat sheet's extensions/v1beta1 path backend names the field and its v1 fields."""
    got = causes_of("ingresses", edit(ING, {P0 + ".backend": {"serviceName": "x",
                                                               "servicePort": 80}}))
    assert got == [
        'spec.rules[0].http.paths[0].backend.serviceName: Invalid value: "x": '
        "networking.k8s.io/v1 uses backend.service.name and backend.service.port.number (or "
        ".name); serviceName/servicePort are from extensions/v1beta1"]


def test_legacy_ingress_reports_every_problem():
    """An extensions/v1beta1 manifest as tutorials show it: no pathType, old backends."""
    old_style = {
        "metadata": {"name": "dashboard-ingress", "namespace": "kubernetes-dashboard"},
        "spec": {
            "backend": {"serviceName": "default-http-backend", "servicePort": 80},
            "rules": [{"host": "dashboard.com", "http": {"paths": [
                {"backend": {"serviceName": "kubernetes-dashboard", "servicePort": 80}}]}}],
        },
    }
    assert causes_of("ingresses", old_style) == [
        'spec.backend: Invalid value: {"serviceName":"default-http-backend","servicePort":80}: '
        "networking.k8s.io/v1 uses spec.defaultBackend (with service.name and "
        "service.port.number or .name); spec.backend is from extensions/v1beta1",
        "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
        'spec.rules[0].http.paths[0].backend.serviceName: Invalid value: "kubernetes-dashboard": '
        + LEGACY_BACKEND_DETAIL,
    ]


# (description, changes, expected cause prefixes)
CASES = [
    ("valid", {}, []),
    ("valid TLS ingress", TLS_INGRESS, []),
    ("default backend only", {"spec": {"defaultBackend": SERVICE_BACKEND}}, []),
    ("no host", {"spec.rules[0].host": DELETE}, []),
    ("wildcard host", {"spec.rules[0].host": "*.dashboard.com"}, []),
    ("Exact path", {P0 + ".pathType": "Exact", P0 + ".path": "/api"}, []),
    ("ImplementationSpecific without path",
     {P0 + ".pathType": "ImplementationSpecific", P0 + ".path": DELETE}, []),
    ("named service port", {P0 + ".backend.service.port": {"name": "https"}}, []),
    ("resource backend",
     {P0 + ".backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket",
                                     "name": "static-assets"}}}, []),
    ("rule with host only", {"spec.rules": [{"host": "a.com"}]}, []),
    ("pathType required", {P0 + ".pathType": DELETE},
     ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]),
    ("unknown pathType", {P0 + ".pathType": "Regex"},
     ['spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: '
      '"Exact", "ImplementationSpecific", "Prefix"']),
    ("Prefix path must be absolute", {P0 + ".path": "api"},
     ['spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path']),
    ("Exact path must be absolute", {P0 + ".pathType": "Exact", P0 + ".path": DELETE},
     ['spec.rules[0].http.paths[0].path: Invalid value: "": must be an absolute path']),
    ("ImplementationSpecific path must be absolute when set",
     {P0 + ".pathType": "ImplementationSpecific", P0 + ".path": "api"},
     ['spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path']),
    ("path with //", {P0 + ".path": "/a//b"},
     ["spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'"]),
    ("path ending /..", {P0 + ".path": "/a/.."},
     ["spec.rules[0].http.paths[0].path: Invalid value: \"/a/..\": cannot end with '/..'"]),
    ("backend needs service or resource", {P0 + ".backend": {}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is '
      "required"]),
    ("backend missing", {P0 + ".backend": DELETE},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is '
      "required"]),
    ("both service and resource",
     {P0 + ".backend.resource": {"kind": "Bucket", "name": "b"}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both resource and '
      "service backends"]),
    ("service name required", {P0 + ".backend.service.name": DELETE},
     ["spec.rules[0].http.paths[0].backend.service.name: Required value"]),
    ("service name is a DNS-1035 label", {P0 + ".backend.service.name": "Dashboard"},
     ['spec.rules[0].http.paths[0].backend.service.name: Invalid value: "Dashboard": a DNS-1035 '
      "label"]),
    ("port name or number required", {P0 + ".backend.service.port": {}},
     ["spec.rules[0].http.paths[0].backend: Required value: port name or number is required"]),
    ("port name and number", {P0 + ".backend.service.port": {"name": "http", "number": 80}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both port name & port '
      "number"]),
    ("port number out of range", {P0 + ".backend.service.port.number": 65536},
     ["spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 65536: must be "
      "between 1 and 65535, inclusive"]),
    ("port name syntax", {P0 + ".backend.service.port": {"name": "HTTPS"}},
     ['spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: "HTTPS": must '
      "contain only alpha-numeric characters",
      'spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: "HTTPS": must '
      "contain at least one letter"]),
    ("legacy servicePort only", {P0 + ".backend": {"servicePort": "http"}},
     ['spec.rules[0].http.paths[0].backend.servicePort: Invalid value: "http": '
      + LEGACY_BACKEND_DETAIL]),
    ("resource backend needs kind and name", {P0 + ".backend": {"resource": {}}},
     ["spec.rules[0].http.paths[0].backend.resource.kind: Required value: kind is required",
      "spec.rules[0].http.paths[0].backend.resource.name: Required value: name is required"]),
    ("host is not an IP", {"spec.rules[0].host": "192.0.2.1"},
     ['spec.rules[0].host: Invalid value: "192.0.2.1": must be a DNS name, not an IP address']),
    ("host uppercase", {"spec.rules[0].host": "Dashboard.com"},
     ['spec.rules[0].host: Invalid value: "Dashboard.com": a lowercase RFC 1123 subdomain']),
    ("wildcard in the middle", {"spec.rules[0].host": "a.*.com"},
     ['spec.rules[0].host: Invalid value: "a.*.com": a wildcard DNS-1123 subdomain must start '
      "with '*.'"]),
    ("http without paths", {"spec.rules[0].http.paths": []},
     ["spec.rules[0].http.paths: Required value"]),
    ("neither rules nor defaultBackend", {"spec": {}},
     ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]),
    ("default backend checked", {"spec.defaultBackend": {"service": {"name": "web"}}},
     ["spec.defaultBackend: Required value: port name or number is required"]),
    ("TLS host syntax", {"spec.tls": [{"hosts": ["*.ok.com", "Bad_Host"], "secretName": "s"}]},
     ['spec.tls[0].hosts[1]: Invalid value: "Bad_Host": a lowercase RFC 1123 subdomain']),
    ("TLS secretName syntax", {"spec.tls": [{"hosts": ["a.com"], "secretName": "My Secret"}]},
     ['spec.tls[0].secretName: Invalid value: "My Secret": a lowercase RFC 1123 subdomain']),
    ("ingressClassName syntax", {"spec.ingressClassName": "Nginx"},
     ['spec.ingressClassName: Invalid value: "Nginx": a lowercase RFC 1123 subdomain']),
    ("every failing field at once",
     {"spec.rules[0].host": "1.2.3.4", P0 + ".pathType": DELETE,
      P0 + ".backend.service.port": {}, "spec.tls": [{"secretName": "A"}]},
     ['spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address',
      "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
      "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
      'spec.tls[0].secretName: Invalid value: "A"']),
]


@pytest.mark.parametrize("desc,changes,want", CASES, ids=[c[0] for c in CASES])
def test_validate_ingress(desc, changes, want):
    base, changes = (changes, {}) if "metadata" in changes else (ING, changes)
    assert_causes(causes_of("ingresses", edit(base, changes)), want)


CLASS = {"metadata": {"name": "meshnet"}, "spec": {"controller": "meshnet.dev/ingress"}}

# (description, changes, expected cause prefixes)
CLASS_CASES = [
    ("valid", {}, []),
    ("controller required", {"spec.controller": DELETE}, ["spec.controller: Required value"]),
    ("controller needs a domain prefix", {"spec.controller": "ingress"},
     ['spec.controller: Invalid value: "ingress": must be a domain-prefixed path (such as '
      '"acme.io/foo")']),
    ("controller domain syntax", {"spec.controller": "Meshnet.dev/ingress"},
     ['spec.controller: Invalid value: "Meshnet.dev": a lowercase RFC 1123 subdomain']),
    ("controller path syntax", {"spec.controller": "meshnet.dev/in gress"},
     ['spec.controller: Invalid value: "in gress": Invalid path (regex used for validation is']),
    ("controller too long", {"spec.controller": "meshnet.dev/" + "x" * 239},
     ["spec.controller: Too long: may not be more than 250 bytes"]),
    ("parameters default to cluster scope",
     {"spec.parameters": {"apiGroup": "meshnet.dev", "kind": "Config", "name": "default"}}, []),
    ("namespaced parameters need a namespace",
     {"spec.parameters": {"kind": "ConfigMap", "name": "cfg", "scope": "Namespace"}},
     ["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]),
    ("cluster parameters may not name a namespace",
     {"spec.parameters": {"kind": "Config", "name": "c", "namespace": "default"}},
     ["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]),
    ("unknown scope", {"spec.parameters": {"kind": "Config", "name": "c", "scope": "Global"}},
     ['spec.parameters.scope: Unsupported value: "Global": supported values: "Cluster", '
      '"Namespace"']),
]


@pytest.mark.parametrize("desc,changes,want", CLASS_CASES, ids=[c[0] for c in CLASS_CASES])
def test_validate_ingress_class(desc, changes, want):
    assert_causes(causes_of("ingressclasses", edit(CLASS, changes)), want)


def test_ingress_class_controller_is_immutable():
    assert_causes(causes_of("ingressclasses", edit(CLASS, {"spec.controller": "x.dev/y"}), CLASS),
                  ['spec.controller: Invalid value: "x.dev/y": field is immutable'])
