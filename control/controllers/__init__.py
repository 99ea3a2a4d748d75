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
"""

from __future__ import annotations

import logging
import weakref

from meshnet.control.controllers.bootstrap import BootstrapController
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.deployment import DeploymentController
from meshnet.control.controllers.endpoints import EndpointsController
from meshnet.control.controllers.events import record_event
from meshnet.control.controllers.gc import GarbageCollector
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

    def __init__(self, registry, config: ControllerConfig):
        self.registry = registry
        self.config = config
        self.allocators = install_admission(registry, config)
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
        self._started: list = []

    def __repr__(self) -> str:
        names = ",".join(c.name for c in self.controllers)
        return f"<ControllerManager [{names}] started={len(self._started)}>"

    async def start(self) -> None:
        try:
            await self.namespaces.ensure_defaults()
            await self.repair.start()
            self._started.append(self.repair)
            for controller in self.controllers:
                await controller.start()
                self._started.append(controller)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
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


def start_controllers(registry, config: ControllerConfig) -> ControllerManager:
    """The controllers for registry, not yet running: `await manager.start()`."""
    return ControllerManager(registry, config)
