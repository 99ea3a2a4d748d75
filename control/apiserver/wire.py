"""Request and response bodies at the HTTP boundary: decoding, size limits, negotiation.

The only place where bytes from a client become Python objects. JSON, YAML and Kubernetes
protobuf bodies are accepted (the official clients send JSON, kubectl's typed commands
protobuf); YAML errors name the line and column, protobuf errors the byte offset.
A body larger than MAX_BODY_BYTES is refused with 413 before it is read in full.
"""

from __future__ import annotations

import json

import yaml
from aiohttp import web

from meshnet.api import errors
from meshnet.control.apiserver.protobuf import CONTENT_TYPE as PROTOBUF_TYPE
from meshnet.control.apiserver.protobuf import ProtobufError, decode_protobuf_object

# kube-apiserver's default request body limit is 3 MiB (etcd's value size limit is 1.5 MiB
# per object, and requests are limited a little above that). We follow the larger figure.
MAX_BODY_BYTES = 3 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024

JSON_TYPES = ("application/json", "")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
TABLE_ACCEPT = "as=table"


async def read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise errors.too_large(MAX_BODY_BYTES)
    chunks, total = [], 0
    while True:
        chunk = await request.content.read(_CHUNK_BYTES)
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise errors.too_large(MAX_BODY_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_object(body: bytes, content_type: str) -> dict:
    """A JSON or YAML object body; anything else is a 400/415 saying what was wrong and where."""
    if not body.strip():
        raise errors.bad_request("the request body is empty: expected a JSON or YAML object")
    if content_type in YAML_TYPES:
        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise errors.bad_request(f"error decoding YAML body{where}: "
                                     f"{getattr(exc, 'problem', exc)}") from None
    elif content_type == PROTOBUF_TYPE:  # kubectl 1.32+ typed clients (create namespace, ...)
        try:
            obj = decode_protobuf_object(body)
        except ProtobufError as exc:
            raise errors.bad_request(str(exc)) from None
    elif content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"error decoding JSON body: {exc}") from None
    else:
        raise errors.unsupported_media_type(content_type)
    if not isinstance(obj, dict):
        raise errors.bad_request(f"the request body must be an object, not "
                                 f"{type(obj).__name__}")
    return obj


def content_type(request: web.Request) -> str:
    """The body's media type; "" when the client sent none (aiohttp would say octet-stream).

    The official Python client sends JSON bodies without a Content-Type header.
    """
    return request.content_type if "Content-Type" in request.headers else ""


def wants_table(request: web.Request) -> bool:
    """kubectl asks `application/json;as=Table;v=v1;g=meta.k8s.io, application/json`."""
    accept = request.headers.get("Accept", "").replace(" ", "").lower()
    return TABLE_ACCEPT in accept and "g=meta.k8s.io" in accept


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(obj, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


def status_response(exc: errors.StatusError) -> web.Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return web.Response(body=dumps(exc.to_status()), status=exc.code,
                        content_type="application/json", headers=headers)


def success_status(info, name: str, uid: str = "") -> dict:
    details = {"name": name, "kind": info.plural}
    if info.group:
        details["group"] = info.group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


def query_bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")
