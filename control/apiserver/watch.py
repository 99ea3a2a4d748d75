"""Watch streams: `?watch=true` as newline-delimited JSON events.

One event per line: `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": ...}`.
A resourceVersion older than the store's history yields one ERROR event carrying a 410
Expired Status (what client-go and the Python client expect), then the stream ends. Streams
end cleanly at `timeoutSeconds` (default: kube's min-request-timeout of 1800 s, jittered, so
that long-lived watchers reconnect at different times). BOOKMARK events, when asked for with
`allowWatchBookmarks=true`, carry the latest revision the stream has passed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict

from aiohttp import web

from meshnet.api import errors
from meshnet.control.apiserver import wire
from meshnet.control.apiserver.paths import RequestInfo
from meshnet.control.apiserver.registry import Registry
from meshnet.control.apiserver.table import to_table

log = logging.getLogger("meshnet.apiserver.watch")

ENCODED_CACHE_SIZE = 1024  # objects: above the changes a burst delivers to all watchers
# id(object) -> (object, its JSON). Every watcher of a change gets the same decoded object from
# the registry, so it is encoded once; the entry holds the object, so its id is not reused
# while the entry lives.
_encoded: OrderedDict[int, tuple[dict, bytes]] = OrderedDict()

DEFAULT_TIMEOUT_S = 1800.0
BOOKMARK_INTERVAL_S = 30.0


def encoded(obj: dict) -> bytes:
    """wire.dumps(obj), remembered for the last ENCODED_CACHE_SIZE objects."""
    hit = _encoded.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    data = wire.dumps(obj)
    _encoded[id(obj)] = (obj, data)
    if len(_encoded) > ENCODED_CACHE_SIZE:
        _encoded.popitem(last=False)
    return data


def _timeout(request: web.Request) -> float:
    raw = request.query.get("timeoutSeconds")
    if raw is None:
        return DEFAULT_TIMEOUT_S * (1 + random.random())
    try:
        value = float(raw)
    except ValueError:
        raise errors.bad_request(f'invalid timeoutSeconds "{raw}": must be a number') from None
    return max(value, 0.0)


async def serve_watch(request: web.Request, registry: Registry, ri: RequestInfo, active: set,
                      *, bookmark_interval_s: float = BOOKMARK_INTERVAL_S) -> web.StreamResponse:
    """Stream events until timeout, client disconnect, or server shutdown.

    `active` is the server's set of open watches: shutdown closes them all so that streams
    end cleanly (clients see the end of the response and re-watch elsewhere).
    """
    timeout = _timeout(request)
    bookmarks = wire.query_bool(request, "allowWatchBookmarks")
    as_table = wire.wants_table(request)
    info = ri.info
    watch = registry.watch(info, ri.namespace, since=request.query.get("resourceVersion", ""),
                           label_selector=request.query.get("labelSelector", ""),
                           field_selector=request.query.get("fieldSelector", ""))
    active.add(watch)
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    events = watch.__aiter__()

    def frame(event_type: str, obj: dict) -> bytes:
        if as_table and event_type in ("ADDED", "MODIFIED", "DELETED"):
            obj = to_table(info, [obj], include_object=request.query.get(
                "includeObject", "Metadata"), now=time.time())
            return wire.dumps({"type": event_type, "object": obj}) + b"\n"
        # Every watcher of a change gets the same decoded object: encode it once.
        return b'{"type":"%s","object":%s}\n' % (event_type.encode(), encoded(obj))

    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # No task per event: the store watchers' waits are safe to cancel (the event
            # stays queued), so a plain timeout around the wait serves the bookmarks.
            try:
                async with asyncio.timeout(min(remaining, bookmark_interval_s)):
                    event = await events.__anext__()
            except TimeoutError:
                if bookmarks:
                    await response.write(frame("BOOKMARK", {
                        "kind": info.kind, "apiVersion": info.api_version,
                        "metadata": {"resourceVersion": str(watch.revision)}}))
                continue
            except StopAsyncIteration:
                break
            except errors.StatusError as exc:
                await response.write(frame("ERROR", exc.to_status()))
                break
            except Exception as exc:  # noqa: BLE001 - the store failed under the stream
                # The response has started: a Status response cannot replace it any more (the
                # error middleware would leave the client hanging). End the stream with an
                # ERROR event, as kube-apiserver does, and the client lists and watches again.
                log.warning("watch %s ended by a store error: %s", request.path_qs, exc)
                await response.write(frame("ERROR", errors.internal(
                    f"the watch ended: {exc}; list and watch again").to_status()))
                break
            await response.write(frame(event.type, event.object))
    except ConnectionResetError:
        pass  # the client went away
    finally:
        watch.close()
        active.discard(watch)
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response
