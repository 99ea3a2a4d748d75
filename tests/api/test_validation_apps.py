"""Deployments, ReplicaSets, StatefulSets: defaults, selector/template rules, updates."""

import copy

import pytest

from api_cases import DELETE, NGINX_DEPLOYMENT, assert_causes, causes_of, edit
from meshnet.api.resources import lookup
from meshnet.api.validation import default_object

DEPLOY = NGINX_DEPLOYMENT
RS = edit(DEPLOY, {"kind": "ReplicaSet", "metadata.name": "nginx-7c5b"})
STS = edit(DEPLOY, {"kind": "StatefulSet", "metadata.name": "web", "spec.serviceName": "nginx"})


def defaulted(kind, obj):
    obj = copy.deepcopy(obj)
    default_object(lookup(kind), obj)
    return obj


def test_deployment_defaults():
    spec = defaulted("deployments", edit(DEPLOY, {"spec.replicas": DELETE}))["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in pod_spec  # a Pod-only default


def test_recreate_strategy_gets_no_rolling_update():
    spec = defaulted("deployments", edit(DEPLOY, {"spec.strategy": {"type": "Recreate"}}))["spec"]
    assert spec["strategy"] == {"type": "Recreate"}


def test_stateful_set_defaults():
    spec = defaulted("statefulsets", STS)["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}


def test_replica_set_defaults():
    spec = defaulted("replicasets", edit(RS, {"spec.replicas": DELETE}))["spec"]
    assert spec["replicas"] == 1 and "strategy" not in spec


MISMATCH = ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
            "`selector` does not match template `labels`")

# (description, changes, expected cause prefixes) — run against all three kinds
WORKLOAD_CASES = [
    ("valid", {}, []),
    ("selector required", {"spec.selector": DELETE}, ["spec.selector: Required value"]),
    ("selector must match template labels", {"spec.template.metadata.labels": {"app": "web"}},
     [MISMATCH]),
    ("template labels missing", {"spec.template.metadata": DELETE},
     ["spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does "
      "not match template `labels`"]),
    ("selector by expression",
     {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "In",
                                              "values": ["nginx", "web"]}]}}, []),
    ("bad selector expression",
     {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     ["spec.selector.matchExpressions[0].values: Required value: must be specified when "
      "`operator` is 'In' or 'NotIn'"]),
    ("negative replicas", {"spec.replicas": -1},
     ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    ("replicas of the wrong type", {"spec.replicas": "3"},
     ['spec.replicas: Invalid value: "3": must be an integer']),
    ("zero replicas", {"spec.replicas": 0}, []),
    ("template validated at its path", {"spec.template.spec.containers[0].image": DELETE},
     ["spec.template.spec.containers[0].image: Required value"]),
    ("template port checked", {"spec.template.spec.containers[0].ports[0].containerPort": 70000},
     ["spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be "
      "between 1 and 65535, inclusive"]),
    ("template containers required", {"spec.template.spec.containers": []},
     ["spec.template.spec.containers: Required value"]),
    ("template labels syntax", {"spec.template.metadata.labels": {"app": "nginx", "a b": "c"}},
     ['spec.template.metadata.labels: Invalid value: "a b": name part must consist']),
    ("restartPolicy must be Always", {"spec.template.spec.restartPolicy": "Never"},
     ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: '
      '"Always"']),
    ("every failing field at once",
     {"spec.replicas": -2, "spec.template.metadata.labels": {"app": "web"},
      "spec.template.spec.containers[0].name": "Nginx"},
     ["spec.replicas: Invalid value: -2", MISMATCH,
      'spec.template.spec.containers[0].name: Invalid value: "Nginx"']),
]

KINDS = [("deployments", DEPLOY), ("replicasets", RS), ("statefulsets", STS)]


@pytest.mark.parametrize("kind,base", KINDS, ids=[k for k, _ in KINDS])
@pytest.mark.parametrize("desc,changes,want", WORKLOAD_CASES, ids=[c[0] for c in WORKLOAD_CASES])
def test_workload_rules(kind, base, desc, changes, want):
    assert_causes(causes_of(kind, edit(base, changes)), want)


@pytest.mark.parametrize("kind,base,noun", [("deployments", DEPLOY, "deployment"),
                                            ("replicasets", RS, "deployment"),
                                            ("statefulsets", STS, "statefulset")])
