"""Helpers shared by the API-object test tables: edit objects by field path, run validation,
compare causes, and the cheat-sheet manifests users copy from tutorials."""

from __future__ import annotations

import base64
import copy
import re

from meshnet.api.resources import ResourceInfo, lookup
from meshnet.api.validation import default_object, prepare_for_update, validate_object

DELETE = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list:
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def edit(obj: dict, changes: dict) -> dict:
    """A deep copy of `obj` with `{"spec.ports[0].port": 1, "spec.type": DELETE}` applied."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        steps = _steps(path)
        cur = out
        for step in steps[:-1]:
            if isinstance(step, str) and step not in cur:
                cur[step] = {}
            cur = cur[step]
        if value is DELETE:
            del cur[steps[-1]]
        else:
            cur[steps[-1]] = copy.deepcopy(value)
    return out


def causes_of(kind: str | ResourceInfo, obj: dict, old: dict | None = None) -> list[str]:
    """Default, (prepare,) validate as the API server does; the causes as `field: message`."""
    info = lookup(kind) if isinstance(kind, str) else kind
    obj = copy.deepcopy(obj)
    default_object(info, obj)
    if old is not None:
        old = copy.deepcopy(old)
        default_object(info, old)
        prepare_for_update(info, obj, old)
    return [c.text for c in validate_object(info, obj, old)]


def assert_causes(got: list[str], want: list[str]) -> None:
    """Same number of causes, each starting with the expected text, in order."""
    ok = len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want))
    assert ok, "causes differ:\n  got:\n    " + "\n    ".join(got) + \
        "\n  want (prefixes):\n    " + "\n    ".join(want)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- the cheat sheet -----------------------------------------------------------------------

NGINX_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.16",
                                     "ports": [{"containerPort": 8080}]}]},
        },
    },
}

NGINX_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "nginx-service", "namespace": "default"},
    "spec": {"selector": {"app": "nginx"},
             "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}]},
}

MONGODB_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "mongodb-service", "namespace": "default"},
    "spec": {"selector": {"app": "mongodb"},
             "ports": [{"name": "mongodb", "protocol": "TCP", "port": 27017, "targetPort": 27017},
                       {"name": "mongodb-exporter", "protocol": "TCP", "port": 9216,
                        "targetPort": 9216}]},
}

CONFIG_MAP = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "mysql-configmap", "namespace": "my-namespace"},
    "data": {"db_url": "mysql-service.database"},
}

DASHBOARD_INGRESS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "dashboard-ingress", "namespace": "kubernetes-dashboard"},
    "spec": {"rules": [{"host": "dashboard.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": "kubernetes-dashboard", "port": {"number": 80}}}}]}}]},
}

TLS_INGRESS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "tls-example-ingress", "namespace": "default"},
    "spec": {
        "tls": [{"hosts": ["myapp.com"], "secretName": "myapp-secret-tls"}],
        "rules": [{"host": "myapp.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "myapp-internal-service",
                                     "port": {"number": 8080}}}}]}}],
    },
}

TLS_SECRET = {
    "apiVersion": "v1", "kind": "Secret",
    "metadata": {"name": "myapp-secret-tls", "namespace": "default"},
    "type": "kubernetes.io/tls",
    "data": {"tls.crt": b64("-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"),
             "tls.key": b64("-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n")},
}

CHEAT_SHEET = [
    ("nginx Deployment", "deployments", NGINX_DEPLOYMENT),
    ("nginx-service", "services", NGINX_SERVICE),
    ("multi-port mongodb Service", "services", MONGODB_SERVICE),
    ("ConfigMap in my-namespace", "configmaps", CONFIG_MAP),
    ("dashboard Ingress", "ingresses", DASHBOARD_INGRESS),
    ("TLS Ingress", "ingresses", TLS_INGRESS),
    ("TLS Secret", "secrets", TLS_SECRET),
]
