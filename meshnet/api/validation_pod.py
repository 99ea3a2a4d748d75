"""Pods and pod templates: defaults and validation of a PodSpec at any path.

The same spec rules run for a Pod (`spec.containers[0].image`) and for the template inside a
Deployment, ReplicaSet or StatefulSet (`spec.template.spec.containers[0].image`); only the path
prefix differs. Defaults follow kube's SetDefaults_PodSpec / SetDefaults_Container; a few apply
to Pods only (enableServiceLinks, requests copied from limits, status.phase Pending).
"""

from __future__ import annotations

from .errors import field_duplicate, field_forbidden, field_invalid, field_not_supported, \
    field_required
from .labels import validate_labels
from .names import is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_valid_ip, \
    is_valid_port_name, is_valid_port_num
from .validation_common import Causes, at, bool_at, child, dict_at, has_cause, int_at, \
    list_at, objects_at, shown, str_at, sub, sub_list, validate_annotations

PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "Never", "OnFailure")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("FallbackToLogsOnError", "File")
DEFAULT_TERMINATION_GRACE_PERIOD_S = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_DNS_NAMESERVERS = 3  # resolv.conf limit, as in kube
MAX_DNS_SEARCH_PATHS = 32

_MUTABLE_SPEC_FIELDS = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
_POD_UPDATE_RULE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
    "to 1 if it was previously negative)")


# --- defaults ------------------------------------------------------------------------------

def default_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image, IfNotPresent otherwise (kube's rule)."""
    ref, _, digest = image.partition("@")
    last = ref.rsplit("/", 1)[-1]  # a registry port (`host:5000/x`) is not a tag
    tag = last.split(":", 1)[1] if ":" in last else ("" if digest else "latest")
    return "Always" if tag == "latest" else "IfNotPresent"


def default_container(c: dict, *, pod: bool, host_network: bool) -> None:
    image = c.get("image")
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = default_pull_policy(image if isinstance(image, str) else "")
    c.setdefault("terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
    c.setdefault("terminationMessagePolicy", "File")
    for port in sub_list(c, "ports"):
        port.setdefault("protocol", "TCP")
        if host_network and not port.get("hostPort"):
            port["hostPort"] = port.get("containerPort")
    resources = c.get("resources")
    if pod and isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        requests = resources.setdefault("requests", {})
        if isinstance(requests, dict):
            for res, qty in resources["limits"].items():
                requests.setdefault(res, qty)


def default_pod_spec(spec: dict, *, pod: bool) -> None:
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD_S)
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER_NAME)
    if pod:
        spec.setdefault("enableServiceLinks", True)
    host_network = spec.get("hostNetwork") is True
    for c in sub_list(spec, "initContainers") + sub_list(spec, "containers"):
        default_container(c, pod=pod, host_network=host_network)


