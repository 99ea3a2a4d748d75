"""Kubernetes protobuf request bodies, decoded into the JSON dicts the rest of the server sees.

kubectl 1.32+ sends `application/vnd.kubernetes.protobuf` for its typed-client commands
(`kubectl create namespace|deployment|service|configmap|secret|ingress`). Such a body is the
4-byte magic `k8s\\x00` followed by a `runtime.Unknown` message: typeMeta=1 {apiVersion=1,
kind=2}, raw=2 (the object's generated-protobuf message), contentEncoding=3, contentType=4.

Theory of operation: a generic proto2 wire-format reader walks the bytes; `SCHEMA` (the table in
`protobuf_schema.py`) says, per message, what each field number means (JSON name and type). The
result is what kube-apiserver's JSON encoding of the same Go object would give:

- Go non-pointer scalars are always on the wire, zero or not, while JSON `omitempty` drops zeros;
  so zero scalars are dropped, except for fields marked `?` (Go pointers, where an explicit 0,
  "" or false means something and JSON keeps it). Present sub-messages become dicts, even empty
  ones (Go struct fields are never omitted from JSON); empty lists and maps never appear.
- IntOrString becomes int or str, Quantity its string, Time/MicroTime RFC 3339 strings (zero
  time omitted, as JSON's `null`), bytes base64 (Secret.data, ConfigMap.binaryData), maps dicts,
  `inline` sub-messages (`json:",inline"`: LocalObjectReference, ProbeHandler, VolumeSource, ...)
  are merged into their parent.
- Unknown field numbers are skipped, as protobuf readers do: a newer kubectl may send fields the
  table does not know.
- A known field with the wrong wire type, a truncated varint or length, or bytes running past
  their message are `ProtobufError`s naming the absolute byte offset in the body and the message
  (with its JSON path) being read.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

from meshnet.control.apiserver.protobuf_schema import KINDS, SCHEMA, Field

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Wire types (protobuf encoding spec). Groups (3/4) are deprecated and never used by Kubernetes,
# but a well-formed unknown field may still be one, so they are skipped, not refused.
VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10
_MAX_DEPTH = 100  # Go's proto decoder refuses nesting deeper than this too


class ProtobufError(ValueError):
    """A body that is not valid Kubernetes protobuf; the message says where it went wrong."""


# --- the wire-format reader -----------------------------------------------------------------

class _Omit:
    """Marks a decoded value that JSON would not show (zero Time)."""


_OMIT = _Omit()


def _fail(at: int, where: str, problem: str) -> ProtobufError:
    return ProtobufError(f"invalid protobuf body at byte {at} in {where}: {problem}")


def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _fail(start, where, "varint runs past the end of the message")
        if pos - start >= _MAX_VARINT_BYTES:
            raise _fail(start, where, "varint is longer than 10 bytes")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7


def _length(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    at = pos
    n, pos = _varint(buf, pos, end, where)
    if n > end - pos:
        raise _fail(at, where, f"length {n} runs past the end of the message "
                               f"({end - pos} bytes left)")
    return pos, pos + n


def _delimited(buf: bytes, pos: int, end: int, wire_type: int, expected: str, at: int,
               where: str) -> tuple[int, int]:
    """The span of a length-delimited field; any other wire type is refused, naming `expected`."""
    if wire_type != LEN:
        raise _fail(at, where, f"expected {expected}, got wire type {wire_type}")
    return _length(buf, pos, end, where)


def _skip(buf: bytes, pos: int, end: int, wire_type: int, number: int, at: int,
          where: str, depth: int) -> int:
    if wire_type == VARINT:
        return _varint(buf, pos, end, where)[1]
    if wire_type in (FIXED64, FIXED32):
        size = 8 if wire_type == FIXED64 else 4
        if end - pos < size:
            raise _fail(at, where, f"fixed-size field {number} runs past the end of the message")
        return pos + size
    if wire_type == LEN:
        return _length(buf, pos, end, where)[1]
    if wire_type == START_GROUP:
        if depth > _MAX_DEPTH:
            raise _fail(at, where, "groups nested too deeply")
        while True:
            tag_at = pos
            key, pos = _varint(buf, pos, end, where)
            if key & 7 == END_GROUP:
                if key >> 3 != number:
                    raise _fail(tag_at, where, f"group {number} ends with field {key >> 3}")
                return pos
            pos = _skip(buf, pos, end, key & 7, key >> 3, tag_at, where, depth + 1)
    if wire_type == END_GROUP:
        raise _fail(at, where, f"end of group {number} without its start")
    raise _fail(at, where, f"field {number} has invalid wire type {wire_type}")


def _signed(value: int, bits: int) -> int:
    """Two's complement: Go writes a negative int32/int64 as a 10-byte varint."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(buf: bytes, typ: str, wire_type: int, pos: int, end: int, at: int,
            where: str) -> tuple[object, int]:
    if typ in ("string", "bytes"):
        start, pos = _delimited(buf, pos, end, wire_type, f"a length-delimited {typ}", at, where)
        raw = bytes(buf[start:pos])
        if typ == "bytes":
            return base64.b64encode(raw).decode("ascii"), pos  # as encoding/json does
        # Go strings may hold any bytes; encoding/json writes invalid UTF-8 as U+FFFD.
        return raw.decode("utf-8", errors="replace"), pos
    if wire_type != VARINT:
        raise _fail(at, where, f"expected a varint {typ}, got wire type {wire_type}")
    value, pos = _varint(buf, pos, end, where)
    if typ == "bool":
        return value != 0, pos
    return _signed(value, 32 if typ == "int32" else 64), pos


