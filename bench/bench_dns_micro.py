"""meshnet-dns per-datagram cost without the network (not a test; a tool for profiling).

    .venv/bin/python bench/bench_dns_micro.py [callback] [--queries cluster|nxdomain]
                                              [--iterations 200000]
    .venv/bin/python bench/bench_dns_micro.py serve --port 5399 [--cpu 1]
    .venv/bin/python bench/bench_dns_micro.py instructions [--queries cluster]

`callback` (the default) builds the same zone as bench_dns.py (1,000 Services in ten
namespaces, every tenth headless with ten endpoints) in memory, warms the answer memo with one
pass over the query mix, then calls the UDP protocol's `datagram_received` directly, with a
transport whose `sendto` only counts, `--iterations` times (a fresh ID per packet, as dnsperf
sends them). It prints ns per datagram: the Python work per query, with no syscalls and no
event loop, so that `valgrind --tool=cachegrind` gives a deterministic instruction count of it
and the number barely moves with load on the machine (bench_dns.py cannot say that).

`serve` runs a `DnsServer` on 127.0.0.1:PORT (uvloop) over the same zone, without an API
server, so that `perf record -g -p PID`, `strace -c -f -p PID` and dnsperf can be pointed at
it (query files: `--write-queries FILE`).

`instructions` runs `serve` under `valgrind --tool=cachegrind` twice, answering 5,000 and then
25,000 queries over loopback (after one warm pass, 32 in flight), and prints the difference
per query: every user-space instruction a UDP query costs (uvloop, libc, the interpreter, our
code), deterministic, not the kernel's. Measured on 2026-11-27 (Python 3.11, uvloop 0.23),
`cluster` mix: 14,200 before the memo rework, 11,800 after it. Of those, roughly 1,400 are
glibc's inet_ntop (sprintf) making the client's address text, 1,600 uvloop's sendto
address cache (hashing and comparing that tuple), 700 taking and dropping the GIL around each
callback, and 1,800 the bytecode of the hot path; reading the socket with `add_reader` and
`socket.recvfrom` instead of the transport saved only another 700 (the socket module converts
addresses the same way and releases the GIL around every call), so it was not kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import struct
import sys
import time
from pathlib import Path

from dnslib import DNSRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "dns"))

from bench_dns import ZONE, cluster_queries, nxdomain_queries  # noqa: E402
from fakes import endpoints, service  # noqa: E402
from meshnet.dns.server import DnsServer, _UdpProtocol  # noqa: E402
from meshnet.dns.views import view_endpoints, view_service  # noqa: E402
from meshnet.dns.zone import ZoneConfig, compile_zone  # noqa: E402

NAMESPACES = [f"bench{i}" for i in range(10)]
QUERIES = {"cluster": cluster_queries, "nxdomain": nxdomain_queries}


def cluster(services: int = 1000, per: int = 10, headless_every: int = 10):
    """(the Services as API objects, their zone table): bench_dns.py's cluster, in memory."""
    svcs, views, eps = [], [], {}
    for i in range(services):
        ns, name = NAMESPACES[i % len(NAMESPACES)], f"svc{i}"
        headless = i % headless_every == 0
        ports = (("http", 80, "TCP"), ("grpc", 9090, "TCP"))
        svc = service(name, ns, "None" if headless else f"10.96.{i >> 8}.{i & 255}", ports)
        svcs.append(svc)
        views.append(view_service(svc))
        base = i * per
        ips = [f"10.{244 + ((base + j) >> 16)}.{((base + j) >> 8) & 255}.{(base + j) & 255}"
               for j in range(per)]
        eps[(ns, name)] = view_endpoints(endpoints(name, ns, ready=ips, ports=ports))
    return svcs, compile_zone(views, eps, [], ZoneConfig.make(ZONE))


def query_lines(kind: str) -> list[str]:
    """bench_dns.py's query mix `kind` ("cluster" or "nxdomain") over that cluster."""
    return QUERIES[kind](cluster()[0])


class _CountingTransport:
    def __init__(self):
        self.sent = 0

    def sendto(self, data: bytes, addr) -> None:
        self.sent += 1


