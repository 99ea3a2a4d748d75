"""`GET /meshnet/v1/snapshot`: the whole store at one revision, streamed for `meshctl backup`.

Theory of operation
-------------------
The snapshot is one `store.list("")` — one committed state of SQLite, one header revision of
etcd — encoded by `meshnet.control.store.snapshot` as it is written out, so a backup taken
while writes go on is still exactly the store at one revision (the first line names it).
Taking it over the API (not by copying store.db or calling etcd) works the same for both
backends, from anywhere the API server is reachable, with the credentials operators already
have; only users in system:masters may (the snapshot holds every Secret). Restoring is not an
endpoint: it needs an empty store and no running API server (`meshnet-apiserver --restore`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from meshnet.api import errors
from meshnet.control.store.base import Store
from meshnet.control.store.snapshot import encode_snapshot, take_snapshot

log = logging.getLogger("meshnet.apiserver")

SNAPSHOT_PATH = "/meshnet/v1/snapshot"
CONTENT_TYPE = "application/x-ndjson"
# Request keys the authentication step sets: the user name and whether it is in system:masters.
USER = "meshnet.user"
MASTER = "meshnet.master"
WRITE_CHUNK_BYTES = 256 * 1024


async def serve_snapshot(request: web.Request, store: Store) -> web.StreamResponse:
    if not request.get(MASTER):
        # kube-apiserver's wording for a non-resource URL the user may not get.
        raise errors.forbidden(f'User "{request.get(USER, "")}" cannot get path '
                               f'"{SNAPSHOT_PATH}": a store snapshot needs a user in the group '
                               "system:masters")
    kvs, revision, compact_revision = await take_snapshot(store)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE,
                                           "X-Meshnet-Snapshot-Revision": str(revision)})
    await response.prepare(request)
    chunk = bytearray()
    size = 0
    for line in encode_snapshot(kvs, revision, compact_revision):
        chunk += line
        if len(chunk) >= WRITE_CHUNK_BYTES:
            size += len(chunk)
            await response.write(bytes(chunk))
            chunk.clear()
            await asyncio.sleep(0)  # encoding a big store must not stall other requests
    size += len(chunk)
    await response.write(bytes(chunk))
    await response.write_eof()
    log.info("store snapshot at revision %d (%d keys, %d bytes) sent to %s", revision,
             len(kvs), size, request.get(USER))
    return response
