"""What the in-process controllers need to know about the cluster they run.

`ControllerConfig` is built once from the API server's flags and never changes while the server
runs. Its pools are parsed here, at construction, so that a bad `--service-cidr`,
`--node-port-range` or `--lb-pool` stops the server at start with a message naming the flag,
instead of failing the first Service create.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from meshnet.control.controllers.allocator import (
    Pool, PoolError, parse_lb_pool, parse_port_range, parse_service_cidr,
)

# kube-apiserver's defaults (--service-cluster-ip-range has none upstream; 10.96.0.0/12 is
# kubeadm's, which kind, minikube and most docs assume).
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
# kubeadm: the cluster DNS Service is the 10th address of the service range.
DNS_SERVICE_OFFSET = 10
# kube-apiserver: the `kubernetes` Service is the first address of the service range.
KUBERNETES_SERVICE_OFFSET = 1
# kube-controller-manager --cluster-cidr as kubeadm/flannel set it, and its default
# --node-cidr-mask-size-ipv4 (a /24 per node: 254 pods).
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_CIDR_MASK_SIZE = 24
# kube-controller-manager: --node-monitor-grace-period 40s, --pod-eviction-timeout 5m.
DEFAULT_NODE_MONITOR_GRACE_PERIOD_S = 40.0
DEFAULT_POD_EVICTION_TIMEOUT_S = 300.0

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """`40s`, `5m`, `5m0s`, `1h30m`, `250ms` or a plain number of seconds (Go durations, as
    kube-controller-manager's flags take them) -> seconds."""
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    total, number, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in _DURATION_UNITS or not number:
            raise ValueError(f"invalid duration {text!r}: use a number of seconds or a Go "
                             f"duration such as 40s, 5m or 1h30m")
        total += float(number) * _DURATION_UNITS[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"invalid duration {text!r}: missing unit after {number!r} (s, m, h)")
    return total


@dataclass(frozen=True)
class ControllerConfig:
    service_cidr: str = DEFAULT_SERVICE_CIDR
    node_port_range: str = DEFAULT_NODE_PORT_RANGE
    # A comma/space separated string as given to --lb-pool, or a sequence of entries; stored as a
    # tuple of entries. Empty: LoadBalancer Services stay <pending> (with an Event saying why).
    lb_pool: tuple[str, ...] | str = ()
    advertise_address: str = "127.0.0.1"
    advertise_port: int = 6443
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_cidr_mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE
    node_monitor_grace_period_s: float = DEFAULT_NODE_MONITOR_GRACE_PERIOD_S
    pod_eviction_timeout_s: float = DEFAULT_POD_EVICTION_TIMEOUT_S

    # Parsed forms, computed in __post_init__ (not constructor arguments).
    service_network: ipaddress.IPv4Network | ipaddress.IPv6Network = field(init=False, repr=False,
                                                                            compare=False)
    service_pool: Pool = field(init=False, repr=False, compare=False)
    node_port_pool: Pool = field(init=False, repr=False, compare=False)
    lb_address_pool: Pool = field(init=False, repr=False, compare=False)
    cluster_network: ipaddress.IPv4Network | ipaddress.IPv6Network = field(init=False, repr=False,
                                                                            compare=False)

    def __post_init__(self) -> None:
        lb = self.lb_pool
        entries = tuple(lb.replace(",", " ").split()) if isinstance(lb, str) else tuple(lb)
        object.__setattr__(self, "lb_pool", entries)
        try:
            network, pool = parse_service_cidr(self.service_cidr)
        except PoolError as exc:
            raise ValueError(f"--service-cidr {self.service_cidr!r}: {exc}") from None
        try:
            ports = parse_port_range(self.node_port_range)
        except PoolError as exc:
            raise ValueError(f"--node-port-range {self.node_port_range!r}: {exc}") from None
        try:
            lb_pool = parse_lb_pool(entries)
        except PoolError as exc:
            raise ValueError(f"--lb-pool {','.join(entries)!r}: {exc}") from None
        if not 0 < int(self.advertise_port) < 65536:
            raise ValueError(f"advertise port {self.advertise_port}: must be between 1 and 65535")
        try:
            ipaddress.ip_address(self.advertise_address)
        except ValueError:
            raise ValueError(f"advertise address {self.advertise_address!r}: must be an IP "
                             f"address (Endpoints hold IPs, not host names)") from None
        try:
            cluster = ipaddress.ip_network(self.cluster_cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"--cluster-cidr {self.cluster_cidr!r}: {exc} (give a network "
                             f"such as 10.244.0.0/16)") from None
        if not cluster.prefixlen <= int(self.node_cidr_mask_size) <= cluster.max_prefixlen:
            raise ValueError(f"--cluster-cidr {self.cluster_cidr!r}: node CIDR mask size "
                             f"/{self.node_cidr_mask_size} must be between /{cluster.prefixlen} "
                             f"and /{cluster.max_prefixlen}")
        if cluster.overlaps(network):
            raise ValueError(f"--cluster-cidr {self.cluster_cidr!r} overlaps --service-cidr "
                             f"{self.service_cidr!r}: pod and service addresses must differ")
        for flag, value in (("--node-monitor-grace-period", self.node_monitor_grace_period_s),
                            ("--pod-eviction-timeout", self.pod_eviction_timeout_s)):
            if value < 0:
                raise ValueError(f"{flag} {value}: must not be negative")
        object.__setattr__(self, "cluster_network", cluster)
        object.__setattr__(self, "service_network", network)
        object.__setattr__(self, "service_pool", pool)
        object.__setattr__(self, "node_port_pool", ports)
        object.__setattr__(self, "lb_address_pool", lb_pool)

    @property
    def kubernetes_service_ip(self) -> str:
        return str(self.service_network[KUBERNETES_SERVICE_OFFSET])

    @property
    def dns_service_ip(self) -> str:
        return str(self.service_network[DNS_SERVICE_OFFSET])

    @property
    def reserved_service_ips(self) -> frozenset[int]:
        """Addresses never handed out automatically: they belong to the bootstrap Services."""
        # parse_service_cidr guarantees the range is large enough to hold both.
        return frozenset((int(self.service_network[KUBERNETES_SERVICE_OFFSET]),
                          int(self.service_network[DNS_SERVICE_OFFSET])))
