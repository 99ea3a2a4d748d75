"""The host-side relay of `meshctl up`: TCP and UDP forwarding between fixed address pairs.

    python -m meshnet.cluster.relay --tcp LISTEN=TARGET ... --udp LISTEN=TARGET ...

It publishes the node's ingress on host loopback, lets the node reach the API server (which
listens on loopback only) at the host end of the veth, and carries meshnet-dns's forwarded
questions to the upstream resolver. Bytes are copied as they come (TLS passes through
untouched); a UDP client gets one socket to the target per client address, dropped after
UDP_IDLE_S of silence. Prints one "relay ready" line once every listener is bound; SIGTERM
closes the listeners and the connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

UDP_IDLE_S = 30.0
BUFFER_BYTES = 64 * 1024


def parse_pair(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    listen, sep, target = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text}: expected LISTEN=TARGET (ADDR:PORT=ADDR:PORT)")
    return _hostport(listen), _hostport(target)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


class TcpRelay:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen, self.target = listen, target
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        return (f"<TcpRelay {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:"
                f"{self.target[1]} conns={len(self.conns)}>")

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, *self.listen, reuse_address=True)

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.conns.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), 5)
            except (OSError, asyncio.TimeoutError):
                writer.transport.abort()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            up_writer.close()
            writer.close()
        finally:
            self.conns.discard(task)

    async def close(self) -> None:
        if self.server:
            self.server.close()
        for task in list(self.conns):
            task.cancel()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: "UdpRelay", client):
        self.relay, self.client = relay, client
        self.transport = None
        self.idle = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.relay.transport.sendto(data, self.client)
        self.touch()

    def touch(self):
        if self.idle:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(UDP_IDLE_S, self.close)

    def close(self):
        self.relay.flows.pop(self.client, None)
        if self.transport:
            self.transport.close()


class UdpRelay(asyncio.DatagramProtocol):
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen, self.target = listen, target
        self.transport = None
        self.flows: dict = {}

    def __repr__(self) -> str:
        return (f"<UdpRelay {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:"
                f"{self.target[1]} flows={len(self.flows)}>")

    async def start(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self,
                                                                  local_addr=self.listen)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        flow = self.flows.get(addr)
        if flow is None:
            flow = _Upstream(self, addr)
            self.flows[addr] = flow
            asyncio.ensure_future(self._open(flow, data))
            return
        if flow.transport:
            flow.transport.sendto(data)
            flow.touch()

    async def _open(self, flow: _Upstream, first: bytes) -> None:
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: flow, remote_addr=self.target)
        except OSError:
            self.flows.pop(flow.client, None)
            return
        flow.transport.sendto(first)
        flow.touch()

    async def close(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport:
            self.transport.close()


async def run(tcp, udp) -> None:
    relays = [TcpRelay(*p) for p in tcp] + [UdpRelay(*p) for p in udp]
    for r in relays:
        try:
            await r.start()
        except OSError as exc:
            print(f"relay: cannot listen on {r.listen[0]}:{r.listen[1]}: {exc.strerror}; pick "
                  f"another port (meshctl up --help)", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("relay ready: " + " ".join(repr(r) for r in relays), flush=True)
    await stop.wait()
    for r in relays:
        await r.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="meshnet-relay", description=__doc__.split("\n")[0])
    p.add_argument("--tcp", type=parse_pair, action="append", default=[])
    p.add_argument("--udp", type=parse_pair, action="append", default=[])
    args = p.parse_args(argv)
    asyncio.run(run(args.tcp, args.udp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
