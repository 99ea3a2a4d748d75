"""Core-group kinds with small rules: Namespace, Node, ConfigMap, Secret, Event, Lease.

(Pods live in validation_pod, Services and Endpoints in validation_service.)

Secrets: `stringData` is write-only convenience. Defaulting folds it into `data` (base64, the
stringData value winning) and removes it, as kube's conversion does, so storage and readers only
ever see `data`. Secret `data` values must be base64; kube rejects bad ones while decoding JSON,
here they become a cause on `data[<key>]` with the contents redacted.
"""

from __future__ import annotations

import base64
import binascii
import re

from .errors import field_forbidden, field_invalid, field_not_supported, field_required
from .names import is_config_map_key, is_qualified_name, is_valid_cidr, is_valid_label_value
from .validation_common import Causes, at, bool_at, child, dict_at, has_cause, immutable, int_at, \
    list_at, objects_at, shown, str_at, sub, too_long

MAX_SECRET_SIZE_BYTES = 1024 * 1024  # kube's MaxSecretSize, also used for ConfigMaps
MAX_EVENT_REASON_BYTES = 128
MAX_EVENT_MESSAGE_BYTES = 4 * 1024
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
NAMESPACE_PHASES = ("Active", "Terminating")
EVENT_TYPES = ("Normal", "Warning")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
REDACTED = "<secret contents redacted>"
_IMMUTABLE_SET = "field is immutable when `immutable` is set"

# Secret types whose data must carry particular keys (kube's ValidateSecret).
_REQUIRED_SECRET_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
}
_B64_CHAR = re.compile(r"[A-Za-z0-9+/=]")
_MICRO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


# --- Namespace -----------------------------------------------------------------------------

def default_namespace(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])
    status = sub(obj, "status")
    if status is not None:
        status.setdefault("phase", "Active")
    # kube-apiserver (1.21+) always labels a namespace with its own name, so that
    # namespaceSelectors can pick namespaces by name.
    meta = sub(obj, "metadata")
    name = meta.get("name") if meta is not None else None
    if isinstance(name, str) and 0 < len(name) <= 63:  # longer names fail validation anyway
        labels = meta.get("labels")
        if labels is None:
            labels = meta["labels"] = {}
        if isinstance(labels, dict):
            labels["kubernetes.io/metadata.name"] = name


