"""Services and Endpoints: defaults, validation, and what an update keeps from the stored object.

Defaults (kube's SetDefaults_Service plus the registry's IP-family defaulting on a single-stack
IPv4 cluster): type ClusterIP, sessionAffinity None, port protocol TCP, targetPort = port,
ipFamilies from the clusterIP (IPv4 when none is given yet), ipFamilyPolicy SingleStack,
internalTrafficPolicy Cluster, externalTrafficPolicy Cluster when the Service is reachable from
outside (NodePort, LoadBalancer, or externalIPs), a 3-hour ClientIP affinity timeout.

`prepare_service_update` is kube's patchAllocatedValues + dropTypeDependentFields: a manifest
re-applied without its clusterIP/nodePorts keeps the allocated ones, and switching type drops
the fields the new type cannot have when the user left them as they were. Callers run
default -> prepare (updates) -> validate.

Node-port ranges are the allocator's business; here a nodePort is only checked to be a port.
"""

from __future__ import annotations

from .errors import Cause, field_duplicate, field_forbidden, field_invalid, field_not_supported, \
    field_required
from .labels import validate_labels
from .names import ip_family, is_dns1123_label, is_dns1123_subdomain, is_valid_cidr, \
    is_valid_ip, is_valid_port_name, is_valid_port_num, special_ip_errors
from .validation_common import Causes, at, bool_at, child, dict_at, has_cause, immutable, \
    int_at, list_at, objects_at, shown, str_at, sub, sub_list
from .validation_pod import PROTOCOLS

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
DEFAULT_CLIENT_IP_TIMEOUT_S = 10800  # 3 hours, kube's DefaultClientIPServiceAffinitySeconds
MAX_CLIENT_IP_TIMEOUT_S = 86400


def _externally_accessible(spec: dict) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))


def _needs_cluster_ip(spec: dict) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName"


def _needs_node_port(spec: dict) -> bool:
    if spec.get("type") == "LoadBalancer":
        return spec.get("allocateLoadBalancerNodePorts") is not False
    return spec.get("type") == "NodePort"


# --- defaults ------------------------------------------------------------------------------

def default_service(obj: dict) -> None:
    spec = sub(obj, "spec")
    if spec is None:
        return
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "ClientIP":
        config = sub(spec, "sessionAffinityConfig")
        client_ip = sub(config, "clientIP") if config is not None else None
        if client_ip is not None:
            client_ip.setdefault("timeoutSeconds", DEFAULT_CLIENT_IP_TIMEOUT_S)
    for port in sub_list(spec, "ports"):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        number = port.get("port")
        if port.get("targetPort") in (None, 0, "") and isinstance(number, int) \
                and not isinstance(number, bool):
            port["targetPort"] = number
    if _needs_cluster_ip(spec):
        ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
        if ip and not ips:
            spec["clusterIPs"] = [ip]
        elif ips and isinstance(ips, list) and not ip:
            spec["clusterIP"] = ips[0]
        if not spec.get("ipFamilies"):
            family = ip_family(spec.get("clusterIP") or "")
            spec["ipFamilies"] = [family or "IPv4"]
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def prepare_service_update(obj: dict, old: dict) -> None:
    spec, old_spec = obj.get("spec"), old.get("spec")
    if not isinstance(spec, dict) or not isinstance(old_spec, dict):
        return
    # patchAllocatedValues: keep what the allocators assigned when the update leaves it out.
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        new_ports, old_ports = sub_list(spec, "ports"), sub_list(old_spec, "ports")
        used = {p.get("nodePort") for p in new_ports if p.get("nodePort")}
        by_name = {p.get("name", ""): p.get("nodePort") for p in old_ports}
        for port in new_ports:
            was = by_name.get(port.get("name", ""))
            if not port.get("nodePort") and was and was not in used:
                port["nodePort"] = was
    # dropTypeDependentFields: only what the user did not change.
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if _needs_node_port(old_spec) and not _needs_node_port(spec):
        old_node_ports = [p.get("nodePort") for p in sub_list(old_spec, "ports")]
        if [p.get("nodePort") for p in sub_list(spec, "ports")] == old_node_ports:
            for port in sub_list(spec, "ports"):
                port.pop("nodePort", None)
    if old_spec.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") == old_spec.get(
                "allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if isinstance(obj.get("status"), dict):
            obj["status"].pop("loadBalancer", None)
    if _externally_accessible(old_spec) and not _externally_accessible(spec):
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)


# --- validation ----------------------------------------------------------------------------

