"""meshnet.node.rtnl: requests and dumps against a real kernel (in a namespace of the test's
own), and the import (meshnet.daemon.light_pyroute2) that keeps pyroute2's ~220-module
__init__ out of the agent and the proxy."""

from __future__ import annotations

import json
import sys

from conftest import python_says
from netns import lab  # noqa: F401  (the fixture)

PY = sys.executable

SCRIPT = r"""
import json
from meshnet.node import rtnl
nl = rtnl.Rtnl()
out = {"missing": nl.find_link("mn-br0")}
nl.request(rtnl.bridge_add("mn-br0"))
br = nl.link_index("mn-br0")
nl.request(rtnl.addr_add(br, "10.244.7.1", 24), rtnl.link_set(br))
out["links"] = sorted(name for _i, name in nl.links())
out["addresses"] = [(a, s) for i, a, s in nl.addresses(br)]
nl.request(rtnl.route("replace", "10.244.9.0/24", "10.244.7.2", 77))
nl.request(rtnl.route("replace", "10.244.9.0/24", "10.244.7.3", 77))  # replaced, not added
out["routes"] = sorted(r for r in nl.routes() if r[2] == 77)
nl.request(rtnl.route("del", "10.244.9.0/24", "10.244.7.3", 77))
out["after_del"] = [r for r in nl.routes() if r[2] == 77]
try:
    nl.request(rtnl.route("del", "10.244.9.0/24", "10.244.7.3", 77))
except rtnl.NetlinkError as exc:
    out["del_again"] = exc.code
nl.request(rtnl.link_del(br))
out["gone"] = nl.find_link("mn-br0")
print(json.dumps(out))
"""


BRIDGE_MAC_SCRIPT = r"""
import json
from pathlib import Path
from meshnet.node import rtnl
from meshnet.node.podnet import PodNetwork, bridge_mac
net = PodNetwork("10.244.7.0/24", etc_netns=Path("/nonexistent"))
net.ensure_bridge()
nl = rtnl.Rtnl()
br = nl.link_index("mn-br0")
out = {"want": bridge_mac("10.244.7.1"), "set": nl.mac(br)}
# A port with a lower address than any: an unset bridge address would follow it, then move
# again when it goes (a pod's veth coming and going).
msg = rtnl.ifinfmsg()
msg["attrs"] = [("IFLA_IFNAME", "mnt-a"), ("IFLA_ADDRESS", "02:00:00:00:00:01"),
                ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "dummy")]})]
try:
    nl.request(rtnl._finish(msg, rtnl.RTM_NEWLINK, rtnl.CREATE))
    port = "dummy"
except rtnl.NetlinkError:  # no dummy module: a veth pair instead
    msg["attrs"] = [("IFLA_IFNAME", "mnt-a"), ("IFLA_ADDRESS", "02:00:00:00:00:01"),
                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA",
                     {"attrs": [("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", "mnt-b")]})]})]})]
    nl.request(rtnl._finish(msg, rtnl.RTM_NEWLINK, rtnl.CREATE))
    port = "veth"
a = nl.link_index("mnt-a")
nl.request(rtnl.link_set(a, master=br))
out["with_port"] = nl.mac(br)
nl.request(rtnl.link_del(a))
out["after"] = nl.mac(br)
net.ensure_bridge()  # again (the agent restarted): the same address
out["again"] = nl.mac(br)
print(json.dumps(out))
"""


def test_the_pod_bridge_keeps_its_address_while_ports_come_and_go(lab):  # noqa: F811
    ns = lab.netns("brmac")
    done = lab.run(ns, [PY, "-c", BRIDGE_MAC_SCRIPT])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["want"] == "0a:58:0a:f4:07:01"
    assert out["set"] == out["with_port"] == out["after"] == out["again"] == out["want"], out


def test_requests_and_dumps_in_a_namespace(lab):  # noqa: F811
    ns = lab.netns("rtnl")
    done = lab.run(ns, [PY, "-c", SCRIPT])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {
        "missing": None, "links": ["lo", "mn-br0"], "addresses": [["10.244.7.1", 0]],
        "routes": [["10.244.9.0/24", "10.244.7.3", 77]], "after_del": [], "del_again": 3,
        "gone": None}


def test_the_agent_does_not_import_all_of_pyroute2():
    """`import pyroute2` is ~12 MiB (every protocol it has); the agent needs ~1.7 MiB of it.
    Asked for a name later, the package still loads in full, as if imported normally."""
    code = ("import sys, meshnet.node.agent, meshnet.node.main\n"
            "full = sorted(m for m in ('pyroute2.iproute', 'pyroute2.ndb', 'pyroute2.ipdb', "
            "'unittest') if m in sys.modules)\n"
            "from pyroute2 import IPRoute, config, NDB\n"
            "print(full, IPRoute.__module__, config.__name__, NDB.__module__)")
    assert python_says(code) == ["[]", "pyroute2.iproute.linux", "pyroute2.config",
                                 "pyroute2.ndb.main"]


def test_light_pyroute2_gives_the_same_iproute_without_the_rest():
    """What the proxy does (`from pyroute2 import IPRoute`) in a daemon: the same class, ~5 MiB
    instead of ~9; a name only the full package has still works, and then everything is as
    after a plain `import pyroute2`."""
    code = ("import sys\n"
            "from meshnet.daemon import light_pyroute2\n"
            "light_pyroute2()\n"
            "from pyroute2 import IPRoute\n"
            "light = sorted(m for m in ('pyroute2.ndb', 'pyroute2.ipdb', 'pyroute2.ipset') "
            "if m in sys.modules)\n"
            "with IPRoute() as ipr: links = len(ipr.get_links())\n"
            "import pyroute2\n"
            "from pyroute2 import IPSet\n"
            "import pyroute2.iproute\n"
            "print(light, links > 0, IPRoute is pyroute2.IPRoute is pyroute2.iproute.IPRoute, "
            "IPSet.__module__)")
    assert python_says(code) == ["[]", "True", "True", "pyroute2.ipset"]
