"""Client-side apply: last-applied annotation, three-way merge patches, label/annotate patches."""

import json

import pytest

from meshnet.api.patch import apply_merge_patch
from meshnet.cli.patch import (
    LAST_APPLIED, UpdateError, covered, last_applied_value, metadata_map_patch, original_from,
    three_way_merge_patch, with_last_applied,
)

LIVE_SVC = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                 "labels": {"app": "web", "tier": "front"}},
    "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.5", "type": "ClusterIP",
             "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
}

# (description, original (last applied), modified (file), current (live), expected patch)
CASES = [
    ("nothing changed: empty patch even though the server defaulted fields",
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
     LIVE_SVC, {}),
    ("a changed scalar is set",
     {"spec": {"type": "ClusterIP"}}, {"spec": {"type": "NodePort"}}, LIVE_SVC,
     {"spec": {"type": "NodePort"}}),
    ("a field removed from the file is nulled",
     {"metadata": {"labels": {"app": "web", "tier": "front"}}},
     {"metadata": {"labels": {"app": "web"}}}, LIVE_SVC,
     {"metadata": {"labels": {"tier": None}}}),
    ("a field the file never had is left alone (someone else's)",
     {"metadata": {"labels": {"app": "web"}}},
     {"metadata": {"labels": {"app": "web"}}}, LIVE_SVC, {}),
    ("a removed field that is already gone needs no null",
     {"spec": {"sessionAffinity": "ClientIP"}}, {"spec": {}}, LIVE_SVC, {}),
    ("a changed list is replaced whole",
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, LIVE_SVC,
     {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
    ("a list element field removed since last apply replaces the list",
     {"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}, LIVE_SVC,
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
    ("a list changed live but not in the file is restored",
     {"spec": {"ports": [{"port": 81}]}}, {"spec": {"ports": [{"port": 81}]}}, LIVE_SVC,
     {"spec": {"ports": [{"port": 81}]}}),
    ("no last-applied: nothing is deleted, additions still go out",
     None, {"spec": {"externalIPs": ["1.2.3.4"]}}, LIVE_SVC,
     {"spec": {"externalIPs": ["1.2.3.4"]}}),
    ("a new nested map is sent whole",
     {}, {"metadata": {"annotations": {"a": "1"}}}, LIVE_SVC,
     {"metadata": {"annotations": {"a": "1"}}}),
    ("type changes are changes (1 vs true)",
     {"spec": {"x": 1}}, {"spec": {"x": True}}, {"spec": {"x": 1}}, {"spec": {"x": True}}),
]


@pytest.mark.parametrize("desc,original,modified,current,want", CASES,
                         ids=[c[0] for c in CASES])
def test_three_way_merge_patch(desc, original, modified, current, want):
    patch = three_way_merge_patch(original, modified, current)
    assert patch == want
    if patch:
        # Applying the patch yields an object that covers the file.
        merged = apply_merge_patch(json.loads(json.dumps(current)), patch)
        assert covered(modified, merged)


def test_last_applied_value_matches_kubectl_serialization():
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "<web>"}}}
    value = last_applied_value(obj)
    assert value == ('{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},'
                     '"name":"web","namespace":"default"},"spec":{"ports":[{"port":80}],'
                     '"selector":{"app":"\\u003cweb\\u003e"}}}\n')
    annotated = with_last_applied(obj)
    assert annotated["metadata"]["annotations"][LAST_APPLIED] == value
    # Re-annotating an annotated object gives the same value (no recursion).
    assert last_applied_value(annotated) == value
    assert original_from(annotated) == json.loads(value)
    assert original_from({"metadata": {"annotations": {LAST_APPLIED: "not json"}}}) is None


def test_reapplying_the_same_file_is_unchanged():
    file_obj = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80,
                                                                 "targetPort": 8080}]}}
    modified = with_last_applied(file_obj)
    live = json.loads(json.dumps(LIVE_SVC))
    live["metadata"]["annotations"] = dict(modified["metadata"]["annotations"])
    assert three_way_merge_patch(original_from(live), modified, live) == {}


# (description, current, set, remove, overwrite, noun, expected patch, changed, error)
MAP_CASES = [
    ("add a label", {"app": "web"}, {"tier": "db"}, [], False, "label",
     {"metadata": {"labels": {"tier": "db"}}}, True, None),
    ("same value is no change", {"app": "web"}, {"app": "web"}, [], False, "label",
     {"metadata": {"labels": {}}}, False, None),
    ("different value needs --overwrite", {"app": "web"}, {"app": "db"}, [], False, "label",
     None, None, "'app' already has a value (web), and --overwrite is false"),
    ("overwrite", {"app": "web"}, {"app": "db"}, [], True, "label",
     {"metadata": {"labels": {"app": "db"}}}, True, None),
    ("remove", {"app": "web"}, {}, ["app"], False, "label",
     {"metadata": {"labels": {"app": None}}}, True, None),
    ("removing a missing key changes nothing", {}, {}, ["app"], False, "label",
     {"metadata": {"labels": {}}}, False, None),
    ("annotate wording for clashes", {"a": "1", "b": "2"}, {"a": "x", "b": "y"}, [], False,
     "annotate", None, None,
     "--overwrite is false but found the following declared annotation(s): 'a' already has "
     "a value (1); 'b' already has a value (2)"),
]


@pytest.mark.parametrize("desc,current,sets,removes,overwrite,noun,want,changed,error",
                         MAP_CASES, ids=[c[0] for c in MAP_CASES])
def test_metadata_map_patch(desc, current, sets, removes, overwrite, noun, want, changed,
                            error):
    field = "labels" if noun == "label" else "annotations"
    if error:
        with pytest.raises(UpdateError) as e:
            metadata_map_patch(field, current, sets, removes, overwrite=overwrite, noun=noun)
        assert str(e.value) == error
        return
    patch, did = metadata_map_patch(field, current, sets, removes, overwrite=overwrite,
                                    noun=noun)
    assert patch == want
    assert did is changed