def validate_namespace(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    for i, name in enumerate(list_at(spec, "finalizers", "spec", causes)):
        path = at("spec.finalizers", i)
        if not isinstance(name, str):
            causes.append(field_invalid(path, shown(name), "must be a string"))
            continue
        causes += [field_invalid(path, name, m) for m in is_qualified_name(name)]
        if "/" not in name and name not in STANDARD_FINALIZERS:
            causes.append(field_invalid(path, name, "name is neither a standard finalizer name "
                                                    "nor is it fully qualified"))
    phase = str_at(dict_at(obj, "status", "", causes), "phase", "status", causes)
    if phase is not None and phase not in NAMESPACE_PHASES:
        causes.append(field_not_supported("status.phase", phase, NAMESPACE_PHASES))
    return causes


# --- Node ----------------------------------------------------------------------------------

def validate_node(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    cidr = str_at(spec, "podCIDR", "spec", causes)
    if cidr:
        causes += [field_invalid("spec.podCIDR", cidr, m) for m in is_valid_cidr(cidr)]
    cidrs = list_at(spec, "podCIDRs", "spec", causes)
    for i, value in enumerate(cidrs):
        msgs = is_valid_cidr(value) if isinstance(value, str) else ["must be a string"]
        causes += [field_invalid(at("spec.podCIDRs", i), shown(value), m) for m in msgs]
    if len(cidrs) > 2:
        causes.append(field_invalid("spec.podCIDRs", shown(cidrs),
                                    "may specify no more than one CIDR for each IP family"))
    bool_at(spec, "unschedulable", "spec", causes)
    for tpath, taint in objects_at(spec, "taints", "spec", causes):
        key = str_at(taint, "key", tpath, causes) or ""
        causes += [field_invalid(child(tpath, "key"), key, m) for m in is_qualified_name(key)]
        value = str_at(taint, "value", tpath, causes)
        if value:
            causes += [field_invalid(child(tpath, "value"), value, m)
                       for m in is_valid_label_value(value)]
        effect = str_at(taint, "effect", tpath, causes)
        if not effect:
            if not has_cause(causes, child(tpath, "effect")):
                causes.append(field_required(child(tpath, "effect")))
        elif effect not in TAINT_EFFECTS:
            causes.append(field_not_supported(child(tpath, "effect"), effect, TAINT_EFFECTS))
    return causes


# --- ConfigMap -----------------------------------------------------------------------------

def validate_config_map(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    data = dict_at(obj, "data", "", causes)
    binary = dict_at(obj, "binaryData", "", causes)
    total = 0
    for key, value in data.items():
        causes += [field_invalid(at("data", key), key, m) for m in is_config_map_key(key)]
        if key in binary:
            causes.append(field_invalid(at("data", key), key,
                                        "duplicate of key present in binaryData"))
        if not isinstance(value, str):
            causes.append(field_invalid(at("data", key), shown(value), "must be a string"))
        else:
            total += len(value.encode())
    for key, value in binary.items():
        causes += [field_invalid(at("binaryData", key), key, m) for m in is_config_map_key(key)]
        if key in data:
            causes.append(field_invalid(at("binaryData", key), key,
                                        "duplicate of key present in data"))
        decoded = _decode_b64(value)
        if isinstance(decoded, str):
            causes.append(field_invalid(at("binaryData", key), REDACTED, decoded))
        else:
            total += len(decoded)
    if total > MAX_SECRET_SIZE_BYTES:
        causes.append(too_long("data", MAX_SECRET_SIZE_BYTES))
    bool_at(obj, "immutable", "", causes)
    if old is not None:
        causes += _validate_immutable_data(obj, old, ("data", "binaryData"))
    return causes


def _validate_immutable_data(obj: dict, old: dict, keys: tuple[str, ...]) -> Causes:
    """An object stored with `immutable: true` keeps its data and the flag forever."""
    if old.get("immutable") is not True:
        return []
    causes: Causes = []
    if obj.get("immutable") is not True:
        causes.append(field_forbidden("immutable", _IMMUTABLE_SET))
    for key in keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            causes.append(field_forbidden(key, _IMMUTABLE_SET))
    return causes


# --- Secret --------------------------------------------------------------------------------

def default_secret(obj: dict) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.get("stringData")
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        data = sub(obj, "data")
        if data is not None:
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode()).decode("ascii")
            del obj["stringData"]


def _decode_b64(value) -> bytes | str:
    """Decoded bytes, or the reason the value is not base64 (Go's encoding/json wording)."""
    if not isinstance(value, str):
        return "must be a base64-encoded string"
    text = value.replace("\r", "").replace("\n", "")  # Go's decoder skips line breaks too
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"illegal base64 data at input byte {_b64_error_offset(text)}"


def _b64_error_offset(text: str) -> int:
    for i, ch in enumerate(text):
        if not _B64_CHAR.fullmatch(ch):
            return i
    pad = text.find("=")
    if pad != -1 and text[pad:].strip("="):
        return pad  # data after padding
    return len(text) - len(text) % 4 if len(text) % 4 else max(pad, 0)


def validate_secret(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    data = dict_at(obj, "data", "", causes)
    total = 0
    for key, value in data.items():
        causes += [field_invalid(at("data", key), key, m) for m in is_config_map_key(key)]
        decoded = _decode_b64(value)
        if isinstance(decoded, str):
            causes.append(field_invalid(at("data", key), REDACTED, decoded))
        else:
            total += len(decoded)
    if total > MAX_SECRET_SIZE_BYTES:
        causes.append(too_long("data", MAX_SECRET_SIZE_BYTES))
    for key, value in dict_at(obj, "stringData", "", causes).items():
        # Only reachable when defaulting could not fold stringData (a non-string value).
        if not isinstance(value, str):
            causes.append(field_invalid(at("stringData", key), REDACTED, "must be a string"))
    secret_type = str_at(obj, "type", "", causes) or "Opaque"
    for key in _REQUIRED_SECRET_KEYS.get(secret_type, ()):
        if key not in data:
            causes.append(field_required(at("data", key)))
    if secret_type == "kubernetes.io/basic-auth" and "username" not in data \
            and "password" not in data:
        causes += [field_required("data[username]"), field_required("data[password]")]
    if secret_type == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(field_required(
                "metadata.annotations[kubernetes.io/service-account.name]"))
    bool_at(obj, "immutable", "", causes)
    if old is not None:
        old_type = old.get("type") or "Opaque"
        if secret_type != old_type:
            causes.append(immutable("type", secret_type))
        causes += _validate_immutable_data(obj, old, ("data",))
    return causes


# --- Event ---------------------------------------------------------------------------------

def validate_event(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    involved = dict_at(obj, "involvedObject", "", causes)
    if not involved and not has_cause(causes, "involvedObject"):
        causes.append(field_required("involvedObject"))
    event_ns = (obj.get("metadata") or {}).get("namespace") or ""
    involved_ns = str_at(involved, "namespace", "involvedObject", causes) or ""
    # Events about cluster-scoped objects live in "default" (or nowhere, for old clients).
    if involved and not obj.get("eventTime"):
        if (involved_ns and involved_ns != event_ns) or \
                (not involved_ns and event_ns not in ("", "default")):
            causes.append(field_invalid("involvedObject.namespace", involved_ns,
                                        "does not match event.namespace"))
    for key in ("kind", "name", "apiVersion", "uid", "fieldPath"):
        str_at(involved, key, "involvedObject", causes)
    event_type = str_at(obj, "type", "", causes)
    if event_type and event_type not in EVENT_TYPES:
        causes.append(field_not_supported("type", event_type, EVENT_TYPES))
    reason = str_at(obj, "reason", "", causes)
    if reason and len(reason.encode()) > MAX_EVENT_REASON_BYTES:
        causes.append(too_long("reason", MAX_EVENT_REASON_BYTES))
    message = str_at(obj, "message", "", causes)
    if message and len(message.encode()) > MAX_EVENT_MESSAGE_BYTES:
        causes.append(too_long("message", MAX_EVENT_MESSAGE_BYTES))
    count = int_at(obj, "count", "", causes)
    if count is not None and count < 0:
        causes.append(field_invalid("count", count, "must be greater than or equal to 0"))
    return causes


# --- Lease ---------------------------------------------------------------------------------

def validate_lease(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    str_at(spec, "holderIdentity", "spec", causes)
    duration = int_at(spec, "leaseDurationSeconds", "spec", causes)
    if duration is not None and duration <= 0:
        causes.append(field_invalid("spec.leaseDurationSeconds", duration,
                                    "must be greater than 0"))
    transitions = int_at(spec, "leaseTransitions", "spec", causes)
    if transitions is not None and transitions < 0:
        causes.append(field_invalid("spec.leaseTransitions", transitions,
                                    "must be greater than or equal to 0"))
    for key in ("acquireTime", "renewTime"):
        value = str_at(spec, key, "spec", causes)
        if value is not None and not _MICRO_TIME.fullmatch(value):
            causes.append(field_invalid(child("spec", key), value,
                                        "must be an RFC 3339 time with microseconds (e.g. "
                                        "2006-01-02T15:04:05.000000Z)"))
    return causes
