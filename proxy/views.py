"""Trimmed, frozen views of Services and Endpoints: all the proxy keeps of the API objects.

The informers apply `service_view` / `endpoints_view` to every object they receive, so the
cache holds only what forwarding depends on (as CoreDNS keeps "a stripped down api.Service").
Views are frozen dataclasses of tuples, so `==` compares them whole and an update that changes
nothing the proxy uses (a label, a status heartbeat) is not even reported by the informer.

Decoding is forgiving: a field of the wrong shape becomes its default and the problem is
noted in `errors`, so a bad object can never stop the table from building.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

LB_POLICY_ANNOTATION = "meshnet.io/lb-policy"
ROUND_ROBIN = "round-robin"
LEAST_CONN = "least-conn"
LB_POLICIES = (ROUND_ROBIN, LEAST_CONN)
# kube's default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
DEFAULT_AFFINITY_TIMEOUT_S = 10800


@dataclass(frozen=True)
class ServicePortView:
    name: str
    port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"
    node_port: int  # 0 when none


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]  # empty for headless ("None") and ExternalName
    ports: tuple[ServicePortView, ...]
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    affinity_timeout_s: int = 0  # 0: no ClientIP affinity
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local
    lb_policy: str = ROUND_ROBIN
    errors: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proxied(self) -> bool:
        """Headless and ExternalName Services are answered by DNS only, never proxied."""
        return self.type != "ExternalName" and bool(self.cluster_ips)


class EndpointView(NamedTuple):
    """One ready address of one Endpoints port. A NamedTuple rather than a dataclass: the
    balancer hashes endpoints on every connection, and a tuple hashes in C."""
    port_name: str
    protocol: str
    ip: str
    port: int
    node_name: str = ""


@dataclass(frozen=True)
class EndpointsView:
    namespace: str
    name: str
    endpoints: tuple[EndpointView, ...]  # ready addresses only, sorted

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _int(value, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _strings(values) -> tuple[str, ...]:
    return tuple(v for v in values or () if isinstance(v, str) and v)


def service_view(obj: dict) -> ServiceView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    errors: list[str] = []
    svc_type = spec.get("type") or "ClusterIP"
    ips = _strings(spec.get("clusterIPs")) or _strings([spec.get("clusterIP")])
    cluster_ips = () if not ips or ips[0] == "None" else ips
    ports = []
    for i, p in enumerate(spec.get("ports") or ()):
        number = _int(p.get("port"))
        if not 0 < number < 65536:
            errors.append(f"spec.ports[{i}].port: Invalid value: {p.get('port')!r}")
            continue
        ports.append(ServicePortView(name=p.get("name") or "", port=number,
                                     protocol=p.get("protocol") or "TCP",
                                     node_port=_int(p.get("nodePort"))))
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = _int(cfg.get("timeoutSeconds"), DEFAULT_AFFINITY_TIMEOUT_S) or \
            DEFAULT_AFFINITY_TIMEOUT_S
    policy = (meta.get("annotations") or {}).get(LB_POLICY_ANNOTATION) or ROUND_ROBIN
    if policy not in LB_POLICIES:
        errors.append(f"metadata.annotations[{LB_POLICY_ANNOTATION}]: Unsupported value: "
                      f"{policy!r}: supported values: {', '.join(LB_POLICIES)}; "
                      f"using {ROUND_ROBIN}")
        policy = ROUND_ROBIN
    lb_ips = _strings(i.get("ip") for i in
                      ((status.get("loadBalancer") or {}).get("ingress") or ()))
    return ServiceView(
        namespace=meta.get("namespace") or "default", name=meta.get("name") or "",
        type=svc_type, cluster_ips=cluster_ips, ports=tuple(ports),
        external_ips=_strings(spec.get("externalIPs")),
        lb_ips=lb_ips if svc_type == "LoadBalancer" else (),
        affinity_timeout_s=affinity,
        external_local=spec.get("externalTrafficPolicy") == "Local",
        internal_local=spec.get("internalTrafficPolicy") == "Local",
        lb_policy=policy, errors=tuple(errors))


def endpoints_view(obj: dict) -> EndpointsView:
    meta = obj.get("metadata") or {}
    found = set()
    for subset in obj.get("subsets") or ():
        for addr in subset.get("addresses") or ():
            ip = addr.get("ip")
            if not isinstance(ip, str) or not ip:
                continue
            for port in subset.get("ports") or ():
                number = _int(port.get("port"))
                if 0 < number < 65536:
                    found.add(EndpointView(port_name=port.get("name") or "",
                                           protocol=port.get("protocol") or "TCP", ip=ip,
                                           port=number, node_name=addr.get("nodeName") or ""))
    return EndpointsView(namespace=meta.get("namespace") or "default",
                         name=meta.get("name") or "", endpoints=tuple(sorted(found)))
