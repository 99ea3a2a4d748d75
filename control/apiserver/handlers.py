"""Resource verbs over HTTP: get, list, create, update, patch, delete, deletecollection, scale.

Each handler parses the request (wire.py), calls the Registry, and shapes the answer the way
kube-apiserver does (201 on create, Status on delete, Table when asked). Watch lives in
watch.py. No handler touches the store directly.
"""

from __future__ import annotations

import time

from aiohttp import web

from meshnet.api import errors
from meshnet.api.labels import selector_from_label_selector
from meshnet.api.patch import PatchError, UnsupportedPatchType, apply_patch
from meshnet.control.apiserver import wire
from meshnet.control.apiserver.paths import RequestInfo
from meshnet.control.apiserver.registry import Registry
from meshnet.control.apiserver.table import to_table

APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json", APPLY_PATCH)
MAX_PATCH_RETRIES = 8
# kube-apiserver answers a DELETE with the deleted object for these kinds (their registries set
# ReturnDeletedObject; the generated clients decode a V1Pod / V1Service), a Status otherwise.
RETURNS_DELETED_OBJECT = frozenset({"Pod", "Service"})


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise errors.bad_request(f'unsupported dryRun value "{value}": only "All" is '
                                     f'supported')
    return bool(values)


def _selectors(request: web.Request) -> dict:
    return {"label_selector": request.query.get("labelSelector", ""),
            "field_selector": request.query.get("fieldSelector", "")}


def _table(request: web.Request, ri: RequestInfo, objects: list[dict], rv: str) -> dict:
    return to_table(ri.info, objects, list_rv=rv,
                    include_object=request.query.get("includeObject", "Metadata"),
                    now=time.time())


