"""A minimal rtnetlink client for the pod network's hot path: pyroute2's messages, one socket.

pyroute2's `IPRoute` runs each request through an asyncio event loop of its own and costs
~0.5 ms of CPU per request; encoding the same message with pyroute2's message classes costs
~0.05 ms. Setting up a pod is ~5 requests, and a node may set up a hundred pods at once, so
`podnet` builds a fresh pod's wiring with these builders and sends each side's requests in one
`send()` (the kernel handles the messages of one buffer in order and acks each: NLM_F_ACK).
Everything else (lookups, dumps, the rare repair of a half-built pod) stays on `IPRoute`.

`Rtnl` is a plain NETLINK_ROUTE socket in the network namespace of the thread that made it:
make it after `setns()` to talk to that namespace. Not thread-safe; blocking.
"""

from __future__ import annotations

import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

NETLINK_ROUTE = 0
IFF_UP = 1
AF_INET = 2
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
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