def callback(args) -> None:
    services, table = cluster()
    server = DnsServer(table)
    proto = _UdpProtocol(server)
    transport = _CountingTransport()
    proto.connection_made(transport)
    packets = [bytes(DNSRecord.question(*line.split()).pack())
               for line in QUERIES[args.queries](services)]
    addr = ("127.0.0.1", 40000)
    for p in packets:  # warm the memo
        proto.datagram_received(p, addr)
    rng = random.Random(2)
    # Distinct IDs, as dnsperf sends them: the packets are not the same bytes objects twice.
    batch = [struct.pack("!H", rng.randrange(65536)) + p[2:] for p in packets]
    received = proto.datagram_received
    n = 0
    start = time.perf_counter()
    while n < args.iterations:
        for p in batch:
            received(p, addr)
        n += len(batch)
    elapsed = time.perf_counter() - start
    print(f"{args.queries}: {n} datagrams, {elapsed / n * 1e9:.0f} ns each "
          f"({transport.sent} replies)")


def serve(args) -> None:
    import uvloop

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.write_queries:
        for kind in ("cluster", "nxdomain"):
            Path(f"{args.write_queries}.{kind}").write_text(
                "\n".join(query_lines(kind)) + "\n")

    async def run() -> None:
        forwarder = None
        if args.upstream:
            from meshnet.dns.forward import Forwarder

            host, _, port = args.upstream.rpartition(":")
            forwarder = Forwarder([(host, int(port))])
        server = DnsServer(cluster()[1], forwarder)
        host, port = await server.start("127.0.0.1", args.port)
        print(f"serving on {host}:{port} pid {os.getpid()}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


def _instructions_for(queries: list[bytes], count: int) -> int:
    """Cachegrind's instruction total of a `serve` process that answered the warm pass and
    then `count` queries."""
    import re
    import signal
    import socket
    import subprocess
    import tempfile

    port = 5300 + random.randrange(90)
    out = tempfile.mktemp(prefix="cachegrind-dns-")
    proc = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                             f"--cachegrind-out-file={out}", sys.executable, __file__, "serve",
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        if b"serving" not in proc.stdout.readline():
            raise SystemExit(f"the server did not start: {proc.stderr.read()[-2000:]}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(10)
        target = ("127.0.0.1", port)
        for packet in queries:  # the warm pass, one at a time
            sock.sendto(packet, target)
            sock.recv(65535)
        rng = random.Random(5)
        sent = 0
        for _ in range(32):
            sock.sendto(rng.randbytes(2) + queries[sent % len(queries)][2:], target)
            sent += 1
        for _ in range(count):
            sock.recv(65535)
            if sent < count:
                sock.sendto(rng.randbytes(2) + queries[sent % len(queries)][2:], target)
                sent += 1
        sock.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # valgrind writes its totals on the way out
        err = proc.communicate()[1].decode()
        if os.path.exists(out):
            os.unlink(out)
    return int(re.search(r"I\s+refs:\s+([\d,]+)", err).group(1).replace(",", ""))


def instructions(args) -> None:
    packets = [bytes(DNSRecord.question(*line.split()).pack())
               for line in query_lines(args.queries)]
    low, high = 5000, 25000
    per = (_instructions_for(packets, high) - _instructions_for(packets, low)) / (high - low)
    print(f"{args.queries}: {per:,.0f} user-space instructions per UDP query")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="callback",
                   choices=("callback", "serve", "instructions"))
    p.add_argument("--queries", default="cluster", choices=("cluster", "nxdomain"))
    p.add_argument("--iterations", type=int, default=200_000)
    p.add_argument("--port", type=int, default=5399)
    p.add_argument("--cpu", type=int)
    p.add_argument("--upstream", metavar="ADDR:PORT",
                   help="serve: forward other names there (a resolver you run yourself)")
    p.add_argument("--write-queries", metavar="PREFIX",
                   help="serve: write dnsperf query files PREFIX.cluster, PREFIX.nxdomain")
    args = p.parse_args()
    {"callback": callback, "serve": serve, "instructions": instructions}[args.mode](args)


if __name__ == "__main__":
    main()
