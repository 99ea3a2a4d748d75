"""networking.k8s.io/v1 Ingress and IngressClass.

An Ingress routes by host and path to a backend: a Service port (by number or name) or a typed
resource. Rules follow kube's ValidateIngressSpec: pathType is required and decides what a path
may look like; a host is a DNS name, optionally `*.`-wildcarded, never an IP.

Many tutorials still show the extensions/v1beta1 shape (`backend: {serviceName, servicePort}`,
`spec.backend`). kube-apiserver silently drops those unknown fields and then complains that the
backend is empty; here they get a cause naming the old field and the v1 fields that replace it,
and validation carries on past a missing pathType so both mistakes show up in one answer.
"""

from __future__ import annotations

from .errors import field_forbidden, field_invalid, field_not_supported, field_required
from .names import domain_prefixed_path_errors, is_dns1035_label, is_dns1123_label, \
    is_dns1123_subdomain, is_valid_port_name, is_valid_port_num, is_wildcard_dns1123_subdomain, \
    parse_ip
from .validation_common import Causes, at, child, dict_at, has_cause, immutable, int_at, \
    list_at, objects_at, shown, str_at, too_long

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
PARAMETER_SCOPES = ("Cluster", "Namespace")
MAX_CONTROLLER_LENGTH = 250
LEGACY_BACKEND_DETAIL = (
    "networking.k8s.io/v1 uses backend.service.name and backend.service.port.number (or .name); "
    "serviceName/servicePort are from extensions/v1beta1")
LEGACY_DEFAULT_BACKEND_DETAIL = (
    "networking.k8s.io/v1 uses spec.defaultBackend (with service.name and service.port.number "
    "or .name); spec.backend is from extensions/v1beta1")
# Sequences a proxy may normalise differently from the controller: refused in Exact/Prefix paths.
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


# --- Ingress -------------------------------------------------------------------------------

