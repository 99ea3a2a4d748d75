"""meshnet.cluster.relay over real loopback sockets: the relay runs as `meshctl up` runs it
(by path, `-I -S`), in front of echo servers this test runs on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import meshnet.cluster.relay as relay_module

RELAY = str(Path(relay_module.__file__))


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpServer:
    """Reads until EOF, then sends the byte count and the data back and closes: the answer
    only comes if the client's half-close got through."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            data = bytearray()
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(f"{len(data)}\n".encode() + bytes(data))


class UdpServer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers = set()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            self.peers.add(addr)
            self.sock.sendto(b"re:" + data, addr)


@pytest.fixture
def relay():
    tcp, udp = TcpServer(), UdpServer()
    tcp_port, udp_port, dead_port = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    refused = free_port()  # nothing listens there
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", RELAY,
         "--tcp", f"127.0.0.1:{tcp_port}=127.0.0.1:{tcp.port}",
         "--tcp", f"127.0.0.1:{dead_port}=127.0.0.1:{refused}",
         "--udp", f"127.0.0.1:{udp_port}=127.0.0.1:{udp.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("relay ready: <TcpRelay 127.0.0.1:"), line + proc.stderr.read()
    yield proc, tcp_port, dead_port, udp_port, udp
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    tcp.sock.close()
    udp.sock.close()


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # the half-close must reach the server ...
        out = bytearray()
        while chunk := c.recv(65536):  # ... and its answer and EOF come back
            out += chunk
    return bytes(out)


def test_tcp_carries_bytes_both_ways_with_half_close(relay):
    _proc, port, *_ = relay
    payload = bytes(range(256)) * 8192  # 2 MiB: more than any buffer on the way
    assert _exchange(port, payload) == f"{len(payload)}\n".encode() + payload
    assert _exchange(port, b"") == b"0\n"


def test_many_connections_at_once(relay):
    _proc, port, *_ = relay
    results = {}

    def one(i):
        results[i] = _exchange(port, f"conn {i}".encode() * 1000)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(results[i] == f"{len(f'conn {i}') * 1000}\n".encode() + f"conn {i}".encode()
               * 1000 for i in range(50))


def test_refused_target_closes_the_client(relay):
    _proc, _port, dead_port, *_ = relay
    with socket.create_connection(("127.0.0.1", dead_port), timeout=5) as c:
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass


def test_udp_flow_per_client(relay):
    _proc, _tcp, _dead, port, server = relay
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for i, c in enumerate(clients):
            c.settimeout(5)
            for n in range(3):
                c.sendto(f"{i}-{n}".encode(), ("127.0.0.1", port))
                assert c.recv(100) == f"re:{i}-{n}".encode()
        assert len(server.peers) == 2  # one upstream socket per client, reused
    finally:
        for c in clients:
            c.close()


def test_sigterm_stops_it_and_a_busy_port_is_an_error(relay):
    proc, port, *_ = relay
    again = subprocess.run([sys.executable, "-I", "-S", RELAY, "--tcp",
                            f"127.0.0.1:{port}=127.0.0.1:1"], capture_output=True, text=True,
                           timeout=10)
    assert again.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in again.stderr
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0 and time.monotonic() - t < 2


ARGS = [
    ("both kinds, repeated, either spelling",
     ["--tcp", "127.0.0.1:80=10.0.0.2:8080", "--udp=[::1]:53=127.0.0.1:1053",
      "--tcp=1.2.3.4:1=5.6.7.8:2"],
     {"--tcp": [(("127.0.0.1", 80), ("10.0.0.2", 8080)), (("1.2.3.4", 1), ("5.6.7.8", 2))],
      "--udp": [(("::1", 53), ("127.0.0.1", 1053))]}),
    ("nothing", [], {"--tcp": [], "--udp": []}),
    ("no target", ["--tcp", "127.0.0.1:80"], "--tcp 127.0.0.1:80: expected LISTEN=TARGET"),
    ("a flag with no value", ["--udp"], "--udp needs LISTEN=TARGET"),
    ("an unknown flag", ["--sctp", "a=b"], "unknown argument '--sctp'"),
]


@pytest.mark.parametrize("desc,argv,expected", ARGS, ids=[a[0] for a in ARGS])
def test_parse_args(desc, argv, expected):
    """By hand, not argparse (1.5 MiB of the relay's ~11)."""
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected.replace("[", r"\[")):
            relay_module.parse_args(argv)
    else:
        assert relay_module.parse_args(argv) == expected


def test_bad_arguments_exit_2_with_usage():
    out = subprocess.run([sys.executable, "-I", "-S", RELAY, "--tcp", "nope"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and out.stderr.startswith("usage: relay.py")
    assert "--tcp nope: expected LISTEN=TARGET" in out.stderr