def _is_zero(value) -> bool:
    return value == 0 or value == "" or value is False


def _decode_message(buf: bytes, pos: int, end: int, msg: str, path: str, depth: int,
                    out: dict | None = None) -> dict:
    """Decode fields into `out` (a fresh dict by default).

    Decoding into the dict already there is protobuf's merge rule for a message field seen
    twice: its fields overwrite (a later zero clears), repeated fields and maps extend. An inline
    message decodes into its parent's dict the same way.
    """
    if depth > _MAX_DEPTH:
        raise _fail(pos, f"message {msg} at {path}", f"nested deeper than {_MAX_DEPTH} messages")
    fields = SCHEMA[msg]
    out = {} if out is None else out
    in_msg = f"message {msg} at {path}" if path else f"message {msg}"
    while pos < end:
        at = pos
        key, pos = _varint(buf, pos, end, in_msg)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _fail(at, in_msg, "field number 0 is not allowed")
        field = fields.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire_type, number, at, in_msg, depth)
            continue
        sub = f"{path}.{field.name}" if path and field.name else (field.name or path)
        where = f"{in_msg}, field {number} ({field.name or field.type})"
        if field.map:
            start, pos = _delimited(buf, pos, end, wire_type, "a map entry", at, where)
            k, v = _map_entry(buf, start, pos, field, sub, depth + 1)
            out.setdefault(field.name, {})[k] = v
        elif field.scalar:
            if field.repeated and wire_type == LEN and field.type not in ("string", "bytes"):
                start, pos = _length(buf, pos, end, where)  # packed: varints back to back
                items = out.setdefault(field.name, [])
                while start < pos:
                    value, start = _scalar(buf, field.type, VARINT, start, pos, start, where)
                    items.append(value)
                continue
            value, pos = _scalar(buf, field.type, wire_type, pos, end, at, where)
            if field.repeated:
                out.setdefault(field.name, []).append(value)
            elif field.pointer or not _is_zero(value):
                out[field.name] = value
            else:
                out.pop(field.name, None)  # the last one wins, and it is zero
        else:
            start, pos = _delimited(buf, pos, end, wire_type,
                                    f"an embedded {field.type} message", at, where)
            if field.repeated:
                items = out.setdefault(field.name, [])
                items.append(_decode_value(buf, start, pos, field.type, f"{sub}[{len(items)}]",
                                           depth))
            elif field.inline:
                _decode_message(buf, start, pos, field.type, sub, depth + 1, out)
            elif field.type in _CONVERT:
                value = _decode_value(buf, start, pos, field.type, sub, depth)
                if value is _OMIT:
                    out.pop(field.name, None)
                else:
                    out[field.name] = value
            else:
                into = out.get(field.name)
                if not isinstance(into, dict):
                    into = out[field.name] = {}
                _decode_message(buf, start, pos, field.type, sub, depth + 1, into)
    return out


def _decode_value(buf: bytes, start: int, end: int, msg: str, path: str, depth: int):
    value = _decode_message(buf, start, end, msg, path, depth + 1)
    convert = _CONVERT.get(msg)
    if convert is None:
        return value
    try:
        return convert(value)
    except ValueError as exc:
        raise _fail(start, f"message {msg} at {path}", str(exc)) from None


def _map_entry(buf: bytes, pos: int, end: int, field: Field, path: str, depth: int):
    """map<string, V> is a repeated message {key = 1; value = 2}; absent parts are zero."""
    key, value = "", None
    where = f"map entry of {path}"
    while pos < end:
        at = pos
        tag, pos = _varint(buf, pos, end, where)
        number, wire_type = tag >> 3, tag & 7
        if number == 1:
            key, pos = _scalar(buf, "string", wire_type, pos, end, at, where)
        elif number == 2 and field.scalar:
            value, pos = _scalar(buf, field.type, wire_type, pos, end, at, where)
        elif number == 2:
            start, pos = _delimited(buf, pos, end, wire_type,
                                    f"an embedded {field.type} message", at, where)
            value = _decode_value(buf, start, pos, field.type, f"{path}[{key!r}]", depth)
        else:
            pos = _skip(buf, pos, end, wire_type, number, at, where, depth)
    if value is None:  # Go's zero value: "", 0, false, Quantity "0", an empty struct
        convert = _CONVERT.get(field.type)
        value = _ZERO[field.type] if field.scalar else convert({}) if convert else {}
    return key, value