def validate_service(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    spec = dict_at(obj, "spec", "", causes)
    svc_type = str_at(spec, "type", "spec", causes)
    if svc_type is None:
        causes.append(field_required("spec.type"))
    elif svc_type not in SERVICE_TYPES:
        causes.append(field_not_supported("spec.type", svc_type, SERVICE_TYPES))
    cluster_ip = str_at(spec, "clusterIP", "spec", causes) or ""
    headless = cluster_ip == "None"
    causes += _validate_cluster_ips(spec, svc_type, cluster_ip)
    ports = objects_at(spec, "ports", "spec", causes)
    if not ports and svc_type != "ExternalName" and not headless \
            and not has_cause(causes, "spec.ports"):
        causes.append(field_required("spec.ports"))
    causes += _validate_ports(ports, svc_type)
    causes += validate_labels(dict_at(spec, "selector", "spec", causes), "spec.selector")
    causes += _validate_session_affinity(spec)
    for i, ip in enumerate(list_at(spec, "externalIPs", "spec", causes)):
        path = at("spec.externalIPs", i)
        if not isinstance(ip, str) or is_valid_ip(ip):
            causes.append(field_invalid(path, shown(ip),
                                        "must be a valid IP address, (e.g. 10.9.8.7 or "
                                        "2001:db8::ffff)"))
        else:
            causes += [field_invalid(path, ip, m) for m in special_ip_errors(ip)]
    causes += _validate_traffic_policies(spec)
    causes += _validate_load_balancer_fields(spec, svc_type)
    if old is not None:
        causes += _validate_service_update(spec, old.get("spec") if isinstance(old, dict) else None)
    return causes


def _validate_cluster_ips(spec: dict, svc_type: str | None, cluster_ip: str) -> Causes:
    causes: Causes = []
    cluster_ips = list_at(spec, "clusterIPs", "spec", causes)
    families = list_at(spec, "ipFamilies", "spec", causes)
    policy = str_at(spec, "ipFamilyPolicy", "spec", causes)
    if svc_type == "ExternalName":
        if cluster_ip:
            causes.append(field_forbidden("spec.clusterIP", "may not be set for ExternalName "
                                                            "services"))
        elif cluster_ips:
            causes.append(field_forbidden("spec.clusterIPs", "may not be set for ExternalName "
                                                             "services"))
        if families:
            causes.append(field_forbidden("spec.ipFamilies", "may not be set for ExternalName "
                                                             "services"))
        if policy is not None:
            causes.append(field_forbidden("spec.ipFamilyPolicy", "may not be set for "
                                                                 "ExternalName services"))
        name = str_at(spec, "externalName", "spec", causes)
        # The value is a CNAME; a trailing dot marks it fully qualified.
        if not (name or "").removesuffix("."):
            causes.append(field_required("spec.externalName"))
        else:
            causes += [field_invalid("spec.externalName", name, m)
                       for m in is_dns1123_subdomain(name.removesuffix("."))]
        return causes
    if cluster_ip == "None":
        if svc_type in ("NodePort", "LoadBalancer"):
            causes.append(field_invalid("spec.clusterIP", "None",
                                        f"may not be set to 'None' for {svc_type} services"))
    elif cluster_ip:
        causes += [field_invalid("spec.clusterIP", cluster_ip, m) for m in is_valid_ip(cluster_ip)]
    for i, ip in enumerate(cluster_ips):
        path = at("spec.clusterIPs", i)
        if i == 0 and cluster_ip and ip != cluster_ip:
            causes.append(field_invalid(path, shown(ip), "must match `clusterIP`"))
        elif i > 0 and (not isinstance(ip, str) or is_valid_ip(ip)):
            causes.append(field_invalid(path, shown(ip), "must be a valid IP address, (e.g. "
                                                         "10.9.8.7 or 2001:db8::ffff)"))
    if len(cluster_ips) > 2:
        causes.append(field_invalid("spec.clusterIPs", shown(cluster_ips),
                                    "may specify no more than one IP for each IP family"))
    seen: set = set()
    for i, family in enumerate(families):
        path = at("spec.ipFamilies", i)
        if family not in IP_FAMILIES:
            causes.append(field_not_supported(path, shown(family), IP_FAMILIES))
        elif family in seen:
            causes.append(field_duplicate(path, family))
        seen.add(family)
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        causes.append(field_not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    if policy == "SingleStack" and len(families) > 1:
        causes.append(field_invalid("spec.ipFamilies", shown(families),
                                    "may not have more than one value when `ipFamilyPolicy` is "
                                    "'SingleStack'"))
    primary = ip_family(cluster_ip)
    if primary and families and families[0] in IP_FAMILIES and families[0] != primary:
        causes.append(field_invalid("spec.clusterIP", cluster_ip,
                                    f"expected an {families[0]} value as indicated by "
                                    "`ipFamilies[0]`"))
    return causes


def _validate_ports(ports: list[tuple[str, dict]], svc_type: str | None) -> Causes:
    causes: Causes = []
    require_name = len(ports) > 1
    names: set[str] = set()
    seen: set[tuple] = set()
    node_ports: set[tuple] = set()
    for path, port in ports:
        name = str_at(port, "name", path, causes)
        if require_name and not name:
            causes.append(field_required(child(path, "name")))
        elif name:
            causes += [field_invalid(child(path, "name"), name, m) for m in is_dns1123_label(name)]
            if name in names:
                causes.append(field_duplicate(child(path, "name"), name))
            names.add(name)
        number = int_at(port, "port", path, causes)
        if number is None and "port" not in port:
            causes.append(field_required(child(path, "port")))
        elif number is not None:
            causes += [field_invalid(child(path, "port"), number, m)
                       for m in is_valid_port_num(number)]
        protocol = str_at(port, "protocol", path, causes)
        if protocol is None:
            causes.append(field_required(child(path, "protocol")))
        elif protocol not in PROTOCOLS:
            causes.append(field_not_supported(child(path, "protocol"), protocol, PROTOCOLS))
        causes += validate_port_num_or_name(port.get("targetPort"), child(path, "targetPort"))
        node_port = int_at(port, "nodePort", path, causes)
        if node_port:
            if svc_type == "ClusterIP":
                causes.append(field_forbidden(child(path, "nodePort"),
                                              "may not be used when `type` is 'ClusterIP'"))
            causes += [field_invalid(child(path, "nodePort"), node_port, m)
                       for m in is_valid_port_num(node_port)]
            if (node_port, protocol) in node_ports:
                causes.append(field_duplicate(child(path, "nodePort"), node_port))
            node_ports.add((node_port, protocol))
        if number is not None:
            if (number, protocol) in seen:
                causes.append(Cause(path, f'Duplicate value: {{"port":{number},"protocol":'
                                          f'"{protocol}"}}', "FieldValueDuplicate"))
            seen.add((number, protocol))
    return causes


def validate_port_num_or_name(value, path: str) -> Causes:
    """An IntOrString port: a number 1..65535 or an IANA_SVC_NAME (`http`, `metrics`)."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return [field_invalid(path, shown(value), "must be a port number or a port name")]
    if isinstance(value, int):
        return [field_invalid(path, value, m) for m in is_valid_port_num(value)]
    return [field_invalid(path, value, m) for m in is_valid_port_name(value)]


def _validate_session_affinity(spec: dict) -> Causes:
    causes: Causes = []
    affinity = str_at(spec, "sessionAffinity", "spec", causes)
    config = dict_at(spec, "sessionAffinityConfig", "spec", causes)
    if affinity is not None and affinity not in SESSION_AFFINITIES:
        causes.append(field_not_supported("spec.sessionAffinity", affinity, SESSION_AFFINITIES))
    elif affinity == "ClientIP":
        cpath = "spec.sessionAffinityConfig"
        detail = "when session affinity type is ClientIP"
        client_ip = dict_at(config, "clientIP", cpath, causes)
        timeout = int_at(client_ip, "timeoutSeconds", child(cpath, "clientIP"), causes)
        tpath = child(cpath, "clientIP.timeoutSeconds")
        if not config:
            causes.append(field_required(cpath, detail))
        elif not client_ip:
            causes.append(field_required(child(cpath, "clientIP"), detail))
        elif timeout is None:
            if "timeoutSeconds" not in client_ip:
                causes.append(field_required(tpath, detail))
        elif not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT_S:
            causes.append(field_invalid(tpath, timeout, "must be greater than 0 and less than "
                                                        f"{MAX_CLIENT_IP_TIMEOUT_S}"))
    elif config:
        causes.append(field_invalid("spec.sessionAffinityConfig", shown(config),
                                    "must not be set when session affinity is "
                                    f"{affinity or 'None'}"))
    return causes


def _validate_traffic_policies(spec: dict) -> Causes:
    causes: Causes = []
    external = str_at(spec, "externalTrafficPolicy", "spec", causes)
    if external:
        if external not in TRAFFIC_POLICIES:
            causes.append(field_not_supported("spec.externalTrafficPolicy", external,
                                              TRAFFIC_POLICIES))
        elif not _externally_accessible(spec):
            causes.append(field_invalid("spec.externalTrafficPolicy", external,
                                        "may only be set for externally-accessible services"))
    internal = str_at(spec, "internalTrafficPolicy", "spec", causes)
    if internal is not None and internal not in TRAFFIC_POLICIES:
        causes.append(field_not_supported("spec.internalTrafficPolicy", internal,
                                          TRAFFIC_POLICIES))
    return causes


def _validate_load_balancer_fields(spec: dict, svc_type: str | None) -> Causes:
    causes: Causes = []
    lb_only = "may only be used when `type` is 'LoadBalancer'"
    lb_ip = str_at(spec, "loadBalancerIP", "spec", causes)
    if lb_ip:
        if svc_type != "LoadBalancer":
            causes.append(field_forbidden("spec.loadBalancerIP", lb_only))
        causes += [field_invalid("spec.loadBalancerIP", lb_ip, m) for m in is_valid_ip(lb_ip)]
    ranges = list_at(spec, "loadBalancerSourceRanges", "spec", causes)
    if ranges and svc_type != "LoadBalancer":
        causes.append(field_forbidden("spec.loadBalancerSourceRanges", lb_only))
    for i, cidr in enumerate(ranges):
        msgs = is_valid_cidr(cidr.strip()) if isinstance(cidr, str) else ["must be a string"]
        causes += [field_invalid(at("spec.loadBalancerSourceRanges", i), shown(cidr), m)
                   for m in msgs]
    allocate = bool_at(spec, "allocateLoadBalancerNodePorts", "spec", causes)
    if allocate is not None and svc_type != "LoadBalancer":
        causes.append(field_forbidden("spec.allocateLoadBalancerNodePorts", lb_only))
    return causes


def _validate_service_update(spec: dict, old_spec) -> Causes:
    if not isinstance(old_spec, dict):
        return []
    # A Service moving to or from ExternalName gives up or gets a cluster IP; otherwise the
    # allocated address is fixed for the Service's lifetime.
    if not _needs_cluster_ip(spec) or not _needs_cluster_ip(old_spec):
        return []
    was = old_spec.get("clusterIP") or ""
    have = spec.get("clusterIP") or ""
    if was and have != was:
        return [immutable("spec.clusterIP", have)]
    return []


# --- Endpoints -----------------------------------------------------------------------------

def default_endpoints(obj: dict) -> None:
    for subset in sub_list(obj, "subsets"):
        for port in sub_list(subset, "ports"):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def validate_endpoints(obj: dict, old: dict | None) -> Causes:
    causes: Causes = []
    for spath, subset in objects_at(obj, "subsets", "", causes):
        addresses = objects_at(subset, "addresses", spath, causes)
        not_ready = objects_at(subset, "notReadyAddresses", spath, causes)
        if not addresses and not not_ready:
            causes.append(field_required(spath, "must specify `addresses` or `notReadyAddresses`"))
        for apath, address in addresses + not_ready:
            causes += _validate_endpoint_address(address, apath)
        ports = objects_at(subset, "ports", spath, causes)
        for ppath, port in ports:
            causes += _validate_endpoint_port(port, ppath, require_name=len(ports) > 1)
    return causes


def _validate_endpoint_address(address: dict, path: str) -> Causes:
    # kube also refuses loopback and link-local endpoint IPs; meshnet's single-host clusters
    # publish the API server on loopback, so the `kubernetes` Endpoints must be able to say so.
    causes: Causes = []
    ip = str_at(address, "ip", path, causes)
    if ip is None:
        if "ip" not in address:
            causes.append(field_required(child(path, "ip")))
    else:
        causes += [field_invalid(child(path, "ip"), ip, m) for m in is_valid_ip(ip)]
    hostname = str_at(address, "hostname", path, causes)
    if hostname:
        causes += [field_invalid(child(path, "hostname"), hostname, m)
                   for m in is_dns1123_label(hostname)]
    node_name = str_at(address, "nodeName", path, causes)
    if node_name:
        causes += [field_invalid(child(path, "nodeName"), node_name, m)
                   for m in is_dns1123_subdomain(node_name)]
    return causes


def _validate_endpoint_port(port: dict, path: str, *, require_name: bool) -> Causes:
    causes: Causes = []
    name = str_at(port, "name", path, causes)
    if require_name and not name:
        causes.append(field_required(child(path, "name")))
    elif name:
        causes += [field_invalid(child(path, "name"), name, m) for m in is_dns1123_label(name)]
    number = int_at(port, "port", path, causes)
    if number is None:
        if "port" not in port:
            causes.append(field_required(child(path, "port")))
    else:
        causes += [field_invalid(child(path, "port"), number, m) for m in is_valid_port_num(number)]
    protocol = str_at(port, "protocol", path, causes)
    if protocol is None:
        causes.append(field_required(child(path, "protocol")))
    elif protocol not in PROTOCOLS:
        causes.append(field_not_supported(child(path, "protocol"), protocol, PROTOCOLS))
    return causes

