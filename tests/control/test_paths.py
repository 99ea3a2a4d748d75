"""Resource paths to RequestInfo, table-first."""

import pytest

from meshnet.api.errors import StatusError
from meshnet.control.apiserver.paths import parse_resource_path

CASES = [
    # (description, path, (plural, namespace, name, subresource))
    ("core list across namespaces", "/api/v1/pods", ("pods", None, None, None)),
    ("core namespaced list", "/api/v1/namespaces/default/pods", ("pods", "default", None, None)),
    ("core get", "/api/v1/namespaces/default/services/web",
     ("services", "default", "web", None)),
    ("status subresource", "/api/v1/namespaces/default/pods/web/status",
     ("pods", "default", "web", "status")),
    ("namespace object itself", "/api/v1/namespaces/default", ("namespaces", None, "default", None)),
    ("namespace list", "/api/v1/namespaces", ("namespaces", None, None, None)),
    ("namespace status", "/api/v1/namespaces/kube-system/status",
     ("namespaces", None, "kube-system", "status")),
    ("namespace finalize", "/api/v1/namespaces/x/finalize", ("namespaces", None, "x", "finalize")),
    ("cluster-scoped node", "/api/v1/nodes/n1", ("nodes", None, "n1", None)),
    ("group resource", "/apis/apps/v1/namespaces/prod/deployments/web/scale",
     ("deployments", "prod", "web", "scale")),
    ("group list all", "/apis/networking.k8s.io/v1/ingresses", ("ingresses", None, None, None)),
    ("cluster-scoped group", "/apis/networking.k8s.io/v1/ingressclasses/meshnet",
     ("ingressclasses", None, "meshnet", None)),
    ("trailing slash", "/api/v1/namespaces/default/configmaps/",
     ("configmaps", "default", None, None)),
]

BAD = [
    ("unknown resource", "/api/v1/namespaces/default/widgets"),
    ("unknown group", "/apis/example.com/v1/things"),
    ("wrong version", "/api/v2/pods"),
    ("unknown subresource", "/api/v1/namespaces/default/services/web/logs"),
    ("cluster-scoped kind under a namespace", "/api/v1/namespaces/default/nodes/n1"),
    ("too deep", "/api/v1/namespaces/default/pods/a/status/extra"),
    ("not an API path", "/healthz"),
]


@pytest.mark.parametrize("desc,path,want", CASES, ids=[c[0] for c in CASES])
def test_parse(desc, path, want):
    ri = parse_resource_path(path)
    assert (ri.info.plural, ri.namespace, ri.name, ri.subresource) == want


@pytest.mark.parametrize("desc,path", BAD, ids=[c[0] for c in BAD])
def test_parse_refuses(desc, path):
    with pytest.raises(StatusError) as exc:
        parse_resource_path(path)
    assert exc.value.code == 404
