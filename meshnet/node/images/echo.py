"""meshnet/echo: the built-in test image. Standard library only, no asyncio: it starts fast.

    HTTP on $HTTP_PORT (8080): any request -> JSON {pod, namespace, ip, node, method, path,
        query, host, headers, body}; GET /healthz and /livez answer 200 (or 503 once switched
        off with GET /control/ready?ok=0, /control/live?ok=0 — how tests make probes fail).
        HTTP/1.1 keep-alive; `Connection: close` closes after the response.
    TCP echo on $ECHO_PORT (9000): the first line is "<pod>\n", then bytes are echoed back.
    UDP echo on $ECHO_PORT (9000): "<pod> <datagram>" is sent back.

POD_NAME, POD_NAMESPACE, POD_IP and NODE_NAME come from the agent (the downward API).
Logs one line per HTTP request to stdout; exits 0 on SIGTERM.

One thread, one `selectors` loop over non-blocking sockets. Start-up cost matters more than
throughput here: a node may start a hundred of these at once, and the agent's zygote runs
`main()` in a forked child without even starting a new interpreter (runtime.py).
"""

import json
import os
import selectors
import signal
import socket
import sys

MAX_HEAD_BYTES = 65536


class Stop(Exception):
    """SIGTERM/SIGINT: leave the loop."""


def _stop(_sig, _frame):
    raise Stop


class Echo:
    def __init__(self, env):
        self.pod = env.get("POD_NAME") or socket.gethostname()
        self.info = {"pod": self.pod, "namespace": env.get("POD_NAMESPACE", ""),
                     "ip": env.get("POD_IP", ""), "node": env.get("NODE_NAME", "")}
        self.state = {"ready": True, "live": True}
        self.sel = selectors.DefaultSelector()
        self.out = {}  # socket -> bytearray still to send
        self.close_after = set()

    def listen(self, kind, port):
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        return sock

    # -- HTTP ------------------------------------------------------------------------------

    def respond(self, head, body):
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip()] = v.strip()
        lower = {k.lower(): v for k, v in headers.items()}
        path, _, query = target.split("#", 1)[0].partition("?")
        status = 200
        if path.startswith("/control/"):
            which = path.rsplit("/", 1)[-1]
            ok = [p.split("=", 1)[1] for p in query.split("&") if p.startswith("ok=")]
            self.state[which] = (ok[-1] if ok else "1") not in ("0", "false")
        elif path == "/healthz" and not self.state["ready"]:
            status = 503
        elif path == "/livez" and not self.state["live"]:
            status = 503
        doc = {**self.info, "method": method, "path": path, "query": query,
               "host": lower.get("host", ""), "headers": headers,
               "body": body.decode("utf-8", "replace")}
        payload = (json.dumps(doc) + "\n").encode()
        print(f"{method} {target} {status}", flush=True)
        reply = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Unavailable'}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                 f"\r\n").encode() + payload
        return reply, lower.get("connection", "").lower() == "close"

    def on_http(self, conn, buf):
        data = conn.recv(65536)
        if not data:
            return self.drop(conn)
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self.drop(conn)
                return
            head = bytes(buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if len(buf) < end + 4 + length:
                return  # the body is still coming
            body = bytes(buf[end + 4:end + 4 + length])
            del buf[:end + 4 + length]
            reply, close = self.respond(head, body)
            self.send(conn, reply)
            if close:
                self.close_after.add(conn)
                self.flush(conn)
                return

    # -- TCP and UDP echo --------------------------------------------------------------------

    def on_tcp(self, conn, _buf):
        data = conn.recv(65536)
        if not data:
            return self.drop(conn)
        self.send(conn, data)

    def on_udp(self, sock, _buf):
        try:
            data, addr = sock.recvfrom(65536)
        except BlockingIOError:
            return
        sock.sendto(self.pod.encode() + b" " + data, addr)

    # -- the loop ----------------------------------------------------------------------------

    def accept(self, listener, handler, greeting=b""):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, (handler, bytearray()))
        if greeting:
            self.send(conn, greeting)

    def send(self, conn, data):
        self.out.setdefault(conn, bytearray()).extend(data)
        self.flush(conn)

    def flush(self, conn):
        pending = self.out.get(conn)
        try:
            while pending:
                sent = conn.send(pending)
                del pending[:sent]
        except BlockingIOError:
            pass
        except OSError:
            return self.drop(conn)
        handler, buf = self.sel.get_key(conn).data
        if pending:  # wait until it can be written; stop reading meanwhile (backpressure)
            self.sel.modify(conn, selectors.EVENT_WRITE, (handler, buf))
            return
        self.out.pop(conn, None)
        if conn in self.close_after:
            return self.drop(conn)
        self.sel.modify(conn, selectors.EVENT_READ, (handler, buf))

    def drop(self, conn):
        self.sel.unregister(conn)
        self.out.pop(conn, None)
        self.close_after.discard(conn)
        conn.close()

    def serve(self, http_port, echo_port, ready=None):
        http = self.listen(socket.SOCK_STREAM, http_port)
        tcp = self.listen(socket.SOCK_STREAM, echo_port)
        udp = self.listen(socket.SOCK_DGRAM, echo_port)
        greeting = f"{self.pod}\n".encode()
        self.sel.register(http, selectors.EVENT_READ,
                          (lambda s, _b: self.accept(s, self.on_http), None))
        self.sel.register(tcp, selectors.EVENT_READ,
                          (lambda s, _b: self.accept(s, self.on_tcp, greeting), None))
        self.sel.register(udp, selectors.EVENT_READ, (self.on_udp, None))
        print(f"echo {self.pod}: http :{http_port}, tcp+udp echo :{echo_port}", flush=True)
        if ready is not None:
            ready()
        while True:
            for key, events in self.sel.select():
                handler, buf = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        self.flush(key.fileobj)
                    else:
                        handler(key.fileobj, buf)
                except (ConnectionError, TimeoutError):
                    if key.fileobj not in (http, tcp, udp):
                        self.drop(key.fileobj)


def main(env=None, ready=None) -> int:
    """Serve until SIGTERM; `ready()` is called once the ports are bound."""
    env = os.environ if env is None else env
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        Echo(env).serve(int(env.get("HTTP_PORT", "8080")), int(env.get("ECHO_PORT", "9000")),
                        ready)
    except Stop:
        print("echo: SIGTERM, exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
