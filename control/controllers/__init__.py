"""Controllers that run inside the API server process.

    install_admission(registry, config)        before serving: the Service allocation hook
    manager = start_controllers(registry, config)
    await manager.start()                       built-in namespaces, repair, then controllers
    ...
    await manager.stop()

`install_admission` is idempotent per registry and returns the `ServiceAllocators` it
installed; `start_controllers` uses the same one (its repair pass rebuilds the allocation
state the hook uses), installing it first if that was not done.

Start order matters: the namespaces must exist before the bootstrap Services are created in
them, and the repair pass must have rebuilt the allocation state before anything allocates
(the hook also loads it lazily, so a request served before `start()` is safe too).

With an `elector` (a `LeaderElector`, as every meshnet-apiserver passes) the controllers run
only while this server holds the leader Lease: `start()` ensures the built-in namespaces, runs
the first election round and, if it won, starts the controllers before returning (a lone server
is fully up when it says ready); afterwards a follower task starts a fresh set of controllers on
every acquisition and stops them on every loss. Stopped controllers are not restarted (their
queues are shut down): each term of leadership builds new ones. Admission hooks stay installed
on every server.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from meshnet.control.controllers.bootstrap import BootstrapController
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.deployment import DeploymentController
from meshnet.control.controllers.endpoints import EndpointsController
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.gc import GarbageCollector
from meshnet.control.controllers.leader import LeaderElector
from meshnet.control.controllers.loadbalancer import LoadBalancerController
from meshnet.control.controllers.namespaces import NamespaceController
from meshnet.control.controllers.nodeipam import NodeIpamController
from meshnet.control.controllers.nodelifecycle import NodeLifecycleController
from meshnet.control.controllers.replicaset import ReplicaSetController
from meshnet.control.controllers.scheduler import Scheduler
from meshnet.control.controllers.serviceips import RepairLoop, ServiceAllocators
from meshnet.control.controllers.statefulset import StatefulSetController

__all__ = ["ControllerConfig", "ControllerManager", "install_admission", "record_event",
           "start_controllers"]

log = logging.getLogger("meshnet.controllers")

_INSTALLED: "weakref.WeakKeyDictionary[object, ServiceAllocators]" = weakref.WeakKeyDictionary()


def install_admission(registry, config: ControllerConfig) -> ServiceAllocators:
    """Register the Service admission hook (ClusterIP/NodePort allocation) once per registry."""
    allocators = _INSTALLED.get(registry)
    if allocators is None:
        allocators = ServiceAllocators(registry, config)
        registry.add_admission("Service", allocators.admit)
        _INSTALLED[registry] = allocators
    return allocators


class ControllerManager:
    """All in-process controllers, started and stopped in order."""

    def __init__(self, registry, config: ControllerConfig, *,
                 elector: LeaderElector | None = None):
        self.registry = registry
        self.config = config
        self.elector = elector
        self.allocators = install_admission(registry, config)
        self._started: list = []
        self._changed = asyncio.Event()
        self._follow_task: asyncio.Task | None = None
        self._build()

    def _build(self) -> None:
        registry, config = self.registry, self.config
        self.repair = RepairLoop(self.allocators)
        self.namespaces = NamespaceController(registry)
        self.endpoints = EndpointsController(registry)
        self.loadbalancer = LoadBalancerController(registry, config)
        self.bootstrap = BootstrapController(registry, config)
        # Workloads (issue 6): nodes get pod CIDRs, pods get nodes, owners get pods.
        self.nodeipam = NodeIpamController(registry, config)
        self.scheduler = Scheduler(registry)
        self.replicasets = ReplicaSetController(registry)
        self.deployments = DeploymentController(registry)
        self.statefulsets = StatefulSetController(registry)
        self.gc = GarbageCollector(registry)
        self.nodelifecycle = NodeLifecycleController(registry, config)
        self.controllers = [self.namespaces, self.endpoints, self.loadbalancer, self.bootstrap,
                            self.nodeipam, self.scheduler, self.replicasets, self.deployments,
                            self.statefulsets, self.gc, self.nodelifecycle]

    def __repr__(self) -> str:
        names = ",".join(c.name for c in self.controllers)
        leader = "" if self.elector is None else f" leader={self.elector.is_leader}"
        return f"<ControllerManager [{names}] started={len(self._started)}{leader}>"

    async def start(self) -> None:
        await self.namespaces.ensure_defaults()
        if self.elector is None:
            await self._start_controllers()
            return
        self.elector.on_change = lambda leading: self._changed.set()
        await self.elector.start()
        self._changed.clear()
        if self.elector.is_leader:
            await self._start_controllers()
        self._follow_task = asyncio.create_task(self._follow(), name="controller-manager:follow")

    async def _follow(self) -> None:
        """Bring the running controllers in line with leadership whenever it changes."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            leading = self.elector.is_leader
            if leading and not self._started:
                try:
                    await self._start_controllers()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("starting the controllers failed; trying again")
                    self._build()
                    await asyncio.sleep(1.0)
                    self._changed.set()
            elif not leading and self._started:
                log.info("not the leader any more: stopping the controllers")
                await self._stop_controllers()
                self._build()  # stopped controllers cannot start again

    async def _start_controllers(self) -> None:
        try:
            await self.repair.start()
            self._started.append(self.repair)
            for controller in self.controllers:
                await controller.start()
                self._started.append(controller)
        except BaseException:
            await self._stop_controllers()
            raise

    async def stop(self) -> None:
        """Stop campaigning, stop the controllers, then release the lease (never overlapping
        a successor's controllers)."""
        if self._follow_task is not None:
            self._follow_task.cancel()
            await asyncio.gather(self._follow_task, return_exceptions=True)
            self._follow_task = None
        if self.elector is not None:
            await self.elector.stop()
        await self._stop_controllers()
        if self.elector is not None:
            await self.elector.release()

    async def _stop_controllers(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %r failed", part)

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until every controller's queue is drained (tests and orderly hand-over)."""
        for controller in self.controllers:
            await controller.wait_idle(timeout_s)


def start_controllers(registry, config: ControllerConfig, *,
                      elector: LeaderElector | None = None) -> ControllerManager:
    """The controllers for registry, not yet running: `await manager.start()`."""
    return ControllerManager(registry, config, elector=elector)
