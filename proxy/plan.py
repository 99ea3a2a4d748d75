"""diff_table: current table vs desired table -> the I/O plan. Pure.

The plan lists only what needs I/O: VIP addresses to add and remove on the VIP interface and
listeners to open and close. A listener whose route changed (new endpoints, another policy)
needs none: connections read routes from the published table, so the swap is the update; such
listeners are listed in `rerouted` for logs and tests only.

Order of application (see `apply.py`): addresses are added before listeners open (a bind to a
VIP needs the address) and removed after listeners close.

Given the keys of the services that changed, the diff looks at those services only, so its
cost does not grow with the size of the table; with `keys=None` it compares everything (the
first sync and periodic full resyncs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from meshnet.proxy.table import ListenerKey, ProxyTable


@dataclass(frozen=True)
class Plan:
    add_addresses: tuple[str, ...] = ()
    remove_addresses: tuple[str, ...] = ()
    open: tuple[ListenerKey, ...] = ()
    close: tuple[ListenerKey, ...] = ()
    rerouted: tuple[ListenerKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add_addresses or self.remove_addresses or self.open or self.close)

    def __repr__(self) -> str:
        return (f"<Plan +addr={len(self.add_addresses)} -addr={len(self.remove_addresses)} "
                f"+listen={len(self.open)} -listen={len(self.close)} "
                f"rerouted={len(self.rerouted)}>")


def _candidates(current: ProxyTable, desired: ProxyTable, keys: Iterable[str] | None):
    if keys is None:
        return (set(current.listeners) | set(desired.listeners),
                set(current.addresses) | set(desired.addresses))
    listeners: set[ListenerKey] = set()
    addresses: set[str] = set()
    for key in keys:
        for table in (current, desired):
            entry = table.services.get(key)
            if entry is not None:
                listeners.update(lk for lk, _ in entry.listeners)
                addresses.update(entry.vips)
    return listeners, addresses


def diff_table(current: ProxyTable, desired: ProxyTable,
               keys: Iterable[str] | None = None) -> Plan:
    listeners, addresses = _candidates(current, desired, keys)
    open_, close, rerouted = [], [], []
    for lk in sorted(listeners):
        before, after = current.listeners.get(lk), desired.listeners.get(lk)
        if before is None and after is not None:
            open_.append(lk)
        elif before is not None and after is None:
            close.append(lk)
        elif before != after:
            rerouted.append(lk)
    add = sorted(a for a in addresses if a in desired.addresses and a not in current.addresses)
    remove = sorted(a for a in addresses
                    if a in current.addresses and a not in desired.addresses)
    return Plan(add_addresses=tuple(add), remove_addresses=tuple(remove), open=tuple(open_),
                close=tuple(close), rerouted=tuple(rerouted))
