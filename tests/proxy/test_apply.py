"""apply_plan's address steps: one batch per plan, the kernel's refusals and a failed netlink
socket reported as errors while the rest of the plan (the swap) still happens."""

from __future__ import annotations

import pytest

from meshnet.proxy.apply import DataPlane
from meshnet.proxy.errors import NetlinkError
from meshnet.proxy.forwarding import Forwarding
from meshnet.proxy.plan import Plan
from meshnet.proxy.table import ProxyTable


class RecordingAddresses:
    """Answers each batch with `refuse` (messages) or raises `fail`; remembers the batches."""

    def __init__(self, refuse=(), fail=None):
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.refuse, self.fail = list(refuse), fail

    async def _change(self, op, ips):
        self.calls.append((op, tuple(ips)))
        if self.fail is not None:
            raise self.fail
        return list(self.refuse)

    async def add(self, ips):
        return await self._change("add", ips)

    async def remove(self, ips):
        return await self._change("remove", ips)


CASES = [
    ("both directions, one batch each",
     Plan(add_addresses=("10.96.0.10", "10.96.0.11"), remove_addresses=("10.96.0.9",)),
     {}, [("add", ("10.96.0.10", "10.96.0.11")), ("remove", ("10.96.0.9",))], []),
    ("nothing to do: no netlink call", Plan(), {}, [], []),
    ("the kernel's refusals become errors",
     Plan(add_addresses=("10.96.0.10",)), {"refuse": ["cannot add 10.96.0.10/32: EINVAL"]},
     [("add", ("10.96.0.10",))], ["cannot add 10.96.0.10/32: EINVAL"]),
    ("a failed socket is one error per batch",
     Plan(add_addresses=("10.96.0.10",), remove_addresses=("10.96.0.9",)),
     {"fail": NetlinkError("cannot add 1 addresses to meshnet0: No buffer space")},
     [("add", ("10.96.0.10",)), ("remove", ("10.96.0.9",))],
     ["cannot add 1 addresses to meshnet0: No buffer space"] * 2),
]


@pytest.mark.parametrize("description,plan,behaviour,calls,errors", CASES,
                         ids=[c[0] for c in CASES])
async def test_apply_plan_addresses(description, plan, behaviour, calls, errors):
    fwd = Forwarding()
    addresses = RecordingAddresses(**behaviour)
    desired = ProxyTable(addresses={ip: 1 for ip in plan.add_addresses})
    assert await DataPlane(fwd, addresses).apply_plan(plan, desired) == errors, description
    assert addresses.calls == calls, description
    assert fwd.table is desired, "published whatever the addresses did"
