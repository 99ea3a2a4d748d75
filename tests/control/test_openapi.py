"""OpenAPI documents: what kubectl reads from them, checked the way kubectl reads it."""

from __future__ import annotations

import copy
import json
import re

import pytest

from meshnet.api.resources import RESOURCES
from meshnet.control.apiserver import discovery, openapi

GVS = discovery.group_versions()
PATCH_VERIFIED_PARAM = "fieldValidation"


def _doc(group: str, version: str) -> dict:
    return openapi.openapi_v3_document(group, version)


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                yield path, method, item[method]


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _supports_field_validation(doc: dict, gvk: tuple[str, str, str]) -> bool | None:
    """client-go's queryParamVerifierV3.supportsQueryParamV3, ported.

    None: no PATCH operation for the GVK (kubectl errors, then falls back to OpenAPI v2).
    Otherwise whether the first PATCH operation found for the GVK takes the parameter. Go
    iterates a map, so any PATCH of the GVK may come first: check them all.
    """
    group, version, kind = gvk
    verdicts = []
    for _, method, op in _operations(doc):
        ext = op.get("x-kubernetes-group-version-kind")
        if method != "patch" or ext != {"group": group, "version": version, "kind": kind}:
            continue
        verdicts.append(any(p["name"] == PATCH_VERIFIED_PARAM and p["in"] == "query"
                            for p in op["parameters"]))
    return None if not verdicts else all(verdicts)


def test_root_lists_every_group_version_with_its_hash():
    root = openapi.openapi_v3_root()
    assert set(root) == {"paths"}
    expected = {openapi.api_path(g, v) for g, v in GVS}
    assert set(root["paths"]) == expected
    for (group, version) in GVS:
        url = root["paths"][openapi.api_path(group, version)]["serverRelativeURL"]
        digest = openapi.document_hash(_doc(group, version))
        assert url == f"/openapi/v3/{openapi.api_path(group, version)}?hash={digest}"
        # client-go keeps the client prefix only for URLs rooted at /openapi/v3.
        assert url.startswith("/openapi/v3/")


API_PATH_CASES = [
    ("core group", "", "v1", "api/v1"),
    ("named group", "apps", "v1", "apis/apps/v1"),
    ("dotted group", "networking.k8s.io", "v1", "apis/networking.k8s.io/v1"),
]


@pytest.mark.parametrize("description,group,version,expected", API_PATH_CASES,
                         ids=[c[0] for c in API_PATH_CASES])
def test_api_path(description, group, version, expected):
    assert openapi.api_path(group, version) == expected


def test_hash_is_stable_and_follows_content():
    doc = _doc("apps", "v1")
    assert openapi.document_hash(doc) == openapi.document_hash(copy.deepcopy(doc))
    changed = copy.deepcopy(doc)
    changed["info"]["version"] += "x"
    assert openapi.document_hash(changed) != openapi.document_hash(doc)
    assert re.fullmatch(r"[0-9A-F]{64}", openapi.document_hash(doc))


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.qualified)
def test_every_kind_supports_server_side_field_validation(info):
    doc = _doc(info.group, info.version)
    assert _supports_field_validation(doc, (info.group, info.version, info.kind)) is True


def test_scale_subresource_supports_field_validation():
    assert _supports_field_validation(_doc("apps", "v1"), openapi.SCALE_GVK) is True


@pytest.mark.parametrize("group,version", GVS)
def test_every_write_takes_field_validation(group, version):
    for path, method, op in _operations(_doc(group, version)):
        if method in ("post", "put", "patch") and op["x-kubernetes-action"] != "connect":
            names = [p["name"] for p in op["parameters"]]
            assert PATCH_VERIFIED_PARAM in names, f"{method.upper()} {path}"


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.qualified)
def test_every_kind_and_list_has_a_schema_with_its_gvk(info):
    schemas = _doc(info.group, info.version)["components"]["schemas"]
    for kind in (info.kind, info.list_kind):
        name = openapi.schema_name(info.group, info.version, kind)
        gvks = schemas[name]["x-kubernetes-group-version-kind"]
        assert {"group": info.group, "version": info.version, "kind": kind} in gvks
        assert schemas[name]["type"] == "object"
        assert {"apiVersion", "kind", "metadata"} <= set(schemas[name]["properties"])


