"""Batched address changes over rtnetlink: the messages (pure, table-first) and the kernel's
answers (in a lab namespace, through VipInterface)."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest

from netns import Lab
from meshnet.proxy.rtnl import (BATCH, encode_addr_dump, encode_addr_request,
                                parse_acks, parse_addresses)

HERE = Path(__file__).parent

# nlmsghdr (length, type, flags, seq, pid), ifaddrmsg (family, prefix, flags, scope, index),
# then attributes (length, type, value): what `ip addr add/del` sends.
ENCODE_CASES = [
    ("IPv4 add: create, exclusive, ack; IFA_LOCAL and IFA_ADDRESS",
     "add", 7, "10.96.0.10", 1,
     "28000000" "1400" "0506" "01000000" "00000000"
     "02" "20" "00" "00" "07000000"
     "0800" "0200" "0a60000a"
     "0800" "0100" "0a60000a"),
    ("IPv4 delete: request and ack only",
     "del", 7, "10.96.0.10", 2,
     "28000000" "1500" "0500" "02000000" "00000000"
     "02" "20" "00" "00" "07000000"
     "0800" "0200" "0a60000a"
     "0800" "0100" "0a60000a"),
    ("IPv6 add: /128, IFA_ADDRESS only",
     "add", 1, "fd00::10", 0x01020304,
     "2c000000" "1400" "0506" "04030201" "00000000"
     "0a" "80" "00" "00" "01000000"
     "1400" "0100" "fd000000000000000000000000000010"),
]


@pytest.mark.parametrize("description,op,index,ip,seq,expected", ENCODE_CASES,
                         ids=[c[0] for c in ENCODE_CASES])
def test_encode_addr_request(description, op, index, ip, seq, expected):
    assert encode_addr_request(op, index, ip, seq).hex() == expected, description


def test_encode_rejects_an_unknown_op():
    with pytest.raises(ValueError, match="'replace'"):
        encode_addr_request("replace", 1, "10.96.0.1", 1)


def ack(seq: int, code: int, kind: int = 2, extra: bytes = b"") -> bytes:
    body = (-code).to_bytes(4, "little", signed=True) + extra
    return (16 + len(body)).to_bytes(4, "little") + kind.to_bytes(2, "little") + \
        b"\0\0" + seq.to_bytes(4, "little") + b"\0\0\0\0" + body


PARSE_CASES = [
    ("one acknowledgement", ack(5, 0), [(5, 0)]),
    ("an error carries the errno", ack(6, errno.EEXIST), [(6, errno.EEXIST)]),
    ("several in one buffer, in order", ack(1, 0) + ack(2, errno.ENODEV), [(1, 0), (2, 19)]),
    ("a request echoed back (no NETLINK_CAP_ACK) is skipped over",
     ack(3, errno.EINVAL, extra=bytes(16)) + ack(4, 0), [(3, errno.EINVAL), (4, 0)]),
    ("other message types are not acknowledgements", ack(7, 0, kind=20) + ack(8, 0), [(8, 0)]),
    ("a zero length ends parsing instead of looping", bytes(16), []),
    ("a truncated header is ignored", ack(9, 0)[:10], []),
    ("nothing", b"", []),
]


@pytest.mark.parametrize("description,data,expected", PARSE_CASES,
                         ids=[c[0] for c in PARSE_CASES])
def test_parse_acks(description, data, expected):
    assert parse_acks(data) == expected, description


def test_encode_addr_dump():
    assert encode_addr_dump(3).hex() == ("18000000" "1600" "0103" "03000000" "00000000"
                                         "00" "00" "00" "00" "00000000")


def newaddr(index: int, prefix: int, ip: bytes | None, *, family: int = 2,
            label: bool = True) -> bytes:
    attrs = b""
    if label:  # IFA_LABEL "lo\0", padded: an attribute before the address
        attrs += (7).to_bytes(2, "little") + (3).to_bytes(2, "little") + b"lo\0\0"
    if ip is not None:
        attrs += (4 + len(ip)).to_bytes(2, "little") + (1).to_bytes(2, "little") + ip
    body = bytes([family, prefix, 0, 0]) + index.to_bytes(4, "little") + attrs
    return (16 + len(body)).to_bytes(4, "little") + (20).to_bytes(2, "little") + \
        b"\x02\0" + bytes(8) + body


DONE = (20).to_bytes(4, "little") + (3).to_bytes(2, "little") + bytes(10) + bytes(4)

DUMP_CASES = [
    ("IPv4 after a label, IPv6, then more to come",
     newaddr(1, 32, bytes([10, 96, 0, 10])) +
     newaddr(4, 128, bytes.fromhex("fd" + "00" * 14 + "10"), family=10, label=False),
     ([(1, 32, "10.96.0.10"), (4, 128, "fd00::10")], False)),
    ("NLMSG_DONE ends the dump", newaddr(1, 8, bytes([127, 0, 0, 1])) + DONE,
     ([(1, 8, "127.0.0.1")], True)),
    ("a message without IFA_ADDRESS is skipped", newaddr(1, 32, None), ([], False)),
    ("an acknowledgement is not an address", ack(1, 0) + DONE, ([], True)),
]


@pytest.mark.parametrize("description,data,expected", DUMP_CASES,
                         ids=[c[0] for c in DUMP_CASES])
def test_parse_addresses(description, data, expected):
    assert parse_addresses(data) == expected, description


def test_parse_addresses_raises_the_kernels_error():
    with pytest.raises(OSError) as exc:
        parse_addresses(ack(1, errno.EPERM))
    assert exc.value.errno == errno.EPERM


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.cleanup()


def test_vip_interface_batches_against_the_kernel(lab):
    """More addresses than one batch, existing and absent ones, a refused batch, cleanup."""
    ns = lab.netns("rtnl")
    count = BATCH * 2 + 5
    out = lab.run(ns, [sys.executable, str(HERE / "vip_driver.py"), str(count)], timeout=120)
    assert out.returncode == 0, out.stderr
    steps = json.loads(out.stdout)
    v4 = sorted(f"10.96.{i // 250}.{i % 250 + 1}/32" for i in range(count))
    assert steps["add"] == []
    assert steps["shown"] == sorted(v4 + ["fd00::10/128"])
    assert steps["existing"] == sorted(ip.split("/")[0] for ip in steps["shown"])
    assert steps["add again"] == [], "an address that exists counts as added"
    assert steps["remove some"] == [] and steps["remove absent"] == []
    assert steps["shown after remove"] == sorted(set(steps["shown"]) - {"10.96.0.1/32",
                                                                      "10.96.0.2/32"})
    assert steps["refused"] == [["10.97.0.1", errno.ENODEV], ["10.97.0.2", errno.ENODEV]]
    assert steps["shown after cleanup"] == []
