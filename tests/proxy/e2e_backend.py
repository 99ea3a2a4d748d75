"""A backend for the end-to-end tests, run inside a pod namespace.

    python e2e_backend.py NAME PORT

TCP: sends `NAME\\n` on accept, then echoes until the client's EOF (a held connection is a
busy backend for least-conn). UDP on the same port: answers every datagram with `NAME`.
Prints `ready` once both sockets are bound.
"""

import asyncio
import sys


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
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(tag), local_addr=("0.0.0.0", port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
