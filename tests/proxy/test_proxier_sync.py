"""Proxier.sync is incremental: the work for a change does not grow with untouched Services.

The informer caches are filled directly (what a list would have delivered) and the data plane
only records plans, so these tests run without sockets or an API server; compile_service is
wrapped to count its calls.
"""

from __future__ import annotations

import pytest

from proxy_fakes import endpoints, service
import meshnet.proxy.proxier as proxier_module
from meshnet.proxy.forwarding import Forwarding
from meshnet.proxy.proxier import Proxier
from meshnet.proxy.table import NodeInfo
from meshnet.proxy.views import endpoints_view, service_view


class RecordingDataPlane:
    """Publishes like DataPlane.apply_plan and remembers the plans, without any I/O."""

    def __init__(self, fwd: Forwarding):
        self.fwd = fwd
        self.listeners: dict = {}
        self.plans = []

    async def apply_plan(self, plan, desired):
        self.fwd.table = desired
        for key in plan.close:
            self.listeners.pop(key, None)
        for key in plan.open:
            self.listeners[key] = object()
        self.plans.append(plan)
        return []


def ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def build(n: int, monkeypatch):
    calls = []
    real = proxier_module.compile_service

    def counting(*args, **kwargs):
        calls.append(args[0].key if args[0] is not None else kwargs.get("key"))
        return real(*args, **kwargs)

    monkeypatch.setattr(proxier_module, "compile_service", counting)
    monkeypatch.setattr(proxier_module, "compile_table", lambda services, eps, node:
                        proxier_module.update_table(proxier_module.ProxyTable(), [
                            counting(s, eps.get(s.key), node) for s in services]))
    fwd = Forwarding()
    p = Proxier(None, NodeInfo("node-a", ("192.168.50.2",)), fwd, RecordingDataPlane(fwd))
    for i in range(n):
        name = f"svc-{i}"
        p.services.cache[f"default/{name}"] = service_view(service(name, cluster_ip=ip(i)))
        p.endpoints.cache[f"default/{name}"] = endpoints_view(endpoints(name))
    return p, calls


def change_endpoints(p: Proxier, i: int, backend: str) -> None:
    key = f"default/svc-{i}"
    old = p.endpoints.cache[key]
    new = endpoints_view(endpoints(f"svc-{i}", ready=((backend, "node-b"),)))
    p.endpoints.cache[key] = new
    p.tracker.on_endpoints_update(key, old, new)


CASES = [
    # (description, services in the cluster, services changed)
    ("one change among 10", 10, 1),
    ("one change among 2,000", 2000, 1),
    ("five changes among 2,000", 2000, 5),
]


@pytest.mark.parametrize("desc,n,changed", CASES, ids=[c[0] for c in CASES])
async def test_compile_work_follows_the_change_not_the_cluster(desc, n, changed, monkeypatch):
    p, calls = build(n, monkeypatch)
    await p.sync(full=True)
    assert len(calls) == n, "the first sync compiles everything"
    assert len(p.fwd.table.listeners) == n
    calls.clear()
    for i in range(changed):
        change_endpoints(p, i * 7 % n, "10.244.9.9")
    plan = await p.sync()
    assert sorted(calls) == sorted({f"default/svc-{i * 7 % n}" for i in range(changed)})
    assert len(plan.rerouted) == changed and not plan.open and not plan.close
    route = p.fwd.table.listeners[("TCP", ip(0), 80)]
    assert [e.ip for e in route.endpoints] == ["10.244.9.9"]


async def test_a_sync_without_changes_compiles_nothing(monkeypatch):
    p, calls = build(50, monkeypatch)
    await p.sync(full=True)
    calls.clear()
    plan = await p.sync()
    assert calls == [] and not plan and not plan.rerouted


async def test_a_new_service_opens_only_its_listener(monkeypatch):
    p, calls = build(500, monkeypatch)
    await p.sync(full=True)
    calls.clear()
    key = "default/new"
    p.services.cache[key] = service_view(service("new", cluster_ip="10.97.0.1"))
    p.tracker.on_service_add(key, p.services.cache[key])
    plan = await p.sync()
    assert calls == [key]
    assert plan.open == (("TCP", "10.97.0.1", 80),) and plan.add_addresses == ("10.97.0.1",)


async def test_synced_hook_gets_only_the_changed_keys(monkeypatch):
    p, _ = build(20, monkeypatch)
    seen = []
    p.on_synced.append(lambda keys, services: seen.append(None if keys is None
                                                          else sorted(keys)))
    await p.sync(full=True)
    change_endpoints(p, 3, "10.244.9.9")
    await p.sync()
    assert seen == [None, ["default/svc-3"]]
