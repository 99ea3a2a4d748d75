"""The namespace controller: the built-in namespaces, and emptying namespaces being deleted.

Theory of operation
-------------------
Deleting a Namespace does not remove it: the registry sees its `spec.finalizers`
(["kubernetes"]) and only marks it — `deletionTimestamp` set, `status.phase` Terminating —
and from then on refuses to create anything in it. This controller then deletes every
namespaced object of every kind in it; when nothing is left it removes the "kubernetes"
finalizer with an update, and the registry deletes the Namespace in that same write.
Objects that have finalizers of their own only get marked by their delete; the namespace waits
for their owners to finish (`Requeue` after `CONTENT_REMAINING_REQUEUE_S`), as kube's
namespace controller reports NamespaceFinalizersRemaining and waits.

The built-in namespaces are created at start and re-created if they ever disappear (kube's
NamespaceLifecycle admission forbids deleting them; the registry does not, so we heal).
"""

from __future__ import annotations

import logging

from meshnet.api import errors
from meshnet.api.resources import RESOURCES, lookup
from meshnet.control.controllers.base import Controller, Requeue

log = logging.getLogger("meshnet.controllers.namespaces")

NAMESPACES = lookup("namespaces")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
KUBERNETES_FINALIZER = "kubernetes"
CONTENT_REMAINING_REQUEUE_S = 2.0


def namespaced_kinds():
    return [info for info in RESOURCES if info.namespaced]


def without_finalizer(ns: dict) -> dict | None:
    """ns (a copy we may change) without the "kubernetes" finalizer; None when already gone."""
    spec = ns.setdefault("spec", {})
    finalizers = list(spec.get("finalizers") or ())
    if KUBERNETES_FINALIZER not in finalizers:
        return None
    spec["finalizers"] = [f for f in finalizers if f != KUBERNETES_FINALIZER]
    return ns


class NamespaceController(Controller):
    name = "namespaces"
    workers = 2

    def __init__(self, registry, *, content_requeue_s: float = CONTENT_REMAINING_REQUEUE_S):
        super().__init__(registry)
        self.content_requeue_s = content_requeue_s
        self.namespaces = self.informer(NAMESPACES)
        self.namespaces.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                     on_update=lambda old, new: self.enqueue(new))

    async def ensure_defaults(self) -> list[str]:
        """Create the built-in namespaces that do not exist; returns those created."""
        created = []
        for name in DEFAULT_NAMESPACES:
            if await self._ensure(name):
                created.append(name)
        return created

    async def _ensure(self, name: str) -> bool:
        try:
            await self.registry.create(NAMESPACES, None, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except errors.StatusError as exc:
            if exc.reason == "AlreadyExists":
                return False
            raise
        log.info("created namespace %s", name)
        return True

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None:
            if key in DEFAULT_NAMESPACES:
                await self._ensure(key)
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if KUBERNETES_FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return  # other finalizers are someone else's business
        remaining = await self.delete_content(key)
        if remaining:
            raise Requeue(f"namespace {key}: waiting for {remaining} object(s) with finalizers",
                          after_s=self.content_requeue_s)
        try:
            await self.registry.guaranteed_update(NAMESPACES, None, key, without_finalizer)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
        log.info("namespace %s: content deleted, finalizer removed", key)

    async def delete_content(self, namespace: str) -> int:
        """Delete everything in namespace; the number of objects still there (finalizing)."""
        remaining = 0
        for info in namespaced_kinds():
            items, _ = await self.registry.list(info, namespace)
            for item in items:
                name = item["metadata"]["name"]
                if item["metadata"].get("deletionTimestamp"):
                    remaining += 1
                    continue
                try:
                    left = await self.registry.delete(info, namespace, name)
                except errors.StatusError as exc:
                    if exc.code == 404:
                        continue
                    raise
                if (left.get("metadata") or {}).get("deletionTimestamp") and \
                        (left.get("metadata") or {}).get("finalizers"):
                    remaining += 1
        return remaining
