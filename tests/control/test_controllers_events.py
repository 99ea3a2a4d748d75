"""record_event: create, then bump count/lastTimestamp of the same Event."""

from __future__ import annotations

import pytest

from meshnet.control.controllers.events import build_event, event_name, record_event

from controllers_helpers import EVENTS, create_namespace, make_registry

SVC = {"apiVersion": "v1", "kind": "Service",
       "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "resourceVersion": "5"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "uid": "u-2"}}

NAME_CASES = [
    ("same event, same name", (SVC, "Warning", "R", "m"), (SVC, "Warning", "R", "m"), True),
    ("another message, another Event", (SVC, "Warning", "R", "m"), (SVC, "Warning", "R", "n"),
     False),
    ("another reason, another Event", (SVC, "Warning", "R", "m"), (SVC, "Warning", "S", "m"),
     False),
    ("another object uid (recreated), another Event", (SVC, "Warning", "R", "m"),
     ({**SVC, "metadata": {**SVC["metadata"], "uid": "u-9"}}, "Warning", "R", "m"), False),
    ("the resourceVersion does not matter",
     (SVC, "Normal", "R", "m"),
     ({**SVC, "metadata": {**SVC["metadata"], "resourceVersion": "6"}}, "Normal", "R", "m"), True),
]


@pytest.mark.parametrize("desc,first,second,same", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_event_name_identity(desc, first, second, same):
    assert (event_name(*first) == event_name(*second)) is same
    assert event_name(*first).startswith(first[0]["metadata"]["name"] + ".")


def test_build_event_fields():
    ev = build_event(SVC, "Warning", "AllocationFailed", "x" * 2000, now="2024-01-01T00:00:00Z")
    assert ev["metadata"]["namespace"] == "ns"
    assert ev["involvedObject"] == {"kind": "Service", "name": "web", "namespace": "ns",
                                    "uid": "u-1", "resourceVersion": "5", "apiVersion": "v1"}
    assert ev["source"] == {"component": "meshnet-controller"}
    assert ev["count"] == 1 and ev["firstTimestamp"] == ev["lastTimestamp"]
    assert len(ev["message"].encode()) <= 1024 and ev["message"].endswith("...")
    assert build_event(NODE, "Normal", "R", "m", now="t")["metadata"]["namespace"] == "default"


async def test_record_event_creates_then_bumps(tmp_path):
    now = [1_700_000_000.0]
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        await create_namespace(registry, "default")
        first = await record_event(registry, SVC, "Warning", "AllocationFailed", "pool empty",
                                   clock=lambda: now[0])
        now[0] += 60
        second = await record_event(registry, SVC, "Warning", "AllocationFailed", "pool empty",
                                    clock=lambda: now[0])
        assert second["metadata"]["name"] == first["metadata"]["name"]
        assert (first["count"], second["count"]) == (1, 2)
        assert second["firstTimestamp"] == first["firstTimestamp"]
        assert second["lastTimestamp"] > first["lastTimestamp"]
        await record_event(registry, NODE, "Normal", "Registered", "hello")
        items, _ = await registry.list(EVENTS)
        assert sorted((e["metadata"]["namespace"], e["reason"], e["count"]) for e in items) == \
            [("default", "Registered", 1), ("ns", "AllocationFailed", 2)]


async def test_record_event_never_fails_the_caller(tmp_path):
    async with make_registry(tmp_path) as registry:
        orphan = {**SVC, "metadata": {**SVC["metadata"], "namespace": "missing"}}
        assert await record_event(registry, orphan, "Warning", "R", "m") is None
        with pytest.raises(ValueError, match="Normal"):
            await record_event(registry, SVC, "Error", "R", "m")
