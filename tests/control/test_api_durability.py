"""Nothing lost: SIGKILL mid-stream, watch resume across restarts, 410 after compaction,
and allocations that are never handed out twice."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import start_apiserver

CONVERGE_S = 15.0


class Raw:
    """A tiny HTTPS client for hammering the server from threads without client overhead."""

    def __init__(self, server):
        self.base = server.url
        self.headers = {"Authorization": f"Bearer {server.token}",
                        "Content-Type": "application/json"}
        self.ctx = ssl.create_default_context(cafile=server.ca)

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def server(tmp_path):
    srv = start_apiserver(tmp_path, ["--node-port-range", "30000-30999"])
    try:
        yield srv
    finally:
        srv.stop()


def _core(server) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def test_sigkill_during_creates_loses_nothing_and_never_reuses_addresses(server):
    acked_cms: list[str] = []
    acked_svcs: dict[str, tuple[str, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    raw = Raw(server)

    def writer(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            name = f"w{worker}-{i}"
            try:
                if i % 2:
                    code, body = raw.call("POST", "/api/v1/namespaces/default/configmaps",
                                          {"metadata": {"name": name}, "data": {"i": str(i)}})
                    if code == 201:
                        with lock:
                            acked_cms.append(name)
                else:
                    code, body = raw.call("POST", "/api/v1/namespaces/default/services", {
                        "metadata": {"name": name},
                        "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
                    if code == 201:
                        with lock:
                            acked_svcs[name] = (body["spec"]["clusterIP"],
                                                body["spec"]["ports"][0]["nodePort"])
            except (OSError, urllib.error.URLError):
                return  # the server died under us: this request was never acknowledged

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked_cms) + len(acked_svcs) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked_cms) + len(acked_svcs) >= 150

    server.start()
    core = _core(server)
    cms = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
    assert set(acked_cms) <= cms, f"lost: {sorted(set(acked_cms) - cms)[:10]}"
    svcs = {s.metadata.name: s for s in core.list_namespaced_service("default").items}
    assert set(acked_svcs) <= set(svcs)
    for name, (ip, port) in acked_svcs.items():
        assert (svcs[name].spec.cluster_ip, svcs[name].spec.ports[0].node_port) == (ip, port)

    # After the crash, new allocations never collide with what survived.
    for i in range(20):
        core.create_namespaced_service("default", {"metadata": {"name": f"after-{i}"}, "spec": {
            "type": "NodePort", "ports": [{"port": 80}]}})
    all_svcs = core.list_namespaced_service("default").items
    ips = [s.spec.cluster_ip for s in all_svcs]
    ports = [p.node_port for s in all_svcs for p in s.spec.ports if p.node_port]
    assert len(ips) == len(set(ips)) and len(ports) == len(set(ports))


def test_requested_cluster_ip_and_node_port(server):
    core = _core(server)
    core.create_namespaced_service("default", {"metadata": {"name": "fixed"}, "spec": {
        "type": "NodePort", "clusterIP": "10.96.5.5",
        "ports": [{"port": 80, "nodePort": 30080}]}})
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("default", {"metadata": {"name": "clash"}, "spec": {
            "type": "NodePort", "clusterIP": "10.96.5.5",
            "ports": [{"port": 80, "nodePort": 30080}]}})
    body = json.loads(exc.value.body)
    assert exc.value.status == 422
    assert {c["field"] for c in body["details"]["causes"]} >= {"spec.clusterIP"}
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("default", {"metadata": {"name": "outside"}, "spec": {
            "clusterIP": "192.168.1.1", "ports": [{"port": 80}]}})
    assert exc.value.status == 422 and "valid range" in json.loads(exc.value.body)["message"]
    # Deleting the service returns its address and port to the pool.
    core.delete_namespaced_service("fixed", "default")
    again = core.create_namespaced_service("default", {"metadata": {"name": "again"}, "spec": {
        "type": "NodePort", "clusterIP": "10.96.5.5", "ports": [{"port": 80, "nodePort": 30080}]}})
    assert again.spec.cluster_ip == "10.96.5.5"


def test_watch_resumes_across_restart(server):
    core = _core(server)
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "during-1"}})
    server.restart()
    core = _core(server)
    core.create_namespaced_config_map("default", {"metadata": {"name": "during-2"}})
    names = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                       timeout_seconds=5):
        names.append((ev["type"], ev["object"].metadata.name))
        if len(names) == 2:
            w.stop()
    assert names == [("ADDED", "during-1"), ("ADDED", "during-2")]


def test_watch_from_compacted_version_gets_410(tmp_path):
    server = start_apiserver(tmp_path, ["--watch-history-seconds", "0",
                                        "--watch-history-min-events", "1",
                                        "--compaction-interval-seconds", "0.2"])
    try:
        core = _core(server)
        old_rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        raw = Raw(server)
        deadline = time.monotonic() + CONVERGE_S
        status = None
        while time.monotonic() < deadline:
            req = urllib.request.Request(
                f"{server.url}/api/v1/namespaces/default/configmaps?watch=true"
                f"&resourceVersion={old_rv}&timeoutSeconds=1", headers=raw.headers)
            with urllib.request.urlopen(req, context=raw.ctx, timeout=10) as resp:
                first = resp.readline()
            event = json.loads(first) if first else {}
            if event.get("type") == "ERROR":
                status = event["object"]
                break
            time.sleep(0.2)  # compaction runs on its own timer in the server
        assert status is not None, "no 410 after compaction"
        assert (status["code"], status["reason"]) == (410, "Expired")
        # The Python client's watch raises the 410 as an ApiException, as against kube.
        with pytest.raises(ApiException) as exc:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          resource_version=old_rv, timeout_seconds=2):
                pass
        assert exc.value.status == 410
    finally:
        server.stop()


def test_bad_input_is_refused_and_server_keeps_serving(server):
    raw = Raw(server)
    big = {"metadata": {"name": "big"}, "data": {"x": "a" * (4 * 1024 * 1024)}}
    code, body = raw.call("POST", "/api/v1/namespaces/default/configmaps", big)
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge")

    req = urllib.request.Request(server.url + "/api/v1/namespaces/default/configmaps",
                                 data=b"{not json", method="POST", headers=raw.headers)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=raw.ctx)
    assert exc.value.code == 400
    assert json.loads(exc.value.read())["reason"] == "BadRequest"

    code, body = raw.call("POST", "/api/v1/namespaces/default/widgets", {"metadata": {}})
    assert code == 404

    code, body = raw.call("POST", "/api/v1/namespaces/default/services", {
        "metadata": {"name": "x"}, "spec": {"type": "Weird", "ports": [{"port": 0}]}})
    assert code == 422 and len(body["details"]["causes"]) >= 2
    code, _ = raw.call("GET", "/api/v1/namespaces/default/services/x")
    assert code == 404  # nothing half-created

    # A client that sends headers and then stalls mid-body does not block others.
    import socket

    stalled = socket.create_connection(("127.0.0.1", server.port))
    tls = ssl.create_default_context(cafile=server.ca).wrap_socket(
        stalled, server_hostname="127.0.0.1")
    tls.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + server.token.encode() +
                b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"met")
    try:
        start = time.monotonic()
        code, _ = raw.call("GET", "/api/v1/namespaces")
        assert code == 200 and time.monotonic() - start < 5
    finally:
        tls.close()


def test_bookmarks_and_table_output(tmp_path):
    server = start_apiserver(tmp_path, ["--watch-bookmark-interval-seconds", "0.2"])
    try:
        raw = Raw(server)
        code, listed = raw.call("GET", "/api/v1/namespaces/default/configmaps")
        rv = listed["metadata"]["resourceVersion"]
        raw.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "b1"}})
        req = urllib.request.Request(
            f"{server.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
            f"&allowWatchBookmarks=true&timeoutSeconds=1", headers=raw.headers)
        with urllib.request.urlopen(req, context=raw.ctx, timeout=10) as resp:
            events = [json.loads(line) for line in resp]
        types = [e["type"] for e in events]
        assert types[0] == "ADDED" and "BOOKMARK" in types
        bookmark = next(e for e in events if e["type"] == "BOOKMARK")
        assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(
            events[0]["object"]["metadata"]["resourceVersion"])

        table_headers = {**raw.headers,
                         "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        req = urllib.request.Request(f"{server.url}/api/v1/namespaces/kube-system/services",
                                     headers=table_headers)
        with urllib.request.urlopen(req, context=raw.ctx, timeout=10) as resp:
            table = json.loads(resp.read())
        assert table["kind"] == "Table"
        names = [c["name"] for c in table["columnDefinitions"]]
        assert names[:6] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
        row = table["rows"][0]["cells"]
        assert row[:5] == ["kube-dns", "ClusterIP", "10.96.0.10", "<none>",
                           "53/UDP,53/TCP,9153/TCP"]
    finally:
        server.stop()
