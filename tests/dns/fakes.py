"""Shared builders for DNS tests: API objects as JSON dicts, and a small sample cluster."""

from __future__ import annotations

from dnslib import QTYPE, DNSRecord

from meshnet.dns.views import view_endpoints, view_pod, view_service
from meshnet.dns.zone import ZoneConfig, compile_zone


def service(name, ns="default", cluster_ip="10.96.0.20", ports=(("http", 80, "TCP"),),
            type="ClusterIP", external_name=None, publish_not_ready=False, cluster_ips=None):
    spec = {"type": type, "ports": [{"name": n, "port": p, "protocol": proto}
                                    for n, p, proto in ports]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    if cluster_ips is not None:
        spec["clusterIPs"] = list(cluster_ips)
    if external_name:
        spec["externalName"] = external_name
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoints(name, ns="default", ready=(), not_ready=(), ports=(("http", 80, "TCP"),)):
    """ready / not_ready: IPs, or (ip, hostname) pairs."""
    def addr(a):
        ip, host = (a, "") if isinstance(a, str) else a
        return {"ip": ip, **({"hostname": host} if host else {})}
    subset = {"ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    if ready:
        subset["addresses"] = [addr(a) for a in ready]
    if not_ready:
        subset["notReadyAddresses"] = [addr(a) for a in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns},
            "subsets": [subset] if (ready or not_ready) else []}


def pod(name, ip, ns="default"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def sample_objects():
    """The cluster most answer tests run against."""
    services = [
        service("web", cluster_ip="10.96.0.20", ports=(("http", 80, "TCP"), ("", 8080, "TCP"))),
        service("dual", cluster_ip="10.96.0.21", cluster_ips=("10.96.0.21", "fd00::21")),
        service("db", cluster_ip="None", ports=(("pg", 5432, "TCP"),)),
        service("empty", cluster_ip="None"),
        service("late", cluster_ip="None", publish_not_ready=True),
        service("ext", cluster_ip=None, type="ExternalName", external_name="example.org"),
        service("alias", cluster_ip=None, type="ExternalName",
                external_name="web.default.svc.cluster.local"),
        service("kube-dns", ns="kube-system", cluster_ip="10.96.0.10",
                ports=(("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
    ]
    eps = [
        endpoints("db", ready=[("10.244.0.5", "db-0"), "10.244.0.6"], not_ready=["10.244.0.7"],
                  ports=(("pg", 5432, "TCP"),)),
        endpoints("empty", not_ready=["10.244.0.8"]),
        endpoints("late", not_ready=["10.244.0.9"]),
    ]
    pods = [pod("db-0", "10.244.0.5"), pod("six", "fd00::5", ns="v6")]
    return services, eps, pods


def sample_table(config=None, serial=1):
    services, eps, pods = sample_objects()
    eps_views = {(e.namespace, e.name): e for e in map(view_endpoints, eps)}
    return compile_zone([view_service(s) for s in services], eps_views,
                        [view_pod(p) for p in pods], config or ZoneConfig(), serial)


def rr_text(rrs) -> list[str]:
    """Records as zone-file lines with single spaces: what the case tables are written in."""
    return [" ".join(rr.toZone().split()) for rr in rrs]


def question(name, qtype="A", **kwargs) -> DNSRecord:
    return DNSRecord.question(name, qtype, **kwargs)


class Clock:
    """An injected clock (the cache's) that tests move by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


QT = QTYPE


# -- sockets: a test-owned upstream and small async clients (loopback only) --------------------

import asyncio  # noqa: E402
import struct  # noqa: E402

from dnslib import EDNS0, RR, DNSRecord as _Record  # noqa: E402


class FakeUpstream:
    """A tiny authoritative-style DNS server on loopback that tests own (never the host's
    resolver). `zone` maps lowercase names to zone-file lines; names not in it get NXDOMAIN
    with a SOA whose negative TTL is `negative_ttl`. `silent` drops every query (timeouts);
    `truncate_udp` sets TC on UDP answers so clients retry over TCP; `delay_s` holds answers.
    Like real servers it answers an OPT with its own (`edns`). `packets` keeps every query's
    bytes; `before` holds functions of a query's bytes whose results are sent over UDP ahead
    of the real answer (garbage, answers to other questions)."""

    def __init__(self, zone=None, negative_ttl=30):
        self.zone = {k.lower(): v for k, v in (zone or {}).items()}
        self.negative_ttl = negative_ttl
        self.silent = False
        self.truncate_udp = False
        self.delay_s = 0.0
        self.queries: list[tuple[str, str, str]] = []  # (transport, name, type)
        self.packets: list[bytes] = []
        self.edns = True
        self.before = []
        self.udp = self.tcp = None
        self.port = 0

    async def start(self, host="127.0.0.1"):
        loop = asyncio.get_running_loop()
        outer = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                loop.create_task(outer._reply(data, False, lambda out: self.transport.sendto(
                    out, addr)))

        for _attempt in range(20):  # a UDP port whose TCP twin is free too
            self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, 0))
            self.port = self.udp.get_extra_info("sockname")[1]
            try:
                self.tcp = await asyncio.start_server(self._on_tcp, host, self.port)
                return self
            except OSError:
                self.udp.close()
        raise OSError(f"no port free for both UDP and TCP on {host}")

    async def _on_tcp(self, reader, writer):
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                await self._reply(data, True, lambda out: writer.write(
                    struct.pack("!H", len(out)) + out))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    async def _reply(self, data, tcp, send):
        request = _Record.parse(data)
        name = str(request.q.qname).lower()
        self.queries.append(("tcp" if tcp else "udp", name, QTYPE.get(request.q.qtype)))
        self.packets.append(data)
        if self.silent:
            return
        if not tcp:
            for make in self.before:
                send(make(data))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        reply = request.reply()
        lines = [line for line in self.zone.get(name, ())
                 if line.split()[3] == QTYPE.get(request.q.qtype)]
        if name not in self.zone:
            reply.header.rcode = 3
        for line in lines:
            reply.add_answer(*RR.fromZone(line))
        if not lines:
            reply.add_auth(*RR.fromZone(
                f"example. {self.negative_ttl} IN SOA ns.example. h.example. 1 2 3 4 "
                f"{self.negative_ttl}"))
        if self.truncate_udp and not tcp:
            reply.rr = []
            reply.header.tc = 1
        if self.edns and any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=4096))
        send(reply.pack())

    def close(self):
        self.udp.close()
        self.tcp.close()


async def udp_exchange(port, data: bytes, timeout_s=2.0, host="127.0.0.1") -> bytes | None:
    """Send one datagram, return the reply bytes (None on timeout)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, addr):
            if not fut.done():
                fut.set_result(d)

    transport, _ = await loop.create_datagram_endpoint(P, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(fut, timeout_s)
    except asyncio.TimeoutError:
        return None
    finally:
        transport.close()


async def tcp_exchange(port, messages: list[bytes], host="127.0.0.1", timeout_s=5.0):
    """Send messages on one TCP connection (one write), return the replies in arrival order."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"".join(struct.pack("!H", len(m)) + m for m in messages))
        out = []
        async with asyncio.timeout(timeout_s):
            for _ in messages:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out.append(await reader.readexactly(size))
        return out
    finally:
        writer.close()


# -- processes: the daemon under test, dig, and an upstream on its own thread ------------------

import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from conftest import http_get  # noqa: E402

DIG = shutil.which("dig") or "/usr/bin/dig"


class ThreadedUpstream:
    """A FakeUpstream on its own event loop thread, for synchronous (process) tests."""

    def __init__(self, zone=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.upstream = asyncio.run_coroutine_threadsafe(
            FakeUpstream(zone).start(), self.loop).result(5)

    @property
    def address(self):
        return self.upstream.address

    def close(self):
        self.loop.call_soon_threadsafe(self.upstream.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DnsDaemon:
    """`meshnet-dns` as a process on 127.0.0.1:<free port>, killed by PID at teardown."""

    def __init__(self, kubeconfig, upstream: str, log_path: Path, *extra: str):
        self.status_port = free_port()
        self.log_path = log_path
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "meshnet-dns"), "--kubeconfig", str(kubeconfig),
             "--listen", "127.0.0.1:0", "--upstream", upstream,
             "--status-listen", f"127.0.0.1:{self.status_port}", *extra],
            stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        line = self.proc.stdout.readline()
        if b"listening on" not in line:
            self.stop()
            raise RuntimeError(f"meshnet-dns did not start: {line!r}\n{log_path.read_text()}")
        self.port = int(line.rsplit(b":", 1)[1])

    def __repr__(self) -> str:
        return f"<DnsDaemon 127.0.0.1:{self.port} pid={self.proc.pid}>"

    def status(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.status_port}{path}")

    def wait_ready(self, timeout_s=20.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.status("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"meshnet-dns not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Dig:
    status: str
    flags: set
    answer: list
    authority: list
    additional: list
    text: str
    tcp_retry: bool


def dig(port: int, name: str, qtype: str = "A", *options: str) -> Dig:
    """Run dig against 127.0.0.1:<port> and parse its sections into record text."""
    args = [a for a in (name, qtype) if a]  # empty: a `-x ADDR` query in options
    out = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), *args, "+tries=1",
                          "+time=3", "+nocookie", *options],
                         capture_output=True, text=True, timeout=20).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    sections = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current = None
    for line in out.splitlines():
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            current = m.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            continue
        if current in sections:
            sections[current].append(" ".join(line.split()))
    return Dig(status.group(1) if status else "NONE", set(flags.group(1).split()) if flags
               else set(), sections["ANSWER"], sections["AUTHORITY"], sections["ADDITIONAL"],
               out, "Truncated, retrying in TCP mode" in out)
