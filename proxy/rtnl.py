"""Batched address changes over a raw rtnetlink socket: many RTM_NEWADDR / RTM_DELADDR per send.

Theory of operation
-------------------
pyroute2's synchronous IPRoute costs about 1 ms of Python per request (it drives an event loop
of its own for each call), so adding 10,000 service addresses one `addr("add")` at a time took
14 s. The kernel itself needs far less: it processes every netlink message in a buffer, in
order, within the one `send`, and queues one acknowledgement per message (`NLM_F_ACK`) on our
socket. So a batch is: encode `BATCH` requests into one buffer, send it, read the
acknowledgements back (matched by sequence number), repeat.

The requests are the ones pyroute2 (and `ip addr add`) send: an `ifaddrmsg` with the prefix
length, scope universe, the interface index, then `IFA_LOCAL` and `IFA_ADDRESS` for IPv4
(`IFA_ADDRESS` alone for IPv6). An add carries `NLM_F_CREATE|NLM_F_EXCL`.

Must not: put more requests in flight than the receive buffer holds acknowledgements for. A
kernel acknowledgement that finds the buffer full is dropped and the socket reports ENOBUFS;
`BATCH` requests at a time stay far below the buffer (`RCVBUF_BYTES`).

Listing (`dump`) is one RTM_GETADDR with NLM_F_DUMP; the kernel answers with multi-part
messages until NLMSG_DONE. pyroute2 took 0.8–2.8 s to list 10,000 addresses (it decodes every
attribute of every message into objects); reading only the address is a few milliseconds.

`encode_addr_request`, `encode_addr_dump`, `parse_acks` and `parse_addresses` are pure;
`AddressSocket` does the I/O.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Iterable

NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
IFA_ADDRESS, IFA_LOCAL = 1, 2
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request: less to buffer

BATCH = 128  # requests in flight; their acks (under 1 KiB each, truesize) fit RCVBUF_BYTES
RCVBUF_BYTES = 1 << 20

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSGERR = struct.Struct("=i")  # negative errno, 0 for an acknowledgement


def _attr(kind: int, value: bytes) -> bytes:
    # Addresses are 4 or 16 bytes: the attribute is already aligned to 4.
    return _RTATTR.pack(_RTATTR.size + len(value), kind) + value


def encode_addr_request(op: str, index: int, ip: str, seq: int) -> bytes:
    """One RTM_NEWADDR (`op` "add") or RTM_DELADDR ("del") for `ip` as a host address
    (/32, /128) on interface `index`."""
    addr = ipaddress.ip_address(ip)
    packed = addr.packed
    if addr.version == 4:
        family, prefix, attrs = socket.AF_INET, 32, _attr(IFA_LOCAL, packed) + _attr(
            IFA_ADDRESS, packed)
    else:
        family, prefix, attrs = socket.AF_INET6, 128, _attr(IFA_ADDRESS, packed)
    if op == "add":
        kind, flags = RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    elif op == "del":
        kind, flags = RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK
    else:
        raise ValueError(f"op must be 'add' or 'del', not {op!r}")
    body = _IFADDRMSG.pack(family, prefix, 0, 0, index) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def encode_addr_dump(seq: int) -> bytes:
    """RTM_GETADDR for every address of every family and interface."""
    body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _messages(data: bytes):
    """(type, sequence, payload) of each netlink message in `data`."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return  # malformed: a zero length would loop forever
        yield kind, seq, data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3


def parse_addresses(data: bytes) -> tuple[list[tuple[int, int, str]], bool]:
    """The (interface index, prefix length, IFA_ADDRESS) of each RTM_NEWADDR in a dump's
    `data`, and whether NLMSG_DONE ended it. An error message raises OSError."""
    found = []
    for kind, _, payload in _messages(data):
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR and len(payload) >= _NLMSGERR.size:
            (code,) = _NLMSGERR.unpack_from(payload)
            if code:
                raise OSError(-code, os.strerror(-code))
            continue
        if kind != RTM_NEWADDR or len(payload) < _IFADDRMSG.size:
            continue
        family, prefix, _, _, index = _IFADDRMSG.unpack_from(payload)
        offset = _IFADDRMSG.size
        while offset + _RTATTR.size <= len(payload):
            length, attr = _RTATTR.unpack_from(payload, offset)
            if length < _RTATTR.size:
                break
            if attr == IFA_ADDRESS:
                value = payload[offset + _RTATTR.size:offset + length]
                found.append((index, prefix, socket.inet_ntop(family, value)))
                break
            offset += (length + 3) & ~3
    return found, False


def parse_acks(data: bytes) -> list[tuple[int, int]]:
    """(sequence, errno) of each NLMSG_ERROR message in `data`; errno 0 is a success."""
    return [(seq, -_NLMSGERR.unpack_from(payload)[0])
            for kind, seq, payload in _messages(data)
            if kind == NLMSG_ERROR and len(payload) >= _NLMSGERR.size]


class AddressSocket:
    """A NETLINK_ROUTE socket that adds and removes host addresses in batches (blocking)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            try:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                pass  # kernels before 4.3: acks carry the request back, still well in BATCH
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self.seq = 0

    def __repr__(self) -> str:
        return f"<AddressSocket fd={self.sock.fileno()} seq={self.seq}>"

    def close(self) -> None:
        self.sock.close()

    def change(self, op: str, index: int, ips: Iterable[str]) -> dict[str, int]:
        """Add (`op` "add") or remove ("del") each of `ips` on interface `index`; returns the
        addresses the kernel refused, with its errno. Raises OSError if the socket fails."""
        failed: dict[str, int] = {}
        ips = list(ips)
        for start in range(0, len(ips), BATCH):
            chunk = ips[start:start + BATCH]
            by_seq = {}
            parts = []
            for ip in chunk:
                self.seq = self.seq + 1 & 0xFFFFFFFF
                by_seq[self.seq] = ip
                parts.append(encode_addr_request(op, index, ip, self.seq))
            self.sock.sendall(b"".join(parts))
            while by_seq:
                for seq, code in parse_acks(self.sock.recv(1 << 16)):
                    ip = by_seq.pop(seq, None)
                    if ip is not None and code:
                        failed[ip] = code
        return failed


    def dump(self, index: int) -> list[tuple[str, int]]:
        """(address, prefix length) of every address on interface `index`."""
        self.seq = self.seq + 1 & 0xFFFFFFFF
        self.sock.sendall(encode_addr_dump(self.seq))
        found: list[tuple[str, int]] = []
        done = False
        while not done:
            batch, done = parse_addresses(self.sock.recv(1 << 16))
            found.extend((ip, prefix) for i, prefix, ip in batch if i == index)
        return found


def describe(code: int) -> str:
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
