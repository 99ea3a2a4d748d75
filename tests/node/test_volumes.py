"""Volumes: payload compilation, atomic publication, mounts, created mount points."""

import base64
import os

import pytest

from meshnet.node.errors import ConfigError
from meshnet.node.volumes import (MountTargets, compile_files, container_mounts, prepare_volumes,
                                  write_atomic)

CMS = {"app": {"a.conf": "A", "b.conf": "B"}}
BINS = {"app": {"blob": base64.b64encode(b"\x00\x01").decode()}}
SECRETS = {"tls": {"tls.key": base64.b64encode(b"KEY").decode()}}

FILES = [
    ("every ConfigMap key, binaryData too", {"configMap": {"name": "app"}},
     {"a.conf": b"A", "b.conf": b"B", "blob": b"\x00\x01"}),
    ("items pick keys and rename them", {"configMap": {"name": "app", "items": [
        {"key": "a.conf", "path": "conf/main.conf"}]}}, {"conf/main.conf": b"A"}),
    ("Secret values are decoded", {"secret": {"secretName": "tls"}}, {"tls.key": b"KEY"}),
    ("optional and missing is empty", {"configMap": {"name": "nope", "optional": True}}, {}),
    ("emptyDir has no payload", {"emptyDir": {}}, None),
    ("hostPath has no payload", {"hostPath": {"path": "/tmp"}}, None),
]


@pytest.mark.parametrize("desc,volume,expected", FILES, ids=[c[0] for c in FILES])
def test_compile_files(desc, volume, expected):
    assert compile_files({"name": "v", **volume}, CMS, SECRETS, BINS) == expected


ERRORS = [
    ("missing ConfigMap", {"configMap": {"name": "nope"}}, 'configmap "nope" not found'),
    ("missing Secret", {"secret": {"secretName": "nope"}}, 'secret "nope" not found'),
    ("missing item key", {"configMap": {"name": "app", "items": [{"key": "zz", "path": "z"}]}},
     "configmap references non-existent config key: zz"),
]


@pytest.mark.parametrize("desc,volume,message", ERRORS, ids=[c[0] for c in ERRORS])
def test_compile_errors(desc, volume, message):
    with pytest.raises(ConfigError, match=message):
        compile_files({"name": "v", **volume}, CMS, SECRETS, BINS)


def test_write_atomic_swaps_the_data_link(tmp_path):
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": b"1", "b": b"2"})
    first = os.readlink(target / "..data")
    assert (target / "a").read_bytes() == b"1" and os.readlink(target / "a") == "..data/a"
    assert not write_atomic(target, {"a": b"1", "b": b"2"}), "unchanged: no new generation"
    assert write_atomic(target, {"a": b"9"})
    assert os.readlink(target / "..data") != first
    assert not (target / first).exists(), "the old generation is removed"
    assert (target / "a").read_bytes() == b"9" and not (target / "b").exists()


def test_prepare_and_mount(tmp_path):
    spec = {"volumes": [{"name": "cfg", "configMap": {"name": "app"}},
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "host", "hostPath": {"path": str(tmp_path / "h"),
                                                      "type": "DirectoryOrCreate"}}]}
    prepare_volumes(tmp_path / "pod", spec, CMS, SECRETS, BINS)
    assert (tmp_path / "pod/volumes/cfg/a.conf").read_text() == "A"
    assert (tmp_path / "pod/volumes/scratch").is_dir() and (tmp_path / "h").is_dir()
    container = {"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                                  {"name": "scratch", "mountPath": "/data", "subPath": "x"},
                                  {"name": "host", "mountPath": "/h", "readOnly": True}]}
    assert container_mounts(tmp_path / "pod", spec, container) == [
        (str(tmp_path / "pod/volumes/cfg"), "/etc/app", True),
        (str(tmp_path / "pod/volumes/scratch/x"), "/data", False),
        (str(tmp_path / "h"), "/h", True)]
    with pytest.raises(ConfigError, match='volumeMount "nope" names no volume'):
        container_mounts(tmp_path / "pod", spec, {"volumeMounts": [{"name": "nope"}]})


def test_missing_host_path_is_a_config_error(tmp_path):
    spec = {"volumes": [{"name": "h", "hostPath": {"path": str(tmp_path / "absent")}}]}
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_volumes(tmp_path / "pod", spec, {}, {})


def test_mount_targets_removes_only_what_it_created_when_unused(tmp_path):
    existing = tmp_path / "etc"
    existing.mkdir()
    a, b = str(existing / "app/conf"), str(existing / "app/other")
    targets = MountTargets(tmp_path / "targets.json")
    targets.acquire([a])
    targets.acquire([a, b])
    targets.release([a])
    assert os.path.isdir(a), "still used by the second pod"
    targets.release([a, b])
    assert not (existing / "app").exists() and existing.is_dir()


def test_mount_targets_remembers_across_a_crash(tmp_path):
    state = tmp_path / "targets.json"
    MountTargets(state).acquire([str(tmp_path / "x/y")])
    restarted = MountTargets(state)  # no users: every old container is gone
    restarted.release_unused()
    assert not (tmp_path / "x").exists()
