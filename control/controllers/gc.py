"""The garbage collector: delete objects whose owners are all gone (background propagation).

Theory of operation
-------------------
kube's garbage collector keeps a graph of owner references; this one keeps two indexes built
from one informer per kind (Events excluded: nothing owns them and they are the busiest kind):

- `uids`: uid -> (kind, key) of every object cached;
- `dependents`: owner uid -> set of (kind, key) of objects naming it in ownerReferences.

An object whose owner is deleted is queued. Reconciling it (`kind|key`): if none of its
owners exists any more, it is deleted. The caches are only a trigger: before deleting, each
owner is looked up in the registry itself (by the reference's apiVersion/kind/name, in the
dependent's namespace for namespaced kinds) and counts as present when its uid matches — so a
dependent created just after its owner, whose owner this process's cache has not seen yet, is
never collected by mistake (kube's "virtual node" verification). The delete carries the
dependent's uid as a precondition.

At start every object with owner references is queued once, collecting what was orphaned
while the server was down. Objects with some owners left keep living (kube then removes the
dangling references; not needed here). Foreground deletion and orphaning are not
implemented: deleting an owner always collects its dependents in the background.
"""

from __future__ import annotations

import logging

from meshnet.api import errors
from meshnet.api.resources import RESOURCES, UnknownResource, by_kind
from meshnet.control.controllers.base import Controller, object_key, split_key

log = logging.getLogger("meshnet.controllers.gc")

SKIPPED_KINDS = ("Event",)


def owner_refs(obj: dict) -> list[dict]:
    return [r for r in (obj.get("metadata") or {}).get("ownerReferences") or ()
            if isinstance(r, dict) and r.get("uid")]


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def __init__(self, registry):
        super().__init__(registry)
        self.kinds = {info.plural: info for info in RESOURCES if info.kind not in SKIPPED_KINDS}
        self.by_plural = {}
        self.uids: dict[str, tuple[str, str]] = {}
        self.dependents: dict[str, set[tuple[str, str]]] = {}
        for plural, info in self.kinds.items():
            inf = self.informer(info)
            self.by_plural[plural] = inf
            inf.add_handlers(on_add=lambda o, p=plural: self._added(p, o),
                             on_update=lambda old, new, p=plural: self._updated(p, old, new),
                             on_delete=lambda o, p=plural: self._deleted(p, o))

    def __repr__(self) -> str:
        return f"<GarbageCollector objects={len(self.uids)} owners={len(self.dependents)}>"

    # -- index maintenance (handlers only record) ----------------------------------------------

    def _index(self, plural: str, obj: dict) -> None:
        key = object_key(obj)
        uid = obj["metadata"].get("uid")
        if uid:
            self.uids[uid] = (plural, key)
        for ref in owner_refs(obj):
            self.dependents.setdefault(ref["uid"], set()).add((plural, key))

    def _unindex(self, plural: str, obj: dict) -> None:
        key = object_key(obj)
        uid = obj["metadata"].get("uid")
        if uid and self.uids.get(uid) == (plural, key):
            del self.uids[uid]
        for ref in owner_refs(obj):
            deps = self.dependents.get(ref["uid"])
            if deps is not None:
                deps.discard((plural, key))
                if not deps:
                    del self.dependents[ref["uid"]]

    def _added(self, plural: str, obj: dict) -> None:
        self._index(plural, obj)
        if owner_refs(obj) and not any(r["uid"] in self.uids for r in owner_refs(obj)):
            self.queue.add(f"{plural}|{object_key(obj)}")

    def _updated(self, plural: str, old: dict, new: dict) -> None:
        self._unindex(plural, old)
        self._index(plural, new)
        if owner_refs(new) != owner_refs(old) and owner_refs(new):
            self.queue.add(f"{plural}|{object_key(new)}")

    def _deleted(self, plural: str, obj: dict) -> None:
        self._unindex(plural, obj)
        uid = obj["metadata"].get("uid")
        for dep_plural, dep_key in list(self.dependents.get(uid, ())):
            self.queue.add(f"{dep_plural}|{dep_key}")

    async def prepare(self) -> None:
        for plural, inf in self.by_plural.items():
            for obj in inf.list():
                if owner_refs(obj):
                    self.queue.add(f"{plural}|{object_key(obj)}")

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, item: str) -> None:
        plural, _, key = item.partition("|")
        inf = self.by_plural.get(plural)
        obj = inf.get(key) if inf is not None else None
        if obj is None:
            return
        refs = owner_refs(obj)
        if not refs:
            return
        ns, name = split_key(key)
        for ref in refs:
            if await self._owner_exists(ref, ns):
                return
        info = self.kinds[plural]
        try:
            await self.registry.delete(info, ns, name, precondition_uid=obj["metadata"]["uid"])
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                return  # gone already, or a new object took the name
            raise
        owners = ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in refs)
        log.info("collected %s %s: owner %s is gone", info.kind, key, owners)

    async def _owner_exists(self, ref: dict, namespace: str | None) -> bool:
        try:
            info = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        except UnknownResource:
            # A kind this server does not serve cannot be checked: keep the dependent, as
            # kube does for references it cannot resolve.
            return True
        try:
            owner = await self.registry.get(info, namespace if info.namespaced else None,
                                            ref.get("name", ""))
        except errors.StatusError as exc:
            if exc.code == 404:
                return False
            raise
        return owner["metadata"].get("uid") == ref["uid"]