_ZERO = {"string": "", "bytes": "", "bool": False, "int32": 0, "int64": 0}


def _int_or_string(d: dict):
    # intstr.Type: 0 = Int, 1 = String.
    return d.get("strVal", "") if d.get("type", 0) == 1 else d.get("intVal", 0)


def _quantity(d: dict) -> str:
    return d.get("string") or "0"  # a zero Quantity is "0" in JSON


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _timestamp(d: dict, micro: bool):
    seconds, nanos = d.get("seconds", 0), d.get("nanos", 0)
    if seconds == 0 and nanos == 0:
        return _OMIT  # Go's zero Time is sent as an empty message; JSON says null
    if not 0 <= nanos < 1_000_000_000:
        raise ValueError(f"nanos {nanos} is out of range")
    try:
        t = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ValueError(f"seconds {seconds} is out of range") from None
    if micro:  # metav1.RFC3339Micro
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")  # metav1.Time drops sub-second precision


def _fields_v1(d: dict):
    raw = base64.b64decode(d.get("Raw", ""))
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError("fieldsV1 is not JSON") from None


_CONVERT = {
    "IntOrString": _int_or_string,
    "Quantity": _quantity,
    "Time": lambda d: _timestamp(d, micro=False),
    "MicroTime": lambda d: _timestamp(d, micro=True),
    "FieldsV1": _fields_v1,
}


# --- the envelope ---------------------------------------------------------------------------

def _envelope(body: bytes) -> tuple[str, str, tuple[int, int], str, str]:
    """runtime.Unknown: (apiVersion, kind, raw span, contentEncoding, contentType)."""
    api_version = kind = encoding = content_type = ""
    raw = (len(body), len(body))
    pos, end, where = len(MAGIC), len(body), "message runtime.Unknown"
    while pos < end:
        at = pos
        key, pos = _varint(body, pos, end, where)
        number, wire_type = key >> 3, key & 7
        if number in (1, 2, 3, 4) and wire_type != LEN:
            raise _fail(at, where, f"field {number} must be length-delimited, got wire type "
                                   f"{wire_type}")
        if number == 1:
            start, pos = _length(body, pos, end, where)
            meta = _decode_message(body, start, pos, "_TypeMeta", "typeMeta", 0)
            api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
        elif number == 2:
            raw = _length(body, pos, end, where)
            pos = raw[1]
        elif number in (3, 4):
            value, pos = _scalar(body, "string", wire_type, pos, end, at, where)
            if number == 3:
                encoding = value
            else:
                content_type = value
        else:
            pos = _skip(body, pos, end, wire_type, number, at, where, 0)
    return api_version, kind, raw, encoding, content_type


def message_for(api_version: str, kind: str) -> str | None:
    if kind == "DeleteOptions":
        return "DeleteOptions"
    return KINDS.get((api_version, kind))


def decode_protobuf_object(body: bytes) -> dict:
    """A Kubernetes protobuf body as the dict its JSON encoding would give."""
    if not body.startswith(MAGIC):
        raise ProtobufError(f"invalid protobuf body at byte 0: it does not start with the "
                            f"Kubernetes magic number {MAGIC!r} (got {bytes(body[:4])!r})")
    api_version, kind, (start, end), encoding, content_type = _envelope(body)
    if not kind or not api_version:
        raise ProtobufError("invalid protobuf body: the runtime.Unknown envelope names no "
                            f"apiVersion and kind (got apiVersion={api_version!r}, "
                            f"kind={kind!r})")
    if encoding:
        raise ProtobufError(f"protobuf body with contentEncoding {encoding!r} is not "
                            f"supported; send it unencoded")
    if content_type not in ("", CONTENT_TYPE):
        raise ProtobufError(f"the protobuf envelope carries contentType {content_type!r}; "
                            f"only {CONTENT_TYPE} objects can be decoded")
    msg = message_for(api_version, kind)
    if msg is None:
        raise ProtobufError(f"cannot decode a {kind} in {api_version} from protobuf: meshnet "
                            f"serves no {kind} in {api_version}; send it as application/json")
    obj = _decode_message(body, start, end, msg, "", 0)
    return {"kind": kind, "apiVersion": api_version, **obj}