def test_empty_selector(kind, base, noun):
    assert_causes(causes_of(kind, edit(base, {"spec.selector": {}})),
                  [f"spec.selector: Invalid value: {{}}: empty selector is invalid for {noun}"])


@pytest.mark.parametrize("kind,base", KINDS, ids=[k for k, _ in KINDS])
def test_selector_is_immutable(kind, base):
    new = edit(base, {"spec.selector.matchLabels": {"app": "nginx", "tier": "web"},
                      "spec.template.metadata.labels": {"app": "nginx", "tier": "web"}})
    assert_causes(causes_of(kind, new, base),
                  ['spec.selector: Invalid value: {"matchLabels":{"app":"nginx","tier":"web"}}: '
                   "field is immutable"])
    assert causes_of(kind, edit(base, {"spec.replicas": 5}), base) == []


# (description, changes, expected cause prefixes)
DEPLOYMENT_CASES = [
    ("Recreate", {"spec.strategy": {"type": "Recreate"}}, []),
    ("Recreate with rollingUpdate",
     {"spec.strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
      "'Recreate'"]),
    ("unknown strategy", {"spec.strategy": {"type": "BlueGreen"}},
     ['spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", '
      '"RollingUpdate"']),
    ("integers in rollingUpdate",
     {"spec.strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}, []),
    ("both zero",
     {"spec.strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 0}}},
     ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
      "`maxSurge` is 0"]),
    ("bad percent",
     {"spec.strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "ten", "maxUnavailable": "150%"}}},
     ['spec.strategy.rollingUpdate.maxSurge: Invalid value: "ten": a valid percent string must '
      "be a numeric string followed by an ending '%'",
      'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater '
      "than 100%"]),
    ("negative revisionHistoryLimit", {"spec.revisionHistoryLimit": -1},
     ["spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"]),
    ("progress deadline not above minReadySeconds",
     {"spec.minReadySeconds": 600, "spec.progressDeadlineSeconds": 600},
     ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"]),
    ("activeDeadlineSeconds in the template", {"spec.template.spec.activeDeadlineSeconds": 10},
     ["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in deployment "
      "is not Supported"]),
]


@pytest.mark.parametrize("desc,changes,want", DEPLOYMENT_CASES,
                         ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployment(desc, changes, want):
    assert_causes(causes_of("deployments", edit(DEPLOY, changes)), want)


# (description, changes, expected cause prefixes)
STATEFULSET_CASES = [
    ("Parallel", {"spec.podManagementPolicy": "Parallel"}, []),
    ("no serviceName", {"spec.serviceName": DELETE}, []),
    ("serviceName is a DNS label", {"spec.serviceName": "Nginx.svc"},
     ['spec.serviceName: Invalid value: "Nginx.svc": a lowercase RFC 1123 label']),
    ("unknown podManagementPolicy", {"spec.podManagementPolicy": "Random"},
     ["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or "
      "'Parallel'"]),
    ("OnDelete with rollingUpdate",
     {"spec.updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}},
     ['spec.updateStrategy.rollingUpdate: Invalid value: {"partition":1}: only allowed for '
      "updateStrategy 'RollingUpdate'"]),
    ("negative partition",
     {"spec.updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}},
     ["spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or "
      "equal to 0"]),
    ("unknown update strategy", {"spec.updateStrategy": {"type": "Canary"}},
     ["spec.updateStrategy.type: Invalid value: \"Canary\": must be 'RollingUpdate' or "
      "'OnDelete'"]),
]


@pytest.mark.parametrize("desc,changes,want", STATEFULSET_CASES,
                         ids=[c[0] for c in STATEFULSET_CASES])
def test_stateful_set(desc, changes, want):
    assert_causes(causes_of("statefulsets", edit(STS, changes)), want)


def test_stateful_set_update_limits():
    assert causes_of("statefulsets", edit(STS, {"spec.replicas": 5,
                                                "spec.template.spec.containers[0].image":
                                                    "nginx:1.17"}), STS) == []
    assert_causes(causes_of("statefulsets", edit(STS, {"spec.serviceName": "other"}), STS),
                  ["spec: Forbidden: updates to statefulset spec for fields other than "
                   "'replicas', 'ordinals', 'template', 'updateStrategy', "
                   "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden "
                   "(changed: spec.serviceName)"])
