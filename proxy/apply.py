"""apply_plan: carry a Plan out — addresses on the VIP interface, listeners bound and closed.

The only module (with addresses.py) that changes the host. Order matters: addresses are added
before listeners bind to them and removed after the listeners on them are closed. A listener
that cannot bind (a port taken by another program) is reported and retried on the next full
resync; it never stops the rest of the plan.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, Sequence

from meshnet.proxy.errors import BindError, ProxyError
from meshnet.proxy.forwarding import Forwarding
from meshnet.proxy.plan import Plan
from meshnet.proxy.table import ListenerKey, ProxyTable
from meshnet.proxy.tcp import start_tcp_listener
from meshnet.proxy.udp import start_udp_listener

log = logging.getLogger("meshnet.proxy.apply")


class Addresses(Protocol):
    """Adds and removes service addresses, a batch per call (one netlink request at a time
    cost 1.4 ms each at 10,000); returns what could not be done, as messages."""

    async def add(self, ips: Sequence[str]) -> list[str]: ...
    async def remove(self, ips: Sequence[str]) -> list[str]: ...


class NoAddresses:
    """For running without a VIP interface (tests on loopback): addresses are left alone."""

    async def add(self, ips: Sequence[str]) -> list[str]:
        return []

    async def remove(self, ips: Sequence[str]) -> list[str]:
        return []


class DataPlane:
    def __init__(self, fwd: Forwarding, addresses: Addresses):
        self.fwd = fwd
        self.addresses = addresses
        self.listeners: dict[ListenerKey, asyncio.BaseTransport | asyncio.AbstractServer] = {}
        self.counts = {"TCP": 0, "UDP": 0}  # listeners bound, per protocol

    def __repr__(self) -> str:
        return f"<DataPlane listeners={len(self.listeners)}>"

    async def _open(self, key: ListenerKey) -> None:
        try:
            if key.protocol == "TCP":
                self.listeners[key] = await start_tcp_listener(self.fwd, key)
            else:
                self.listeners[key] = await start_udp_listener(self.fwd, key)
            self.counts[key.protocol] += 1
        except OSError as exc:
            raise BindError(f"cannot listen on {key}: {exc.strerror or exc}") from None

    def _close(self, key: ListenerKey) -> None:
        listener = self.listeners.pop(key, None)
        if listener is not None:
            self.counts[key.protocol] -= 1
            listener.close()  # established TCP connections are not closed with the server

    async def apply_plan(self, plan: Plan, desired: ProxyTable) -> list[str]:
        """Carry out the plan and publish `desired`; returns the errors (already logged).

        The table is published after the addresses exist and before listeners change, so a
        new listener never accepts a connection its route is not yet published for."""
        errors = await self._addresses(self.addresses.add, plan.add_addresses)
        self.fwd.table = desired  # publish: the one swap
        for key in plan.close:
            self._close(key)
        for key in plan.open:
            if key in self.listeners:
                continue
            try:
                await self._open(key)
            except BindError as exc:
                errors.append(str(exc))
        errors += await self._addresses(self.addresses.remove, plan.remove_addresses)
        for message in errors:
            log.warning("%s", message)
        self._count()
        return errors

    @staticmethod
    async def _addresses(change, ips: Sequence[str]) -> list[str]:
        if not ips:
            return []
        try:
            return await change(ips)
        except ProxyError as exc:
            return [str(exc)]

    def missing(self) -> list[ListenerKey]:
        """Listeners the published table has but that are not bound (failed binds)."""
        return [k for k in self.fwd.table.listeners if k not in self.listeners]

    def _count(self) -> None:
        # Counted as listeners open and close: a loop over every listener here made each
        # sync O(services) (2 ms at 10,000).
        for proto, n in self.counts.items():
            self.fwd.metrics.listeners.set(proto, value=n)

    async def close_all(self, *, drain_s: float = 0.0) -> None:
        """Stop accepting, give open connections `drain_s` to finish, then drop them."""
        for key in list(self.listeners):
            self._close(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while self.fwd.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.fwd.connections):
            conn.abort()
        self._count()
