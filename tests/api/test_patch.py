"""PATCH semantics: RFC 7386, RFC 6902, Kubernetes strategic merge patch, apply dispatch.

Every table row is one case with a description. The strategic merge rows (results and which
patches fail) were checked against Kubernetes' own implementation, `kubectl patch --local
--type strategic` of kubectl 1.32; rows whose description starts with "meshnet:" show a
documented difference (see meshnet.api.strategic).
"""

from __future__ import annotations

import copy
import json

import pytest

from meshnet.api.patch import (
    PATCH_STRATEGIES,
    PatchError,
    UnsupportedPatchType,
    apply_json_patch,
    apply_merge_patch,
    apply_patch,
    apply_strategic_merge_patch,
    patch_strategy,
)
from meshnet.api.resources import RESOURCES


def case(description: str, *values):
    return pytest.param(*values, id=description)


def assert_pure(fn, obj, patch, *rest):
    """Run fn; the inputs must be unchanged and the result must not share their parts."""
    obj_before, patch_before = copy.deepcopy(obj), copy.deepcopy(patch)
    result = fn(obj, patch, *rest)
    assert obj == obj_before and patch == patch_before, "inputs were modified"
    _scribble(result)
    assert obj == obj_before and patch == patch_before, "the result shares parts with the inputs"
    return fn(obj, patch, *rest)


def _scribble(value):
    if isinstance(value, dict):
        for v in list(value.values()):
            _scribble(v)
        value["__scribbled__"] = True
    elif isinstance(value, list):
        for v in value:
            _scribble(v)
        value.append("__scribbled__")


# --- RFC 7386 appendix A (all of it) -----------------------------------------------------------

