"""meshnet/echo: the built-in test image. Standard library only, so it starts fast.

    HTTP on $HTTP_PORT (8080): any request -> JSON {pod, namespace, ip, node, method, path,
        host, headers, body}; GET /healthz and /livez answer 200 (or 503 once switched off with
        GET /control/ready?ok=0, /control/live?ok=0 — how tests make probes fail).
    TCP echo on $ECHO_PORT (9000): the first line is "<pod>\n", then bytes are echoed back.
    UDP echo on $ECHO_PORT (9000): "<pod> <datagram>" is sent back.

POD_NAME, POD_NAMESPACE, POD_IP and NODE_NAME come from the agent (the downward API).
Logs one line per HTTP request to stdout; exits 0 on SIGTERM.
"""

import asyncio
import json
import os
import signal
import socket
import sys
from urllib.parse import parse_qs, urlsplit

POD = os.environ.get("POD_NAME") or socket.gethostname()
NAMESPACE = os.environ.get("POD_NAMESPACE", "")
STATE = {"ready": True, "live": True}


def info() -> dict:
    return {"pod": POD, "namespace": NAMESPACE, "ip": os.environ.get("POD_IP", ""),
            "node": os.environ.get("NODE_NAME", "")}


async def handle_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip()] = v.strip()
            lower = {k.lower(): v for k, v in headers.items()}
            body = b""
            if lower.get("content-length"):
                body = await reader.readexactly(int(lower["content-length"]))
            url = urlsplit(target)
            status = 200
            if url.path.startswith("/control/"):
                which = url.path.rsplit("/", 1)[-1]
                STATE[which] = parse_qs(url.query).get("ok", ["1"])[0] not in ("0", "false")
            elif url.path == "/healthz" and not STATE["ready"]:
                status = 503
            elif url.path == "/livez" and not STATE["live"]:
                status = 503
            doc = {**info(), "method": method, "path": url.path, "query": url.query,
                   "host": lower.get("host", ""), "headers": headers,
                   "body": body.decode("utf-8", "replace")}
            payload = (json.dumps(doc) + "\n").encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Unavailable'}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                         f"\r\n".encode() + payload)
            print(f"{method} {target} {status}", flush=True)
            await writer.drain()
            if lower.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def handle_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(f"{POD}\n".encode())
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(POD.encode() + b" " + data, addr)


async def main() -> None:
    http_port = int(os.environ.get("HTTP_PORT", "8080"))
    echo_port = int(os.environ.get("ECHO_PORT", "9000"))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    http = await asyncio.start_server(handle_http, "0.0.0.0", http_port, reuse_address=True)
    tcp = await asyncio.start_server(handle_tcp, "0.0.0.0", echo_port, reuse_address=True)
    udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("0.0.0.0", echo_port))
    print(f"echo {POD}: http :{http_port}, tcp+udp echo :{echo_port}", flush=True)
    await stop.wait()
    print("echo: SIGTERM, exiting", flush=True)
    http.close()
    tcp.close()
    udp.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