def default_pod(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is not None:
        default_pod_spec(spec, pod=True)
    status = sub(obj, "status")
    if status is not None:
        status.setdefault("phase", "Pending")


def default_pod_template(template: dict) -> None:
    spec = sub(template, "spec")
    if spec is not None:
        default_pod_spec(spec, pod=False)


# --- validation ----------------------------------------------------------------------------

def validate_pod(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    causes += validate_pod_spec(spec, "spec")
    if old is not None:
        causes += _validate_pod_update(spec, old.get("spec") if isinstance(old, dict) else None)
    return causes


def validate_pod_template(template: dict, path: str) -> Causes:
    """A PodTemplateSpec: its metadata labels/annotations and its spec."""
    causes: Causes = []
    meta = dict_at(template, "metadata", path, causes)
    mpath = child(path, "metadata")
    causes += validate_labels(dict_at(meta, "labels", mpath, causes), child(mpath, "labels"))
    causes += validate_annotations(dict_at(meta, "annotations", mpath, causes),
                                   child(mpath, "annotations"))
    causes += validate_pod_spec(dict_at(template, "spec", path, causes), child(path, "spec"))
    return causes


def validate_pod_spec(spec: dict, path: str) -> Causes:
    causes: Causes = []
    host_network = bool_at(spec, "hostNetwork", path, causes) is True
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        containers = objects_at(spec, key, path, causes)
        if key == "containers" and not containers and not has_cause(causes, child(path, key)):
            causes.append(field_required(child(path, key)))
        for cpath, c in containers:
            causes += _validate_container(c, cpath, names, host_network)
    _check_enum(spec, "restartPolicy", RESTART_POLICIES, path, causes)
    dns_policy = _check_enum(spec, "dnsPolicy", DNS_POLICIES, path, causes)
    causes += _validate_dns_config(spec, path, dns_policy)
    for key in ("hostname", "subdomain"):
        value = str_at(spec, key, path, causes)
        if value:
            causes += [field_invalid(child(path, key), value, m) for m in is_dns1123_label(value)]
    for key in ("nodeName", "serviceAccountName"):
        value = str_at(spec, key, path, causes)
        if value:
            causes += [field_invalid(child(path, key), value, m)
                       for m in is_dns1123_subdomain(value)]
    grace = int_at(spec, "terminationGracePeriodSeconds", path, causes)
    if grace is not None and grace < 0:
        causes.append(field_invalid(child(path, "terminationGracePeriodSeconds"), grace,
                                    "must be greater than or equal to 0"))
    deadline = int_at(spec, "activeDeadlineSeconds", path, causes)
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        causes.append(field_invalid(child(path, "activeDeadlineSeconds"), deadline,
                                    "must be between 1 and 2147483647, inclusive"))
    str_at(spec, "schedulerName", path, causes)
    return causes


def _check_enum(obj: dict, key: str, allowed, path: str, causes: Causes) -> str | None:
    value = str_at(obj, key, path, causes)
    if value is not None and value not in allowed:
        causes.append(field_not_supported(child(path, key), value, allowed))
    return value


def _validate_container(c: dict, path: str, names: set[str], host_network: bool) -> Causes:
    causes: Causes = []
    name = str_at(c, "name", path, causes)
    npath = child(path, "name")
    if not name:
        causes.append(field_required(npath))
    else:
        causes += [field_invalid(npath, name, m) for m in is_dns1123_label(name)]
        if name in names:
            causes.append(field_duplicate(npath, name))
        names.add(name)
    image = str_at(c, "image", path, causes)
    if not image:
        causes.append(field_required(child(path, "image")))
    elif image != image.strip():
        causes.append(field_invalid(child(path, "image"), image,
                                    "must not have leading or trailing whitespace"))
    _check_enum(c, "imagePullPolicy", PULL_POLICIES, path, causes)
    _check_enum(c, "terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES, path, causes)
    for key in ("command", "args"):
        for i, item in enumerate(list_at(c, key, path, causes)):
            if not isinstance(item, str):
                causes.append(field_invalid(at(child(path, key), i), shown(item),
                                            "must be a string"))
    causes += _validate_container_ports(c, path, host_network)
    for epath, env in objects_at(c, "env", path, causes):
        env_name = str_at(env, "name", epath, causes)
        if not env_name:
            causes.append(field_required(child(epath, "name")))
        else:
            causes += [field_invalid(child(epath, "name"), env_name, m)
                       for m in is_env_var_name(env_name)]
        str_at(env, "value", epath, causes)
    return causes


def _validate_container_ports(c: dict, path: str, host_network: bool) -> Causes:
    causes: Causes = []
    names: set[str] = set()
    for ppath, port in objects_at(c, "ports", path, causes):
        name = str_at(port, "name", ppath, causes)
        if name:
            msgs = is_valid_port_name(name)
            causes += [field_invalid(child(ppath, "name"), name, m) for m in msgs]
            if not msgs and name in names:
                causes.append(field_duplicate(child(ppath, "name"), name))
            names.add(name)
        container_port = int_at(port, "containerPort", ppath, causes)
        if not container_port:
            if not has_cause(causes, child(ppath, "containerPort")):
                causes.append(field_required(child(ppath, "containerPort")))
        else:
            causes += [field_invalid(child(ppath, "containerPort"), container_port, m)
                       for m in is_valid_port_num(container_port)]
        host_port = int_at(port, "hostPort", ppath, causes)
        if host_port:
            causes += [field_invalid(child(ppath, "hostPort"), host_port, m)
                       for m in is_valid_port_num(host_port)]
            if host_network and container_port and host_port != container_port:
                causes.append(field_invalid(child(ppath, "hostPort"), host_port,
                                            "must match `containerPort` when `hostNetwork` is "
                                            "true"))
        protocol = str_at(port, "protocol", ppath, causes)
        if protocol is not None and protocol not in PROTOCOLS:
            causes.append(field_not_supported(child(ppath, "protocol"), protocol, PROTOCOLS))
        host_ip = str_at(port, "hostIP", ppath, causes)
        if host_ip:
            causes += [field_invalid(child(ppath, "hostIP"), host_ip, m)
                       for m in is_valid_ip(host_ip)]
    return causes


def _validate_dns_config(spec: dict, path: str, dns_policy: str | None) -> Causes:
    causes: Causes = []
    cpath = child(path, "dnsConfig")
    config = dict_at(spec, "dnsConfig", path, causes)
    if dns_policy == "None" and not config and not has_cause(causes, cpath):
        causes.append(field_required(cpath, "must provide `dnsConfig` when `dnsPolicy` is None"))
    servers = list_at(config, "nameservers", cpath, causes)
    spath = child(cpath, "nameservers")
    if len(servers) > MAX_DNS_NAMESERVERS:
        causes.append(field_invalid(spath, shown(servers),
                                    f"must not have more than {MAX_DNS_NAMESERVERS} nameservers"))
    if dns_policy == "None" and config and not servers:
        causes.append(field_required(spath, "must provide at least one DNS nameserver when "
                                            "`dnsPolicy` is None"))
    for i, server in enumerate(servers):
        msgs = is_valid_ip(server) if isinstance(server, str) else ["must be a string"]
        causes += [field_invalid(at(spath, i), shown(server), m) for m in msgs]
    searches = list_at(config, "searches", cpath, causes)
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        causes.append(field_invalid(child(cpath, "searches"), shown(searches),
                                    f"must not have more than {MAX_DNS_SEARCH_PATHS} search "
                                    "paths"))
    for i, search in enumerate(searches):
        if not isinstance(search, str):
            causes.append(field_invalid(at(child(cpath, "searches"), i), shown(search),
                                        "must be a string"))
            continue
        # A trailing dot marks a fully qualified search domain; kube accepts it.
        causes += [field_invalid(at(child(cpath, "searches"), i), search, m)
                   for m in is_dns1123_subdomain(search.removesuffix("."))]
    for opath, option in objects_at(config, "options", cpath, causes):
        if not option.get("name"):
            causes.append(field_required(child(opath, "name"), "Option.Name must not be empty"))
    return causes


def _validate_pod_update(spec: dict, old_spec) -> Causes:
    """Most of a pod's spec is fixed once created (kube's ValidatePodUpdate)."""
    if not isinstance(old_spec, dict):
        return []
    causes: Causes = []
    new_containers = spec.get("containers") if isinstance(spec.get("containers"), list) else []
    old_containers = (old_spec.get("containers")
                      if isinstance(old_spec.get("containers"), list) else [])
    if len(new_containers) != len(old_containers):
        return [field_forbidden("spec.containers", "pod updates may not add or remove containers")]
    changed = []
    for key in sorted(set(spec) | set(old_spec)):
        have, was = spec.get(key), old_spec.get(key)
        if key in _MUTABLE_SPEC_FIELDS or have == was:
            continue
        if key in ("containers", "initContainers") and _same_but_images(have, was):
            continue
        # Binding a pod sets spec.nodeName once; meshnet's scheduler may do so with an update.
        if key == "nodeName" and not was:
            continue
        changed.append(f"spec.{key}")
    if changed:
        causes.append(field_forbidden("spec", f"{_POD_UPDATE_RULE} (changed: "
                                              f"{', '.join(changed)})"))
    return causes


def _same_but_images(have, was) -> bool:
    if not isinstance(have, list) or not isinstance(was, list) or len(have) != len(was):
        return False
    for a, b in zip(have, was):
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        if {k: v for k, v in a.items() if k != "image"} != \
                {k: v for k, v in b.items() if k != "image"}:
            return False
    return True