MERGE_PATCH_CASES = [
    case("A1 replace a member", {"a": "b"}, {"a": "c"}, {"a": "c"}),
    case("A2 add a member", {"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    case("A3 null removes a member", {"a": "b"}, {"a": None}, {}),
    case("A4 null removes one of two", {"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    case("A5 array replaces array", {"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    case("A6 value replaces array", {"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    case("A7 nested merge and delete", {"a": {"b": "c"}}, {"a": {"b": "d", "c": None}},
         {"a": {"b": "d"}}),
    case("A8 arrays of objects are replaced", {"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    case("A9 array patch replaces array target", ["a", "b"], ["c", "d"], ["c", "d"]),
    case("A10 array patch replaces object target", {"a": "b"}, ["c"], ["c"]),
    case("A11 null patch replaces target", {"a": "foo"}, None, None),
    case("A12 string patch replaces target", {"a": "foo"}, "bar", "bar"),
    case("A13 null member of an object target", {"e": None}, {"a": 1}, {"e": None, "a": 1}),
    case("A14 object patch on array target", [1, 2], {"a": "b", "c": None}, {"a": "b"}),
    case("A15 nested null on a missing member is dropped", {}, {"a": {"bb": {"ccc": None}}},
         {"a": {"bb": {}}}),
    case("kubectl label: set one, remove one",
         {"metadata": {"labels": {"app": "web", "tier": "fe"}}},
         {"metadata": {"labels": {"tier": None, "env": "prod"}}},
         {"metadata": {"labels": {"app": "web", "env": "prod"}}}),
    case("lists are never merged", {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
         {"spec": {"containers": [{"name": "b", "image": "x"}]}},
         {"spec": {"containers": [{"name": "b", "image": "x"}]}}),
]


@pytest.mark.parametrize("target, patch, expected", MERGE_PATCH_CASES)
def test_merge_patch(target, patch, expected):
    assert assert_pure(apply_merge_patch, target, patch) == expected


# --- RFC 6902 appendix A and errors ------------------------------------------------------------

JSON_PATCH_CASES = [
    case("A1 add an object member", {"foo": "bar"},
         [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    case("A2 add an array element", {"foo": ["bar", "baz"]},
         [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    case("A3 remove an object member", {"baz": "qux", "foo": "bar"},
         [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    case("A4 remove an array element", {"foo": ["bar", "qux", "baz"]},
         [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    case("A5 replace a value", {"baz": "qux", "foo": "bar"},
         [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
    case("A6 move a value",
         {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
         [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
         {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    case("A7 move an array element", {"foo": ["all", "grass", "cows", "eat"]},
         [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
         {"foo": ["all", "cows", "eat", "grass"]}),
    case("A8 test succeeds", {"baz": "qux", "foo": ["a", 2, "c"]},
         [{"op": "test", "path": "/baz", "value": "qux"},
          {"op": "test", "path": "/foo/1", "value": 2}],
         {"baz": "qux", "foo": ["a", 2, "c"]}),
    case("A10 add a nested member object", {"foo": "bar"},
         [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
         {"foo": "bar", "child": {"grandchild": {}}}),
    case("A11 unrecognized members are ignored", {"foo": "bar"},
         [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
         {"foo": "bar", "baz": "qux"}),
    case("A14 ~ escapes", {"/": 9, "~1": 10},
         [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    case("A16 add an array value", {"foo": ["bar"]},
         [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
         {"foo": ["bar", ["abc", "def"]]}),
    case("copy deep-copies the value", {"a": {"b": [1]}},
         [{"op": "copy", "from": "/a", "path": "/c"}, {"op": "add", "path": "/c/b/-", "value": 2}],
         {"a": {"b": [1]}, "c": {"b": [1, 2]}}),
    case("add at the end index appends", {"a": [1]},
         [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    case("~1 addresses a key with a slash (annotations)",
         {"metadata": {"annotations": {"example.com/x": "1"}}},
         [{"op": "replace", "path": "/metadata/annotations/example.com~1x", "value": "2"}],
         {"metadata": {"annotations": {"example.com/x": "2"}}}),
    case("empty path replaces the document", {"a": 1},
         [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    case("test 1 equals 1.0 (JSON numbers)", {"a": 1},
         [{"op": "test", "path": "/a", "value": 1.0}], {"a": 1}),
    case("move to the same place is a no-op", {"a": 1},
         [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
    case("kubectl scale-style replace", {"spec": {"replicas": 1}},
         [{"op": "replace", "path": "/spec/replicas", "value": 3}], {"spec": {"replicas": 3}}),
]


@pytest.mark.parametrize("doc, ops, expected", JSON_PATCH_CASES)
def test_json_patch(doc, ops, expected):
    assert assert_pure(apply_json_patch, doc, ops) == expected


JSON_PATCH_ERRORS = [
    case("A9 failed test fails the patch", {"baz": "qux"},
         [{"op": "test", "path": "/baz", "value": "bar"}],
         'json patch op 0 (test /baz): test failed: the value is "qux", expected "bar"'),
    case("A12 add to a nonexistent target", {"foo": "bar"},
         [{"op": "add", "path": "/baz/bat", "value": "qux"}],
         "json patch op 0 (add /baz/bat): path not found: /baz does not exist"),
    case("A15 string is not a number", {"/": 9, "~1": 10},
         [{"op": "test", "path": "/~01", "value": "10"}],
         'json patch op 0 (test /~01): test failed: the value is 10, expected "10"'),
    case("remove a missing member names op index and path", {"spec": {"a": 1}},
         [{"op": "add", "path": "/spec/b", "value": 2}, {"op": "test", "path": "/spec/b",
                                                         "value": 2},
          {"op": "remove", "path": "/spec/foo"}],
         "json patch op 2 (remove /spec/foo): path not found"),
    case("a test after changes fails the whole patch", {"a": 1},
         [{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}],
         "json patch op 1 (test /a): test failed: the value is 2, expected 1"),
    case("true is not 1", {"a": True}, [{"op": "test", "path": "/a", "value": 1}],
         "json patch op 0 (test /a): test failed: the value is true, expected 1"),
    case("index past the end", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 0}],
         "json patch op 0 (add /a/2): index 2 is out of range for the array of length 1 at /a"),
    case("leading zero is not an index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}],
         "json patch op 0 (remove /a/01): /a is an array; '01' is not an array index"),
    case("- only means append for add", {"a": [1]}, [{"op": "remove", "path": "/a/-"}],
         "json patch op 0 (remove /a/-): /a is an array; '-' is not an array index"),
    case("replace needs an existing target", {}, [{"op": "replace", "path": "/a", "value": 1}],
         "json patch op 0 (replace /a): path not found"),
    case("pointer must start with /", {}, [{"op": "add", "path": "a", "value": 1}],
         "json patch op 0 (add a): \"path\" 'a' is not a JSON pointer: it must be empty or "
         "start with \"/\""),
    case("bad ~ escape", {}, [{"op": "add", "path": "/a~2", "value": 1}],
         'json patch op 0 (add /a~2): "path" \'/a~2\' has a "~" not followed by 0 or 1 '
         '(write "~0" for "~" and "~1" for "/")'),
    case("unknown op", {}, [{"op": "frob", "path": "/a"}],
         'json patch op 0 (frob /a): unknown op "frob" (use add, remove, replace, move, copy '
         "or test)"),
    case("missing op", {}, [{"path": "/a"}], 'json patch op 0: missing "op"'),
    case("missing path", {}, [{"op": "remove"}], 'json patch op 0 (remove): missing "path"'),
    case("missing value", {}, [{"op": "add", "path": "/a"}],
         'json patch op 0 (add /a): missing "value"'),
    case("missing from", {"a": 1}, [{"op": "copy", "path": "/b"}],
         'json patch op 0 (copy /b): missing "from"'),
    case("move into its own child", {"a": {"b": {}}},
         [{"op": "move", "from": "/a", "path": "/a/b/c"}],
         "json patch op 0 (move /a/b/c): cannot move /a into its own child /a/b/c"),
    case("descend through a scalar", {"a": 1}, [{"op": "add", "path": "/a/b/c", "value": 1}],
         "json patch op 0 (add /a/b/c): path not found: /a is a number, not an object or array"),
    case("remove the document", {"a": 1}, [{"op": "remove", "path": ""}],
         "json patch op 0 (remove ): cannot remove the whole document"),
    case("op is not an object", {}, ["add"], "json patch op 0: must be an object, got string"),
    case("patch is not an array", {}, {"op": "add"},
         "a json patch must be a JSON array of operations, got object"),
    case("more ops than kube-apiserver allows", {}, [{"op": "test", "path": ""}] * 10001,
         "a json patch may have at most 10000 operations, this one has 10001"),
]


@pytest.mark.parametrize("doc, ops, message", JSON_PATCH_ERRORS)
def test_json_patch_errors(doc, ops, message):
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as e:
        apply_json_patch(doc, ops)
    assert str(e.value) == message
    assert doc == before, "a failed patch must leave the document untouched"


# --- strategic merge patch ---------------------------------------------------------------------


def deployment(*containers, **pod_spec_fields):
    """A Deployment as kube-apiserver stores it, trimmed to what the cases look at."""
    body = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": list(containers), **pod_spec_fields}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": body}


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def with_(obj, fn):
    obj = copy.deepcopy(obj)
    fn(obj)
    return obj


WEB = {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
       "env": [{"name": "MODE", "value": "prod"}]}
SIDECAR = {"name": "sidecar", "image": "envoy:1.30"}
LOGS = {"name": "logs", "image": "fluent-bit:3"}
D2 = deployment(WEB, SIDECAR)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

STRATEGIC_CASES = [
    case("kubectl apply: change replicas (with last-applied annotation)", "Deployment", D2,
         {"metadata": {"annotations": {LAST_APPLIED: '{"spec":{"replicas":5}}\n'}},
          "spec": {"replicas": 5}},
         with_(D2, lambda d: (d["spec"].update(replicas=5), d["metadata"].update(
             annotations={LAST_APPLIED: '{"spec":{"replicas":5}}\n'})))),
    case("kubectl apply: new image for one container of two", "Deployment", D2,
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
             "containers": [{"image": "nginx:1.27", "name": "web"}]}}}},
         with_(D2, lambda d: pod_spec(d)["containers"][0].update(image="nginx:1.27"))),
    case("kubectl apply: add an env var", "Deployment", D2,
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
             "containers": [{"$setElementOrder/env": [{"name": "MODE"}, {"name": "DEBUG"}],
                             "env": [{"name": "DEBUG", "value": "1"}], "name": "web"}]}}}},
         with_(D2, lambda d: pod_spec(d)["containers"][0]["env"].append(
             {"name": "DEBUG", "value": "1"}))),
    case("kubectl apply: delete a container", "Deployment", D2,
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "web"}],
             "containers": [{"$patch": "delete", "name": "sidecar"}]}}}},
         with_(D2, lambda d: pod_spec(d)["containers"].pop())),
    case("kubectl apply: reorder containers", "Deployment", D2,
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}}}},
         with_(D2, lambda d: pod_spec(d)["containers"].reverse())),
    case("kubectl apply: switch strategy to Recreate with $retainKeys", "Deployment", D2,
         {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None,
                                "type": "Recreate"}}},
         with_(D2, lambda d: d["spec"].update(strategy={"type": "Recreate"}))),
    case("$retainKeys also drops live keys the patch does not mention", "Deployment", D2,
         {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
         with_(D2, lambda d: d["spec"].update(strategy={"type": "Recreate"}))),
    case("kubectl label: remove a label with null", "Deployment", D2,
         {"metadata": {"labels": {"app": None, "team": "net"}}},
         with_(D2, lambda d: d["metadata"].update(labels={"team": "net"}))),
    case("kubectl rollout restart: template annotation", "Deployment", D2,
         {"spec": {"template": {"metadata": {"annotations": {
             "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}}}},
         with_(D2, lambda d: d["spec"]["template"]["metadata"].update(annotations={
             "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}))),
    case("finalizers: $deleteFromPrimitiveList", "Deployment",
         with_(D2, lambda d: d["metadata"].update(finalizers=["a/x", "b/y", "c/z"])),
         {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/y"]}},
         with_(D2, lambda d: d["metadata"].update(finalizers=["a/x", "c/z"]))),
    case("finalizers merge as a set, new ones placed as apimachinery does", "Deployment",
         with_(D2, lambda d: d["metadata"].update(finalizers=["a", "b", "c"])),
         {"metadata": {"finalizers": ["b", "d"]}},
         with_(D2, lambda d: d["metadata"].update(finalizers=["a", "b", "d", "c"]))),
    case("finalizers: delete, add and order in one patch", "Deployment",
         with_(D2, lambda d: d["metadata"].update(finalizers=["a", "b", "c"])),
         {"metadata": {"$setElementOrder/finalizers": ["d", "c", "a"],
                       "$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]}},
         with_(D2, lambda d: d["metadata"].update(finalizers=["d", "c", "a"]))),
    case("containers merge by name; args are replaced, not merged", "Deployment",
         deployment({"name": "web", "image": "a", "args": ["--x", "--y"]}),
         {"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["--z"]}]}}}},
         deployment({"name": "web", "image": "a", "args": ["--z"]})),
    case("a new container goes first when the patch gives no order", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [LOGS]}}}},
         deployment(LOGS, WEB, SIDECAR)),
    case("container ports merge by containerPort, volumeMounts by mountPath", "Deployment",
         deployment({"name": "web", "ports": [{"containerPort": 80, "name": "http"}],
                     "volumeMounts": [{"name": "a", "mountPath": "/a"}]}),
         {"spec": {"template": {"spec": {"containers": [
             {"name": "web", "ports": [{"containerPort": 443, "name": "https"}],
              "volumeMounts": [{"name": "b", "mountPath": "/a"}]}]}}}},
         deployment({"name": "web", "ports": [{"containerPort": 443, "name": "https"},
                                              {"containerPort": 80, "name": "http"}],
                     "volumeMounts": [{"name": "b", "mountPath": "/a"}]})),
    case("envFrom is atomic", "Deployment",
         deployment({"name": "web", "envFrom": [{"configMapRef": {"name": "a"}}]}),
         {"spec": {"template": {"spec": {"containers": [
             {"name": "web", "envFrom": [{"secretRef": {"name": "b"}}]}]}}}},
         deployment({"name": "web", "envFrom": [{"secretRef": {"name": "b"}}]})),
    case("$patch: delete removes an env var", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [
             {"name": "web", "env": [{"name": "MODE", "$patch": "delete"}]}]}}}},
         with_(D2, lambda d: pod_spec(d)["containers"][0].update(env=[]))),
    case("$patch: replace in a list makes the list the patch's elements", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [LOGS, {"$patch": "replace"}]}}}},
         deployment(LOGS)),
    case("$patch: replace on a map replaces it", "Deployment", D2,
         {"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "web2"}}}},
         with_(D2, lambda d: d["spec"].update(selector={"matchLabels": {"app": "web2"}}))),
    case("meshnet: $patch: merge is accepted as the default (Kubernetes refuses it)",
         "Deployment", D2,
         {"spec": {"selector": {"$patch": "merge", "matchLabels": {"x": "y"}}}},
         with_(D2, lambda d: d["spec"]["selector"]["matchLabels"].update(x="y"))),
    case("meshnet: $patch: delete on a map removes the key (Kubernetes leaves {})",
         "Deployment", D2, {"spec": {"strategy": {"$patch": "delete"}}},
         with_(D2, lambda d: d["spec"].pop("strategy"))),
    case("volumes: $retainKeys switches the volume source", "Deployment",
         deployment(WEB, volumes=[{"name": "cfg", "emptyDir": {}},
                                  {"name": "data", "emptyDir": {}}]),
         {"spec": {"template": {"spec": {"volumes": [
             {"name": "cfg", "$retainKeys": ["configMap", "name"],
              "configMap": {"name": "web-config"}}]}}}},
         deployment(WEB, volumes=[{"name": "cfg", "configMap": {"name": "web-config"}},
                                  {"name": "data", "emptyDir": {}}])),
    case("renaming a container keeps a server-added sidecar where Kubernetes puts it",
         "Deployment", deployment(WEB, SIDECAR),
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "app"}],
             "containers": [{"name": "app", "image": "app:1"},
                            {"$patch": "delete", "name": "web"}]}}}},
         deployment(SIDECAR, {"name": "app", "image": "app:1"})),
    case("initContainers, imagePullSecrets and hostAliases merge", "Deployment",
         deployment(WEB, initContainers=[{"name": "init", "image": "a"}],
                    imagePullSecrets=[{"name": "r1"}], hostAliases=[{"ip": "10.0.0.1",
                                                                     "hostnames": ["a"]}]),
         {"spec": {"template": {"spec": {"initContainers": [{"name": "init2", "image": "b"}],
                                         "imagePullSecrets": [{"name": "r2"}],
                                         "hostAliases": [{"ip": "10.0.0.2",
                                                          "hostnames": ["b"]}]}}}},
         deployment(WEB, initContainers=[{"name": "init2", "image": "b"},
                                         {"name": "init", "image": "a"}],
                    imagePullSecrets=[{"name": "r2"}, {"name": "r1"}],
                    hostAliases=[{"ip": "10.0.0.2", "hostnames": ["b"]},
                                 {"ip": "10.0.0.1", "hostnames": ["a"]}])),
    case("tolerations are atomic", "Pod",
         {"spec": {"containers": [WEB], "tolerations": [{"key": "a", "operator": "Exists"}]}},
         {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
         {"spec": {"containers": [WEB], "tolerations": [{"key": "b", "operator": "Exists"}]}}),
    case("pod status conditions merge by type", "Pod",
         {"status": {"phase": "Pending", "conditions": [
             {"type": "PodScheduled", "status": "True"},
             {"type": "Ready", "status": "False"}]}},
         {"status": {"phase": "Running", "conditions": [
             {"type": "Ready", "status": "True"},
             {"type": "ContainersReady", "status": "True"}]}},
         {"status": {"phase": "Running", "conditions": [
             {"type": "PodScheduled", "status": "True"},
             {"type": "Ready", "status": "True"},
             {"type": "ContainersReady", "status": "True"}]}}),
    case("pod status podIPs merge by ip, containerStatuses are atomic", "Pod",
         {"status": {"podIPs": [{"ip": "10.244.1.5"}],
                     "containerStatuses": [{"name": "a", "ready": False},
                                           {"name": "b", "ready": False}]}},
         {"status": {"podIPs": [{"ip": "fd00::5"}],
                     "containerStatuses": [{"name": "a", "ready": True}]}},
         {"status": {"podIPs": [{"ip": "fd00::5"}, {"ip": "10.244.1.5"}],
                     "containerStatuses": [{"name": "a", "ready": True}]}}),
    case("Service ports merge by port", "Service",
         {"spec": {"type": "ClusterIP", "ports": [
             {"name": "http", "port": 80, "targetPort": 8080},
             {"name": "https", "port": 443, "targetPort": 8443}]}},
         {"spec": {"ports": [{"port": 80, "targetPort": 9090},
                             {"name": "metrics", "port": 9100}]}},
         {"spec": {"type": "ClusterIP", "ports": [
             {"name": "http", "port": 80, "targetPort": 9090},
             {"name": "metrics", "port": 9100},
             {"name": "https", "port": 443, "targetPort": 8443}]}}),
    case("Service externalIPs are atomic", "Service",
         {"spec": {"externalIPs": ["192.0.2.1"]}}, {"spec": {"externalIPs": ["192.0.2.2"]}},
         {"spec": {"externalIPs": ["192.0.2.2"]}}),
    case("Service status conditions merge by type", "Service",
         {"status": {"conditions": [{"type": "A", "status": "True"}]}},
         {"status": {"conditions": [{"type": "B", "status": "False"}]}},
         {"status": {"conditions": [{"type": "B", "status": "False"},
                                    {"type": "A", "status": "True"}]}}),
    case("node addresses merge by type, podCIDRs as a set", "Node",
         {"spec": {"podCIDRs": ["10.244.1.0/24"]},
          "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                   {"type": "Hostname", "address": "n1"}]}},
         {"spec": {"podCIDRs": ["fd00:1::/64"]},
          "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}},
         {"spec": {"podCIDRs": ["fd00:1::/64", "10.244.1.0/24"]},
          "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"},
                                   {"type": "Hostname", "address": "n1"}]}}),
    case("node conditions merge by type, taints are atomic", "Node",
         {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
          "status": {"conditions": [{"type": "Ready", "status": "False"},
                                    {"type": "MemoryPressure", "status": "False"}]}},
         {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]},
          "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
         {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]},
          "status": {"conditions": [{"type": "Ready", "status": "True"},
                                    {"type": "MemoryPressure", "status": "False"}]}}),
    case("namespace status conditions merge, spec.finalizers are atomic", "Namespace",
         {"spec": {"finalizers": ["kubernetes"]},
          "status": {"conditions": [{"type": "A", "status": "True"}]}},
         {"spec": {"finalizers": ["other"]},
          "status": {"conditions": [{"type": "B", "status": "True"}]}},
         {"spec": {"finalizers": ["other"]},
          "status": {"conditions": [{"type": "B", "status": "True"},
                                    {"type": "A", "status": "True"}]}}),
    case("ownerReferences merge by uid", "ReplicaSet",
         {"metadata": {"ownerReferences": [{"uid": "1", "kind": "Deployment", "name": "a"}]}},
         {"metadata": {"ownerReferences": [{"uid": "1", "controller": True},
                                           {"uid": "2", "kind": "Deployment", "name": "b"}]}},
         {"metadata": {"ownerReferences": [{"uid": "1", "kind": "Deployment", "name": "a",
                                            "controller": True},
                                           {"uid": "2", "kind": "Deployment", "name": "b"}]}}),
    case("StatefulSet template containers merge, status conditions too", "StatefulSet",
         {"spec": {"template": {"spec": {"containers": [WEB, SIDECAR]}}},
          "status": {"conditions": [{"type": "A", "status": "True"}]}},
         {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "e:2"}]}}},
          "status": {"conditions": [{"type": "A", "status": "False"}]}},
         {"spec": {"template": {"spec": {"containers": [WEB, {"name": "sidecar",
                                                              "image": "e:2"}]}}},
          "status": {"conditions": [{"type": "A", "status": "False"}]}}),
    case("Endpoints subsets are atomic", "Endpoints",
         {"subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}]},
         {"subsets": [{"addresses": [{"ip": "10.244.1.6"}], "ports": [{"port": 80}]}]},
         {"subsets": [{"addresses": [{"ip": "10.244.1.6"}], "ports": [{"port": 80}]}]}),
    case("Ingress rules are atomic", "Ingress",
         {"spec": {"rules": [{"host": "a.example"}, {"host": "b.example"}]}},
         {"spec": {"rules": [{"host": "c.example"}]}},
         {"spec": {"rules": [{"host": "c.example"}]}}),
    case("ConfigMap data merges like a JSON merge patch", "ConfigMap",
         {"data": {"a": "1", "b": "2"}}, {"data": {"b": None, "c": "3"}},
         {"data": {"a": "1", "c": "3"}}),
    case("a value of another type replaces the live one", "ConfigMap",
         {"data": {"a": "1"}}, {"data": ["x"]}, {"data": ["x"]}),
    case("null for a missing key is ignored", "ConfigMap", {"data": {"a": "1"}},
         {"data": {"b": None}, "binaryData": None}, {"data": {"a": "1"}}),
    case("meshnet: directives inside a new value are applied, not stored", "Deployment",
         deployment(WEB),
         {"spec": {"template": {"spec": {"containers": [
             {"name": "new", "env": [{"name": "X", "value": "1"},
                                     {"name": "Y", "$patch": "delete"}]}]}}}},
         deployment({"name": "new", "env": [{"name": "X", "value": "1"}]}, WEB)),
    case("an empty patch changes nothing", "Deployment", D2, {}, D2),
    case("the scale subresource has no lists", "Scale", {"spec": {"replicas": 1}},
         {"spec": {"replicas": 4}}, {"spec": {"replicas": 4}}),
]


@pytest.mark.parametrize("kind, live, patch, expected", STRATEGIC_CASES)
def test_strategic_merge_patch(kind, live, patch, expected):
    assert assert_pure(apply_strategic_merge_patch, live, patch, kind) == expected


STRATEGIC_ERRORS = [
    case("meshnet: unknown directive (Kubernetes stores it)", "Deployment", D2,
         {"spec": {"$frob": 1}},
         "strategic merge patch for Deployment at spec: unknown directive '$frob' (known: "
         "$patch, $retainKeys, $setElementOrder/<list>, $deleteFromPrimitiveList/<list>)"),
    case("unknown $patch value", "Deployment", D2, {"spec": {"$patch": "frob"}},
         'strategic merge patch for Deployment at spec: unknown $patch directive "frob" (use '
         '"replace", "delete" or "merge")'),
    case("unknown $patch value in a list element", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "x"}]}}}},
         'strategic merge patch for Deployment at spec.template.spec.containers[0]: unknown '
         '$patch directive "x" in a list element (use "replace", "delete" or "merge")'),
    case("an element without its merge key", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
         "strategic merge patch for Deployment at spec.template.spec.containers[0]: element "
         "has no merge key 'name'; every element of spec.template.spec.containers needs one"),
    case("an explicit merge element without its merge key", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "image": "x"}]}}}},
         "strategic merge patch for Deployment at spec.template.spec.containers[0]: element "
         "has no merge key 'name'; every element of spec.template.spec.containers needs one"),
    case("delete without the merge key", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}},
         'strategic merge patch for Deployment at spec.template.spec.containers[0]: "$patch": '
         "\"delete\" needs the merge key 'name' to say which element to delete"),
    case("a field the patch sets is missing from $retainKeys", "Deployment", D2,
         {"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1}}}},
         "strategic merge patch for Deployment at spec.strategy: field 'rollingUpdate' is set "
         'in the patch but missing from $retainKeys ["type"]'),
    case("$setElementOrder disagrees with the patch list", "Deployment", D2,
         {"spec": {"template": {"spec": {
             "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
             "containers": [{"name": "web", "image": "a"}, {"name": "sidecar", "image": "b"}]}}}},
         "strategic merge patch for Deployment at spec.template.spec.containers: the patch "
         'lists {"image": "b", "name": "sidecar"} but $setElementOrder/containers '
         '[{"name": "sidecar"}, {"name": "web"}] does not, or lists it in another order'),
    case("a scalar in a list merged by key", "Deployment", D2,
         {"spec": {"template": {"spec": {"containers": ["web"]}}}},
         "strategic merge patch for Deployment at spec.template.spec.containers[0]: the patch "
         "has a string in a list of objects merged by 'name'"),
    case("an object in a set of scalars", "Deployment",
         with_(D2, lambda d: d["metadata"].update(finalizers=["a"])),
         {"metadata": {"finalizers": [{"a": 1}]}},
         "strategic merge patch for Deployment at metadata.finalizers[0]: the patch has an "
         "object in a list of scalars merged as a set"),
    case("meshnet: $deleteFromPrimitiveList must hold a list (Kubernetes stores it)",
         "Deployment", D2,
         {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
         "strategic merge patch for Deployment at metadata: $deleteFromPrimitiveList/finalizers "
         'must name a list and hold a list of values to delete, got "a"'),
    case("$retainKeys must be a list of names", "Deployment", D2,
         {"spec": {"strategy": {"$retainKeys": "type"}}},
         'strategic merge patch for Deployment at spec.strategy: $retainKeys must be a list of '
         'field names, got "type"'),
]


@pytest.mark.parametrize("kind, live, patch, message", STRATEGIC_ERRORS)
def test_strategic_merge_patch_errors(kind, live, patch, message):
    before = copy.deepcopy(live)
    with pytest.raises(PatchError) as e:
        apply_strategic_merge_patch(live, patch, kind)
    assert str(e.value) == message
    assert live == before


def test_strategic_merge_patch_refuses_kinds_without_a_schema():
    with pytest.raises(UnsupportedPatchType) as e:
        apply_strategic_merge_patch({}, {}, "Widget")
    assert "strategic merge patch is not supported for kind 'Widget'" in str(e.value)
    assert "application/merge-patch+json" in str(e.value)


SCHEMA_LOOKUPS = [
    case("pod containers", "Pod", "spec.containers", "merge", "name"),
    case("deployment template env", "Deployment", "spec.template.spec.containers[].env",
         "merge", "name"),
    case("init container ports", "ReplicaSet",
         "spec.template.spec.initContainers[].ports", "merge", "containerPort"),
    case("volumes also retain keys", "StatefulSet", "spec.template.spec.volumes",
         "merge,retainKeys", "name"),
    case("deployment strategy retains keys", "Deployment", "spec.strategy", "retainKeys", None),
    case("finalizers are a set", "Ingress", "metadata.finalizers", "merge", None),
    case("template finalizers are a set", "Deployment", "spec.template.metadata.finalizers",
         "merge", None),
    case("service ports", "Service", "spec.ports", "merge", "port"),
    case("node addresses", "Node", "status.addresses", "merge", "type"),
    case("tolerations are atomic", "Pod", "spec.tolerations", None, None),
    case("endpoints subsets are atomic", "Endpoints", "subsets", None, None),
]


@pytest.mark.parametrize("kind, path, strategy, merge_key", SCHEMA_LOOKUPS)
def test_patch_strategy_table(kind, path, strategy, merge_key):
    found = patch_strategy(kind, path)
    if strategy is None:
        assert found is None
    else:
        assert (found.strategy, found.merge_key) == (strategy, merge_key)


def test_every_served_kind_has_a_patch_schema():
    assert {r.kind for r in RESOURCES} <= PATCH_STRATEGIES.keys()


# --- apply_patch: content types and bodies -----------------------------------------------------

LIVE_CM = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}}