async def get(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    obj = await registry.get(ri.info, ri.namespace, ri.name)
    if ri.subresource == "scale":
        return wire.json_response(to_scale(ri, obj))
    if wire.wants_table(request):
        return wire.json_response(_table(request, ri, [obj], ""))
    return wire.json_response(obj)


async def list_(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    items, rv = await registry.list(ri.info, ri.namespace, **_selectors(request))
    if wire.wants_table(request):
        return wire.json_response(_table(request, ri, items, rv))
    info = ri.info
    return wire.json_response({"kind": info.list_kind, "apiVersion": info.api_version,
                               "metadata": {"resourceVersion": rv}, "items": items})


async def create(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    if ri.name is not None:
        raise errors.method_not_allowed(f"POST is not supported on a named "
                                        f"{ri.info.singular}; use PUT or PATCH")
    if ri.info.namespaced and ri.namespace is None:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested "
                                 f"resource: {ri.info.plural} are created under "
                                 f"/namespaces/<namespace>/{ri.info.plural}")
    obj = wire.decode_object(await wire.read_body(request), wire.content_type(request))
    created = await registry.create(ri.info, ri.namespace, obj, dry_run=_dry_run(request))
    return wire.json_response(created, status=201)


async def update(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    _require_name(ri, "PUT")
    obj = wire.decode_object(await wire.read_body(request), wire.content_type(request))
    if ri.subresource == "scale":
        return wire.json_response(await _update_scale(registry, ri, obj))
    updated = await registry.update(ri.info, ri.namespace, ri.name, obj,
                                    subresource=_write_subresource(ri),
                                    dry_run=_dry_run(request))
    return wire.json_response(updated)


async def patch(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    _require_name(ri, "PATCH")
    content_type = wire.content_type(request)
    if content_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(content_type)
    body = await wire.read_body(request)
    dry_run = _dry_run(request)
    info = ri.info
    for _ in range(MAX_PATCH_RETRIES):
        try:
            current = await registry.get(info, ri.namespace, ri.name)
        except errors.StatusError as exc:
            if exc.code == 404 and content_type == APPLY_PATCH and ri.subresource is None:
                obj = wire.decode_object(body, "application/yaml")
                created = await registry.create(info, ri.namespace, obj, dry_run=dry_run)
                return wire.json_response(created, status=201)
            raise
        base = to_scale(ri, current) if ri.subresource == "scale" else current
        try:
            patched = apply_patch(base, body, content_type, base["kind"])
        except UnsupportedPatchType as exc:
            raise errors.unsupported_media_type(exc.content_type) from None
        except PatchError as exc:
            if exc.parse_error:
                raise errors.bad_request(f"error decoding patch: {exc}") from None
            raise errors.StatusError(422, "Invalid", f"the patch could not be applied to "
                                     f"{info.plural} \"{ri.name}\": {exc}") from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch must produce an object")
        if ri.subresource == "scale":
            return wire.json_response(await _update_scale(registry, ri, patched))
        current_rv = current["metadata"]["resourceVersion"]
        meta = patched.setdefault("metadata", {})
        user_precondition = meta.get("resourceVersion", current_rv) != current_rv
        meta.setdefault("resourceVersion", current_rv)
        try:
            updated = await registry.update(info, ri.namespace, ri.name, patched,
                                            subresource=_write_subresource(ri),
                                            dry_run=dry_run)
        except errors.StatusError as exc:
            if exc.reason == "Conflict" and not user_precondition:
                continue  # someone wrote in between: re-apply the patch to the new state
            raise
        return wire.json_response(updated)
    raise errors.conflict(info.plural, ri.name, "too many concurrent writers; try again",
                          info.group)


async def delete(request: web.Request, registry: Registry, ri: RequestInfo) -> web.Response:
    _require_name(ri, "DELETE")
    options = {}
    body = await wire.read_body(request)
    if body.strip():
        options = wire.decode_object(body, wire.content_type(request))
    preconditions = options.get("preconditions") or {}
    dry_run = _dry_run(request) or options.get("dryRun") == ["All"]
    deleted = await registry.delete(ri.info, ri.namespace, ri.name,
                                    precondition_uid=preconditions.get("uid"),
                                    precondition_rv=preconditions.get("resourceVersion"),
                                    dry_run=dry_run)
    if deleted["metadata"].get("deletionTimestamp") or ri.info.kind in RETURNS_DELETED_OBJECT:
        return wire.json_response(deleted)  # or still there, waiting on finalizers
    return wire.json_response(wire.success_status(ri.info, ri.name,
                                                  deleted["metadata"].get("uid", "")))


async def delete_collection(request: web.Request, registry: Registry,
                            ri: RequestInfo) -> web.Response:
    if "deletecollection" not in ri.info.verbs:
        raise errors.method_not_allowed(f"deletecollection is not supported on "
                                        f"{ri.info.qualified}")
    items, _ = await registry.list(ri.info, ri.namespace, **_selectors(request))
    dry_run = _dry_run(request)
    for obj in items:
        meta = obj["metadata"]
        try:
            await registry.delete(ri.info, meta.get("namespace"), meta["name"], dry_run=dry_run)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
    return wire.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success"})


def _require_name(ri: RequestInfo, verb: str) -> None:
    if ri.name is None:
        raise errors.method_not_allowed(f"{verb} needs an object name in the path")


def _write_subresource(ri: RequestInfo) -> str | None:
    if ri.subresource in ("log", "exec"):
        raise errors.method_not_allowed(f"{ri.info.plural}/{ri.subresource} does not accept "
                                        f"writes")
    return "status" if ri.subresource == "status" else None


def to_scale(ri: RequestInfo, obj: dict) -> dict:
    """The autoscaling/v1 Scale view of a Deployment, ReplicaSet or StatefulSet."""
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    selector = selector_from_label_selector(spec.get("selector") or {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "uid": meta.get("uid"), "resourceVersion": meta["resourceVersion"],
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": status.get("replicas", 0), "selector": str(selector)}}


async def _update_scale(registry: Registry, ri: RequestInfo, scale: dict) -> dict:
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid("Scale", ri.name or "", [errors.field_invalid(
            "spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
    wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")

    def set_replicas(obj: dict) -> dict:
        if wanted_rv and wanted_rv != obj["metadata"]["resourceVersion"]:
            raise errors.stale_version(ri.info.plural, ri.name or "", ri.info.group)
        obj.setdefault("spec", {})["replicas"] = replicas
        return obj

    updated = await registry.guaranteed_update(ri.info, ri.namespace, ri.name, set_replicas)
    return to_scale(ri, updated)

