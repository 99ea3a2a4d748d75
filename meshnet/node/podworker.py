"""One pod's life on this node: network, containers, probes, restarts, status, teardown.

Theory of operation
-------------------
The agent starts one `PodWorker` per pod bound to the node. Its tasks:

  run()              sets up the pod network (retrying until the node has a podCIDR), then
                     starts one `container_loop` per container;
  container_loop()   image -> configuration -> start -> wait -> restart decision (with
                     back-off), recording each step as a `lifecycle` transition;
  probe loops        one per probe of a running container; readiness flips `ready`,
                     liveness failure stops the container (the loop then restarts it);
  status_loop()      coalesces changes and PATCHes the pod's status subresource when the
                     computed status differs from the last one written — or from the API's
                     copy: every pod update from the informer (watch or relist) is compared
                     with what we wrote (`lifecycle.status_differs`), and when someone else
                     changed it (the node lifecycle controller marks a silent node's pods
                     Ready=False; nothing but us ever puts them back) ours is written again,
                     as kubelet's status manager does. Updates older than our last write
                     (by resourceVersion) are our own writes coming back and are not compared.

Every state change goes through `self._set()`, which stores the new frozen `CState` and wakes
the status loop; nothing else writes status. A pod-level problem (missing ConfigMap, unknown
image, no podCIDR yet) becomes a container waiting reason and an Event, never an exception
out of the worker. `terminate()` is the only way out: SIGTERM, grace period, SIGKILL, then the
network, the IP and the state directory go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from meshnet.client.errors import ApiError, ClientError
from meshnet.node import lifecycle as lc
from meshnet.node.envconfig import PodFacts, resolve_env
from meshnet.node.errors import ConfigError, ImagePullError, PodError
from meshnet.node.images import container_argv
from meshnet.node.netconfig import resolv_conf
from meshnet.node.probes import ProbeTracker, parse_probe, run_probe
from meshnet.node.runtime import Container, exit_status
from meshnet.node.volumes import container_mounts, prepare_volumes

if TYPE_CHECKING:
    from meshnet.node.agent import Agent

log = logging.getLogger("meshnet.agent.pod")

CONFIG_RETRY_S = 5.0
NETWORK_RETRY_S = 1.0
STATUS_COALESCE_S = 0.02
# A pod still being created reports when its containers run, or after this long: one status
# write per pod instead of three (created, got an IP, running) when many start at once.
# Any problem (a waiting reason other than a plain ContainerCreating) is reported at once.
FIRST_REPORT_S = 1.0
ERR_IMAGE_PULL_SHOW_S = 1.0


def _resource_version(pod: dict | None) -> int | None:
    try:
        return int(((pod or {}).get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None  # opaque (not ours): compare every update


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class PodWorker:
    def __init__(self, agent: "Agent", pod: dict):
        meta = pod["metadata"]
        self.agent = agent
        self.pod = pod
        self.uid = meta["uid"]
        self.namespace = meta.get("namespace", "default")
        self.name = meta["name"]
        self.key = f"{self.namespace}/{self.name}"
        self.ipam_key = f"{self.key}/{self.uid}"
        self.dir: Path = agent.state_dir / "pods" / self.uid
        spec = pod.get("spec") or {}
        self.policy = spec.get("restartPolicy") or "Always"
        self.states = {c["name"]: lc.CState(c["name"], c.get("image", ""))
                       for c in spec.get("containers") or []}
        self.containers: dict[str, Container] = {}
        self.envs: dict[str, dict] = {}
        self.mount_paths: list[str] = []
        self.pod_ip = ""
        self.netns = ""
        self.start_time = now_rfc3339()
        self.stopping = False
        self._dirty = asyncio.Event()
        self._config = asyncio.Condition()
        self._tasks: list[asyncio.Task] = []
        self._probes: dict[str, list[asyncio.Task]] = {}
        self._last_status: dict | None = None
        self._written_rv = -1  # resourceVersion of our last status write
        self._writing = False
        self._reassert = False  # the API's copy differs from ours: write it again
        self._events_sent: set[tuple[str, str]] = set()
        self._net_future: asyncio.Future | None = None
        self._report_at = time.monotonic() + FIRST_REPORT_S

    def __repr__(self) -> str:
        states = " ".join(repr(s) for s in self.states.values())
        return f"<PodWorker {self.key} ip={self.pod_ip or '-'} {states}>"

    # -- wiring --------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._status_loop(), name=f"status-{self.key}"))
        self._tasks.append(asyncio.create_task(self.run(), name=f"pod-{self.key}"))
        self._dirty.set()

    def update(self, pod: dict) -> None:
        self.pod = pod
        self._check_api_status()

    def _check_api_status(self) -> None:
        if self._last_status is None or self._writing or self.stopping or self._reassert:
            return  # nothing written yet, or the write in flight checks when it is done
        rv = _resource_version(self.pod)
        if rv is not None and rv <= self._written_rv:
            return  # our own write (or an older version) coming back
        if lc.status_differs(self.pod.get("status"), self._last_status):
            log.info("%s: status in the API (resourceVersion %s) is not the agent's; "
                     "writing it again", self.key, rv)
            self._reassert = True
            self._dirty.set()

    async def config_changed(self) -> None:
        """A ConfigMap or Secret this pod uses changed: refresh volumes, retry waiting ones."""
        if self.netns:
            try:
                await asyncio.to_thread(self._prepare_volumes)
            except (ConfigError, OSError) as exc:
                log.info("%s: volumes not refreshed: %s", self.key, exc)
        async with self._config:
            self._config.notify_all()

    def _set(self, cs: lc.CState) -> None:
        self.states[cs.name] = cs
        self._dirty.set()

    def _event(self, kind: str, reason: str, message: str, *, once: bool = False) -> None:
        if once:
            if (reason, message) in self._events_sent:
                return
            self._events_sent.add((reason, message))
        self.agent.record_event(self.pod, kind, reason, message)

    # -- the pod -------------------------------------------------------------------------------

    async def run(self) -> None:
        # Off the event loop: a new directory costs a journal write, slow while the API
        # server's fsyncs keep the disk busy (a hundred pods at once).
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        while not self.stopping:
            try:
                await self._setup_network()
                break
            except PodError as exc:
                for cs in self.states.values():
                    self._set(lc.waiting(cs, lc.CONTAINER_CREATING, exc.message))
                self._event("Warning", "FailedCreatePodSandBox", exc.message, once=True)
                await asyncio.sleep(NETWORK_RETRY_S)
        for container in (self.pod.get("spec") or {}).get("containers") or []:
            name = f"container-{self.key}/{container['name']}"
            self._tasks.append(asyncio.create_task(self._container_loop(container), name=name))

    async def _setup_network(self) -> None:
        net, ipam = self.agent.podnet, self.agent.ipam
        if net is None or ipam is None:
            raise PodError("the node has no podCIDR yet (spec.podCIDR or --pod-cidr)")
        self.pod_ip = ipam.allocate(self.ipam_key, save=False)  # saved before it is used
        text = resolv_conf(self.namespace, (self.agent.cluster_dns,), self.agent.cluster_domain)
        # A thread cannot be cancelled: terminate() waits for this future before tearing down,
        # or a pod deleted mid-setup would leave a namespace (or a sandbox container) behind.
        self._net_future = asyncio.ensure_future(self._sandbox_and_network(net, text))
        self.netns = await asyncio.shield(self._net_future)
        self._dirty.set()

    async def _sandbox_and_network(self, net, resolv: str) -> str:
        # The runtime's sandbox first (docker: the pause container whose namespace becomes the
        # pod's netns name), then the veth and IP go into that namespace, as CNI does.
        await self.agent.runtime.create_sandbox(uid=self.uid, pod_key=self.key,
                                                hostname=self._hostname())
        return await net.run(self._save_ipam_and_setup, net, resolv)

    def _save_ipam_and_setup(self, net, resolv: str) -> str:
        # On the network's thread: the file write stays off the event loop, and the address is
        # on disk before it is on the pod's interface.
        self.agent.ipam.save()
        return net.setup_pod(self.uid, self.pod_ip, resolv)

    def _hostname(self) -> str:
        return (self.pod.get("spec") or {}).get("hostname") or self.name

    def _facts(self) -> PodFacts:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        return PodFacts(self.name, self.namespace, self.uid, self.agent.node_name, self.pod_ip,
                        self.agent.host_ip, spec.get("serviceAccountName") or "default",
                        meta.get("labels") or {}, meta.get("annotations") or {})

    def _prepare_volumes(self) -> None:
        cms, bins, secrets = self.agent.config_for(self.namespace)
        prepare_volumes(self.dir, self.pod.get("spec") or {}, cms, secrets, bins)

    async def _wait_config(self, timeout_s: float) -> None:
        async with self._config:
            try:
                await asyncio.wait_for(self._config.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass

    # -- one container -------------------------------------------------------------------------

    async def _container_loop(self, c: dict) -> None:
        name = c["name"]
        backoff_key = f"{self.uid}/{name}"
        while not self.stopping:
            try:
                image = await self.agent.runtime.resolve_image(c.get("image", ""))
            except ImagePullError as exc:
                await self._image_backoff(name, c.get("image", ""), exc)
                continue
            self.agent.backoff.reset(f"pull:{backoff_key}")
            try:
                argv, env, mounts = await self._configure(c, image)
            except ConfigError as exc:
                self._set(lc.waiting(self.states[name], "CreateContainerConfigError", exc.message))
                self._event("Warning", "Failed", f"Error: {exc.message}", once=True)
                await self._wait_config(CONFIG_RETRY_S)
                continue
            except ImagePullError as exc:
                await self._image_backoff(name, c.get("image", ""), exc)
                continue
            cs = self.states[name]
            container = await self.agent.runtime.start(
                pod_key=self.key, pod_dir=self.dir, netns=self.netns, name=name,
                restart=cs.restart_count + (1 if cs.started else 0), argv=argv, env=env,
                working_dir=c.get("workingDir", ""), mounts=mounts,
                hostname=self._hostname(), image=c.get("image", ""))
            self.containers[name] = container  # before any await: terminate() must see it
            self.envs[name] = env
            self.agent.m_starts.inc()
            await self.agent.runtime.wait_started(container)
            self._set(lc.started(self.states[name], now_rfc3339(), container.container_id))
            self._event("Normal", "Started", f"Started container {name}")
            self._start_probes(c, container)
            returncode = await container.proc.wait()
            for task in self._probes.pop(name, []):
                task.cancel()
            code, sig = exit_status(returncode)
            self._set(lc.exited(self.states[name], code, now_rfc3339(), sig))
            if self.stopping or not lc.should_restart(self.policy, code):
                return
            delay = self.agent.backoff.next(backoff_key, time.monotonic() - container.started)
            if delay > 0:
                self._set(lc.crash_loop(self.states[name], delay))
                self._event("Warning", "BackOff", f"Back-off restarting failed container "
                                                  f"{name} in pod {self.name}")
                await asyncio.sleep(delay)
            else:
                self._set(lc.before_restart(self.states[name]))

    async def _image_backoff(self, name: str, ref: str, exc: PodError) -> None:
        self._set(lc.waiting(self.states[name], "ErrImagePull", exc.message))
        self._event("Warning", "Failed", exc.message, once=True)
        await asyncio.sleep(ERR_IMAGE_PULL_SHOW_S)
        delay = self.agent.backoff.next(f"pull:{self.uid}/{name}") or self.agent.backoff.initial_s
        self._set(lc.waiting(self.states[name], "ImagePullBackOff",
                             f'Back-off pulling image "{ref}"'))
        self._event("Normal", "BackOff", f'Back-off pulling image "{ref}"', once=True)
        await asyncio.sleep(delay)

    async def _configure(self, c: dict, image) -> tuple[list[str], dict, list]:
        cms, _bins, secrets = self.agent.config_for(self.namespace)
        facts = self._facts()
        env = dict(image.env)
        if image.downward_env:
            env.update(POD_NAME=self.name, POD_NAMESPACE=self.namespace, POD_IP=self.pod_ip,
                       NODE_NAME=self.agent.node_name)
        env.update(resolve_env(c, facts, cms, secrets))
        await asyncio.to_thread(self._prepare_volumes)
        mounts = container_mounts(self.dir, self.pod.get("spec") or {}, c)
        for i, path in enumerate(image.private_dirs):
            private = self.dir / "private" / c["name"] / str(i)
            private.mkdir(parents=True, exist_ok=True)
            mounts.append((str(private), path, False))
        if self.agent.runtime.host_mount_targets:
            targets = [m[1] for m in mounts if m[1] not in self.mount_paths]
            self.agent.mount_targets.acquire(targets)
            self.mount_paths.extend(targets)
        return container_argv(image, c, env), env, mounts

    # -- probes --------------------------------------------------------------------------------

    def _start_probes(self, c: dict, container: Container) -> None:
        name = c["name"]
        tasks = []
        readiness = parse_probe(c.get("readinessProbe"), c)
        liveness = parse_probe(c.get("livenessProbe"), c)
        if readiness is None:
            self._set(lc.probed(self.states[name], True))
        else:
            tasks.append(asyncio.create_task(self._probe_loop(name, container, readiness, False)))
        if liveness is not None:
            tasks.append(asyncio.create_task(self._probe_loop(name, container, liveness, True)))
        self._probes[name] = tasks

    async def _probe_loop(self, name: str, container: Container, spec, liveness: bool) -> None:
        tracker = ProbeTracker(spec, initial=liveness)
        kind = "Liveness" if liveness else "Readiness"

        async def exec_fn(argv: list[str], timeout_s: float) -> int:
            code, _out, _err = await self.agent.runtime.exec(container, argv, timeout_s,
                                                             self.envs.get(name))
            return code

        await asyncio.sleep(spec.initial_delay_s)
        while container.proc.returncode is None:
            ok = await run_probe(spec, self.pod_ip, exec_fn)
            if not ok:
                self._event("Warning", "Unhealthy", f"{kind} probe failed", once=True)
            if tracker.observe(ok):
                if not liveness:
                    self._set(lc.probed(self.states[name], tracker.result))
                elif not tracker.result:
                    self._event("Normal", "Killing", f"Container {name} failed liveness probe, "
                                                     f"will be restarted")
                    await self.agent.runtime.stop(container, self._grace_s())
                    return
            await asyncio.sleep(max(spec.period_s, 0.1))

    # -- status --------------------------------------------------------------------------------

    def compute_status(self) -> dict:
        return lc.pod_status(self.policy, list(self.states.values()), now=now_rfc3339(),
                             pod_ip=self.pod_ip, host_ip=self.agent.host_ip,
                             start_time=self.start_time, previous=self._last_status)

    def _creating(self) -> bool:
        return all(cs.reason == lc.CONTAINER_CREATING and not cs.message and not cs.started
                   for cs in self.states.values())

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_COALESCE_S)
            hold = self._report_at - time.monotonic()
            if hold > 0 and self._creating() and not self.stopping:
                self._dirty.clear()
                try:
                    await asyncio.wait_for(self._dirty.wait(), hold)
                except asyncio.TimeoutError:
                    self._dirty.set()
                continue
            self._dirty.clear()
            if self.stopping:
                return
            status = self.compute_status()
            if status == self._last_status and not self._reassert:
                continue
            self._writing = True
            try:
                written = await self.agent.patch_pod_status(self.namespace, self.name, status)
                self._last_status = status
                self._reassert = False
                self._written_rv = _resource_version(written) or self._written_rv
            except ApiError as exc:
                if exc.code == 404:
                    return  # deleted; the agent will terminate us
                log.warning("%s: status update failed: %s", self.key, exc)
                await asyncio.sleep(1.0)
                self._dirty.set()
            except ClientError as exc:
                log.warning("%s: status update failed: %s", self.key, exc)
                await asyncio.sleep(1.0)
                self._dirty.set()
            finally:
                self._writing = False
            self._check_api_status()  # updates that came while the write was in flight

    # -- the end -------------------------------------------------------------------------------

    def _grace_s(self) -> float:
        spec = self.pod.get("spec") or {}
        grace = spec.get("terminationGracePeriodSeconds")
        return float(30 if grace is None else grace)

    async def terminate(self, grace_s: float | None = None, *, keep: bool = False) -> None:
        """Stop every container (SIGTERM, `grace_s`, SIGKILL) and remove what the pod had.
        `keep` leaves processes, network and state alone (agent --keep-pods)."""
        self.stopping = True
        for task in self._tasks + [t for ts in self._probes.values() for t in ts]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if keep:
            return
        grace = self._grace_s() if grace_s is None else grace_s
        await asyncio.gather(*(self.agent.runtime.stop(c, grace)
                               for c in self.containers.values()), return_exceptions=True)
        if self._net_future is not None:
            await asyncio.gather(self._net_future, return_exceptions=True)
        try:
            await self.agent.runtime.remove_sandbox(self.uid)
        except Exception as exc:  # the network and IP must still go
            log.warning("%s: removing the pod sandbox: %s", self.key, exc)
        if self.agent.podnet is not None:
            # A docker sandbox's namespace is also held by dockerd (its sandbox bind mount),
            # so its veth would outlive the pod: delete it. Ours dies with our mount.
            await self.agent.podnet.run(partial(self.agent.podnet.teardown_pod, self.uid,
                                                delete_veth=not self.agent.runtime.owns_netns))
        if self.agent.ipam is not None:
            self.agent.ipam.release(self.ipam_key)
        self.agent.mount_targets.release(self.mount_paths)
        self.mount_paths = []
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("pod %s terminated, %s returned to the pool", self.key, self.pod_ip or "no IP")