SCHEMA_NAME_CASES = [
    ("core kinds live under core", "", "v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("apps", "apps", "v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("dotted groups use their first label", "networking.k8s.io", "v1", "Ingress",
     "io.k8s.api.networking.v1.Ingress"),
    ("coordination", "coordination.k8s.io", "v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
]


@pytest.mark.parametrize("description,group,version,kind,expected", SCHEMA_NAME_CASES,
                         ids=[c[0] for c in SCHEMA_NAME_CASES])
def test_schema_names_follow_kube_openapi(description, group, version, kind, expected):
    assert openapi.schema_name(group, version, kind) == expected


TOP_FIELD_CASES = [
    # (description, kind, fields that must be described, fields that must not)
    ("pods have spec and status", "Pod", {"spec", "status"}, {"data"}),
    ("configmaps have data, not spec", "ConfigMap", {"data", "binaryData", "immutable"},
     {"spec", "status"}),
    ("secrets have data, stringData and type", "Secret", {"data", "stringData", "type"},
     {"spec"}),
    ("endpoints have subsets", "Endpoints", {"subsets"}, {"spec"}),
    ("events have their flat fields", "Event", {"involvedObject", "reason", "message", "count"},
     {"spec"}),
    ("leases have a spec and no status subresource", "Lease", {"spec"}, {"status"}),
]


@pytest.mark.parametrize("description,kind,present,absent", TOP_FIELD_CASES,
                         ids=[c[0] for c in TOP_FIELD_CASES])
def test_kind_top_level_fields(description, kind, present, absent):
    info = next(r for r in RESOURCES if r.kind == kind)
    schema = _doc(info.group, info.version)["components"]["schemas"][
        openapi.schema_name(info.group, info.version, kind)]
    props = set(schema["properties"])
    assert present <= props and not (absent & props)


@pytest.mark.parametrize("group,version", GVS)
def test_every_reference_resolves(group, version):
    doc = _doc(group, version)
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix) and ref[len(prefix):] in schemas, ref


@pytest.mark.parametrize("group,version", GVS)
def test_operations_are_well_formed(group, version):
    """What kube-openapi's spec3 decoder needs, and kubectl's extension lookups expect."""
    doc = _doc(group, version)
    assert doc["openapi"].startswith("3.0")
    ids = []
    for path, method, op in _operations(doc):
        ids.append(op["operationId"])
        gvk = op["x-kubernetes-group-version-kind"]
        assert isinstance(gvk, dict) and set(gvk) == {"group", "version", "kind"}
        assert op["x-kubernetes-action"] in ("get", "list", "post", "put", "patch", "delete",
                                             "deletecollection", "connect")
        for code in op["responses"]:
            assert code.isdigit(), f"{method} {path}: response key {code!r}"
        for param in op["parameters"] + doc["paths"][path]["parameters"]:
            assert {"name", "in", "schema"} <= set(param)
            assert param["in"] in ("query", "path")
        placeholders = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in doc["paths"][path]["parameters"] if p["in"] == "path"}
        assert placeholders == declared, path
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    json.dumps(doc)  # JSON-ready: no tuples, sets or other non-JSON values


def test_patch_does_not_offer_strategic_merge():
    """Permissive schemas carry no merge keys: kubectl must use its built-in types instead."""
    for group, version in GVS:
        for path, method, op in _operations(_doc(group, version)):
            if method == "patch":
                content = op["requestBody"]["content"]
                assert "application/strategic-merge-patch+json" not in content, path
                assert "application/merge-patch+json" in content


PATH_CASES = [
    # (description, group, path, methods)
    ("namespaced collection", "", "/api/v1/namespaces/{namespace}/pods", {"get", "post",
                                                                          "delete"}),
    ("namespaced item", "", "/api/v1/namespaces/{namespace}/pods/{name}",
     {"get", "put", "patch", "delete"}),
    ("list across namespaces", "", "/api/v1/pods", {"get"}),
    ("cluster-scoped collection", "", "/api/v1/nodes", {"get", "post", "delete"}),
    ("namespaces have no deletecollection", "", "/api/v1/namespaces", {"get", "post"}),
    ("status subresource", "", "/api/v1/namespaces/{namespace}/services/{name}/status",
     {"get", "put", "patch"}),
    ("log subresource", "", "/api/v1/namespaces/{namespace}/pods/{name}/log", {"get"}),
    ("exec subresource", "", "/api/v1/namespaces/{namespace}/pods/{name}/exec",
     {"get", "post"}),
    ("namespace finalize", "", "/api/v1/namespaces/{name}/finalize", {"put"}),
    ("scale subresource", "apps",
     "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", {"get", "put", "patch"}),
    ("dotted group path", "networking.k8s.io",
     "/apis/networking.k8s.io/v1/ingressclasses/{name}", {"get", "put", "patch", "delete"}),
]


