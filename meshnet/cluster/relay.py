"""The host-side relay of `meshctl up`: TCP and UDP forwarding between fixed address pairs.

    python -I -S .../meshnet/cluster/relay.py --tcp LISTEN=TARGET ... --udp LISTEN=TARGET ...

It publishes the node's ingress on host loopback, lets the node reach the API server (which
listens on loopback only) at the host end of the veth, and carries meshnet-dns's forwarded
questions to the upstream resolver. Bytes are copied as they come (TLS passes through
untouched); a UDP client gets one socket to the target per client address, dropped after
UDP_IDLE_S of silence. Prints one "relay ready" line once every listener is bound; SIGTERM
closes the listeners and the connections.

Theory of operation
-------------------
One thread, one `selectors` loop, non-blocking sockets, standard library only: the relay is
run by path with `-I -S` and imports neither asyncio nor ssl (nor argparse: its two flags are
read by hand), so it is a ~10 MiB process instead of ~21 (`meshctl up` counts every megabyte
of the cluster). A TCP connection is a
`Splice` of two sockets with one bounded buffer per direction: a side is read only while the
buffer towards its peer is below BUFFER_BYTES (backpressure), and written while its own
incoming buffer holds data. An EOF is passed on as a half-close (`shutdown(SHUT_WR)`) once
everything before it was written; the pair closes when both directions are done or on any
error. Each socket's selector interest is recomputed from that state after every event.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import sys
import time

UDP_IDLE_S = 30.0
CONNECT_TIMEOUT_S = 5.0
BUFFER_BYTES = 64 * 1024
TICK_S = 1.0  # idle UDP flows and stuck connects are swept this often


def parse_pair(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    listen, sep, target = text.partition("=")
    if not sep:
        raise ValueError(f"{text}: expected LISTEN=TARGET (ADDR:PORT=ADDR:PORT)")
    return _hostport(listen), _hostport(target)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Loop:
    """The selector, plus a wake-up pipe for signals."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.tickers: list = []  # objects with .tick(now)

    def watch(self, sock: socket.socket, events: int, handler) -> None:
        """Set `sock`'s interest (0: none) and what handles it: handler(sock, events)."""
        key = self.sel.get_map().get(sock.fileno())
        if not events:
            if key is not None:
                self.sel.unregister(sock)
        elif key is None:
            self.sel.register(sock, events, handler)
        elif key.events != events or key.data is not handler:
            self.sel.modify(sock, events, handler)

    def forget(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0 and sock.fileno() in self.sel.get_map():
            self.sel.unregister(sock)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        next_tick = time.monotonic() + TICK_S
        while not self.stopping:
            for key, events in self.sel.select(max(0.0, next_tick - time.monotonic())):
                if key.data is None:
                    os.read(wake_r, 512)
                else:
                    key.data(key.fileobj, events)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_S
                for t in self.tickers:
                    t.tick(now)

    def _stop(self, *_args) -> None:
        self.stopping = True


class Splice:
    """One relayed TCP connection: client <-> upstream."""

    def __init__(self, relay: "TcpRelay", client: socket.socket, upstream: socket.socket):
        self.relay, self.loop = relay, relay.loop
        self.sock = {"c": client, "u": upstream}
        self.buf = {"c": bytearray(), "u": bytearray()}  # data to write TO that side
        self.eof = {"c": False, "u": False}               # that side sent EOF
        self.shut = {"c": False, "u": False}              # we half-closed towards that side
        self.connecting = True
        self.deadline = time.monotonic() + CONNECT_TIMEOUT_S
        self.closed = False
        self.handlers = {side: (lambda _sock, events, side=side: self.on_event(side, events))
                         for side in ("c", "u")}

    def on_event(self, side: str, events: int) -> None:
        try:
            if self.connecting:  # only the upstream is watched, for writability
                if self.sock["u"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return self.close()
                self.connecting = False
            if events & selectors.EVENT_WRITE:
                self.flush(side)
            if events & selectors.EVENT_READ:
                self.receive(side)
        except OSError:  # reset, refused, broken pipe: both sides go
            return self.close()
        self.update()

    def receive(self, side: str) -> None:
        peer = "u" if side == "c" else "c"
        try:
            data = self.sock[side].recv(BUFFER_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.eof[side] = True
            return
        self.buf[peer] += data
        self.flush(peer)  # most data goes straight through without another wake-up

    def flush(self, side: str) -> None:
        if self.buf[side] and not self.connecting:
            try:
                sent = self.sock[side].send(self.buf[side])
                del self.buf[side][:sent]
            except (BlockingIOError, InterruptedError):
                pass

    def update(self) -> None:
        for side, peer in (("c", "u"), ("u", "c")):
            if self.eof[peer] and not self.buf[side] and not self.shut[side]:
                self.shut[side] = True
                try:
                    self.sock[side].shutdown(socket.SHUT_WR)
                except OSError:
                    return self.close()
        if all(self.shut.values()):
            return self.close()
        for side, peer in (("c", "u"), ("u", "c")):
            events = 0
            if self.connecting:
                events = selectors.EVENT_WRITE if side == "u" else 0
            else:
                if not self.eof[side] and len(self.buf[peer]) < BUFFER_BYTES:
                    events |= selectors.EVENT_READ
                if self.buf[side]:
                    events |= selectors.EVENT_WRITE
            self.loop.watch(self.sock[side], events, self.handlers[side])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.sock.values():
            self.loop.forget(sock)
            sock.close()
        self.relay.conns.discard(self)


class TcpRelay:
    def __init__(self, loop: Loop, listen: tuple[str, int], target: tuple[str, int]):
        self.loop, self.listen, self.target = loop, listen, target
        self.server: socket.socket | None = None
        self.conns: set[Splice] = set()

    def __repr__(self) -> str:
        return (f"<TcpRelay {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:"
                f"{self.target[1]} conns={len(self.conns)}>")

    def start(self) -> None:
        s = socket.socket(_family(self.listen[0]), socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.listen)
        s.listen(512)
        s.setblocking(False)
        self.server = s
        self.loop.watch(s, selectors.EVENT_READ, self._accept)
        self.loop.tickers.append(self)

    def _accept(self, server: socket.socket, _events: int) -> None:
        for _ in range(64):
            try:
                client, _addr = server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: try again on the next wake-up
                return
            client.setblocking(False)
            upstream = socket.socket(_family(self.target[0]), socket.SOCK_STREAM)
            upstream.setblocking(False)
            err = upstream.connect_ex(self.target)
            if err not in (0, errno.EINPROGRESS):
                client.close()
                upstream.close()
                continue
            conn = Splice(self, client, upstream)
            self.conns.add(conn)
            conn.update()

    def tick(self, now: float) -> None:
        for conn in [c for c in self.conns if c.connecting and now > c.deadline]:
            conn.close()

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        if self.server is not None:
            self.loop.forget(self.server)
            self.server.close()


class UdpRelay:
    def __init__(self, loop: Loop, listen: tuple[str, int], target: tuple[str, int]):
        self.loop, self.listen, self.target = loop, listen, target
        self.sock: socket.socket | None = None
        self.flows: dict = {}  # client address -> [upstream socket, last activity]

    def __repr__(self) -> str:
        return (f"<UdpRelay {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:"
                f"{self.target[1]} flows={len(self.flows)}>")

    def start(self) -> None:
        s = socket.socket(_family(self.listen[0]), socket.SOCK_DGRAM)
        s.bind(self.listen)
        s.setblocking(False)
        self.sock = s
        self.loop.watch(s, selectors.EVENT_READ, self._from_client)
        self.loop.tickers.append(self)

    def _from_client(self, sock: socket.socket, _events: int) -> None:
        for _ in range(64):
            try:
                data, client = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier reply
            flow = self.flows.get(client)
            if flow is None:
                up = socket.socket(_family(self.target[0]), socket.SOCK_DGRAM)
                up.setblocking(False)
                try:
                    up.connect(self.target)
                except OSError:
                    up.close()
                    continue
                flow = self.flows[client] = [up, 0.0]
                self.loop.watch(up, selectors.EVENT_READ,
                                lambda s, _e, client=client: self._from_target(s, client))
            flow[1] = time.monotonic()
            try:
                flow[0].send(data)
            except OSError:
                pass  # dropped, as a datagram may be

    def _from_target(self, up: socket.socket, client) -> None:
        for _ in range(64):
            try:
                data = up.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNREFUSED from the target: the client times out, as without us
            try:
                self.sock.sendto(data, client)
            except OSError:
                pass
            if client in self.flows:
                self.flows[client][1] = time.monotonic()

    def tick(self, now: float) -> None:
        for client, (up, last) in list(self.flows.items()):
            if now - last > UDP_IDLE_S:
                self._drop(client)

    def _drop(self, client) -> None:
        up, _ = self.flows.pop(client)
        self.loop.forget(up)
        up.close()

    def close(self) -> None:
        for client in list(self.flows):
            self._drop(client)
        if self.sock is not None:
            self.loop.forget(self.sock)
            self.sock.close()


def run(tcp, udp) -> None:
    loop = Loop()
    relays = [TcpRelay(loop, *p) for p in tcp] + [UdpRelay(loop, *p) for p in udp]
    for r in relays:
        try:
            r.start()
        except OSError as exc:
            print(f"relay: cannot listen on {r.listen[0]}:{r.listen[1]}: {exc.strerror}; pick "
                  f"another port (meshctl up --help)", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
    print("relay ready: " + " ".join(repr(r) for r in relays), flush=True)
    try:
        loop.run()
    finally:
        for r in relays:
            r.close()


USAGE = "usage: relay.py [--tcp LISTEN=TARGET]... [--udp LISTEN=TARGET]..."


def parse_args(argv: list[str]) -> dict[str, list]:
    """`--tcp X`, `--tcp=X`, `--udp X`, `--udp=X`, repeated; ValueError says what is wrong."""
    pairs: dict[str, list] = {"--tcp": [], "--udp": []}
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag not in pairs:
            raise ValueError(f"unknown argument {arg!r}")
        if not eq:
            value = next(args, None)
            if value is None:
                raise ValueError(f"{flag} needs LISTEN=TARGET")
        try:
            pairs[flag].append(parse_pair(value))
        except ValueError as exc:
            raise ValueError(f"{flag} {exc}") from None
    return pairs


def main(argv=None) -> int:
    try:
        pairs = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"{USAGE}\nrelay.py: error: {exc}", file=sys.stderr)
        return 2
    run(pairs["--tcp"], pairs["--udp"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
