"""apps/v1 workloads: Deployment, ReplicaSet, StatefulSet.

All three own pods through a label selector and a pod template, and share the rules for them:
the selector is required, not empty, and must select the template's own labels (otherwise the
controller would create pods it does not count and never stop); the template is a pod spec,
validated at `spec.template.spec...`, whose restartPolicy must be Always. The selector may not
change once set: pods created under the old one would be orphaned.

Defaults follow kube's apps/v1 SetDefaults_*: replicas 1, revisionHistoryLimit 10, Deployment
RollingUpdate 25%/25% and progressDeadlineSeconds 600, StatefulSet OrderedReady + RollingUpdate.
"""

from __future__ import annotations

import re

from .errors import field_forbidden, field_invalid, field_not_supported, field_required
from .labels import SelectorError, selector_from_label_selector, validate_label_selector
from .names import is_dns1123_label
from .validation_common import Causes, child, dict_at, go_map, immutable, int_at, shown, \
    str_at, sub
from .validation_pod import default_pod_template, validate_pod_template

DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_S = 600
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_MAX_SURGE = "25%"
DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")
POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")
STATEFULSET_STRATEGIES = ("OnDelete", "RollingUpdate")
_PERCENT = re.compile(r"[0-9]+%")
# Fields of a StatefulSet spec an update may change (kube's ValidateStatefulSetUpdate).
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "selector")


# --- defaults ------------------------------------------------------------------------------

def _default_workload(spec: dict) -> None:
    spec.setdefault("replicas", 1)
    template = sub(spec, "template")
    if template is not None:
        default_pod_template(template)


