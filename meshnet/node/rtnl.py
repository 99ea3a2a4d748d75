"""A minimal rtnetlink client for the pod network: pyroute2's messages, one socket.

pyroute2's `IPRoute` runs each request through an asyncio event loop of its own and costs
~0.5 ms of CPU per request; encoding the same message with pyroute2's message classes costs
~0.05 ms. Setting up a pod is ~5 requests, and a node may set up a hundred pods at once, so
`podnet` builds a fresh pod's wiring with these builders and sends each side's requests in one
`send()` (the kernel handles the messages of one buffer in order and acks each: NLM_F_ACK).
The few dumps podnet needs (links, addresses, routes) are decoded with the same classes.

Memory: `import pyroute2` runs a package __init__ that imports every protocol the library has
(~12 MiB in the agent); `meshnet.daemon.light_pyroute2()` registers the package without it, so
only the message classes used here load (~1.7 MiB). A later `from pyroute2 import X` still
works.

`Rtnl` is a plain NETLINK_ROUTE socket in the network namespace of the thread that made it:
make it after `setns()` to talk to that namespace. Not thread-safe; blocking.
"""

from __future__ import annotations

import errno
import socket
import struct

from meshnet.daemon import light_pyroute2

light_pyroute2()  # before the first pyroute2 import

from pyroute2.netlink import (  # noqa: E402
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELADDR, RTM_DELLINK, RTM_DELROUTE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR,
    RTM_NEWLINK, RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

NETLINK_ROUTE = 0
IFF_UP = 1
AF_INET = 2
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
ACK = NLM_F_REQUEST | NLM_F_ACK
HEADER = struct.Struct("=IHHII")
IFI_INDEX = struct.Struct("=i")  # ifinfomsg: family u8, pad u8, type u16, then ifi_index
IFI_INDEX_OFFSET = 4
RECV_BYTES = 65536


def _finish(msg, kind: int, flags: int):
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    return msg


def link_up(index: int):
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
    return _finish(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)


def link_set(index: int, *, master: int = 0, mac: str = ""):
    """Up, and (with `master`) a port of that bridge; (with `mac`) that hardware address,
    which the kernel then keeps as set by the user (a bridge no longer follows its ports)."""
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
    attrs = []
    if master:
        attrs.append(("IFLA_MASTER", master))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if attrs:
        msg["attrs"] = attrs
    return _finish(msg, RTM_NEWLINK, ACK)


def link_del(index: int):
    msg = ifinfmsg()
    msg["index"] = index
    return _finish(msg, RTM_DELLINK, ACK)


def bridge_add(name: str):
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name),
                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
    return _finish(msg, RTM_NEWLINK, CREATE)


def veth_add(name: str, master: int, peer: str, peer_netns_fd: int):
    """A veth pair, this end up on bridge `master`, the peer created as `peer` inside the
    namespace `peer_netns_fd` (down: the kernel refuses a peer created up, ENOTCONN)."""
    msg = ifinfmsg()
    msg["flags"], msg["change"] = IFF_UP, IFF_UP
    peer_info = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]}
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MASTER", master),
                    ("IFLA_LINKINFO", {"attrs": [
                        ("IFLA_INFO_KIND", "veth"),
                        ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_info)]})]})]
    return _finish(msg, RTM_NEWLINK, CREATE)


def addr_add(index: int, address: str, prefixlen: int):
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = AF_INET, prefixlen, index
    msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    return _finish(msg, RTM_NEWADDR, CREATE)


def addr_del(index: int, address: str, prefixlen: int):
    msg = addr_add(index, address, prefixlen)
    return _finish(msg, RTM_DELADDR, ACK)


def route(kind: str, dst: str, gateway: str, proto: int):
    """`kind` "replace" or "del": a unicast IPv4 route to `dst` (a CIDR) in the main table."""
    net, _, length = dst.partition("/")
    msg = rtmsg()
    msg["family"], msg["table"], msg["proto"] = AF_INET, RT_TABLE_MAIN, proto
    msg["scope"], msg["type"], msg["dst_len"] = RT_SCOPE_UNIVERSE, RTN_UNICAST, int(length or 32)
    msg["attrs"] = [("RTA_DST", net), ("RTA_GATEWAY", gateway)]
    return _finish(msg, RTM_NEWROUTE, REPLACE) if kind == "replace" else \
        _finish(msg, RTM_DELROUTE, ACK)


