"""The API server driven by the official `kubernetes` Python client, unchanged.

Covers create/get/list/patch/delete/watch for every kind (through the dynamic client, which
also exercises discovery), label and field selectors, Status bodies for 404/409/422, and the
typed APIs people use most.
"""

from __future__ import annotations

import base64
import json
import threading

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

NS = "crud"

# One minimal valid object per kind, and a merge patch that changes something visible.
# (kind, apiVersion, namespaced, body, patch, check(obj) after patch)
KINDS = [
    ("ConfigMap", "v1", True, {"data": {"a": "1"}}, {"data": {"b": "2"}},
     lambda o: o["data"] == {"a": "1", "b": "2"}),
    ("Secret", "v1", True, {"stringData": {"k": "v"}}, {"metadata": {"labels": {"x": "y"}}},
     lambda o: o["data"]["k"] == base64.b64encode(b"v").decode() and o["type"] == "Opaque"),
    ("Service", "v1", True, {"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}},
     {"spec": {"selector": {"app": "b"}}},
     lambda o: o["spec"]["selector"] == {"app": "b"} and o["spec"]["clusterIP"]),
    ("Endpoints", "v1", True, {"subsets": [{"addresses": [{"ip": "10.244.0.5"}],
                                            "ports": [{"port": 80}]}]},
     {"metadata": {"annotations": {"note": "x"}}},
     lambda o: o["subsets"][0]["addresses"][0]["ip"] == "10.244.0.5"),
    ("Pod", "v1", True, {"spec": {"containers": [{"name": "c", "image": "meshnet/echo"}]}},
     {"metadata": {"labels": {"tier": "web"}}},
     lambda o: o["metadata"]["labels"]["tier"] == "web" and o["status"]["phase"] == "Pending"),
    ("Event", "v1", True, {"involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
                           "reason": "Tested", "message": "hello", "type": "Normal"},
     {"message": "changed"}, lambda o: o["message"] == "changed"),
    ("Node", "v1", False, {"spec": {"podCIDR": "10.244.7.0/24"}},
     {"spec": {"unschedulable": True}}, lambda o: o["spec"]["unschedulable"] is True),
    ("Namespace", "v1", False, {}, {"metadata": {"labels": {"team": "a"}}},
     lambda o: o["metadata"]["labels"]["team"] == "a" and o["status"]["phase"] == "Active"),
    ("Deployment", "apps/v1", True, {"spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
     {"spec": {"replicas": 3}}, lambda o: o["spec"]["replicas"] == 3
     and o["metadata"]["generation"] == 2),
    ("ReplicaSet", "apps/v1", True, {"spec": {
        "selector": {"matchLabels": {"app": "r"}},
        "template": {"metadata": {"labels": {"app": "r"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
     {"spec": {"replicas": 2}}, lambda o: o["spec"]["replicas"] == 2),
    ("StatefulSet", "apps/v1", True, {"spec": {
        "serviceName": "s", "selector": {"matchLabels": {"app": "s"}},
        "template": {"metadata": {"labels": {"app": "s"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
     {"spec": {"replicas": 2}}, lambda o: o["spec"]["replicas"] == 2),
    ("Ingress", "networking.k8s.io/v1", True, {"spec": {"rules": [{"host": "a.example", "http": {
        "paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "web", "port": {"number": 80}}}}]}}]}},
     {"spec": {"ingressClassName": "meshnet"}},
     lambda o: o["spec"]["ingressClassName"] == "meshnet"),
    ("IngressClass", "networking.k8s.io/v1", False,
     {"spec": {"controller": "example.com/ingress"}},
     {"metadata": {"annotations": {"a": "b"}}}, lambda o: o["metadata"]["annotations"]["a"] == "b"),
    ("Lease", "coordination.k8s.io/v1", True, {"spec": {"holderIdentity": "me",
                                                       "leaseDurationSeconds": 15}},
     {"spec": {"holderIdentity": "you"}}, lambda o: o["spec"]["holderIdentity"] == "you"),
]


@pytest.fixture(scope="module")
def dyn(k8s):
    return dynamic.DynamicClient(k8s)


@pytest.fixture(scope="module")
def core(k8s):
    api = client.CoreV1Api(k8s)
    api.create_namespace({"metadata": {"name": NS}})
    return api


@pytest.mark.parametrize("kind,api_version,namespaced,body,patch,check", KINDS,
                         ids=[k[0] for k in KINDS])
def test_crud_every_kind(dyn, core, kind, api_version, namespaced, body, patch, check):
    res = dyn.resources.get(api_version=api_version, kind=kind)
    name = f"t-{kind.lower()}"
    ns = NS if namespaced else None
    obj = {"apiVersion": api_version, "kind": kind,
           "metadata": {"name": name, "labels": {"suite": "crud"}}, **body}

    created = res.create(body=obj, namespace=ns).to_dict()
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    assert created["metadata"]["creationTimestamp"]

    got = res.get(name=name, namespace=ns).to_dict()
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    listed = res.get(namespace=ns, label_selector="suite=crud").to_dict()
    assert name in [i["metadata"]["name"] for i in listed["items"]]
    by_field = res.get(namespace=ns, field_selector=f"metadata.name={name}").to_dict()
    assert [i["metadata"]["name"] for i in by_field["items"]] == [name]

    patched = res.patch(name=name, namespace=ns, body=patch,
                        content_type="application/merge-patch+json").to_dict()
    assert check(patched), patched
    assert int(patched["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"])

    with pytest.raises(ApiException) as exc:
        res.create(body=obj, namespace=ns)
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["reason"] == "AlreadyExists"

    res.delete(name=name, namespace=ns)
    if kind == "Namespace":
        return  # goes through Terminating; covered by test_namespace_deletion
    with pytest.raises(ApiException) as exc:
        res.get(name=name, namespace=ns)
    assert exc.value.status == 404


def test_status_bodies(core):
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("nope", NS)
    body = json.loads(exc.value.body)
    assert (exc.value.status, body["kind"], body["reason"], body["message"]) == (
        404, "Status", "NotFound", 'services "nope" not found')

    bad = {"metadata": {"name": "Bad_Name"},
           "spec": {"ports": [{"port": 70000}, {"port": 80, "protocol": "XTP"}]}}
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(NS, bad)
    body = json.loads(exc.value.body)
    assert exc.value.status == 422 and body["reason"] == "Invalid"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"metadata.name", "spec.ports[0].port", "spec.ports[1].protocol"} <= fields
    assert "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535" in body[
        "message"]


def test_optimistic_concurrency(core):
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "occ"}, "data": {"v": "1"}})
    cm.data = {"v": "2"}
    core.replace_namespaced_config_map("occ", NS, cm)
    cm.data = {"v": "3"}  # still carries the first resourceVersion
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("occ", NS, cm)
    body = json.loads(exc.value.body)
    assert exc.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_strategic_merge_patch_from_typed_client(k8s, core):
    apps = client.AppsV1Api(k8s)
    dep = {"metadata": {"name": "smp"}, "spec": {
        "selector": {"matchLabels": {"app": "smp"}},
        "template": {"metadata": {"labels": {"app": "smp"}}, "spec": {"containers": [
            {"name": "a", "image": "img:1"}, {"name": "b", "image": "other:1"}]}}}}
    apps.create_namespaced_deployment(NS, dep)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "img:2"}]}}}}
    out = apps.patch_namespaced_deployment("smp", NS, patch)  # strategic merge by default
    images = {c.name: c.image for c in out.spec.template.spec.containers}
    assert images == {"a": "img:2", "b": "other:1"}


def test_label_selector_grammar(core):
    for name, labels in [("s1", {"env": "prod", "tier": "web"}), ("s2", {"env": "dev"}),
                         ("s3", {"tier": "db"})]:
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels}})
    cases = [
        ("env=prod", {"s1"}), ("env!=prod", {"s2", "s3"}), ("env in (prod,dev)", {"s1", "s2"}),
        ("env notin (prod)", {"s2", "s3"}), ("tier", {"s1", "s3"}), ("!tier", {"s2"}),
        ("env=prod,tier=web", {"s1"}),
    ]
    for selector, want in cases:
        items = core.list_namespaced_config_map(NS, label_selector=selector).items
        got = {i.metadata.name for i in items} & {"s1", "s2", "s3"}
        assert got == want, selector
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(NS, label_selector="env in (")
    assert exc.value.status == 400


def test_pod_field_selectors(core):
    for name, node in [("fp1", "n1"), ("fp2", "n2")]:
        core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
    pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n2").items
    assert [p.metadata.name for p in pods] == ["fp2"]
    pods = core.list_namespaced_pod(NS, field_selector="status.phase=Pending,"
                                                       "metadata.name!=fp2").items
    assert "fp1" in [p.metadata.name for p in pods] and "fp2" not in [
        p.metadata.name for p in pods]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod(NS, field_selector="spec.bogus=1")
    assert exc.value.status == 400


def test_watch_streams_events(core):
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def run():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, NS, resource_version=rv,
                           timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 3:
                w.stop()
        done.set()

    t = threading.Thread(target=run)
    t.start()
    core.create_namespaced_config_map(NS, {"metadata": {"name": "w1"}})
    core.patch_namespaced_config_map("w1", NS, {"data": {"a": "b"}})
    core.delete_namespaced_config_map("w1", NS)
    assert done.wait(15)
    t.join()
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_ends_at_timeout(core):
    w = watch.Watch()
    events = list(w.stream(core.list_namespaced_secret, NS, timeout_seconds=1,
                           resource_version=core.list_namespaced_secret(NS).metadata
                           .resource_version))
    assert events == []


def test_bootstrap_objects(core):
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    k = core.read_namespaced_service("kubernetes", "default")
    assert k.spec.cluster_ip == "10.96.0.1" and k.spec.ports[0].port == 443
    dns = core.read_namespaced_service("kube-dns", "kube-system")
    assert dns.spec.cluster_ip == "10.96.0.10"
    assert {(p.name, p.port, p.protocol) for p in dns.spec.ports} == {
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}


def test_unauthorized_without_token(apiserver):
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=apiserver.ca)
    req = urllib.request.Request(apiserver.url + "/api/v1/namespaces")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx)
    body = json.loads(exc.value.read())
    assert exc.value.code == 401 and body["reason"] == "Unauthorized"
