"""The agent: informers in, pod workers and the node's routes out.

Theory of operation
-------------------
Start-up: register the Node, wait for its podCIDR, build the bridge, load the IPAM state,
start informers (this node's pods by `spec.nodeName`, ConfigMaps, Secrets, Nodes) and wait for
their first lists. Only then is anything reconciled — before a full list, a pod missing from
the cache is not a deleted pod. Leftovers of an earlier agent (state directories, addresses,
processes of pods that are gone) are removed then; pods that still exist get a fresh namespace
on the same IP and their containers are started again.

Informer callbacks only record keys. `_sync_loop` reconciles each dirty pod key from the cache:
present → a `PodWorker` (a new UID replaces the old worker); absent → terminate the worker.
ConfigMap/Secret changes poke the workers that refer to them. Node changes recompile the
host-gw routes (`compile_routes` → `diff_routes` → `apply_routes`).

API writes: at most STATUS_WRITES status PATCHes in flight; Events go out one at a time from
a queue, and only while no status write waits or runs (best effort, as kubelet's): when a
hundred pods start at once the API server gets their status first, the Events after.

Stop: without --keep-pods every pod is terminated (SIGTERM, its grace period capped at
STOP_GRACE_S, SIGKILL), its network and address released, then the routes and the bridge go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from functools import partial
from pathlib import Path

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient
from meshnet.client.errors import ClientError
from meshnet.client.informer import Informer
from meshnet.metrics import Registry, serve_status
from meshnet.node import runtime as rt
from meshnet.node.backoff import Backoff
from meshnet.node.envconfig import referenced
from meshnet.node.ipam import Ipam
from meshnet.node.netconfig import compile_routes, diff_routes, node_view
from meshnet.node.podnet import PodNetwork
from meshnet.node.podworker import PodWorker
from meshnet.node.registration import Registration
from meshnet.node.server import serve_agent_api
from meshnet.node.volumes import MountTargets

log = logging.getLogger("meshnet.agent")

PODS, CONFIGMAPS, SECRETS, NODES, EVENTS = (lookup(k) for k in
                                            ("pods", "configmaps", "secrets", "nodes", "events"))
STOP_GRACE_S = 10.0
VETH_GONE_S = 5.0
# At most this many status PATCHes in flight: each needs a connection of its own (a new one
# costs a TLS handshake on both ends), and a burst of pods would otherwise open dozens.
# kubelet limits its API writes too (--kube-api-qps/--kube-api-burst).
STATUS_WRITES = 4


def _config_view(obj: dict) -> tuple[dict, dict]:
    return (obj.get("data") or {}, obj.get("binaryData") or {})


def _secret_view(obj: dict) -> dict:
    return obj.get("data") or {}


class Agent:
    def __init__(self, client: AsyncClient, *, node_name: str, host_ip: str, state_dir: Path,
                 listen: tuple[str, int], cluster_dns: str, cluster_domain: str,
                 pod_cidr_override: str = "", keep_pods: bool = False,
                 status_address: tuple[str, int] | None = None, python: str = sys.executable,
                 backoff: Backoff | None = None, runtime=None):
        self.client = client
        self.node_name = node_name
        self.host_ip = host_ip
        self.state_dir = state_dir
        self.listen = listen
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.keep_pods = keep_pods
        self.status_address = status_address
        self.python = python
        self.registration = Registration(client, node_name, host_ip, listen[1],
                                         pod_cidr_override=pod_cidr_override)
        self.runtime = runtime or rt.NetnsRuntime(python)
        self.backoff = backoff or Backoff()
        self.mount_targets = MountTargets(state_dir / "mount-targets.json")
        self.ipam: Ipam | None = None
        self.podnet: PodNetwork | None = None
        self.workers: dict[str, PodWorker] = {}  # by pod key ns/name
        self._dirty: set[str] = set()
        self._config_dirty: set[tuple[str, str, str]] = set()  # (kind, ns, name)
        self._routes_dirty = True
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self._status_writes = asyncio.Semaphore(STATUS_WRITES)
        self._status_pending = 0  # status writes waiting or in flight
        self._status_idle = asyncio.Event()
        self._status_idle.set()
        # Events go out one at a time, behind status (they are best effort, as kubelet's).
        self._events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self._terminating: set[asyncio.Task] = set()
        self.metrics = Registry()
        self.m_pods = self.metrics.gauge("meshnet_agent_pods", "Pods this agent runs")
        self.m_starts = self.metrics.counter("meshnet_agent_container_starts_total",
                                             "Container processes started")
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}",
                             on_add=self._on_pod, on_update=self._on_pod_update,
                             on_delete=self._on_pod)
        self.configmaps = Informer(client, CONFIGMAPS, transform=_config_view,
                                   on_add=self._on_config("cm"), on_update=self._on_config("cm"),
                                   on_delete=self._on_config("cm"))
        self.secrets = Informer(client, SECRETS, transform=_secret_view,
                                on_add=self._on_config("secret"),
                                on_update=self._on_config("secret"),
                                on_delete=self._on_config("secret"))
        self.nodes = Informer(client, NODES, transform=node_view, on_add=self._on_node,
                              on_update=self._on_node, on_delete=self._on_node)

    def __repr__(self) -> str:
        return (f"<Agent {self.node_name} {self.host_ip} cidr="
                f"{self.podnet.network if self.podnet else '-'} pods={len(self.workers)}>")

    @property
    def workers_by_name(self) -> dict[str, PodWorker]:
        return self.workers

    # -- informer callbacks: record only ----------------------------------------------------

    def _on_pod(self, key: str, *_views) -> None:
        self._dirty.add(key)
        self._wake.set()

    def _on_pod_update(self, key: str, _old, new) -> None:
        worker = self.workers.get(key)
        if worker is not None and worker.uid == new["metadata"].get("uid"):
            worker.update(new)
            if not new["metadata"].get("deletionTimestamp"):
                return  # our own status writes come back here; nothing to reconcile
        self._on_pod(key)

    def _on_config(self, kind: str):
        def record(key: str, *_views) -> None:
            ns, _, name = key.partition("/")
            self._config_dirty.add((kind, ns, name))
            self._wake.set()
        return record

    def _on_node(self, key: str, *views) -> None:
        self._routes_dirty = True
        self._wake.set()
        if key == self.node_name and len(views) == 2 and not views[1].ready:
            # Marked NotReady/Unknown by the node lifecycle controller (we were silent, or
            # the control plane was away): say Ready again at the next heartbeat, as kubelet
            # does, rather than at the next periodic status post.
            self.registration.status_due = True

    # -- what workers use ---------------------------------------------------------------------

    def config_for(self, namespace: str) -> tuple[dict, dict, dict]:
        prefix = namespace + "/"
        cms, bins, secrets = {}, {}, {}
        for key, (data, binary) in self.configmaps.cache.items():
            if key.startswith(prefix):
                cms[key[len(prefix):]] = data
                bins[key[len(prefix):]] = binary
        for key, data in self.secrets.cache.items():
            if key.startswith(prefix):
                secrets[key[len(prefix):]] = data
        return cms, bins, secrets

    async def patch_pod_status(self, namespace: str, name: str, status: dict) -> dict:
        self._status_pending += 1
        self._status_idle.clear()
        try:
            async with self._status_writes:
                return await self.client.patch(PODS, namespace, name, {"status": status},
                                               subresource="status")
        finally:
            self._status_pending -= 1
            if not self._status_pending:
                self._status_idle.set()

    def record_event(self, pod: dict, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta.get("uid", "")},
                "reason": reason, "message": message[:1024], "type": kind,
                "source": {"component": "kubelet", "host": self.node_name},
                "reportingComponent": "meshnet-agent", "reportingInstance": self.node_name,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        # Normal events at DEBUG: they are in the API (`meshctl get events`), and a line per
        # started container is a disk write on the event loop when a hundred pods start.
        log.log(logging.WARNING if kind == "Warning" else logging.DEBUG, "%s/%s %s: %s",
                meta["namespace"], meta["name"], reason, message)
        self._events.put_nowait((meta["namespace"], body))

    async def _send_events(self) -> None:
        while True:
            namespace, body = await self._events.get()
            await self._status_idle.wait()
            try:
                await self.client.create(EVENTS, namespace, body)
            except ClientError as exc:
                log.info("event not recorded: %s", exc)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- run ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pods").mkdir(exist_ok=True)
        await self.registration.register()
        heartbeat = asyncio.create_task(self.registration.heartbeat(stop), name="heartbeat")
        self._spawn(self._send_events())
        server = status = None
        try:
            cidr = await self.registration.wait_pod_cidr(stop)
            if not cidr:
                return
            self.podnet = PodNetwork(cidr)
            await self.podnet.run(self.podnet.ensure_bridge)
            self.ipam = Ipam.load(self.state_dir / "ipam.json", cidr)
            log.info("pod network %s on %s", cidr, self.node_name)
            informers = (self.pods, self.configmaps, self.secrets, self.nodes)
            for inf in informers:
                inf.start()
            await asyncio.gather(*(inf.synced.wait() for inf in informers))
            await self._cleanup_leftovers()
            server = await serve_agent_api(self, *self.listen)
            if self.status_address:
                status = await serve_status(*self.status_address, self.metrics)
            print(f"meshnet-agent: node {self.node_name} ready, pod network {cidr}, "
                  f"agent API http://{self.listen[0]}:{self.listen[1]}", flush=True)
            sync = asyncio.create_task(self._sync_loop(), name="sync")
            await stop.wait()
            sync.cancel()
        finally:
            heartbeat.cancel()
            for inf in (self.pods, self.configmaps, self.secrets, self.nodes):
                await inf.stop()
            if server is not None:
                await server.cleanup()
            if status is not None:
                await status.cleanup()
            await self._shutdown()

    async def _cleanup_leftovers(self) -> None:
        """Remove what an earlier agent left for pods that no longer exist on this node, and
        stop any process it had started (pods that remain are started again)."""
        live = {view["metadata"].get("uid") for view in self.pods.cache.values()}
        removed = await self.runtime.remove_leftovers()
        if removed:
            log.info("removed %d containers an earlier agent left", removed)
        for pod_dir in (self.state_dir / "pods").iterdir():
            killed = rt.kill_recorded(pod_dir)
            if killed:
                log.info("stopped %d processes an earlier agent left in %s", killed, pod_dir.name)
            # The earlier agent's /run/netns mounts died with its mount namespace, so a pod's
            # namespace cannot be re-entered by name: rebuild it (same IP, from the IPAM file).
            await self.podnet.run(partial(self.podnet.teardown_pod, pod_dir.name,
                                          delete_veth=True))
            if pod_dir.name not in live:
                shutil.rmtree(pod_dir, ignore_errors=True)
        for key in self.ipam.keys():
            if key.rsplit("/", 1)[-1] not in live:
                self.ipam.release(key)
        # Nothing is mounted now (every old container is gone): live pods re-create theirs.
        self.mount_targets.release_unused()

    async def _sync_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for key in sorted(dirty):
                await self._reconcile(key)
            config, self._config_dirty = self._config_dirty, set()
            for kind, ns, name in config:
                for worker in list(self.workers.values()):
                    if worker.namespace != ns:
                        continue
                    cms, secrets = referenced(worker.pod.get("spec") or {})
                    if name in (cms if kind == "cm" else secrets):
                        self._spawn(worker.config_changed())
            if self._routes_dirty:
                self._routes_dirty = False
                await self._sync_routes()
            self.m_pods.set(value=len(self.workers))

    async def _reconcile(self, key: str) -> None:
        pod = self.pods.cache.get(key)
        worker = self.workers.get(key)
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            pod = None  # graceful deletion: stop it now (no finalizers are ours)
        if worker is not None and (pod is None or worker.uid != pod["metadata"].get("uid")):
            del self.workers[key]
            grace = (pod or worker.pod)["metadata"].get("deletionGracePeriodSeconds")
            task = asyncio.create_task(worker.terminate(None if grace is None else float(grace)))
            self._terminating.add(task)
            task.add_done_callback(self._terminating.discard)
            worker = None
        if pod is not None and worker is None:
            worker = PodWorker(self, pod)
            self.workers[key] = worker
            worker.start()
            log.info("pod %s (%s) admitted", key, pod["metadata"].get("uid"))

    async def _sync_routes(self) -> None:
        desired = compile_routes(list(self.nodes.cache.values()), self.node_name,
                                 str(self.podnet.network))
        current = await self.podnet.run(self.podnet.current_routes)
        delete, add = diff_routes(current, desired)
        if delete or add:
            failures = await self.podnet.run(self.podnet.apply_routes, delete, add)
            for text in failures:
                log.warning("host-gw: %s", text)
            log.info("host-gw routes: -%d +%d", len(delete), len(add))

    async def _wait_veths_gone(self) -> None:
        """The kernel removes a deleted pod's veth with its namespace, asynchronously: leave
        nothing behind when we exit."""
        deadline = time.monotonic() + VETH_GONE_S
        while await self.podnet.run(self.podnet.pod_veths):
            if time.monotonic() > deadline:
                log.warning("pod veths still present after %gs", VETH_GONE_S)
                return
            await asyncio.sleep(0.05)

    async def _shutdown(self) -> None:
        workers = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(*self._terminating, return_exceptions=True)
        await asyncio.gather(*(w.terminate(min(w._grace_s(), STOP_GRACE_S), keep=self.keep_pods)
                               for w in workers), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await self.runtime.close()
        if self.podnet is None:
            return
        if not self.keep_pods:
            await self._wait_veths_gone()
            current = await self.podnet.run(self.podnet.current_routes)
            await self.podnet.run(self.podnet.apply_routes, sorted(current), [])
            await self.podnet.run(self.podnet.remove_bridge)
            log.info("pod network removed")
        await asyncio.to_thread(self.podnet.close)
