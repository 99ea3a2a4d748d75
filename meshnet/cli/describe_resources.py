"""Describers for Service, Endpoints, Ingress, Namespace, ConfigMap, Secret and Node."""

from __future__ import annotations

import base64

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError

from .context import Session
from .describe_text import (Writer, annotations_multiline, describe_events, format_endpoints,
                            labels_and_annotations, labels_multiline, object_header,
                            optional_fields, quantities, selector_map_text)
from .printers import age, rfc1123z


def _get_optional(s: Session, kind: str, name: str, ns: str | None) -> dict | None:
    try:
        return s.client.get(lookup(kind), name, ns)
    except ApiError:
        return None


def describe_service(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    endpoints = _get_optional(s, "endpoints", meta.get("name", ""), meta.get("namespace"))
    w = Writer()
    object_header(w, meta)
    w.write(0, f"Selector:\t{selector_map_text(spec.get('selector'))}\n")
    w.write(0, f"Type:\t{spec.get('type', '')}\n")
    if spec.get("ipFamilyPolicy"):
        w.write(0, f"IP Family Policy:\t{spec['ipFamilyPolicy']}\n")
    families = spec.get("ipFamilies") or []
    w.write(0, f"IP Families:\t{','.join(families) if families else '<none>'}\n")
    w.write(0, f"IP:\t{spec.get('clusterIP', '')}\n")
    ips = spec.get("clusterIPs") or []
    w.write(0, f"IPs:\t{','.join(ips) if ips else '<none>'}\n")
    if spec.get("externalIPs"):
        w.write(0, f"External IPs:\t{','.join(spec['externalIPs'])}\n")
    optional_fields(w, 0, spec, (("loadBalancerIP", "Desired LoadBalancer IP"),
                                 ("externalName", "External Name")))
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        w.write(0, "LoadBalancer Ingress:\t" + ", ".join(
            i.get("ip") or i.get("hostname") or "" for i in ingress) + "\n")
    for port in spec.get("ports") or []:
        name = port.get("name") or "<unset>"
        proto = port.get("protocol") or "TCP"
        w.write(0, f"Port:\t{name}\t{port.get('port')}/{proto}\n")
        target = port.get("targetPort", port.get("port"))
        w.write(0, f"TargetPort:\t{target}/{proto}\n")
        if port.get("appProtocol"):
            w.write(0, f"AppProtocol:\t{port['appProtocol']}\n")
        if port.get("nodePort"):
            w.write(0, f"NodePort:\t{name}\t{port['nodePort']}/{proto}\n")
        w.write(0, f"Endpoints:\t{format_endpoints(endpoints, {port.get('name') or ''})}\n")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity', 'None')}\n")
    optional_fields(w, 0, spec, (("externalTrafficPolicy", "External Traffic Policy"),
                                 ("internalTrafficPolicy", "Internal Traffic Policy"),
                                 ("healthCheckNodePort", "HealthCheck NodePort")))
    if spec.get("loadBalancerSourceRanges"):
        w.write(0, f"LoadBalancer Source Ranges:\t{','.join(spec['loadBalancerSourceRanges'])}\n")
    describe_events(w, events)
    return w.text()


def describe_endpoints(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    w = Writer()
    object_header(w, meta)
    w.write(0, "Subsets:\n")
    for ss in obj.get("subsets") or []:
        ready = ",".join(a.get("ip", "") for a in ss.get("addresses") or []) or "<none>"
        not_ready = ",".join(a.get("ip", "") for a in ss.get("notReadyAddresses") or []) \
            or "<none>"
        w.write(1, f"Addresses:\t{ready}\n")
        w.write(1, f"NotReadyAddresses:\t{not_ready}\n")
        if ss.get("ports"):
            w.write(1, "Ports:\n")
            w.write(2, "Name\tPort\tProtocol\n")
            w.write(2, "----\t----\t--------\n")
            for p in ss["ports"]:
                w.write(2, f"{p.get('name') or '<unset>'}\t{p.get('port')}\t"
                           f"{p.get('protocol', 'TCP')}\n")
        w.write(0, "\n")
    describe_events(w, events)
    return w.text()


def _backend_text(s: Session, ns: str, backend: dict) -> str:
    svc = backend.get("service")
    if svc:
        port = svc.get("port") or {}
        port_text = str(port.get("number")) if port.get("number") else str(port.get("name", ""))
        label = f"{svc.get('name')}:{port_text}"
        try:
            endpoints = s.client.get(lookup("endpoints"), svc.get("name", ""), ns)
            service = s.client.get(lookup("services"), svc.get("name", ""), ns)
        except ApiError as e:
            return f"{label} (<error: {e.message}>)"
        port_name = ""
        for sp in (service.get("spec") or {}).get("ports") or []:
            if port.get("number") and port.get("number") == sp.get("port"):
                port_name = sp.get("name") or ""
            elif port.get("name") and port.get("name") == sp.get("name"):
                port_name = sp.get("name") or ""
        return f"{label} ({format_endpoints(endpoints, {port_name})})"
    resource = backend.get("resource")
    if resource:
        return (f"APIGroup: {resource.get('apiGroup') or '<none>'}, Kind: {resource.get('kind')}, "
                f"Name: {resource.get('name')}")
    return ""


def describe_ingress(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ns = meta.get("namespace", "")
    w = Writer()
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    w.write(0, f"Namespace:\t{ns}\n")
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    w.write(0, "Address:\t" + ",".join(i.get("ip") or i.get("hostname") or "" for i in lb) + "\n")
    w.write(0, f"Ingress Class:\t{spec.get('ingressClassName') or '<none>'}\n")
    default = spec.get("defaultBackend")
    default_text = _backend_text(s, ns, default) if default else "<default>"
    w.write(0, f"Default backend:\t{default_text}\n")
    if spec.get("tls"):
        w.write(0, "TLS:\n")
        for t in spec["tls"]:
            hosts = ",".join(t.get("hosts") or [])
            if t.get("secretName"):
                w.write(1, f"{t['secretName']} terminates {hosts}\n")
            else:
                w.write(1, f"SNI routes {hosts}\n")
    w.write(0, "Rules:\n  Host\tPath\tBackends\n")
    w.write(1, "----\t----\t--------\n")
    count = 0
    for rule in spec.get("rules") or []:
        http = rule.get("http")
        if not http:
            continue
        count += 1
        w.write(1, f"{rule.get('host') or '*'}\t\n")
        for path in http.get("paths") or []:
            w.write(2, f"\t{path.get('path', '')} \t"
                       f"{_backend_text(s, ns, path.get('backend') or {})}\n")
    if count == 0:
        w.write(1, f"*\t*\t{default_text}\n")
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    describe_events(w, events)
    return w.text()


def describe_namespace(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    w = Writer()
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    labels_and_annotations(w, meta)
    w.write(0, f"Status:\t{(obj.get('status') or {}).get('phase', '')}\n")
    conditions = (obj.get("status") or {}).get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(1, f"{c.get('type')}\t{c.get('status')}\t"
                       f"{rfc1123z(c.get('lastTransitionTime'))}\t{c.get('reason', '')}\t"
                       f"{c.get('message', '')}\n")
    name = meta.get("name", "")
    for plural, none_text in (("resourcequotas", "No resource quota."),
                              ("limitranges", "No LimitRange resource.")):
        try:
            listed = s.client.get_json(f"/api/v1/namespaces/{name}/{plural}")
        except ApiError:
            continue  # the server does not serve this kind: kubectl leaves the section out
        w.write(0, "\n")
        items = listed.get("items") or []
        if not items:
            w.write(0, f"{none_text}\n")
        else:
            w.write(0, f"{'Resource Quotas' if plural == 'resourcequotas' else 'Resource Limits'}"
                       f"\n")
            for item in items:
                w.write(1, f"Name:\t{(item.get('metadata') or {}).get('name', '')}\n")
    return w.text()


def describe_configmap(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    w = Writer()
    object_header(w, meta)
    w.write(0, "\nData\n====\n")
    data = obj.get("data") or {}
    for key in sorted(data):
        w.write(0, f"{key}:\n----\n")
        w.write(0, f"{data[key]}\n")
        w.write(0, "\n")
    w.write(0, "\nBinaryData\n====\n")
    binary = obj.get("binaryData") or {}
    for key in sorted(binary):
        try:
            size = len(base64.b64decode(binary[key]))
        except ValueError:
            size = len(binary[key])
        w.write(0, f"{key}: {size} bytes\n")
    w.write(0, "\n")
    describe_events(w, events)
    return w.text()


def describe_secret(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    w = Writer()
    object_header(w, meta)
    w.write(0, f"\nType:\t{obj.get('type', '')}\n")
    w.write(0, "\nData\n====\n")
    data = obj.get("data") or {}
    for key in sorted(data):
        try:
            raw = base64.b64decode(data[key] or "")
        except ValueError:
            raw = str(data[key]).encode()
        if key == "token" and obj.get("type") == "kubernetes.io/service-account-token":
            w.write(0, f"{key}:\t{raw.decode('utf-8', 'replace')}\n")
        else:
            w.write(0, f"{key}:\t{len(raw)} bytes\n")
    return w.text()


def describe_node(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    w = Writer()
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    roles = sorted({k[len("node-role.kubernetes.io/"):] for k in (meta.get("labels") or {})
                    if k.startswith("node-role.kubernetes.io/") and
                    len(k) > len("node-role.kubernetes.io/")} |
                   ({(meta.get("labels") or {})["kubernetes.io/role"]}
                    if (meta.get("labels") or {}).get("kubernetes.io/role") else set()))
    w.write(0, f"Roles:\t{','.join(roles) if roles else '<none>'}\n")
    labels_and_annotations(w, meta)
    w.write(0, f"CreationTimestamp:\t{rfc1123z(meta.get('creationTimestamp'))}\n")
    taints = spec.get("taints") or []
    w.write(0, "Taints:\t")
    if not taints:
        w.line("<none>")
    for i, t in enumerate(sorted(taints, key=lambda t: (t.get("effect", ""), t.get("key", "")))):
        if i:
            w.write(0, "\t")
        value = f"={t['value']}" if t.get("value") else ""
        w.write(0, f"{t.get('key')}{value}:{t.get('effect')}\n")
    w.write(0, f"Unschedulable:\t{'true' if spec.get('unschedulable') else 'false'}\n")
    conditions = status.get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason"
                   "\tMessage\n")
        w.write(0, "  ----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(1, f"{c.get('type')} \t{c.get('status')} \t"
                       f"{rfc1123z(c.get('lastHeartbeatTime'))} \t"
                       f"{rfc1123z(c.get('lastTransitionTime'))} \t{c.get('reason', '')} \t"
                       f"{c.get('message', '')}\n")
    addresses = status.get("addresses") or []
    if addresses:
        w.write(0, "Addresses:\n")
        for a in addresses:
            w.write(1, f"{a.get('type')}:\t{a.get('address')}\n")
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        if status.get(key):
            quantities(w, 0, title, status[key])
    info = status.get("nodeInfo") or {}
    if info:
        w.write(0, "System Info:\n")
        for key, title in (("machineID", "Machine ID"), ("systemUUID", "System UUID"),
                           ("bootID", "Boot ID"), ("kernelVersion", "Kernel Version"),
                           ("osImage", "OS Image"), ("operatingSystem", "Operating System"),
                           ("architecture", "Architecture"),
                           ("containerRuntimeVersion", "Container Runtime Version"),
                           ("kubeletVersion", "Kubelet Version"),
                           ("kubeProxyVersion", "Kube-Proxy Version")):
            w.write(1, f"{title}:\t{info.get(key, '')}\n")
    if spec.get("podCIDR"):
        w.write(0, f"PodCIDR:\t{spec['podCIDR']}\n")
        w.write(0, f"PodCIDRs:\t{','.join(spec.get('podCIDRs') or [spec['podCIDR']])}\n")
    try:
        pods = s.client.list_all(lookup("pods"), None,
                                 field_selector=f"spec.nodeName={meta.get('name', '')}")
        items = [p for p in pods.get("items") or []
                 if (p.get("spec") or {}).get("nodeName") == meta.get("name")
                 and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    except ApiError:
        items = None
    if items is not None:
        w.write(0, f"Non-terminated Pods:\t({len(items)} in total)\n")
        w.write(1, "Namespace\tName\tAge\n")
        w.write(1, "---------\t----\t---\n")
        for p in items:
            pm = p.get("metadata") or {}
            w.write(1, f"{pm.get('namespace', '')}\t{pm.get('name', '')}\t"
                       f"{age(pm.get('creationTimestamp'))}\n")
    describe_events(w, events)
    return w.text()