def default_route(gateway: str):
    msg = rtmsg()
    msg["family"], msg["table"], msg["proto"] = AF_INET, RT_TABLE_MAIN, RTPROT_STATIC
    msg["scope"], msg["type"] = RT_SCOPE_UNIVERSE, RTN_UNICAST
    msg["attrs"] = [("RTA_GATEWAY", gateway)]
    return _finish(msg, RTM_NEWROUTE, CREATE)


class Rtnl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def __repr__(self) -> str:
        return f"<Rtnl fd={self.sock.fileno()} seq={self.seq}>"

    def close(self) -> None:
        self.sock.close()

    def link_index(self, name: str) -> int:
        """The ifindex of the link called `name` in this namespace (NetlinkError if none)."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        _finish(msg, RTM_GETLINK, NLM_F_REQUEST)
        self.seq += 1
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.sendall(msg.data)
        while True:
            data = self.sock.recv(RECV_BYTES)
            length, kind, _flags, seq, _pid = HEADER.unpack_from(data)
            if seq != self.seq:
                continue
            if kind == NLMSG_ERROR:
                raise NetlinkError(-struct.unpack_from("=i", data, HEADER.size)[0])
            return IFI_INDEX.unpack_from(data, HEADER.size + IFI_INDEX_OFFSET)[0]

    def find_link(self, name: str) -> int | None:
        try:
            return self.link_index(name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise

    def dump(self, msg, kind: int, cls) -> list:
        """Every message of a dump request, decoded with `cls`."""
        _finish(msg, kind, NLM_F_REQUEST | NLM_F_DUMP)
        self.seq += 1
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.sendall(msg.data)
        out = []
        while True:
            data = self.sock.recv(RECV_BYTES)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, kind, _flags, seq, _pid = HEADER.unpack_from(data, offset)
                if length < HEADER.size:
                    break
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + HEADER.size)[0]
                        if code:
                            raise NetlinkError(code)
                    else:
                        item = cls(data[offset:offset + length])
                        item.decode()
                        out.append(item)
                offset += (length + 3) & ~3

    def links(self) -> list[tuple[int, str]]:
        """(ifindex, name) of every link in this namespace."""
        return [(m["index"], m.get_attr("IFLA_IFNAME") or "")
                for m in self.dump(ifinfmsg(), RTM_GETLINK, ifinfmsg)]

    def mac(self, index: int) -> str:
        """The hardware address of link `index` ("" when there is none such)."""
        for m in self.dump(ifinfmsg(), RTM_GETLINK, ifinfmsg):
            if m["index"] == index:
                return m.get_attr("IFLA_ADDRESS") or ""
        return ""

    def addresses(self, index: int = 0) -> list[tuple[int, str, int]]:
        """(ifindex, IPv4 address, scope) of every address (of link `index` if given)."""
        msg = ifaddrmsg()
        msg["family"] = AF_INET
        return [(m["index"], m.get_attr("IFA_ADDRESS"), m["scope"])
                for m in self.dump(msg, RTM_GETADDR, ifaddrmsg)
                if not index or m["index"] == index]

    def routes(self) -> list[tuple[str, str, int]]:
        """(dst CIDR, gateway or "", proto) of every IPv4 route of the main table."""
        msg = rtmsg()
        msg["family"] = AF_INET
        return [(f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}",
                 m.get_attr("RTA_GATEWAY") or "", m["proto"])
                for m in self.dump(msg, RTM_GETROUTE, rtmsg)
                if m["table"] == RT_TABLE_MAIN or m.get_attr("RTA_TABLE") == RT_TABLE_MAIN]

    def request(self, *msgs) -> None:
        """Send the messages in one buffer and wait for every ack; the first error (in
        order) is raised as pyroute2's NetlinkError."""
        buf = bytearray()
        seqs = []
        for msg in msgs:
            self.seq += 1
            msg["header"]["sequence_number"] = self.seq
            msg.encode()
            buf += msg.data
            seqs.append(self.seq)
        self.sock.sendall(buf)
        errors = dict.fromkeys(seqs)
        pending = set(seqs)
        while pending:
            data = self.sock.recv(RECV_BYTES)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, kind, _flags, seq, _pid = HEADER.unpack_from(data, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    errors[seq] = -struct.unpack_from("=i", data, offset + HEADER.size)[0]
                offset += (length + 3) & ~3
                if length < HEADER.size:
                    break
        for seq in seqs:
            if errors[seq]:
                raise NetlinkError(errors[seq])