def validate_ingress(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    legacy_default = spec.get("backend")
    if legacy_default is not None:
        causes.append(field_invalid("spec.backend", shown(legacy_default),
                                    LEGACY_DEFAULT_BACKEND_DETAIL))
    default = spec.get("defaultBackend")
    rules = objects_at(spec, "rules", "spec", causes)
    if not rules and default is None and legacy_default is None \
            and not has_cause(causes, "spec.rules"):
        causes.append(field_invalid("spec", shown(spec.get("rules")),
                                    "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        causes += _validate_backend(default, "spec.defaultBackend")
    for rpath, rule in rules:
        causes += _validate_rule(rule, rpath)
    for tpath, tls in objects_at(spec, "tls", "spec", causes):
        for i, host in enumerate(list_at(tls, "hosts", tpath, causes)):
            hpath = at(child(tpath, "hosts"), i)
            if not isinstance(host, str):
                causes.append(field_invalid(hpath, shown(host), "must be a string"))
                continue
            check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            causes += [field_invalid(hpath, host, m) for m in check(host)]
        secret = str_at(tls, "secretName", tpath, causes)
        if secret:
            causes += [field_invalid(child(tpath, "secretName"), secret, m)
                       for m in is_dns1123_subdomain(secret)]
    class_name = str_at(spec, "ingressClassName", "spec", causes)
    if class_name is not None:
        causes += [field_invalid("spec.ingressClassName", class_name, m)
                   for m in is_dns1123_subdomain(class_name)]
    return causes


def _validate_rule(rule: dict, path: str) -> Causes:
    causes: Causes = []
    host = str_at(rule, "host", path, causes)
    hpath = child(path, "host")
    if host:
        if parse_ip(host) is not None:
            causes.append(field_invalid(hpath, host, "must be a DNS name, not an IP address"))
        check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
        causes += [field_invalid(hpath, host, m) for m in check(host)]
    if rule.get("http") is None:
        return causes
    http = dict_at(rule, "http", path, causes)
    http_path = child(path, "http")
    paths = objects_at(http, "paths", http_path, causes)
    if not paths and not has_cause(causes, child(http_path, "paths")):
        causes.append(field_required(child(http_path, "paths")))
    for ppath, p in paths:
        causes += _validate_http_path(p, ppath)
    return causes


def _validate_http_path(p: dict, path: str) -> Causes:
    causes: Causes = []
    value = str_at(p, "path", path, causes) or ""
    vpath = child(path, "path")
    path_type = str_at(p, "pathType", path, causes)
    if path_type is None:
        if not has_cause(causes, child(path, "pathType")):
            causes.append(field_required(child(path, "pathType"), "pathType must be specified"))
    elif path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            causes.append(field_invalid(vpath, value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES:
            if seq in value:
                causes.append(field_invalid(vpath, value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                causes.append(field_invalid(vpath, value, f"cannot end with '{suffix}'"))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            causes.append(field_invalid(vpath, value, "must be an absolute path"))
    else:
        causes.append(field_not_supported(child(path, "pathType"), path_type, PATH_TYPES))
    bpath = child(path, "backend")
    if p.get("backend") is None:
        causes.append(field_invalid(bpath, "", "resource or service backend is required"))
    else:
        causes += _validate_backend(p["backend"], bpath)
    return causes


def _validate_backend(backend, path: str) -> Causes:
    if not isinstance(backend, dict):
        return [field_invalid(path, shown(backend), "must be an object")]
    causes: Causes = []
    legacy = [k for k in ("serviceName", "servicePort") if k in backend]
    if legacy:
        causes.append(field_invalid(child(path, legacy[0]), shown(backend[legacy[0]]),
                                    LEGACY_BACKEND_DETAIL))
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return causes + [field_invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return causes + _validate_resource_ref(resource, child(path, "resource"),
                                               required_detail=True)
    if service is None:
        if not legacy:
            causes.append(field_invalid(path, "", "resource or service backend is required"))
        return causes
    spath = child(path, "service")
    if not isinstance(service, dict):
        return causes + [field_invalid(spath, shown(service), "must be an object")]
    name = str_at(service, "name", spath, causes)
    if not name:
        if not has_cause(causes, child(spath, "name")):
            causes.append(field_required(child(spath, "name")))
    else:
        causes += [field_invalid(child(spath, "name"), name, m) for m in is_dns1035_label(name)]
    port = dict_at(service, "port", spath, causes)
    port_path = child(spath, "port")
    port_name = str_at(port, "name", port_path, causes)
    number = int_at(port, "number", port_path, causes)
    if port_name and number:
        causes.append(field_invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        causes += [field_invalid(child(port_path, "name"), port_name, m)
                   for m in is_valid_port_name(port_name)]
    elif number:
        causes += [field_invalid(child(port_path, "number"), number, m)
                   for m in is_valid_port_num(number)]
    elif not has_cause(causes, port_path) and not any(
            c.field.startswith(port_path + ".") for c in causes):
        causes.append(field_required(path, "port name or number is required"))
    return causes


def _validate_resource_ref(ref, path: str, *, required_detail: bool) -> Causes:
    if not isinstance(ref, dict):
        return [field_invalid(path, shown(ref), "must be an object")]
    causes: Causes = []
    group = str_at(ref, "apiGroup", path, causes)
    if group:
        causes += [field_invalid(child(path, "apiGroup"), group, m)
                   for m in is_dns1123_subdomain(group)]
    for key in ("kind", "name"):
        value = str_at(ref, key, path, causes)
        if not value:
            if not has_cause(causes, child(path, key)):
                causes.append(field_required(child(path, key),
                                             f"{key} is required" if required_detail else ""))
        elif value in (".", "..") or "/" in value or "%" in value:
            causes.append(field_invalid(child(path, key), value,
                                        "may not be '.' or '..' and may not contain '/' or '%'"))
    return causes


# --- IngressClass --------------------------------------------------------------------------

def default_ingress_class(obj: dict) -> None:
    spec = obj.get("spec")
    params = spec.get("parameters") if isinstance(spec, dict) else None
    if isinstance(params, dict) and not params.get("scope"):
        params["scope"] = "Cluster"


def validate_ingress_class(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    controller = str_at(spec, "controller", "spec", causes)
    cpath = "spec.controller"
    if not controller:
        if not has_cause(causes, cpath):
            causes.append(field_required(cpath))
    else:
        if len(controller) > MAX_CONTROLLER_LENGTH:
            causes.append(too_long(cpath, MAX_CONTROLLER_LENGTH))
        causes += [field_invalid(cpath, part, m)
                   for part, m in domain_prefixed_path_errors(controller)]
    params = spec.get("parameters")
    if params is not None:
        ppath = "spec.parameters"
        causes += _validate_resource_ref(params, ppath, required_detail=False)
        if isinstance(params, dict):
            scope = str_at(params, "scope", ppath, causes) or ""
            namespace = params.get("namespace")
            if scope not in PARAMETER_SCOPES:
                causes.append(field_not_supported(child(ppath, "scope"), scope,
                                                  PARAMETER_SCOPES))
            elif scope == "Namespace":
                if namespace is None:
                    causes.append(field_required(child(ppath, "namespace"),
                                                 "`parameters.scope` is set to 'Namespace'"))
                elif isinstance(namespace, str):
                    causes += [field_invalid(child(ppath, "namespace"), namespace, m)
                               for m in is_dns1123_label(namespace)]
            elif namespace is not None:
                causes.append(field_forbidden(child(ppath, "namespace"),
                                              "`parameters.scope` is set to 'Cluster'"))
    if old is not None and isinstance(old.get("spec"), dict):
        was = old["spec"].get("controller")
        if was and controller != was:
            causes.append(immutable(cpath, controller))
    return causes

