"""Clients for the end-to-end tests, run inside the client namespace; print JSON.

    python e2e_client.py tcp HOST PORT N        N connections one after another: backend names
    python e2e_client.py udp HOST PORT N        N UDP sockets (flows), one datagram each
    python e2e_client.py udp-same HOST PORT N   one UDP socket, N datagrams
    python e2e_client.py leastconn HOST PORT N  hold one connection, then N short ones
    python e2e_client.py stream HOST PORT SECS  new connections back to back for SECS seconds
    python e2e_client.py bulk HOST PORT MIB     send MIB MiB, half-close, read the sink's
                                                `BYTES CRC32` answer

A connection's answer is the backend's name, or `ERR:<exception>` with the time it took.
"""

import json
import os
import socket
import sys
import time
import zlib

TIMEOUT_S = 5.0


def tcp_once(host: str, port: int, hold: bool = False):
    s = socket.create_connection((host, port), timeout=TIMEOUT_S)
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                raise ConnectionError(f"closed after {line!r}")
            line += chunk
        if hold:
            return line.decode().strip(), s
        s.shutdown(socket.SHUT_WR)
        s.recv(100)
        return line.decode().strip()
    except BaseException:
        s.close()
        raise
    finally:
        if not hold:
            s.close()


def tcp(host, port, n):
    out = []
    for _ in range(n):
        start = time.monotonic()
        try:
            out.append(tcp_once(host, port))
        except OSError as exc:
            out.append(f"ERR:{type(exc).__name__}:{time.monotonic() - start:.3f}")
    return out


def udp(host, port, n, same=False):
    out = []
    sock = None
    for _ in range(n):
        if sock is None or not same:
            if sock is not None:
                sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(TIMEOUT_S)
        sock.sendto(b"q", (host, port))
        try:
            data, source = sock.recvfrom(65536)
            out.append([data.decode(), f"{source[0]}:{source[1]}"])
        except OSError as exc:
            out.append([f"ERR:{type(exc).__name__}", ""])
    sock.close()
    return out


def leastconn(host, port, n):
    busy, held = tcp_once(host, port, hold=True)
    try:
        return {"busy": busy, "then": tcp(host, port, n)}
    finally:
        held.close()


def stream(host, port, seconds):
    deadline = time.monotonic() + seconds
    counts = {}
    while time.monotonic() < deadline:
        name = tcp(host, port, 1)[0]
        key = name.split(":")[0] + ":" + name.split(":")[1] if name.startswith("ERR") else name
        counts[key] = counts.get(key, 0) + 1
    return counts


def bulk(host, port, mib):
    """Every MiB block starts with its index, so a lost, repeated or reordered block changes
    the CRC."""
    base = bytearray(os.urandom(1 << 20))
    crc = 0
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as s:
        for i in range(mib):
            base[:8] = i.to_bytes(8, "big")
            s.sendall(base)
            crc = zlib.crc32(base, crc)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(100):
            answer += chunk
    got_bytes, got_crc = answer.decode().split()
    return {"sent": mib << 20, "crc": crc, "received": int(got_bytes), "their_crc": int(got_crc),
            "seconds": time.monotonic() - start}


if __name__ == "__main__":
    cmd, host, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if cmd == "tcp":
        result = tcp(host, port, int(arg))
    elif cmd == "udp":
        result = udp(host, port, int(arg))
    elif cmd == "udp-same":
        result = udp(host, port, int(arg), same=True)
    elif cmd == "leastconn":
        result = leastconn(host, port, int(arg))
    elif cmd == "stream":
        result = stream(host, port, arg)
    elif cmd == "bulk":
        result = bulk(host, port, int(arg))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result), flush=True)
