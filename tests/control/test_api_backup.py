"""Disaster recovery end to end: `meshctl backup` from a running API server and
`meshctl restore` into a fresh control plane, across backends (SQLite -> etcd -> SQLite),
with real processes and the official client.

- A backup taken while writes go on is the store at exactly one revision.
- After a restore every object is back with the same uid and contents, ClusterIPs and
  NodePorts stay allocated, resourceVersions are above the old ones and a watch from an old
  one gets 410.
- Only system:masters may take a snapshot; a broken file or a store that is not empty is
  refused with a clear error and leaves the store as it was.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import start_apiserver
from etcd_server import etcd_fixture
from meshnet.control.store import KeyValue, encode_snapshot

BIN = Path(sys.executable).parent
WATCH_TIMEOUT_S = 5
CONFIGMAPS = "/registry/core/configmaps/default/"
_prefixes = itertools.count()


etcd = etcd_fixture()


def etcd_store(etcd) -> str:
    return f"{etcd.url}?prefix=/api-backup-{next(_prefixes):04d}"


def meshctl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "meshctl"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def _core(server) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def read_snapshot_file(path: Path) -> tuple[dict, dict[str, dict]]:
    lines = path.read_bytes().splitlines()
    return json.loads(lines[0]), {r["key"]: r for r in map(json.loads, lines[1:-1])}


def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_a_backup_while_writes_go_on_is_one_revision(tmp_path, request, kind):
    args = [] if kind == "sqlite" else ["--store", etcd_store(request.getfixturevalue("etcd"))]
    server = start_apiserver(tmp_path, args)
    created: dict[str, int] = {}  # name -> resourceVersion of its create / of its update
    updated: dict[str, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        core = _core(server)
        try:
            for i in itertools.count():
                if stop.is_set():
                    return
                cm = core.create_namespaced_config_map(
                    "default", {"metadata": {"name": f"cm-{i:04d}"}, "data": {"v": "1"}})
                created[cm.metadata.name] = int(cm.metadata.resource_version)
                if i:  # every object but the newest is changed once: v goes 1 -> 2
                    cm = core.patch_namespaced_config_map(f"cm-{i - 1:04d}", "default",
                                                          {"data": {"v": "2"}})
                    updated[cm.metadata.name] = int(cm.metadata.resource_version)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: len(created) >= 20 or errors, "20 writes")
        out = meshctl("--kubeconfig", server.kubeconfig, "backup", tmp_path / "b.snapshot")
        during = len(created)
        wait_for(lambda: len(created) >= during + 10 or errors, "writes after the backup")
    finally:
        stop.set()
        thread.join(30)
        server.stop()
    assert not errors, errors
    assert out.returncode == 0, out.stderr
    header, records = read_snapshot_file(tmp_path / "b.snapshot")
    at = header["revision"]
    assert f"Snapshot of revision {at} ({len(records)} keys" in out.stdout
    assert min(created.values()) < at < max(created.values()), "not taken during the writes"
    # Exactly the store at `at`: every write up to it, none after it, across all keys.
    expected = {name: "2" if updated.get(name, at + 1) <= at else "1"
                for name, rv in created.items() if rv <= at}
    got = {key[len(CONFIGMAPS):]: json.loads(r["value"])["data"]["v"]
           for key, r in records.items() if key.startswith(CONFIGMAPS)}
    assert got == expected
    assert max(r["modRevision"] for r in records.values()) <= at


def _make_objects(core) -> dict:
    web = core.create_namespaced_service("default", {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    nodeport = core.create_namespaced_service("default", {
        "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "selector": {"app": "np"}, "ports": [{"port": 80}]}})
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"},
                                                       "data": {"k": "v"}})
    return {"web": web, "np": nodeport, "cfg": cm}


def _check_restored(core, before: dict, old_rv: str) -> str:
    """Everything back, allocations held, resourceVersions moved on; returns a current RV."""
    web = core.read_namespaced_service("web", "default")
    nodeport = core.read_namespaced_service("np", "default")
    cm = core.read_namespaced_config_map("cfg", "default")
    assert (web.metadata.uid, web.spec.cluster_ip) == (before["web"].metadata.uid,
                                                       before["web"].spec.cluster_ip)
    assert nodeport.spec.ports[0].node_port == before["np"].spec.ports[0].node_port
    assert (cm.metadata.uid, cm.data) == (before["cfg"].metadata.uid, {"k": "v"})
    listed = core.list_namespaced_config_map("default").metadata.resource_version
    assert int(cm.metadata.resource_version) > int(old_rv)
    assert int(listed) > int(old_rv)
    # A watch from a resourceVersion of the old control plane: 410, so the client relists.
    with pytest.raises(ApiException) as info:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                      resource_version=old_rv,
                                      timeout_seconds=WATCH_TIMEOUT_S):
            pass
    assert info.value.status == 410
    # The restored range keys still hold the ClusterIP and the NodePort.
    for spec, message in (
            ({"clusterIP": web.spec.cluster_ip, "ports": [{"port": 80}]}, "already allocated"),
            ({"type": "NodePort", "ports": [{"port": 80,
                                             "nodePort": nodeport.spec.ports[0].node_port}]},
             "already allocated")):
        with pytest.raises(ApiException) as info:
            core.create_namespaced_service("default", {"metadata": {"name": "dup"},
                                                       "spec": spec})
        assert info.value.status == 422 and message in info.value.body
    fresh = core.create_namespaced_service("default", {"metadata": {"name": f"new-{old_rv}"},
                                                       "spec": {"ports": [{"port": 80}]}})
    assert fresh.spec.cluster_ip not in (web.spec.cluster_ip, nodeport.spec.cluster_ip)
    return listed


def _backup(server, path: Path) -> int:
    out = meshctl("--kubeconfig", server.kubeconfig, "backup", path)
    assert out.returncode == 0, out.stderr
    return read_snapshot_file(path)[0]["revision"]


def test_restore_sqlite_to_etcd_and_back(tmp_path, etcd):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = start_apiserver(tmp_path / "a")
    try:
        core = _core(first)
        before = _make_objects(core)
        old_rv = core.list_namespaced_config_map("default").metadata.resource_version
        taken = _backup(first, tmp_path / "a.snapshot")
    finally:
        first.stop()  # the disaster: this control plane and its store are gone

    store = etcd_store(etcd)
    out = meshctl("restore", tmp_path / "a.snapshot", "--store", store)
    assert out.returncode == 0, out.stderr
    assert f"taken at revision {taken}" in out.stdout and "410 Gone" in out.stdout
    second = start_apiserver(tmp_path / "b", ["--store", store])
    try:
        core = _core(second)
        etcd_rv = _check_restored(core, before, old_rv)
        _backup(second, tmp_path / "b.snapshot")
    finally:
        second.stop()

    out = meshctl("restore", tmp_path / "b.snapshot", "--data-dir", tmp_path / "c",
                  "--bump-revision", "5000")
    assert out.returncode == 0, out.stderr
    third = start_apiserver(tmp_path / "c")
    try:
        _check_restored(_core(third), before, etcd_rv)
    finally:
        third.stop()


def test_only_system_masters_may_take_a_snapshot(tmp_path):
    # Pre-written token file: the admin (system:masters) and a user without that group.
    (tmp_path / "tokens.csv").write_text('admin-token,admin,1,"system:masters"\n'
                                         'viewer-token,viewer,2,"developers,testers"\n')
    server = start_apiserver(tmp_path)
    try:
        out = meshctl("--kubeconfig", server.kubeconfig, "--token", "viewer-token", "backup",
                      tmp_path / "v.snapshot")
        assert out.returncode == 1
        assert out.stderr.strip() == (
            'Error from server (Forbidden): User "viewer" cannot get path '
            '"/meshnet/v1/snapshot": a store snapshot needs a user in the group system:masters')
        assert not (tmp_path / "v.snapshot").exists()
        assert not (tmp_path / "v.snapshot.partial").exists()
        out = meshctl("--kubeconfig", server.kubeconfig, "--token", "wrong", "backup",
                      tmp_path / "v.snapshot")
        assert out.returncode == 1 and "must be logged in" in out.stderr
        out = meshctl("--kubeconfig", server.kubeconfig, "--token", "admin-token", "backup", "-")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[0])["kind"] == "MeshnetStoreSnapshot"
    finally:
        server.stop()


def _snapshot(path: Path, n: int = 3) -> Path:
    kvs = [KeyValue(f"{CONFIGMAPS}c{i}", b'{"kind":"ConfigMap"}', 1, 1) for i in range(n)]
    path.write_bytes(b"".join(encode_snapshot(kvs, 1, 0)))
    return path


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_restore_refuses_a_broken_file_and_a_store_in_use(tmp_path, request, kind):
    target = (["--data-dir", tmp_path / "new"] if kind == "sqlite"
              else ["--store", etcd_store(request.getfixturevalue("etcd"))])
    good = _snapshot(tmp_path / "good.snapshot")
    lines = good.read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.snapshot"
    broken.write_bytes(b"".join(lines[:2] + [lines[2][:30]]))  # an interrupted copy
    out = meshctl("restore", broken, *target)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: restore failed: {broken}:3: the line is cut off (no "
                                  "end of line): the file is truncated (an interrupted backup "
                                  "or copy?)")
    if kind == "sqlite":
        assert not (tmp_path / "new").exists(), "the store was touched"
    # The store is as empty as before: the good file restores into it; a second time, no.
    out = meshctl("restore", good, *target)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"restored 3 keys from {good}")
    out = meshctl("restore", good, *target)
    assert out.returncode == 1 and "is not empty (3 keys" in out.stderr
