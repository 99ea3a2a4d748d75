"""Registry watches share one decoded object, and watch.py its JSON, between the watchers of
a change: deletions included, with the deletion's resourceVersion; the encoded form is exactly
the object's JSON."""

from __future__ import annotations

import json

import pytest

from meshnet.api.resources import lookup
from meshnet.control.apiserver import watch

from controllers_helpers import create_namespace, make_registry

CONFIGMAPS = lookup("configmaps")


@pytest.fixture
async def registry(tmp_path):
    async with make_registry(tmp_path) as registry:
        await create_namespace(registry, "ns")
        yield registry


async def test_watchers_of_one_change_share_the_object_and_its_json(registry):
    since = registry.store.revision
    watches = [registry.watch(CONFIGMAPS, "ns", since=str(since)) for _ in range(3)]
    await registry.create(CONFIGMAPS, "ns", {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": "a"}, "data": {"k": "v"}})
    await registry.delete(CONFIGMAPS, "ns", "a")
    added = [await w.__anext__() for w in watches]
    deleted = [await w.__anext__() for w in watches]
    for w in watches:
        w.close()
    assert [e.type for e in added + deleted] == ["ADDED"] * 3 + ["DELETED"] * 3
    assert added[0].object is added[1].object is added[2].object
    assert deleted[0].object is deleted[1].object is deleted[2].object
    rv = deleted[0].object["metadata"]["resourceVersion"]
    assert int(rv) == deleted[0].revision > int(added[0].object["metadata"]["resourceVersion"])
    for event in (added[0], deleted[0]):
        encoded = watch.encoded(event.object)
        assert watch.encoded(event.object) is encoded  # computed once
        assert json.loads(encoded) == event.object


async def test_an_equal_but_distinct_object_is_encoded_for_itself(registry):
    first, second = {"a": 1}, {"a": 2}
    assert watch.encoded(first) == b'{"a":1}'
    assert watch.encoded(second) == b'{"a":2}'
    second_copy = dict(second)
    second_copy["a"] = 3
    assert watch.encoded(second_copy) == b'{"a":3}'