APPLY_PATCH_CASES = [
    case("merge patch, charset parameter ignored", "application/merge-patch+json; charset=utf-8",
         b'{"data": {"x": null}}',
         {**LIVE_CM, "data": {"y": "2"}}),
    case("strategic merge patch", "application/strategic-merge-patch+json",
         '{"metadata": {"labels": {"b": "2"}}}',
         {**LIVE_CM, "metadata": {"name": "cfg", "labels": {"a": "1", "b": "2"}}}),
    case("json patch", "application/json-patch+json",
         b'[{"op": "replace", "path": "/data/x", "value": "9"}]',
         {**LIVE_CM, "data": {"x": "9", "y": "2"}}),
    case("server-side apply, YAML: set fields win, timestamps stay strings",
         "application/apply-patch+yaml",
         b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
         b"  annotations: {when: 2024-01-01T00:00:00Z}\ndata:\n  x: changed\n",
         {**LIVE_CM, "metadata": {"name": "cfg", "labels": {"a": "1"},
                                  "annotations": {"when": "2024-01-01T00:00:00Z"}},
          "data": {"x": "changed", "y": "2"}}),
    case("server-side apply, JSON body; fields missing from it are kept (no field managers)",
         "application/apply-patch+yaml", b'{"kind": "ConfigMap", "data": {"z": "3"}}',
         {**LIVE_CM, "data": {"x": "1", "y": "2", "z": "3"}}),
]


