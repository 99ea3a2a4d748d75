"""Defaulting and validation of API objects: the table of per-kind rules and its entry points.

The API server calls, for every write::

    ensure_namespace(info, obj, request_namespace)   # create/update of namespaced kinds
    default_object(info, obj)                        # fill defaults (mutates obj)
    prepare_for_update(info, obj, old)               # updates only: keep allocated values
    causes = validate_object(info, obj, old)         # every failing field, [] when valid
    if causes: raise invalid(info.kind, name, causes, info.group)

All four are pure functions over JSON dicts. Validation never stops at the first problem: a
client fixing a manifest should see every failing field at once, with kube's field paths and
wording. Rules for each kind live in one module per area (validation_pod, validation_service,
validation_core, validation_apps, validation_networking); this module holds only the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import Cause, bad_request
from .names import is_dns1035_label, is_dns1123_label, is_dns1123_subdomain
from .resources import ResourceInfo
from .validation_apps import default_deployment, default_replica_set, default_stateful_set, \
    validate_deployment, validate_replica_set, validate_stateful_set
from .validation_common import NameCheck, validate_object_meta, validate_object_meta_update
from .validation_core import default_namespace, default_secret, validate_config_map, \
    validate_event, validate_lease, validate_namespace, validate_node, validate_secret
from .validation_networking import default_ingress_class, validate_ingress, \
    validate_ingress_class
from .validation_pod import default_pod, validate_pod
from .validation_service import default_endpoints, default_service, prepare_service_update, \
    validate_endpoints, validate_service

Validator = Callable[[dict, "dict | None"], list[Cause]]


@dataclass(frozen=True)
class KindRules:
    name_check: NameCheck
    validate: Validator
    default: Callable[[dict], None] | None = None
    prepare_update: Callable[[dict, dict], None] | None = None


# Names: most kinds are DNS subdomains; Namespaces are DNS labels (they become DNS labels in
# `<svc>.<ns>.svc`); Services are DNS-1035 labels (kube's ValidateServiceName: a Service name
# also becomes an environment-variable prefix, so it may not start with a digit).
RULES: dict[tuple[str, str], KindRules] = {
    ("", "Namespace"): KindRules(is_dns1123_label, validate_namespace, default_namespace),
    ("", "Node"): KindRules(is_dns1123_subdomain, validate_node),
    ("", "Pod"): KindRules(is_dns1123_subdomain, validate_pod, default_pod),
    ("", "Service"): KindRules(is_dns1035_label, validate_service, default_service,
                               prepare_service_update),
    ("", "Endpoints"): KindRules(is_dns1123_subdomain, validate_endpoints, default_endpoints),
    ("", "ConfigMap"): KindRules(is_dns1123_subdomain, validate_config_map),
    ("", "Secret"): KindRules(is_dns1123_subdomain, validate_secret, default_secret),
    ("", "Event"): KindRules(is_dns1123_subdomain, validate_event),
    ("apps", "Deployment"): KindRules(is_dns1123_subdomain, validate_deployment,
                                      default_deployment),
    ("apps", "ReplicaSet"): KindRules(is_dns1123_subdomain, validate_replica_set,
                                      default_replica_set),
    ("apps", "StatefulSet"): KindRules(is_dns1123_subdomain, validate_stateful_set,
                                       default_stateful_set),
    ("networking.k8s.io", "Ingress"): KindRules(is_dns1123_subdomain, validate_ingress),
    ("networking.k8s.io", "IngressClass"): KindRules(is_dns1123_subdomain,
                                                     validate_ingress_class,
                                                     default_ingress_class),
    ("coordination.k8s.io", "Lease"): KindRules(is_dns1123_subdomain, validate_lease),
}


def rules_for(info: ResourceInfo) -> KindRules:
    try:
        return RULES[(info.group, info.kind)]
    except KeyError:
        raise LookupError(f"no validation rules for {info.kind} in {info.api_version}; add a "
                          "row to meshnet.api.validation.RULES") from None


def default_object(info: ResourceInfo, obj: dict) -> None:
    """Fill in the defaults kube-apiserver would (mutates `obj`)."""
    rules = rules_for(info)
    if rules.default is not None and isinstance(obj, dict):
        rules.default(obj)


def prepare_for_update(info: ResourceInfo, obj: dict, old: dict) -> None:
    """Carry allocated values over from the stored object, drop ones the new type cannot have.

    Run after default_object and before validate_object on updates.
    """
    rules = rules_for(info)
    if rules.prepare_update is not None and isinstance(obj, dict) and isinstance(old, dict):
        rules.prepare_update(obj, old)


def validate_object(info: ResourceInfo, obj: dict, old: dict | None = None) -> list[Cause]:
    """Every failing field of `obj` ([] when valid); pass `old` for an update."""
    rules = rules_for(info)
    if not isinstance(obj, dict):
        return [Cause("", "Invalid value: the object must be a JSON object")]
    causes = validate_object_meta(obj, namespaced=info.namespaced, name_check=rules.name_check)
    causes += rules.validate(obj, old)
    if old is not None:
        causes += validate_object_meta_update(obj, old)
    return causes


def ensure_namespace(info: ResourceInfo, obj: dict, request_namespace: str | None) -> None:
    """Reconcile metadata.namespace with the request's namespace (kube's BeforeCreate rule).

    Namespaced kinds take the request's namespace when the object names none, and a different
    one is a 400. Cluster-scoped kinds have any namespace cleared. Mutates `obj`.
    """
    meta = obj.setdefault("metadata", {}) if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return
    have = meta.get("namespace") or ""
    if not info.namespaced:
        meta.pop("namespace", None)
        return
    if not request_namespace:
        return  # a cluster-wide path; the object must carry its namespace itself
    if not have:
        meta["namespace"] = request_namespace
    elif have != request_namespace:
        raise bad_request("the namespace of the provided object does not match the namespace "
                          f"sent on the request (object: {have!r}, request: "
                          f"{request_namespace!r})")
