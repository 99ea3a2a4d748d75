"""The REST client: paths, error decoding, and a round trip over TLS to a real API server."""

import json
import threading

import pytest

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError, ConfigError, ConnectionFailed
from meshnet.client.kubeconfig import ClusterConnection, Kubeconfig
from meshnet.client.rest import TABLE_ACCEPT, RestClient, resource_path


@pytest.mark.parametrize("kind,ns,name,sub,want", [
    ("svc", "default", None, None, "/api/v1/namespaces/default/services"),
    ("svc", None, None, None, "/api/v1/services"),
    ("svc", "default", "web", None, "/api/v1/namespaces/default/services/web"),
    ("deploy", "prod", "api", "scale", "/apis/apps/v1/namespaces/prod/deployments/api/scale"),
    ("ns", "ignored", "prod", None, "/api/v1/namespaces/prod"),
    ("ing", "a b", "x/y", None, "/apis/networking.k8s.io/v1/namespaces/a%20b/ingresses/x%2Fy"),
])
def test_resource_path(kind, ns, name, sub, want):
    assert resource_path(lookup(kind), ns, name, sub) == want


# (description, code, body, expected (code, reason, message))
ERRORS = [
    ("a Status body", 404, json.dumps({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
        "reason": "NotFound", "message": 'services "web" not found',
        "details": {"name": "web", "kind": "services"}}).encode(),
     (404, "NotFound", 'services "web" not found')),
    ("Invalid with causes", 422, json.dumps({
        "kind": "Status", "code": 422, "reason": "Invalid", "message": "x is invalid",
        "details": {"causes": [{"field": "spec.x", "message": "bad"}]}}).encode(),
     (422, "Invalid", "x is invalid")),
    ("a plain 404 (no Status)", 404, b"404 page not found",
     (404, "NotFound", "the server could not find the requested resource")),
    ("a plain 500 keeps the body", 500, b"boom",
     (500, "InternalError", 'an error on the server ("boom") has prevented the request from '
                            'succeeding')),
    ("an empty 403", 403, b"",
     (403, "Forbidden", "the server does not allow access to the requested resource")),
]


@pytest.mark.parametrize("desc,code,body,want", ERRORS, ids=[c[0] for c in ERRORS])
def test_api_error_from_response(desc, code, body, want):
    err = ApiError.from_response(code, body)
    assert (err.code, err.reason, err.message) == want


def test_invalid_causes_are_exposed():
    body = json.dumps({"kind": "Status", "code": 422, "reason": "Invalid", "message": "m",
                       "details": {"causes": [{"field": "f", "message": "bad"}]}}).encode()
    assert ApiError.from_response(422, body).causes == [{"field": "f", "message": "bad"}]


def test_bad_server_url_and_ca_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="invalid server URL"):
        RestClient(ClusterConnection(server="ftp://x"))
    bad_ca = tmp_path / "ca.crt"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="unable to load root certificates"):
        RestClient(ClusterConnection(server="https://127.0.0.1:1", ca_file=str(bad_ca)))


def test_refused_connection_wording():
    client = RestClient(ClusterConnection(server="https://127.0.0.1:1", insecure=True))
    with pytest.raises(ConnectionFailed) as e:
        client.get_json("/version")
    assert str(e.value) == ("The connection to the server 127.0.0.1:1 was refused - did you "
                            "specify the right host or port?")


@pytest.fixture(scope="module")
def client(apiserver):
    kc = Kubeconfig.load(str(apiserver.kubeconfig), env={})
    c = RestClient(kc.connection())
    yield c
    c.close()


def test_round_trip_against_the_real_server(client):
    cms = lookup("configmaps")
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rt"},
           "data": {"a": "1"}}
    created = client.create(cms, obj, "default")
    assert created["metadata"]["uid"]
    assert client.get(cms, "rt", "default")["data"] == {"a": "1"}
    patched = client.patch(cms, "rt", {"data": {"b": "2"}}, "default")
    assert patched["data"] == {"a": "1", "b": "2"}
    replaced = client.replace(cms, "rt", {**patched, "data": {"c": "3"}}, "default")
    assert replaced["data"] == {"c": "3"}
    with pytest.raises(ApiError) as e:
        client.create(cms, obj, "default")
    assert (e.value.code, e.value.reason) == (409, "AlreadyExists")
    table = client.list_all(cms, "default", accept=TABLE_ACCEPT, chunk=1)
    assert table["kind"] == "Table"
    assert "rt" in [r["cells"][0] for r in table["rows"]]
    client.delete(cms, "rt", "default", propagation_policy="Background")
    with pytest.raises(ApiError) as e:
        client.get(cms, "rt", "default")
    assert e.value.message == 'configmaps "rt" not found'


def test_list_follows_continue_tokens(client):
    cms = lookup("configmaps")
    for i in range(5):
        client.create(cms, {"metadata": {"name": f"page-{i}"}}, "default")
    listed = client.list_all(cms, "default", label_selector=None, chunk=2)
    names = [i["metadata"]["name"] for i in listed["items"]]
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(5)]
    assert "continue" not in listed["metadata"]


def test_watch_streams_events(client):
    cms = lookup("configmaps")
    listed = client.list(cms, "default")
    stream = client.watch(cms, "default", resource_version=listed["metadata"]["resourceVersion"])
    seen = []

    def consume():
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                return

    t = threading.Thread(target=consume)
    t.start()
    client.create(cms, {"metadata": {"name": "watched"}}, "default")
    client.delete(cms, "watched", "default")
    t.join(20)
    stream.close()
    assert seen == [("ADDED", "watched"), ("DELETED", "watched")]
