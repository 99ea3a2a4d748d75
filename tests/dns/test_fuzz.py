"""Fuzzing the running daemon: 100,000 random and mutated packets (truncated, bad label
pointers, compression loops, huge counts, bit flips, wrong opcodes) over UDP, plus mutated TCP
streams; a valid query every 100 packets must still be answered correctly, and the process must
be alive at the end."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from dnslib import EDNS0, DNSError, DNSRecord
from kubernetes import client

from fakes import DnsDaemon, ThreadedUpstream, question

PACKETS = 100_000
CHECK_EVERY = 100
TCP_STREAMS = 300
SEED = 4  # fixed: a failure must be reproducible
NAME = "fuzz.fuzz.svc.cluster.local"


@pytest.fixture(scope="module")
def dns(apiserver, k8s, tmp_path_factory):
    api = client.CoreV1Api(k8s)
    api.create_namespace({"metadata": {"name": "fuzz"}})
    api.create_namespaced_service("fuzz", {"metadata": {"name": "fuzz"},
                                           "spec": {"ports": [{"name": "http", "port": 80}]}})
    up = ThreadedUpstream({"example.org.": ["example.org. 300 IN A 192.0.2.10"]})
    daemon = DnsDaemon(apiserver.kubeconfig, up.address,
                       tmp_path_factory.mktemp("dns") / "dns.log", "--log-level", "warning")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
        up.close()


def seeds() -> list[bytes]:
    out = []
    for name, qtype in ((NAME, "A"), (NAME, "SRV"), ("_http._tcp." + NAME, "SRV"),
                        ("nope.cluster.local", "AAAA"), ("1.0.96.10.in-addr.arpa", "PTR"),
                        ("example.org", "A"), ("cluster.local", "SOA")):
        q = question(name, qtype)
        out.append(q.pack())
        q.add_ar(EDNS0(udp_len=4096))
        out.append(q.pack())
    return out


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    kind = rng.randrange(10)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(0, 600))
    if kind == 1:  # truncated
        return bytes(data[: rng.randrange(0, len(data))])
    if kind == 2:  # huge counts
        struct.pack_into("!H", data, rng.choice((4, 6, 8, 10)), rng.choice((0xFFFF, 0x7FFF, 2)))
    elif kind == 3:  # a pointer to itself or forward (compression loop)
        at = rng.randrange(12, len(data) - 2)
        target = rng.choice((at, 12, at + 2, 0x3FFF))
        struct.pack_into("!H", data, at, 0xC000 | (target & 0x3FFF))
    elif kind == 4:  # a chain of pointers to each other
        body = b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01"
        data = data[:12] + bytearray(body)
    elif kind == 5:  # opcode / flags
        data[2] = rng.randrange(256)
        data[3] = rng.randrange(256)
    elif kind == 6:  # a label length past the end
        data[12] = rng.choice((63, 64, 0x80, 0xFF))
    elif kind == 7:  # bit flips
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 8:  # junk appended or inserted
        i = rng.randrange(len(data))
        data[i:i] = rng.randbytes(rng.randrange(1, 40))
    else:  # EDNS option garbage: OPT with odd rdlength / version
        data += bytes([0, 0, 41, 16, 0, rng.randrange(256), rng.randrange(256), 0, 0, 0,
                       rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 8))
        struct.pack_into("!H", data, 10, 1 + rng.randrange(2))
    return bytes(data)


def check(sock: socket.socket, port: int, qid: int) -> None:
    q = question(NAME, "A")
    q.header.id = qid
    sock.sendto(q.pack(), ("127.0.0.1", port))
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            break
        if data[:2] != struct.pack("!H", qid):
            continue  # a reply to a fuzz packet
        try:
            reply = DNSRecord.parse(data)
        except DNSError:
            continue  # a reply to a fuzz packet whose mutated ID happens to be this one
        if str(reply.q.qname) == NAME + "." and reply.rr:
            return
    raise AssertionError(f"no valid answer to check query {qid}")


def test_100k_packets_server_stays_up(dns):
    rng = random.Random(SEED)
    base = seeds()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.settimeout(1.0)
    start = time.monotonic()
    checks = 0
    try:
        for i in range(PACKETS):
            sock.sendto(mutate(rng, rng.choice(base)), ("127.0.0.1", dns.port))
            if i % CHECK_EVERY == CHECK_EVERY - 1:
                check(sock, dns.port, 0xFFFF - (checks % 1000))
                checks += 1
    finally:
        sock.close()
    elapsed = time.monotonic() - start
    assert dns.proc.poll() is None, "meshnet-dns died"
    assert checks == PACKETS // CHECK_EVERY
    code, metrics = dns.status("/metrics")
    assert code == 200 and 'meshnet_dns_malformed_total{action="answered"}' in metrics
    print(f"{PACKETS} packets, {checks} checks in {elapsed:.1f}s")
    assert elapsed < 60


def test_mutated_tcp_streams(dns):
    rng = random.Random(SEED + 1)
    base = seeds()
    for _ in range(TCP_STREAMS):
        with socket.create_connection(("127.0.0.1", dns.port), timeout=2) as s:
            chunks = []
            for _ in range(rng.randrange(1, 6)):
                msg = mutate(rng, rng.choice(base))
                size = len(msg) if rng.random() < 0.8 else rng.randrange(65536)
                chunks.append(struct.pack("!H", size) + msg)
            s.sendall(b"".join(chunks))
    # after all that, TCP and UDP still answer
    q = question(NAME, "A").pack()
    with socket.create_connection(("127.0.0.1", dns.port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(q)) + q)
        size = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    assert DNSRecord.parse(data).rr
    assert dns.proc.poll() is None
