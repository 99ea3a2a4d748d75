"""Node registration and heartbeats: the Node object and its Lease in kube-node-lease.

`build_node()` and `node_status()` are pure (machine facts passed in). `Registration` does the
I/O as kubelet does: create the Node (or patch its status if it exists), keep `status` fresh
(Ready condition heartbeat every NODE_STATUS_S, or at the next heartbeat once the agent sees
its Node marked NotReady by the node lifecycle controller), renew the Lease every LEASE_RENEW_S with
`leaseDurationSeconds` LEASE_DURATION_S — the node lifecycle controller marks a node NotReady
when its Lease is older than that — and find the node's podCIDR.

podCIDR: `spec.podCIDR` is the control plane's to assign (nodeipam). `--pod-cidr` is an
explicit override for clusters without it: written into `spec.podCIDR` when the agent creates
the Node (so other nodes can route to it), and used whenever the Node has none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import time

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ApiError, ClientError

log = logging.getLogger("meshnet.agent.node")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
NODE_STATUS_S = 60.0
MAX_PODS = 110  # kubelet's default --max-pods
AGENT_VERSION = "v1.30.0-meshnet"

NODES, LEASES = lookup("nodes"), lookup("leases")


def machine_capacity() -> dict[str, str]:
    mem_ki = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_ki = int(line.split()[1])
    except OSError:
        pass
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_ki}Ki", "pods": str(MAX_PODS),
            "ephemeral-storage": "0"}


def node_info() -> dict[str, str]:
    machine_id = ""
    try:
        machine_id = open("/etc/machine-id").read().strip()
    except OSError:
        pass
    return {"machineID": machine_id, "systemUUID": machine_id, "bootID": "",
            "kernelVersion": platform.release(), "osImage": platform.platform(),
            "containerRuntimeVersion": "netns://0.1", "kubeletVersion": AGENT_VERSION,
            "kubeProxyVersion": AGENT_VERSION, "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                       platform.machine())}


def ready_condition(now: str, previous: dict | None = None, ready: bool = True) -> dict:
    status = "True" if ready else "False"
    since = (previous or {}).get("lastTransitionTime") \
        if (previous or {}).get("status") == status else now
    return {"type": "Ready", "status": status, "lastHeartbeatTime": now,
            "lastTransitionTime": since or now,
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "meshnet-agent is posting ready status" if ready
            else "meshnet-agent stopped"}


def node_status(*, ip: str, hostname: str, port: int, now: str, capacity: dict,
                info: dict, previous: dict | None = None, ready: bool = True) -> dict:
    prev_ready = next((c for c in (previous or {}).get("conditions") or []
                       if c.get("type") == "Ready"), None)
    return {
        "addresses": [{"type": "InternalIP", "address": ip},
                      {"type": "Hostname", "address": hostname}],
        "capacity": capacity, "allocatable": capacity,
        "conditions": [ready_condition(now, prev_ready, ready)],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": info,
    }


def build_node(name: str, *, labels: dict, pod_cidr: str, status: dict) -> dict:
    spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": status["nodeInfo"]["architecture"], **labels}},
            "spec": spec, "status": status}


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_micro() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class Registration:
    def __init__(self, client: AsyncClient, name: str, ip: str, port: int, *,
                 pod_cidr_override: str = "", labels: dict | None = None):
        self.client = client
        self.name = name
        self.ip = ip
        self.port = port
        self.pod_cidr_override = pod_cidr_override
        self.labels = labels or {}
        self.node: dict = {}
        self.lease_renewals = 0
        self.status_due = False  # post node status at the next heartbeat

    def __repr__(self) -> str:
        return f"<Registration {self.name} {self.ip} renewals={self.lease_renewals}>"

    def _status(self, previous: dict | None = None, ready: bool = True) -> dict:
        return node_status(ip=self.ip, hostname=socket.gethostname(), port=self.port,
                           now=now_rfc3339(), capacity=machine_capacity(), info=node_info(),
                           previous=previous, ready=ready)

    async def register(self) -> dict:
        try:
            current = await self.client.get(NODES, None, self.name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            body = build_node(self.name, labels=self.labels, pod_cidr=self.pod_cidr_override,
                              status=self._status())
            self.node = await self.client.create(NODES, None, body)
            log.info("registered node %s (%s)", self.name, self.ip)
            return self.node
        self.node = await self.client.patch(NODES, None, self.name,
                                            {"status": self._status(current.get("status"))},
                                            subresource="status")
        log.info("node %s already registered; status updated", self.name)
        return self.node

    def pod_cidr(self) -> str:
        return (self.node.get("spec") or {}).get("podCIDR") or self.pod_cidr_override

    async def wait_pod_cidr(self, stop: asyncio.Event, interval_s: float = 1.0) -> str:
        """The node's podCIDR, polling the Node until the control plane assigns one."""
        warned = False
        while not stop.is_set():
            cidr = self.pod_cidr()
            if cidr:
                return cidr
            if not warned:
                log.info("waiting for node %s to get spec.podCIDR (or pass --pod-cidr)", self.name)
                warned = True
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
            try:
                self.node = await self.client.get(NODES, None, self.name)
            except ClientError as exc:
                log.warning("reading node %s: %s", self.name, exc)
        return ""

    async def renew_lease(self) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION_S,
                         "renewTime": now_micro()}}
        try:
            await self.client.patch(LEASES, LEASE_NAMESPACE, self.name,
                                    {"spec": body["spec"]})
        except ApiError as exc:
            if exc.code != 404:
                raise
            uid = (self.node.get("metadata") or {}).get("uid")
            if uid:  # the Lease goes with its Node (garbage collection by owner)
                body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                                        "name": self.name, "uid": uid}]
            body["spec"]["acquireTime"] = body["spec"]["renewTime"]
            await self.client.create(LEASES, LEASE_NAMESPACE, body)
        self.lease_renewals += 1

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """Renew the Lease every LEASE_RENEW_S and post node status every NODE_STATUS_S."""
        last_status = time.monotonic()
        while not stop.is_set():
            try:
                await self.renew_lease()
                if self.status_due or time.monotonic() - last_status >= NODE_STATUS_S:
                    self.status_due = False
                    await self.register()
                    last_status = time.monotonic()
            except ClientError as exc:
                log.warning("node heartbeat: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), LEASE_RENEW_S)
            except asyncio.TimeoutError:
                pass