@pytest.mark.parametrize("description,group,path,methods", PATH_CASES,
                         ids=[c[0] for c in PATH_CASES])
def test_paths(description, group, path, methods):
    item = _doc(group, "v1")["paths"][path]
    assert set(item) - {"parameters"} == methods


def test_scale_operations_name_autoscaling_scale():
    item = _doc("apps", "v1")["paths"][
        "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}/scale"]
    for method in ("get", "put", "patch"):
        assert item[method]["x-kubernetes-group-version-kind"] == {
            "group": "autoscaling", "version": "v1", "kind": "Scale"}
    scale = _doc("apps", "v1")["components"]["schemas"][openapi.SCALE_SCHEMA]
    assert scale["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "version": "v1", "kind": "Scale"}]


@pytest.mark.parametrize("group,version", [("apps", "v2"), ("batch", "v1"), ("", "v2")])
def test_unknown_group_version_has_no_document(group, version):
    assert openapi.openapi_v3_document(group, version) is None


def test_v2_swagger_covers_every_kind_and_resolves():
    doc = openapi.openapi_v2()
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    for ref in _refs(doc):
        assert ref.startswith("#/definitions/") and ref[len("#/definitions/"):] in definitions
    for info in RESOURCES:
        name = openapi.schema_name(info.group, info.version, info.kind)
        assert {"group": info.group, "version": info.version, "kind": info.kind} in \
            definitions[name]["x-kubernetes-group-version-kind"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            for param in op["parameters"]:
                assert "schema" in param if param["in"] == "body" else "type" in param
    delete_gvks = definitions[f"{openapi.META}.DeleteOptions"]["x-kubernetes-group-version-kind"]
    assert {(g["group"], g["version"]) for g in delete_gvks} == set(GVS)


def _decode_protobuf(data: bytes) -> dict[int, bytes]:
    """A length-delimited-only protobuf reader: field number -> payload."""
    fields, i = {}, 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        assert tag & 7 == 2, "only length-delimited fields are expected"
        length, i = _read_varint(data, i)
        fields[tag >> 3] = data[i:i + length]
        i += length
    assert i == len(data)
    return fields


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def test_v2_protobuf_is_a_minimal_gnostic_document():
    doc = _decode_protobuf(openapi.openapi_v2_protobuf())
    assert doc[1] == b"2.0"  # Document.swagger
    info = _decode_protobuf(doc[2])  # Document.info
    assert info == {1: b"Kubernetes", 2: discovery.GIT_VERSION.encode()}
    assert set(doc) == {1, 2}  # no paths or definitions: kubectl uses its built-in types


VARINT_CASES = [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"),
                (300, b"\xac\x02")]


@pytest.mark.parametrize("value,encoded", VARINT_CASES)
def test_varint(value, encoded):
    assert openapi._varint(value) == encoded
    assert _read_varint(encoded, 0) == (value, len(encoded))


V2_NEGOTIATION_CASES = [
    # (description, Accept, Content-Type answered)
    ("kubectl asks for protobuf only", openapi.OPENAPI_V2_PROTOBUF_ACCEPT,
     openapi.OPENAPI_V2_PROTOBUF_CONTENT_TYPE),
    ("the dotted protobuf name", openapi.OPENAPI_V2_PROTOBUF_CONTENT_TYPE,
     openapi.OPENAPI_V2_PROTOBUF_CONTENT_TYPE),
    ("JSON named alongside protobuf wins", "application/json, " +
     openapi.OPENAPI_V2_PROTOBUF_ACCEPT, "application/json"),
    ("plain JSON", "application/json", "application/json"),
    ("anything", "*/*", "application/json"),
    ("no Accept header", "", "application/json"),
]


@pytest.mark.parametrize("description,accept,content_type", V2_NEGOTIATION_CASES,
                         ids=[c[0] for c in V2_NEGOTIATION_CASES])
def test_v2_negotiation(description, accept, content_type):
    body, answered = openapi.openapi_v2_for(accept)
    assert answered == content_type
    if content_type == "application/json":
        assert json.loads(body)["swagger"] == "2.0"
    else:
        assert body == openapi.openapi_v2_protobuf()
        assert "@" not in answered  # Go's mime parser rejects '@' in a media type
