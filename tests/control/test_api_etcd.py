"""meshnet-apiserver on a real etcd (`--store etcd://...`), driven by the official client:
CRUD with optimistic concurrency, watch resume across an API server restart, 410 after
compaction, and two API servers sharing one etcd."""

from __future__ import annotations

import itertools
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import start_apiserver
from etcd_server import etcd_fixture

WATCH_TIMEOUT_S = 10

_prefixes = itertools.count()


etcd = etcd_fixture()


@pytest.fixture
def store_url(etcd):
    """A key prefix of its own per test: each test sees a fresh cluster's objects."""
    return f"{etcd.url}?prefix=/api-{next(_prefixes):04d}"


@pytest.fixture
def server(tmp_path, store_url):
    srv = start_apiserver(tmp_path, ["--store", store_url])
    try:
        yield srv
    finally:
        srv.stop()


def _core(server) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def _events(core, namespace: str, resource_version: str, n: int) -> list[tuple[str, str]]:
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace,
                       resource_version=resource_version, timeout_seconds=WATCH_TIMEOUT_S):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == n:
            w.stop()
    return seen


def test_crud_and_optimistic_concurrency(server):
    core = _core(server)
    created = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm"}, "data": {"k": "1"}})
    rv = created.metadata.resource_version
    got = core.read_namespaced_config_map("cm", "default")
    assert (got.data, got.metadata.resource_version) == ({"k": "1"}, rv)

    got.data = {"k": "2"}
    updated = core.replace_namespaced_config_map("cm", "default", got)
    assert int(updated.metadata.resource_version) > int(rv)
    got.data = {"k": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("cm", "default", got)
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    assert exc.value.status == 409

    listed = core.list_namespaced_config_map("default")
    assert [cm.metadata.name for cm in listed.items] == ["cm"]
    assert int(listed.metadata.resource_version) >= int(updated.metadata.resource_version)
    core.delete_namespaced_config_map("cm", "default")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("cm", "default")
    assert exc.value.status == 404


def test_watch_resumes_across_restart(server):
    core = _core(server)
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "during-1"}})
    server.restart(kill=True)
    core = _core(server)
    core.create_namespaced_config_map("default", {"metadata": {"name": "during-2"}})
    core.delete_namespaced_config_map("before", "default")
    assert _events(core, "default", rv, 3) == [
        ("ADDED", "during-1"), ("ADDED", "during-2"), ("DELETED", "before")]


def test_watch_from_compacted_version_gets_410(tmp_path, store_url):
    server = start_apiserver(tmp_path, ["--store", store_url,
                                        "--watch-history-seconds", "0",
                                        "--watch-history-min-events", "1",
                                        "--compaction-interval-seconds", "0.2"])
    try:
        core = _core(server)
        old_rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        # Compaction runs on the server's own timer; the watch must end in 410 once it did.
        status = None
        for _ in range(50):
            try:
                _events(core, "default", old_rv, 5)
            except ApiException as exc:
                status = exc.status
                break
            time.sleep(0.2)  # compaction runs on its own timer in the server
        assert status == 410, "no 410 after compaction"
    finally:
        server.stop()


def test_two_api_servers_share_one_etcd(tmp_path, store_url):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = start_apiserver(tmp_path / "a", ["--store", store_url])
    second = start_apiserver(tmp_path / "b", ["--store", store_url])
    try:
        a, b = _core(first), _core(second)
        rv = b.list_namespaced_config_map("default").metadata.resource_version
        made = a.create_namespaced_config_map("default", {"metadata": {"name": "from-a"}})
        got = b.read_namespaced_config_map("from-a", "default")
        assert got.metadata.resource_version == made.metadata.resource_version
        assert _events(b, "default", rv, 1) == [("ADDED", "from-a")]
        # A write through one server makes the other's copy stale: 409, not a lost update.
        a.replace_namespaced_config_map("from-a", "default",
                                        {"metadata": {"name": "from-a"}, "data": {"by": "a"}})
        got.data = {"by": "b"}
        with pytest.raises(ApiException) as exc:
            b.replace_namespaced_config_map("from-a", "default", got)
        assert exc.value.status == 409
    finally:
        first.stop()
        second.stop()


def test_watch_ends_with_an_error_event_when_the_store_fails(tmp_path):
    """A store failure under an open watch stream ends it with an ERROR event (code 500), as
    kube-apiserver does; it must never leave the client waiting on a silent stream."""
    import json
    import ssl
    import urllib.request

    from etcd_server import start_etcd

    (tmp_path / "etcd").mkdir()
    cluster = start_etcd(tmp_path / "etcd")
    srv = start_apiserver(tmp_path, ["--store", f"{cluster.url}?prefix=/dies"])
    try:
        core = _core(srv)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        ctx = ssl.create_default_context(cafile=srv.ca)
        req = urllib.request.Request(
            f"{srv.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"
            f"&timeoutSeconds=120", headers={"Authorization": f"Bearer {srv.token}"})
        stream = urllib.request.urlopen(req, context=ctx, timeout=60)
        time.sleep(0.5)
        cluster.members[0].kill()
        started = time.monotonic()
        lines = [json.loads(line) for line in stream if line.strip()]
        took = time.monotonic() - started
        errors = [e for e in lines if e["type"] == "ERROR"]
        assert errors and errors[-1]["object"]["code"] == 500, lines
        assert "list and watch again" in errors[-1]["object"]["message"]
        assert took < 45, f"the stream ended {took:.0f} s after the store died"
    finally:
        srv.stop()
        cluster.stop()
