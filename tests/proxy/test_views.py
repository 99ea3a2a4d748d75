"""Views: what the proxy keeps of Services and Endpoints."""

from __future__ import annotations

import pytest

from proxy_fakes import endpoints, service
from meshnet.proxy.views import (LEAST_CONN, ROUND_ROBIN, EndpointView, ServicePortView,
                                 endpoints_view, service_view)

SERVICE_CASES = [
    ("plain ClusterIP", service(),
     dict(type="ClusterIP", cluster_ips=("10.96.0.10",),
          ports=(ServicePortView("http", 80, "TCP", 0),), proxied=True, errors=())),
    ("headless is not proxied", service(cluster_ip="None"),
     dict(cluster_ips=(), proxied=False)),
    ("ExternalName is not proxied",
     service(type="ExternalName", cluster_ip="", externalName="example.org"),
     dict(proxied=False)),
    ("NodePort keeps node ports", service(type="NodePort", ports=(("", 80, "UDP", 30053),)),
     dict(ports=(ServicePortView("", 80, "UDP", 30053),))),
    ("ClientIP affinity with default timeout", service(sessionAffinity="ClientIP"),
     dict(affinity_timeout_s=10800)),
    ("ClientIP affinity with timeout",
     service(sessionAffinity="ClientIP",
             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
     dict(affinity_timeout_s=60)),
    ("no affinity", service(sessionAffinity="None"), dict(affinity_timeout_s=0)),
    ("least-conn annotation", service(annotations={"meshnet.io/lb-policy": "least-conn"}),
     dict(lb_policy=LEAST_CONN, errors=())),
    ("unknown policy falls back with an error",
     service(annotations={"meshnet.io/lb-policy": "random"}),
     dict(lb_policy=ROUND_ROBIN,
          errors=("metadata.annotations[meshnet.io/lb-policy]: Unsupported value: 'random': "
                  "supported values: round-robin, least-conn; using round-robin",))),
    ("traffic policies", service(externalTrafficPolicy="Local", internalTrafficPolicy="Local"),
     dict(external_local=True, internal_local=True)),
    ("LB ingress IPs only for type LoadBalancer",
     service(type="LoadBalancer", lb_ips=("192.0.2.10",)), dict(lb_ips=("192.0.2.10",))),
    ("LB ingress ignored for ClusterIP", service(lb_ips=("192.0.2.10",)), dict(lb_ips=())),
    ("externalIPs", service(externalIPs=["198.51.100.7"]),
     dict(external_ips=("198.51.100.7",))),
    ("bad port is skipped with an error", service(ports=(("a", 70000, "TCP", 0),)),
     dict(ports=(), errors=("spec.ports[0].port: Invalid value: 70000",))),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in SERVICE_CASES],
                         ids=[c[0] for c in SERVICE_CASES])
def test_service_view(obj, expected):
    view = service_view(obj)
    for attr, value in expected.items():
        assert getattr(view, attr) == value, attr


def test_view_ignores_irrelevant_changes():
    a = service()
    b = service()
    b["metadata"]["labels"] = {"x": "y"}
    b["metadata"]["resourceVersion"] = "99"
    assert service_view(a) == service_view(b)


ENDPOINTS_CASES = [
    ("ready addresses only", endpoints(ready=(("10.0.0.2", "n1"),), not_ready=(("10.0.0.3", ""),)),
     (EndpointView("http", "TCP", "10.0.0.2", 8080, "n1"),)),
    ("every address times every port, sorted",
     endpoints(ready=(("10.0.0.3", ""), ("10.0.0.2", "")),
               ports=(("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
     (EndpointView("dns", "UDP", "10.0.0.2", 53), EndpointView("dns", "UDP", "10.0.0.3", 53),
      EndpointView("dns-tcp", "TCP", "10.0.0.2", 53),
      EndpointView("dns-tcp", "TCP", "10.0.0.3", 53))),
    ("no subsets", {"metadata": {"name": "x", "namespace": "d"}}, ()),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in ENDPOINTS_CASES],
                         ids=[c[0] for c in ENDPOINTS_CASES])
def test_endpoints_view(obj, expected):
    assert endpoints_view(obj).endpoints == expected
