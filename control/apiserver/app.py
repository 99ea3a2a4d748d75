"""The aiohttp application: authentication, error mapping, and the route table.

Every failure leaves as a Kubernetes Status body: StatusError as is, anything unexpected as
a 500 InternalError (logged with its traceback) — a bad request never takes the server down
or stalls other clients. Only `/version`, `/healthz`, `/livez` and `/readyz` are served
without a bearer token (kube-apiserver's public-info-viewer role allows the same); the store
snapshot (`backup.SNAPSHOT_PATH`) only to users in system:masters.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from meshnet.api import errors
from meshnet.control.apiserver import backup, discovery, handlers, openapi, wire
from meshnet.control.apiserver.paths import parse_resource_path
from meshnet.control.apiserver.registry import Registry
from meshnet.control.apiserver.watch import BOOKMARK_INTERVAL_S, serve_watch

log = logging.getLogger("meshnet.apiserver")

PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
REGISTRY_KEY = web.AppKey("registry", Registry)
TOKENS_KEY = web.AppKey("tokens", dict)
MASTERS_KEY = web.AppKey("masters", frozenset)
ADDRESS_KEY = web.AppKey("address", str)
WATCHES_KEY = web.AppKey("watches", set)
BOOKMARK_KEY = web.AppKey("bookmark_interval_s", float)


def _authenticate(request: web.Request) -> None:
    if request.path in PUBLIC_PATHS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for known, user in request.app[TOKENS_KEY].items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                request[backup.USER] = user
                request[backup.MASTER] = known in request.app[MASTERS_KEY]
                return
    raise errors.unauthorized()


@web.middleware
async def status_errors(request: web.Request, handler):
    try:
        _authenticate(request)
        return await handler(request)
    except errors.StatusError as exc:
        return wire.status_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return wire.status_response(errors.too_large(wire.MAX_BODY_BYTES))
    except web.HTTPException as exc:
        if exc.status == 404:
            return wire.status_response(errors.StatusError(
                404, "NotFound", f"the server could not find the requested resource "
                                 f"({request.path})"))
        if exc.status == 405:
            return wire.status_response(errors.method_not_allowed(
                f"the server does not allow this method on the requested resource "
                f"({request.method} {request.path})"))
        raise
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        return wire.status_response(errors.internal(
            f"an internal error occurred serving {request.method} {request.path}; "
            f"see the API server log"))


async def resource(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY_KEY]
    ri = parse_resource_path(request.path)
    method = request.method
    if ri.subresource in ("log", "exec"):
        from meshnet.control.apiserver import podproxy  # served by the node agent
        return await podproxy.forward(request, registry, ri)
    if method == "GET":
        if ri.name is None:
            if wire.query_bool(request, "watch"):
                return await serve_watch(request, registry, ri, request.app[WATCHES_KEY],
                                         bookmark_interval_s=request.app[BOOKMARK_KEY])
            return await handlers.list_(request, registry, ri)
        return await handlers.get(request, registry, ri)
    if method == "POST":
        return await handlers.create(request, registry, ri)
    if method == "PUT":
        return await handlers.update(request, registry, ri)
    if method == "PATCH":
        return await handlers.patch(request, registry, ri)
    if method == "DELETE":
        if ri.name is None:
            return await handlers.delete_collection(request, registry, ri)
        return await handlers.delete(request, registry, ri)
    raise errors.method_not_allowed(f"{method} is not supported")


async def version(request: web.Request) -> web.Response:
    return wire.json_response(discovery.version_info())


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def api_root(request: web.Request) -> web.Response:
    return wire.json_response(discovery.api_versions(request.app[ADDRESS_KEY]))


async def apis_root(request: web.Request) -> web.Response:
    return wire.json_response(discovery.api_group_list())


async def api_core(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    if version != "v1":
        raise web.HTTPNotFound()
    return wire.json_response(discovery.api_resource_list("", version))


async def api_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    doc = discovery.api_group(group)
    if doc is None:
        raise web.HTTPNotFound()
    return wire.json_response(doc)


async def api_group_version(request: web.Request) -> web.Response:
    doc = discovery.api_resource_list(request.match_info["group"], request.match_info["version"])
    if doc is None:
        raise web.HTTPNotFound()
    return wire.json_response(doc)


async def openapi_v2(request: web.Request) -> web.Response:
    body, content_type = openapi.openapi_v2_for(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi_v3_root(request: web.Request) -> web.Response:
    return wire.json_response(openapi.openapi_v3_root())


async def openapi_v3_doc(request: web.Request) -> web.Response:
    parts = request.match_info["path"].strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        doc = openapi.openapi_v3_document("", parts[1])
    elif parts[0] == "apis" and len(parts) == 3:
        doc = openapi.openapi_v3_document(parts[1], parts[2])
    else:
        doc = None
    if doc is None:
        raise web.HTTPNotFound()
    return wire.json_response(doc)


async def _close_watches(app: web.Application) -> None:
    for watch in list(app[WATCHES_KEY]):
        watch.close()


async def snapshot(request: web.Request) -> web.StreamResponse:
    return await backup.serve_snapshot(request, request.app[REGISTRY_KEY].store)


def make_app(registry: Registry, tokens: dict[str, str], address: str, *,
             bookmark_interval_s: float = BOOKMARK_INTERVAL_S,
             masters: frozenset[str] = frozenset()) -> web.Application:
    """`masters`: the tokens of system:masters users (they alone may take a snapshot)."""
    app = web.Application(middlewares=[status_errors], client_max_size=wire.MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry
    app[TOKENS_KEY] = tokens
    app[MASTERS_KEY] = masters
    app[ADDRESS_KEY] = address
    app[WATCHES_KEY] = set()
    app[BOOKMARK_KEY] = bookmark_interval_s
    app.on_shutdown.append(_close_watches)
    r = app.router
    r.add_get("/version", version)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, healthz)
    r.add_get("/api", api_root)
    r.add_get("/api/", api_root)
    r.add_get("/apis", apis_root)
    r.add_get("/apis/", apis_root)
    r.add_get("/api/{version}", api_core)
    r.add_get("/apis/{group}", api_group)
    r.add_get("/apis/{group}/{version}", api_group_version)
    r.add_get("/openapi/v2", openapi_v2)
    r.add_get("/openapi/v3", openapi_v3_root)
    r.add_get("/openapi/v3/{path:.+}", openapi_v3_doc)
    r.add_get(backup.SNAPSHOT_PATH, snapshot)
    for prefix in ("/api/{version}/{rest:.+}", "/apis/{group}/{version}/{rest:.+}"):
        r.add_route("*", prefix, resource)
    return app
