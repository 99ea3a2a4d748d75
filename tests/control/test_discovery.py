"""Discovery documents, checked against the kinds table and against what clients parse."""

from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiClient

from meshnet.api.resources import GROUPS, RESOURCES
from meshnet.control.apiserver import discovery


def _parse(doc: dict, model: str):
    """Decode a body the way the official Python client decodes a response of that model."""
    return ApiClient().deserialize(json.dumps(doc), model, "application/json")


def _entries(group: str, version: str) -> dict[str, dict]:
    return {r["name"]: r for r in discovery.api_resource_list(group, version)["resources"]}


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.qualified)
def test_every_kind_is_listed_with_its_names_and_verbs(info):
    entry = _entries(info.group, info.version)[info.plural]
    assert entry["kind"] == info.kind
    assert entry["singularName"] == info.singular
    assert entry["namespaced"] == info.namespaced
    assert entry["verbs"] == list(info.verbs)
    assert entry.get("shortNames", []) == list(info.short_names)
    assert entry.get("categories", []) == list(info.categories)
    assert entry["storageVersionHash"] == discovery.storage_version_hash(info)


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.qualified)
def test_every_subresource_is_listed_after_its_parent(info):
    names = [r["name"] for r in discovery.api_resource_list(info.group, info.version)
             ["resources"]]
    for sub in info.subresources:
        assert f"{info.plural}/{sub}" in names
        assert names.index(f"{info.plural}/{sub}") > names.index(info.plural)


SUBRESOURCE_CASES = [
    # (description, group, entry name, expected entry)
    ("status reports the parent kind and get/patch/update", "", "pods/status",
     {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
      "verbs": ["get", "patch", "update"]}),
    ("log is read-only and reports Pod", "", "pods/log",
     {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
      "verbs": ["get"]}),
    ("exec is PodExecOptions, create and get", "", "pods/exec",
     {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
      "verbs": ["create", "get"]}),
    ("scale names autoscaling/v1 Scale (kubectl scale decodes by it)", "apps",
     "deployments/scale",
     {"name": "deployments/scale", "singularName": "", "namespaced": True,
      "group": "autoscaling", "version": "v1", "kind": "Scale",
      "verbs": ["get", "patch", "update"]}),
    ("cluster-scoped status is not namespaced", "", "nodes/status",
     {"name": "nodes/status", "singularName": "", "namespaced": False, "kind": "Node",
      "verbs": ["get", "patch", "update"]}),
]


@pytest.mark.parametrize("description,group,name,expected", SUBRESOURCE_CASES,
                         ids=[c[0] for c in SUBRESOURCE_CASES])
def test_subresource_entries(description, group, name, expected):
    assert _entries(group, "v1")[name] == expected


STORAGE_HASH_CASES = [
    # Values a real kube-apiserver reports; equal hashes mean clients see the same storage.
    ("pods", "xPOwRZ+Yhw8="),
    ("services", "0/CO1lhkEBI="),
    ("events", "r2yiGXH7wu8="),
    ("deployments.apps", "8aSe+NMegvE="),
]


@pytest.mark.parametrize("qualified,expected", STORAGE_HASH_CASES,
                         ids=[c[0] for c in STORAGE_HASH_CASES])
def test_storage_version_hash_matches_kube(qualified, expected):
    info = next(r for r in RESOURCES if r.qualified == qualified)
    assert discovery.storage_version_hash(info) == expected


def test_api_versions_names_v1_and_the_server_address():
    doc = discovery.api_versions("127.0.0.1:6443")
    assert doc == {"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                   "serverAddress": "127.0.0.1:6443"}]}
    parsed = _parse(doc, "V1APIVersions")
    assert parsed.versions == ["v1"]


def test_group_list_has_every_named_group_with_a_preferred_version():
    doc = discovery.api_group_list()
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    assert [g["name"] for g in doc["groups"]] == list(GROUPS)
    assert "" not in [g["name"] for g in doc["groups"]]  # core is served at /api, not /apis
    for group in doc["groups"]:
        assert group["preferredVersion"] in group["versions"]
        for v in group["versions"]:
            assert v["groupVersion"] == f"{group['name']}/{v['version']}"
    parsed = _parse(doc, "V1APIGroupList")
    assert {g.name for g in parsed.groups} == set(GROUPS)


@pytest.mark.parametrize("group", GROUPS)
def test_api_group_document(group):
    doc = discovery.api_group(group)
    assert doc["kind"] == "APIGroup" and doc["name"] == group
    assert doc["preferredVersion"] == {"groupVersion": f"{group}/v1", "version": "v1"}
    assert _parse(doc, "V1APIGroup").name == group


NOT_SERVED_CASES = [
    ("unknown group", lambda: discovery.api_group("batch")),
    ("the core group is not a named group", lambda: discovery.api_group("")),
    ("unknown version of a served group", lambda: discovery.api_resource_list("apps", "v2")),
    ("unknown group's resources", lambda: discovery.api_resource_list("batch", "v1")),
    ("core at a version it does not have", lambda: discovery.api_resource_list("", "v2")),
]


@pytest.mark.parametrize("description,call", NOT_SERVED_CASES,
                         ids=[c[0] for c in NOT_SERVED_CASES])
def test_not_served_is_none(description, call):
    assert call() is None


@pytest.mark.parametrize("group,version", discovery.group_versions())
def test_resource_list_parses_with_the_official_client(group, version):
    doc = discovery.api_resource_list(group, version)
    assert doc["kind"] == "APIResourceList" and doc["apiVersion"] == "v1"
    assert doc["groupVersion"] == (f"{group}/{version}" if group else version)
    parsed = _parse(doc, "V1APIResourceList")
    assert {r.name for r in parsed.resources} == {r["name"] for r in doc["resources"]}


def test_group_versions_cover_every_kind_core_first():
    gvs = discovery.group_versions()
    assert gvs[0] == ("", "v1")
    assert {(r.group, r.version) for r in RESOURCES} == set(gvs)


def test_version_info_looks_like_kubernetes_1_30():
    info = discovery.version_info()
    assert (info["major"], info["minor"]) == ("1", "30")
    assert info["gitVersion"].startswith("v1.30.")
    assert info["platform"].count("/") == 1
    for key in ("gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler"):
        assert isinstance(info[key], str) and info[key]
    assert _parse(info, "VersionInfo").git_version == info["gitVersion"]


def test_unknown_subresource_error_says_where_to_add_it():
    info = RESOURCES[0]
    with pytest.raises(KeyError, match="_SUBRESOURCES"):
        discovery.subresource_entry(info, "proxy")


def test_documents_are_fresh_copies():
    doc = discovery.api_resource_list("", "v1")
    doc["resources"].clear()
    assert discovery.api_resource_list("", "v1")["resources"]
