"""The namespace controller over the real Registry and SQLite store."""

from __future__ import annotations

import pytest

from meshnet.api.errors import StatusError
from meshnet.api.resources import lookup
from meshnet.control.controllers import ControllerConfig, install_admission
from meshnet.control.controllers.namespaces import DEFAULT_NAMESPACES, NamespaceController
from meshnet.control.controllers.serviceips import SERVICE_IPS_PREFIX

from controllers_helpers import (
    NAMESPACES, PODS, SERVICES, create_namespace, eventually, get_or_none, make_registry,
)

CONFIGMAPS = lookup("configmaps")


@pytest.fixture
async def env(tmp_path):
    async with make_registry(tmp_path) as registry:
        install_admission(registry, ControllerConfig())
        controller = NamespaceController(registry, content_requeue_s=0.05)
        assert sorted(await controller.ensure_defaults()) == sorted(DEFAULT_NAMESPACES)
        assert await controller.ensure_defaults() == [], "idempotent"
        await controller.start()
        try:
            yield registry, controller
        finally:
            await controller.stop()


def namespace_of(registry, name):
    return lambda: get_or_none(registry, NAMESPACES, None, name)


async def test_deleting_a_namespace_deletes_its_content_then_itself(env):
    registry, _ = env
    await create_namespace(registry, "doomed")
    await create_namespace(registry, "bystander")
    for ns in ("doomed", "bystander"):
        await registry.create(CONFIGMAPS, ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
        await registry.create(SERVICES, ns, {"metadata": {"name": "web"}, "spec": {
            "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    await registry.create(PODS, "doomed", {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "meshnet/echo"}]}})
    keys_before, _ = await registry.store.list(SERVICE_IPS_PREFIX)

    marked = await registry.delete(NAMESPACES, None, "doomed")
    assert marked["status"]["phase"] == "Terminating"
    await eventually(registry, namespace_of(registry, "doomed"), lambda ns: ns is None,
                     "the namespace to go")
    for info in (CONFIGMAPS, SERVICES, PODS):
        items, _ = await registry.list(info, "doomed")
        assert items == [], info.plural
    assert len((await registry.list(CONFIGMAPS, "bystander"))[0]) == 1
    keys_after, _ = await registry.store.list(SERVICE_IPS_PREFIX)
    assert len(keys_after) == len(keys_before) - 1, "the Service's ClusterIP was released"


async def test_namespace_waits_for_objects_with_finalizers(env):
    registry, controller = env
    await create_namespace(registry, "slow")
    await registry.create(CONFIGMAPS, "slow", {"metadata": {
        "name": "held", "finalizers": ["example.com/cleanup"]}})
    await registry.delete(NAMESPACES, None, "slow")
    held = await eventually(registry, lambda: registry.get(CONFIGMAPS, "slow", "held"),
                            lambda cm: cm["metadata"].get("deletionTimestamp"),
                            "the held object to be marked")
    ns = await registry.get(NAMESPACES, None, "slow")
    assert ns["status"]["phase"] == "Terminating"

    def release(cm):
        cm["metadata"]["finalizers"] = []
        return cm
    await registry.guaranteed_update(CONFIGMAPS, "slow", "held", release)
    assert held
    await eventually(registry, namespace_of(registry, "slow"), lambda ns: ns is None,
                     "the namespace to go once its content is gone")


async def test_creates_in_a_terminating_namespace_are_refused(env):
    registry, _ = env
    await create_namespace(registry, "closing")
    await registry.create(CONFIGMAPS, "closing", {"metadata": {
        "name": "held", "finalizers": ["example.com/cleanup"]}})
    await registry.delete(NAMESPACES, None, "closing")
    with pytest.raises(StatusError) as err:
        await registry.create(CONFIGMAPS, "closing", {"metadata": {"name": "new"}})
    assert err.value.code == 403


async def test_a_deleted_builtin_namespace_comes_back(env):
    registry, _ = env
    await registry.delete(NAMESPACES, None, "kube-public")
    await eventually(registry, namespace_of(registry, "kube-public"),
                     lambda ns: ns is not None and not ns["metadata"].get("deletionTimestamp"),
                     "kube-public to be recreated")
