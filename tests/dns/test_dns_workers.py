"""meshnet-dns --workers 2 end to end: SO_REUSEPORT workers fed by a real API server, queried
over real sockets on 127.0.0.1; a dead worker is replaced; SIGTERM (and the supervisor's
SIGKILL) leaves no process behind. The shared supervisor's pure parts (metrics merge, backoff,
worker flags) are tested in tests/api/test_workers.py; the ready line's parse here."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSRecord
from kubernetes import client

from fakes import DnsDaemon, ThreadedUpstream, dig
from netns import wait_for
from meshnet.dns.main import listen_flags

NS = "dnsworkers"
NAME = f"web.{NS}.svc.cluster.local"
CLIENT_SOCKETS = 64  # distinct source ports: all on one worker has odds of 2**-63
CONVERGE_S = 20.0


def children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            out.add(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ask_from_many_ports(port: int, count: int = CLIENT_SOCKETS) -> list[str]:
    """One A query for NAME from each of `count` sockets; the answers' addresses."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for i, s in enumerate(socks):
            s.settimeout(3)
            q = DNSRecord.question(NAME, "A")
            q.header.id = i
            s.sendto(q.pack(), ("127.0.0.1", port))
        out = []
        for s in socks:
            reply = DNSRecord.parse(s.recv(4096))
            out += [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
        return out
    finally:
        for s in socks:
            s.close()


def ask_tcp(port: int) -> str:
    q = DNSRecord.question(NAME, "A").pack()
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack("!H", len(q)) + q)
        size = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    return str(DNSRecord.parse(data).rr[0].rdata)


def requests_by_worker(dns: DnsDaemon, proto: str) -> dict[str, float]:
    code, text = dns.status("/metrics")
    assert code == 200, text
    out: dict[str, float] = {}
    for m in re.finditer(r'^meshnet_dns_requests_total\{worker="(\d+)",proto="(\w+)",[^}]*\} '
                         r'(\S+)$', text, re.M):
        if m.group(2) == proto:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


@pytest.fixture(scope="module")
def web_ip(k8s):
    api = client.CoreV1Api(k8s)
    api.create_namespace({"metadata": {"name": NS}})
    api.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {
        "ports": [{"name": "http", "port": 80}]}})
    return api.read_namespaced_service("web", NS).spec.cluster_ip


@pytest.fixture(scope="module")
def upstream():
    up = ThreadedUpstream({"example.org.": ["example.org. 300 IN A 192.0.2.10"]})
    yield up
    up.close()


@pytest.fixture
def workers(apiserver, web_ip, upstream, tmp_path):
    daemon = DnsDaemon(apiserver.kubeconfig, upstream.address, tmp_path / "dns.log",
                       "--workers", "2")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


def test_two_workers_share_the_port_and_both_answer(workers, web_ip):
    pids = children(workers.proc.pid)
    assert len(pids) == 2, pids
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index("--worker-of") + 1] == str(workers.proc.pid)
    assert ask_from_many_ports(workers.port) == [web_ip] * CLIENT_SOCKETS
    udp = requests_by_worker(workers, "udp")
    assert sorted(udp) == ["0", "1"] and all(n > 0 for n in udp.values()), udp
    assert sum(udp.values()) == CLIENT_SOCKETS
    for _ in range(32):  # a new connection, a new source port, each time
        assert ask_tcp(workers.port) == web_ip
    tcp = requests_by_worker(workers, "tcp")
    assert sorted(tcp) == ["0", "1"] and all(n > 0 for n in tcp.values()), tcp
    r = dig(workers.port, "example.org", "A")  # forwarding works in the workers too
    assert r.answer == ["example.org. 300 IN A 192.0.2.10"]


def test_a_worker_that_dies_is_replaced(workers, web_ip):
    before = children(workers.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        now = children(workers.proc.pid)
        return now if len(now) == 2 and victim not in now else None

    after = wait_for(replaced, "a new worker", CONVERGE_S)
    assert len(after & before) == 1
    wait_for(lambda: workers.status("/ready")[0] == 200, "ready again", CONVERGE_S)
    assert ask_from_many_ports(workers.port) == [web_ip] * CLIENT_SOCKETS
    assert re.search(r"^meshnet_dns_worker_restarts_total 1$", workers.status("/metrics")[1],
                     re.M)


def test_sigterm_stops_every_worker(workers):
    pids = children(workers.proc.pid)
    assert len(pids) == 2
    workers.proc.send_signal(signal.SIGTERM)
    assert workers.proc.wait(15) == 0
    assert not any(alive(pid) for pid in pids)


def test_workers_stop_when_the_supervisor_is_killed(workers):
    pids = children(workers.proc.pid)
    assert len(pids) == 2
    workers.proc.kill()
    workers.proc.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in pids), "workers gone (PR_SET_PDEATHSIG)",
             timeout=10)


def test_bad_worker_count_is_refused(apiserver, upstream, tmp_path):
    with pytest.raises(RuntimeError, match="did not start"):
        DnsDaemon(apiserver.kubeconfig, upstream.address, tmp_path / "dns.log",
                  "--workers", "0")
    assert "--workers 0: must be 1 or more" in (tmp_path / "dns.log").read_text()


@pytest.mark.parametrize("desc, line, want", [
    ("IPv4", "meshnet-dns listening on udp+tcp 127.0.0.1:5353\n", ("--listen", "127.0.0.1:5353")),
    ("IPv6", "meshnet-dns listening on udp+tcp [::1]:53\n", ("--listen", "[::1]:53")),
    ("the status line is not it", "meshnet-dns status on 127.0.0.1:4000\n", None),
    ("nor another daemon's", "meshnet-ingress ready on http://a:1 https://a:2\n", None),
])
def test_listen_flags(desc, line, want):
    assert listen_flags(line) == want


def flag(pid: int, name: str) -> str:
    """The value a process was given for `name` (the last one counts, as for argparse)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[len(argv) - argv[::-1].index(name)]


def test_workers_get_their_index_and_the_first_ones_port(workers):
    pids = children(workers.proc.pid)
    assert {flag(pid, "--worker-index") for pid in pids} == {"0", "1"}
    for pid in pids:
        if flag(pid, "--worker-index") != "0":  # worker 0 picked the port (:0 was given)
            assert flag(pid, "--listen") == f"127.0.0.1:{workers.port}"