@pytest.mark.parametrize("content_type, body, expected", APPLY_PATCH_CASES)
def test_apply_patch(content_type, body, expected):
    assert assert_pure(lambda o, b: apply_patch(o, b, content_type, "ConfigMap"),
                       LIVE_CM, body) == expected


APPLY_PATCH_ERRORS = [
    case("invalid JSON says line and column", "application/merge-patch+json",
         b'{\n  "data": {"x": 1,}\n}',
         "merge patch: invalid JSON at line 2 column 19: Expecting property name enclosed in "
         "double quotes", True),
    case("invalid YAML says line and column", "application/apply-patch+yaml",
         b"kind: ConfigMap\ndata:\n  x: [1, 2\n  y: 3\n",
         "apply configuration: invalid YAML at line 4 column 4: expected ',' or ']', but got "
         "':'", True),
    case("an empty body", "application/strategic-merge-patch+json", b"  ",
         "strategic merge patch: the body is empty", True),
    case("not UTF-8", "application/merge-patch+json", b'{"a": "\xff"}',
         "merge patch: not UTF-8 (byte 7)", True),
    case("NaN is not JSON", "application/merge-patch+json", b'{"a": NaN}',
         "merge patch: invalid JSON: NaN is not JSON", True),
    case("a merge patch must be an object", "application/merge-patch+json", b"[1]",
         "merge patch: must be a JSON object, got array", False),
    case("a json patch must not turn the object into something else",
         "application/json-patch+json", b'[{"op": "replace", "path": "", "value": [1]}]',
         "the patched object must be a JSON object, the patch made it array", False),
    case("apply of another kind", "application/apply-patch+yaml", b"kind: Secret\n",
         "apply configuration: kind is 'Secret', but the object being applied to is a "
         "ConfigMap", False),
    case("apply configurations carry no directives", "application/apply-patch+yaml",
         b"data:\n  $patch: replace\n",
         "apply configuration: data.$patch: $ directives belong to strategic merge patches, "
         "not to an applied object", False),
    case("YAML keys must be strings", "application/apply-patch+yaml", b"data:\n  1: x\n",
         "apply configuration: data.1: keys must be strings", True),
    case("YAML values must have a JSON form", "application/apply-patch+yaml",
         b"data:\n  x: !!binary aGk=\n",
         "apply configuration: data.x: a YAML bytes has no JSON form", True),
    case("YAML .nan is not a JSON number", "application/apply-patch+yaml", b"spec: {a: .nan}\n",
         "apply configuration: spec.a: nan is not a JSON number", True),
    case("a failing op inside the body", "application/json-patch+json",
         b'[{"op": "remove", "path": "/data/nope"}]',
         "json patch op 0 (remove /data/nope): path not found", False),
]


@pytest.mark.parametrize("content_type, body, message, parse_error", APPLY_PATCH_ERRORS)
def test_apply_patch_errors(content_type, body, message, parse_error):
    with pytest.raises(PatchError) as e:
        apply_patch(LIVE_CM, body, content_type, "ConfigMap")
    assert str(e.value) == message
    assert e.value.parse_error is parse_error


def test_apply_patch_unsupported_content_type():
    with pytest.raises(UnsupportedPatchType) as e:
        apply_patch(LIVE_CM, b"{}", "application/json", "ConfigMap")
    assert e.value.content_type == "application/json"
    assert "application/merge-patch+json" in str(e.value)


def test_strategic_rows_are_plain_json():
    """The tables above are what a client would send: all of it survives a JSON round trip."""
    for row in STRATEGIC_CASES:
        _, live, patch, expected = row.values
        assert json.loads(json.dumps([live, patch, expected])) == [live, patch, expected]
