"""A backend for the end-to-end tests, run inside a pod namespace.

    python e2e_backend.py NAME PORT

TCP: sends `NAME\\n` on accept, then echoes until the client's EOF (a held connection is a
busy backend for least-conn). UDP on the same port: answers every datagram with `NAME`.
TCP on PORT+1 (a sink, on a thread with blocking sockets: fast enough for gigabytes): reads
to EOF, then answers `BYTES CRC32` of what it read and closes — the client can only see the
answer if its half-closed connection still carries data back.
Prints `ready` once all sockets are bound.
"""

import asyncio
import socket
import sys
import threading
import zlib


def sink(server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=sink_one, args=(conn,), daemon=True).start()


def sink_one(conn: socket.socket) -> None:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total, crc = 0, 0
    with conn:
        while n := conn.recv_into(view):
            total += n
            crc = zlib.crc32(view[:n], crc)
        conn.sendall(f"{total} {crc}\n".encode())


class Udp(asyncio.DatagramProtocol):
    def __init__(self, name: bytes):
        self.name = name

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(self.name, addr)


async def main(name: str, port: int) -> None:
    tag = name.encode()

    async def handle(reader, writer):
        writer.write(tag + b"\n")
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    threading.Thread(target=sink, args=(socket.create_server(("0.0.0.0", port + 1)),),
                     daemon=True).start()
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(tag), local_addr=("0.0.0.0", port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