def default_deployment(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is None:
        return
    _default_workload(spec)
    strategy = sub(spec, "strategy")
    if strategy is not None:
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            rolling = sub(strategy, "rollingUpdate")
            if rolling is not None:
                rolling.setdefault("maxUnavailable", DEFAULT_MAX_UNAVAILABLE)
                rolling.setdefault("maxSurge", DEFAULT_MAX_SURGE)
    spec.setdefault("revisionHistoryLimit", DEFAULT_REVISION_HISTORY_LIMIT)
    spec.setdefault("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)


def default_replica_set(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is not None:
        _default_workload(spec)


def default_stateful_set(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is None:
        return
    _default_workload(spec)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = sub(spec, "updateStrategy")
    if strategy is not None:
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
            strategy.setdefault("rollingUpdate", {})
        rolling = strategy.get("rollingUpdate")
        if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
            rolling.setdefault("partition", 0)
    retention = sub(spec, "persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        retention.setdefault("whenDeleted", "Retain")
        retention.setdefault("whenScaled", "Retain")
    spec.setdefault("revisionHistoryLimit", DEFAULT_REVISION_HISTORY_LIMIT)


# --- shared workload rules -----------------------------------------------------------------

def _nonnegative(spec: dict, key: str, causes: Causes) -> int | None:
    value = int_at(spec, key, "spec", causes)
    if value is not None and value < 0:
        causes.append(field_invalid(child("spec", key), value,
                                    "must be greater than or equal to 0"))
    return value


def _validate_workload(obj: dict, old: dict | None, noun: str) -> tuple[dict, Causes]:
    """Selector, template, replicas and minReadySeconds; returns the spec and the causes."""
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    _nonnegative(spec, "replicas", causes)
    _nonnegative(spec, "minReadySeconds", causes)
    raw_selector = spec.get("selector")
    selector = None
    if raw_selector is None:
        causes.append(field_required("spec.selector"))
    else:
        selector_causes = validate_label_selector(raw_selector, "spec.selector")
        causes += selector_causes
        if isinstance(raw_selector, dict) and not raw_selector.get("matchLabels") \
                and not raw_selector.get("matchExpressions"):
            causes.append(field_invalid("spec.selector", shown(raw_selector),
                                        f"empty selector is invalid for {noun}"))
        elif not selector_causes:
            try:
                selector = selector_from_label_selector(raw_selector)
            except SelectorError:
                causes.append(field_invalid("spec.selector", shown(raw_selector),
                                            "invalid label selector"))
    template = dict_at(spec, "template", "spec", causes)
    labels = (template.get("metadata") or {}).get("labels") if isinstance(
        template.get("metadata"), dict) else None
    if selector is not None and not selector.empty and not selector.matches(
            labels if isinstance(labels, dict) else {}):
        causes.append(field_invalid("spec.template.metadata.labels",
                                    go_map(labels if isinstance(labels, dict) else {}),
                                    "`selector` does not match template `labels`"))
    causes += validate_pod_template(template, "spec.template")
    pod_spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    restart = pod_spec.get("restartPolicy")
    if isinstance(restart, str) and restart != "Always":
        causes.append(field_not_supported("spec.template.spec.restartPolicy", restart,
                                          ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        causes.append(field_forbidden("spec.template.spec.activeDeadlineSeconds",
                                      f"activeDeadlineSeconds in {noun} is not Supported"))
    if old is not None and isinstance(old.get("spec"), dict):
        was = old["spec"].get("selector")
        if was is not None and raw_selector != was:
            causes.append(immutable("spec.selector", raw_selector))
    return spec, causes


# --- per kind ------------------------------------------------------------------------------

def validate_deployment(obj: dict, old: dict | None) -> Causes:
    spec, causes = _validate_workload(obj, old, "deployment")
    strategy = dict_at(spec, "strategy", "spec", causes)
    stype = str_at(strategy, "type", "spec.strategy", causes)
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate":
        if rolling is not None:
            causes.append(field_forbidden("spec.strategy.rollingUpdate",
                                          "may not be specified when strategy `type` is "
                                          "'Recreate'"))
    elif stype == "RollingUpdate":
        if not isinstance(rolling, dict):
            causes.append(field_required("spec.strategy.rollingUpdate",
                                         "this should be defaulted and never be nil"))
        else:
            causes += _validate_rolling_update(rolling, "spec.strategy.rollingUpdate")
    elif stype is not None:
        causes.append(field_not_supported("spec.strategy.type", stype, DEPLOYMENT_STRATEGIES))
    _nonnegative(spec, "revisionHistoryLimit", causes)
    deadline = int_at(spec, "progressDeadlineSeconds", "spec", causes)
    if deadline is not None:
        min_ready = spec.get("minReadySeconds") if isinstance(spec.get("minReadySeconds"),
                                                              int) else 0
        if deadline <= 0:
            causes.append(field_invalid("spec.progressDeadlineSeconds", deadline,
                                        "must be greater than 0"))
        elif deadline <= min_ready:
            causes.append(field_invalid("spec.progressDeadlineSeconds", deadline,
                                        "must be greater than minReadySeconds"))
    return causes


def _int_or_percent(value, path: str, causes: Causes) -> int | None:
    """The number an IntOrString counts as (25 for "25%"), recording causes for bad input."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        causes.append(field_invalid(path, shown(value),
                                    "must be an integer or percentage (e.g '5%')"))
        return None
    if isinstance(value, int):
        if value < 0:
            causes.append(field_invalid(path, value, "must be greater than or equal to 0"))
        return value
    if not _PERCENT.fullmatch(value):
        causes.append(field_invalid(path, value, "a valid percent string must be a numeric "
                                                 "string followed by an ending '%' (e.g. '1%',  "
                                                 "or '93%', regex used for validation is "
                                                 "'[0-9]+%')"))
        return None
    return int(value[:-1])


def _validate_rolling_update(rolling: dict, path: str) -> Causes:
    causes: Causes = []
    unavailable_path, surge_path = child(path, "maxUnavailable"), child(path, "maxSurge")
    unavailable = _int_or_percent(rolling.get("maxUnavailable", 0), unavailable_path, causes)
    surge = _int_or_percent(rolling.get("maxSurge", 0), surge_path, causes)
    if unavailable == 0 and surge == 0:
        causes.append(field_invalid(unavailable_path, shown(rolling.get("maxUnavailable", 0)),
                                    "may not be 0 when `maxSurge` is 0"))
    value = rolling.get("maxUnavailable")
    if isinstance(value, str) and unavailable is not None and unavailable > 100:
        causes.append(field_invalid(unavailable_path, value, "must not be greater than 100%"))
    return causes


def validate_replica_set(obj: dict, old: dict | None) -> Causes:
    # kube's ReplicaSet validation reuses the Deployment wording for an empty selector.
    return _validate_workload(obj, old, "deployment")[1]


def validate_stateful_set(obj: dict, old: dict | None) -> Causes:
    spec, causes = _validate_workload(obj, old, "statefulset")
    service_name = str_at(spec, "serviceName", "spec", causes)
    if service_name:
        causes += [field_invalid("spec.serviceName", service_name, m)
                   for m in is_dns1123_label(service_name)]
    policy = str_at(spec, "podManagementPolicy", "spec", causes)
    if policy is not None and policy not in POD_MANAGEMENT_POLICIES:
        causes.append(field_invalid("spec.podManagementPolicy", policy,
                                    "must be 'OrderedReady' or 'Parallel'"))
    strategy = dict_at(spec, "updateStrategy", "spec", causes)
    stype = str_at(strategy, "type", "spec.updateStrategy", causes)
    rolling = strategy.get("rollingUpdate")
    if stype == "OnDelete" and rolling is not None:
        causes.append(field_invalid("spec.updateStrategy.rollingUpdate", shown(rolling),
                                    "only allowed for updateStrategy 'RollingUpdate'"))
    elif stype == "RollingUpdate" and isinstance(rolling, dict):
        partition = int_at(rolling, "partition", "spec.updateStrategy.rollingUpdate", causes)
        if partition is not None and partition < 0:
            causes.append(field_invalid("spec.updateStrategy.rollingUpdate.partition", partition,
                                        "must be greater than or equal to 0"))
    elif stype is not None and stype not in STATEFULSET_STRATEGIES:
        causes.append(field_invalid("spec.updateStrategy.type", stype,
                                    "must be 'RollingUpdate' or 'OnDelete'"))
    _nonnegative(spec, "revisionHistoryLimit", causes)
    if old is not None and isinstance(old.get("spec"), dict):
        old_spec = old["spec"]
        changed = [f"spec.{k}" for k in sorted(set(spec) | set(old_spec))
                   if k not in _STS_MUTABLE and spec.get(k) != old_spec.get(k)]
        if changed:
            causes.append(field_forbidden(
                "spec", "updates to statefulset spec for fields other than 'replicas', "
                        "'ordinals', 'template', 'updateStrategy', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                        f"forbidden (changed: {', '.join(changed)})"))
    return causes
