"""Builders for Service and Endpoints objects as they come off the wire (plain dicts)."""

from __future__ import annotations


def service(name: str = "web", *, ns: str = "default", type: str = "ClusterIP",
            cluster_ip: str = "10.96.0.10", ports=(("http", 80, "TCP", 0),),
            annotations: dict | None = None, lb_ips=(), **spec) -> dict:
    port_list = []
    for pname, port, proto, node_port in ports:
        entry = {"name": pname, "port": port, "protocol": proto, "targetPort": port}
        if node_port:
            entry["nodePort"] = node_port
        port_list.append(entry)
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
           "spec": {"type": type, "clusterIP": cluster_ip,
                    "clusterIPs": [cluster_ip] if cluster_ip else [], "ports": port_list,
                    **spec},
           "status": {}}
    if lb_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}}
    return obj


def endpoints(name: str = "web", *, ns: str = "default",
              ready=(("10.244.1.5", "node-a"),), not_ready=(),
              ports=(("http", 8080, "TCP"),)) -> dict:
    def addr(ip, node):
        out = {"ip": ip}
        if node:
            out["nodeName"] = node
        return out

    subset: dict = {"ports": [{"name": n, "port": p, "protocol": proto}
                              for n, p, proto in ports]}
    if ready:
        subset["addresses"] = [addr(ip, node) for ip, node in ready]
    if not_ready:
        subset["notReadyAddresses"] = [addr(ip, node) for ip, node in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns}, "subsets": [subset]}
