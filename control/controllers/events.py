"""Recording core/v1 Events about objects, as kube's event recorder does.

An Event's name is `<object name>.<hex>`, the hex being a digest of what makes two events
"the same" in kube's EventCorrelator (involved object, type, reason, message, source). So a
repeated occurrence finds its Event by name and bumps `count` and `lastTimestamp` instead of
adding another object — across restarts too, and without an in-memory index.

Recording is best-effort, as in kube: an event that cannot be written (its namespace is
terminating, the store is closing) is logged and dropped; it never fails the caller.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable

from meshnet.api import errors
from meshnet.api.resources import lookup

log = logging.getLogger("meshnet.controllers.events")

EVENTS = lookup("events")
DEFAULT_COMPONENT = "meshnet-controller"
EVENT_TYPES = ("Normal", "Warning")
# kube-apiserver's validation caps an Event message at 1 KiB; longer ones are cut, as kube's
# recorder does, rather than refused.
MAX_MESSAGE_BYTES = 1024
# Names are DNS subdomains (253 characters); leave room for "." and the 16-hex digest.
MAX_NAME_PREFIX = 253 - 17


def rfc3339(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def involved_reference(obj: dict) -> dict:
    """obj as an ObjectReference (involvedObject)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "name": meta.get("name", "")}
    for src, dst in (("namespace", "namespace"), ("uid", "uid"),
                     ("resourceVersion", "resourceVersion")):
        if meta.get(src):
            ref[dst] = meta[src]
    if obj.get("apiVersion"):
        ref["apiVersion"] = obj["apiVersion"]
    return ref


def event_name(involved: dict, type_: str, reason: str, message: str,
               component: str = DEFAULT_COMPONENT) -> str:
    meta = involved.get("metadata") or {}
    identity = "\x00".join((involved.get("kind", ""), meta.get("namespace", "") or "",
                            meta.get("name", ""), meta.get("uid", "") or "", type_, reason,
                            message, component))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{meta.get('name', 'unknown')[:MAX_NAME_PREFIX]}.{digest}"


def _truncate(message: str) -> str:
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[:MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def build_event(involved: dict, type_: str, reason: str, message: str,
                component: str = DEFAULT_COMPONENT, *, now: str) -> dict:
    meta = involved.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(involved, type_, reason, message, component),
            "namespace": meta.get("namespace") or "default",
        },
        "involvedObject": involved_reference(involved),
        "reason": reason,
        "message": _truncate(message),
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "",
    }


async def record_event(registry, involved: dict, type_: str, reason: str, message: str,
                       component: str = DEFAULT_COMPONENT, *,
                       clock: Callable[[], float] = time.time) -> dict | None:
    """Create the Event, or bump count/lastTimestamp of the same earlier one. Never raises
    StatusError: returns the written Event, or None when it could not be recorded."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"event type {type_!r}: must be one of {EVENT_TYPES}")
    now = rfc3339(clock)
    event = build_event(involved, type_, reason, message, component, now=now)
    ns, name = event["metadata"]["namespace"], event["metadata"]["name"]

    def bump(current: dict) -> dict:
        current["count"] = int(current.get("count") or 1) + 1
        current["lastTimestamp"] = now
        current["involvedObject"] = event["involvedObject"]  # newest resourceVersion
        return current

    try:
        for _ in range(2):  # create, or bump; a concurrent create makes us bump once
            try:
                return await registry.guaranteed_update(EVENTS, ns, name, bump)
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            try:
                return await registry.create(EVENTS, ns, event)
            except errors.StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
    except errors.StatusError as exc:
        log.info("event %s/%s (%s %s: %s) not recorded: %s", ns, name, type_, reason, message,
                 exc.message)
    return None
