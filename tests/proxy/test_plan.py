"""diff_table: which addresses and listeners change between two tables."""

from __future__ import annotations

import pytest

from proxy_fakes import endpoints, service
from meshnet.proxy.plan import Plan, diff_table
from meshnet.proxy.table import (ListenerKey, NodeInfo, ProxyTable, compile_service,
                                 update_table)
from meshnet.proxy.views import endpoints_view, service_view

NODE = NodeInfo("node-a", ("192.168.50.2",))


def table(*pairs) -> ProxyTable:
    return update_table(ProxyTable(), [compile_service(service_view(s),
                                                       endpoints_view(e) if e else None, NODE)
                                       for s, e in pairs])


def L(ip, port, proto="TCP"):
    return ListenerKey(proto, ip, port)


WEB = service()
WEB_NP = service(type="NodePort", ports=(("http", 80, "TCP", 30080),))
DB = service("db", cluster_ip="10.96.0.11")
DB_EXT = service("db", cluster_ip="10.96.0.11", externalIPs=["10.96.0.10"],
                 ports=(("pg", 5432, "TCP", 0),))
EPS = endpoints()

CASES = [
    ("first sync opens everything", table(), table((WEB, EPS), (DB, None)), None,
     Plan(add_addresses=("10.96.0.10", "10.96.0.11"),
          open=(L("10.96.0.10", 80), L("10.96.0.11", 80)))),
    ("nothing changed", table((WEB, EPS)), table((WEB, EPS)), None, Plan()),
    ("endpoints change only reroutes", table((WEB, None)), table((WEB, EPS)), ["default/web"],
     Plan(rerouted=(L("10.96.0.10", 80),))),
    ("service deleted closes and removes its address", table((WEB, EPS), (DB, None)),
     table((DB, None)), ["default/web"],
     Plan(remove_addresses=("10.96.0.10",), close=(L("10.96.0.10", 80),))),
    ("becoming NodePort opens the node listener", table((WEB, EPS)), table((WEB_NP, EPS)),
     ["default/web"], Plan(open=(L("192.168.50.2", 30080),))),
    ("a shared address stays while another service uses it",
     table((WEB, EPS), (DB_EXT, None)), table((DB_EXT, None)), ["default/web"],
     Plan(close=(L("10.96.0.10", 80),))),
    ("keys limit the diff to the services named", table(), table((WEB, EPS), (DB, None)),
     ["default/db"], Plan(add_addresses=("10.96.0.11",), open=(L("10.96.0.11", 80),))),
]


@pytest.mark.parametrize("current,desired,keys,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_diff_table(current, desired, keys, expected):
    assert diff_table(current, desired, keys) == expected


def test_plan_truthiness_ignores_reroutes():
    assert not Plan(rerouted=(L("10.96.0.10", 80),))
    assert Plan(open=(L("10.96.0.10", 80),))
