"""What reaches the client, byte for byte, over real sockets: backend responses of every
shape (a scripted backend on loopback writes exact bytes, split across reads where the case
says so) and whether both connections stay usable after them; TLS records and session
resumption on the HTTPS listener."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl

import pytest

from meshnet.ingress.certs import TLSStore, compile_certificates
from meshnet.ingress.http1 import Memo
from meshnet.ingress.proxy import Proxy
from meshnet.ingress.routes import compile_routes
from meshnet.ingress.server import ClientConnection, start_listener

from meshnet.ingress.views import view_ingress, view_secret

from fakes import endpoints, ingress, path, service, views
from pki import CA, tls_secret

PROXY_HOST, BACKEND_HOST = "127.0.0.2", "127.0.0.13"
PAUSE_S = 0.05  # between the pieces of a script: each arrives in a read of its own


class ScriptedBackend:
    """Answers each request head with the next script: byte strings written one by one with
    a pause between; `None` in a script closes the connection there."""

    def __init__(self):
        self.scripts: list[list[bytes | None]] = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> "ScriptedBackend":
        self.server = await asyncio.start_server(self._serve, BACKEND_HOST, 0)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while self.scripts:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                for piece in self.scripts.pop(0):
                    if piece is None:
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(PAUSE_S)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def relay():
    backend = await ScriptedBackend().start()
    proxy = Proxy()
    proxy.table = compile_routes(*views(
        [ingress("i", {"a.com": [path("/", "web")]})], [service("web")],
        [endpoints("web", [BACKEND_HOST], {"http": backend.port})]))[0]
    server = await start_listener(proxy, PROXY_HOST, 0)
    yield proxy, backend, server.sockets[0].getsockname()[1]
    server.close()
    for conn in list(proxy.connections):
        conn.transport.abort()
    proxy.pool.close()
    backend.server.close()


async def exchange(reader, writer, request: bytes, expected_len: int) -> bytes:
    writer.write(request)
    return await asyncio.wait_for(reader.readexactly(expected_len), 5)


HEAD = b"Server: b\r\nDate: d\r\n"
GET = b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n"

# (description, request, backend script, exact bytes the client gets, whether the backend's
# head is remembered -- a whole Content-Length response in one read, with a Date)
CASES = [
    ("head and body split across reads",
     GET, [b"HTTP/1.1 200 OK\r\nServer: b\r\n", b"Date: d\r\nContent-Length: 5\r\n\r\nhe",
           b"llo"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 5\r\n\r\nhello", False),
    ("the status line alone in a read, the reason phrase kept",
     GET, [b"HTTP/1.1 200 All Good\r\n", HEAD + b"Content-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 All Good\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok", False),
    ("chunked from the backend, chunked again for the client",
     GET, [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
           b"0\r\n\r\n"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
     b"0\r\n\r\n", False),
    ("1xx interim responses are dropped, the final one forwarded",
     GET, [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
           b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + HEAD +
           b"Content-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok", False),
    ("HEAD: the head only, Content-Length as the backend said",
     GET.replace(b"GET", b"HEAD"), [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 5\r\n\r\n"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 5\r\n\r\n", False),
    ("204 has no body", GET, [b"HTTP/1.1 204 No Content\r\n" + HEAD + b"\r\n"],
     b"HTTP/1.1 204 No Content\r\n" + HEAD + b"\r\n", False),
    ("304 has no body, whatever Content-Length says",
     GET, [b"HTTP/1.1 304 Not Modified\r\n" + HEAD + b"Content-Length: 9\r\n\r\n"],
     b"HTTP/1.1 304 Not Modified\r\n" + HEAD + b"Content-Length: 9\r\n\r\n", False),
    ("hop-by-hop fields, and those Connection names, are dropped",
     GET, [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: keep-alive, X-Secret\r\n"
           b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"X-Kept: 1\r\nContent-Length: 2\r\n\r\nok", True),
    ("several Connection headers name fields; repeated end-to-end fields all pass",
     GET, [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: X-A\r\nSet-Cookie: 1\r\n"
           b"connection: x-b\r\nX-A: a\r\nX-B: b\r\nSet-Cookie: 2\r\n"
           b"Content-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Set-Cookie: 1\r\nSet-Cookie: 2\r\n"
     b"Content-Length: 2\r\n\r\nok", True),
    ("a response without Date: ours, which changes, so not remembered",
     GET, [b"HTTP/1.1 200 OK\r\nServer: b\r\nContent-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 OK\r\nServer: b\r\nDate: %b\r\nContent-Length: 2\r\n\r\nok", False),
    ("a backend closing after its response: not remembered (the next one would reuse it)",
     GET, [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: close\r\nContent-Length: 2\r\n\r\nok"],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok", False),
    ("an HTTP/1.0 body delimited by the close, chunked for the HTTP/1.1 client",
     GET, [b"HTTP/1.0 200 OK\r\n" + HEAD + b"\r\nabc", None],
     b"HTTP/1.1 200 OK\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
     b"0\r\n\r\n", False),
]
NEXT = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 4\r\n\r\nnext"


@pytest.mark.parametrize("desc,request_,script,expected,remembered", CASES,
                         ids=[c[0] for c in CASES])
async def test_response_shapes_and_keep_alive_after_them(relay, desc, request_, script,
                                                        expected, remembered):
    """Each shape twice (the second time from the memo of responses where it was remembered),
    then a plain response: the bytes are the same either way, and both connections stay
    usable after them."""
    proxy, backend, port = relay
    backend.scripts += [script, script, [NEXT]]
    closes = None in script or b"Connection: close" in script[0]
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        for _ in range(2):
            if b"%b" in expected:  # our Date
                answer = await exchange(reader, writer, request_, len(expected) - 2 + 29)
                date = answer.split(b"Date: ")[1][:29]
                assert answer == expected % date, desc
                assert date[-4:] == b" GMT" and date[3:5] == b", ", desc
            else:
                assert await exchange(reader, writer, request_, len(expected)) == expected, desc
        assert bool(proxy.pool.responses) == remembered, desc
        assert await exchange(reader, writer, GET, len(NEXT)) == NEXT, desc
    finally:
        writer.close()
    # The backend connection was reused unless the response ended with its close.
    assert backend.connections == (3 if closes else 1), desc
    assert backend.requests[0].startswith(request_.split(b"\r\n")[0] + b"\r\n")
    assert backend.requests[0] == backend.requests[1]


async def test_backend_asking_to_close_is_not_reused_but_the_client_stays(relay):
    proxy, backend, port = relay
    backend.scripts += [[b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: close\r\n"
                         b"Content-Length: 2\r\n\r\nok"],
                        [b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"]]
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        expected = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"
        assert await exchange(reader, writer, GET, len(expected)) == expected
        assert await exchange(reader, writer, GET, len(expected)) == expected
    finally:
        writer.close()
    assert backend.connections == 2 and proxy.pool.connects == 2


async def test_backend_closing_mid_body_aborts_the_client(relay):
    """A truncated response must not look complete: the client connection is cut."""
    proxy, backend, port = relay
    backend.scripts.append([b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 10\r\n\r\n",
                            b"half", None])
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    writer.write(GET)
    try:
        out = await asyncio.wait_for(reader.read(-1), 5)
    except ConnectionResetError:
        out = b"reset"
    finally:
        writer.close()
    assert out == b"reset" or out.endswith(b"\r\n\r\nhalf"), out  # 4 of 10 bytes, then cut
    assert proxy.upstream_failures.get("response") == 1


async def test_accepted_connections_have_nodelay(relay):
    """The proxy relies on the event loop setting TCP_NODELAY (it does not set it itself)."""
    proxy, backend, port = relay
    backend.scripts.append([b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"])
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        await exchange(reader, writer, GET, 10)
        (conn,) = proxy.connections
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        (upstream,) = proxy.pool.idle[(BACKEND_HOST, backend.port)]
        sock = upstream.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        writer.close()


async def test_a_table_swap_reroutes_a_path_already_seen(relay):
    """Routes are cached per (Host, path); publishing a table drops the cache."""
    proxy, backend, port = relay
    body = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"
    backend.scripts.append([body])
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        assert await exchange(reader, writer, GET, len(body)) == body
        proxy.table = compile_routes(*views([ingress("j", {"b.com": [path("/", "web")]})],
                                            [service("web")],
                                            [endpoints("web", [BACKEND_HOST],
                                                       {"http": backend.port})]))[0]
        writer.write(GET)  # a.com/ is not routed any more
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 404 ")
    finally:
        writer.close()


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in `data` (which holds whole records)."""
    records, at = [], 0
    while at < len(data):
        records.append((data[at], int.from_bytes(data[at + 3:at + 5], "big")))
        at += 5 + records[-1][1]
    return records


async def test_a_small_response_is_one_tls_record(relay):
    """Head and body are written together: over TLS one record, not one per piece."""
    proxy, backend, _ = relay
    ca = CA()
    cert, key = ca.issue("a.com")
    tls = TLSStore(cert, key)
    server = await start_listener(proxy, PROXY_HOST, 0, tls.listener_context)
    port = server.sockets[0].getsockname()[1]
    body = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"
    backend.scripts += [[body], [body]]
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = ctx.wrap_bio(incoming, outgoing, server_hostname="a.com")
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)

    async def round_trip() -> bytes:
        """Flush what the client has to send, then read until the response is complete;
        returns the raw TLS bytes that arrived."""
        raw, plain = b"", b""
        writer.write(outgoing.read())
        while not plain.endswith(b"ok"):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "the proxy closed the connection"
            raw += chunk
            incoming.write(chunk)
            try:
                while True:  # one record per read()
                    plain += tls_client.read(65536)
            except ssl.SSLWantReadError:
                pass
            writer.write(outgoing.read())
        return raw

    try:
        while True:
            try:
                tls_client.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                incoming.write(await asyncio.wait_for(reader.read(65536), 5))
        tls_client.write(GET)
        await round_trip()  # the first answer may share reads with session tickets
        tls_client.write(GET)
        raw = await round_trip()
        assert tls_records(raw) == [(23, len(body) + 17)]  # one application_data record
    finally:
        writer.close()
        server.close()


async def test_tls_sessions_resume_whichever_certificate_sni_picks(relay):
    """A client that reconnects resumes its TLS session (as browsers and wrk do, and as nginx
    allows), also when the SNI callback switched the connection to an Ingress's certificate."""
    proxy, backend, _ = relay
    ca = CA()
    store = TLSStore(*ca.issue("default.test"))
    secret = tls_secret("a-cert", *ca.issue("a.com"))
    table, problems = compile_certificates(
        [view_ingress(ingress("i", {"a.com": [path("/", "web")]}, tls=[(["a.com"], "a-cert")]))],
        {"default/a-cert": view_secret(secret)})
    assert problems == ()
    store.update(table)
    server = await start_listener(proxy, PROXY_HOST, 0, store.listener_context)
    port = server.sockets[0].getsockname()[1]
    body = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"

    def connect_twice(sni: str | None) -> list[tuple[str, bool]]:
        ctx = ssl.create_default_context(cadata=ca.pem.decode())
        ctx.check_hostname = False  # the default certificate is not for the name asked
        session, seen = None, []
        for _ in range(2):
            with socket.create_connection((PROXY_HOST, port), timeout=5) as sock, \
                    ctx.wrap_socket(sock, server_hostname=sni, session=session) as tls:
                tls.sendall(GET)
                answer = b""
                while not answer.endswith(b"ok"):  # reading takes the session tickets in
                    answer += tls.recv(65536)
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                seen.append((subject["commonName"], tls.session_reused))
                session = tls.session
        return seen

    try:
        for sni, cn in (("a.com", "a.com"), ("b.com", "default.test"), (None, "default.test")):
            backend.scripts += [[body], [body]]
            seen = await asyncio.get_running_loop().run_in_executor(None, connect_twice, sni)
            assert seen == [(cn, False), (cn, True)], sni
    finally:
        server.close()


async def test_closed_client_connections_leave_no_cycle_for_the_gc(relay):
    """A finished connection is freed by reference counting the moment it closes: the
    parser's bound methods are let go, or every connection -- over TLS with its SSL objects
    -- would wait for a garbage collection."""
    proxy, backend, port = relay
    body = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"
    close = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage to look at
    try:
        for _ in range(20):
            backend.scripts.append([body])
            reader, writer = await asyncio.open_connection(PROXY_HOST, port)
            writer.write(close)
            assert (await asyncio.wait_for(reader.read(-1), 5)).endswith(b"ok")
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.1)  # the proxy side's connection_lost runs
        assert not proxy.connections
        gc.collect()
        assert [o for o in gc.garbage if isinstance(o, ClientConnection)] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_http10_keep_alive_is_announced_and_honoured(relay):
    """An HTTP/1.0 client keeps its connection only when it asked (`Connection: keep-alive`)
    and the answer says so too; without it, the answer closes the connection."""
    proxy, backend, port = relay
    body = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"
    backend.scripts += [[body], [body], [body]]
    get10 = b"GET / HTTP/1.0\r\nHost: a.com\r\nConnection: keep-alive\r\n\r\n"
    expected = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n" \
        b"Connection: keep-alive\r\n\r\nok"
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        assert await exchange(reader, writer, get10, len(expected)) == expected
        assert await exchange(reader, writer, get10, len(expected)) == expected
        # Not routed: the error page keeps the connection as well.
        head = await exchange(reader, writer, get10.replace(b"a.com", b"nowhere.com"), 17)
        assert head == b"HTTP/1.1 404 Not "
        rest = await asyncio.wait_for(reader.readuntil(b"</html>\r\n"), 5)
        assert b"\r\nConnection: keep-alive\r\n" in rest
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: a.com\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 5)  # the proxy closes
        assert answer == b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n" \
            b"Connection: close\r\n\r\nok"
    finally:
        writer.close()


# -- the memo of requests (ClientConnection.data_received) ---------------------------------------

OK = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: 2\r\n\r\nok"


async def test_a_remembered_request_reaches_the_backend_as_parsed(relay):
    """A read equal to a whole request read before is not parsed again: the same head
    reaches the backend, on the same connection and on another one."""
    proxy, backend, port = relay
    backend.scripts += [[OK]] * 3
    for requests in (2, 1):
        reader, writer = await asyncio.open_connection(PROXY_HOST, port)
        try:
            for _ in range(requests):
                assert await exchange(reader, writer, GET, len(OK)) == OK
        finally:
            writer.close()
    assert list(proxy.request_heads) == [GET]
    assert len(backend.requests) == 3 and len(set(backend.requests)) == 1
    assert backend.requests[0].startswith(GET[:-2])


@pytest.mark.parametrize("desc,first,answer,backend_sees", [
    ("the rest of a head whose first read named a header: still that head",
     b"GET /x HTTP/1.1\r\nX-A: ", OK, b"GET /x HTTP/1.1\r\n"),
    ("after a method's first letters: what llhttp makes of the whole (a bad method)",
     b"GE", b"HTTP/1.1 400 Bad Request\r\n", None),
], ids=["header", "method"])
async def test_a_read_that_ends_a_request_is_never_taken_for_a_remembered_one(
        relay, desc, first, answer, backend_sees):
    """The memo answers only reads that start a request: bytes equal to a remembered
    request, arriving after part of another, are the rest of that other one."""
    proxy, backend, port = relay
    admin = b"GET /admin HTTP/1.1\r\nHost: a.com\r\n\r\n"
    backend.scripts += [[OK], [OK]]
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        assert await exchange(reader, writer, admin, len(OK)) == OK
    finally:
        writer.close()
    assert admin in proxy.request_heads
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        writer.write(first)
        await asyncio.sleep(PAUSE_S)  # a read of its own
        assert await exchange(reader, writer, admin, len(answer)) == answer, desc
    finally:
        writer.close()
    if backend_sees is None:
        assert len(backend.requests) == 1, desc
    else:
        assert backend.requests[1].startswith(backend_sees), desc
        assert b"\r\nX-A: GET /admin HTTP/1.1\r\n" in backend.requests[1], desc


async def test_pipelined_requests_and_requests_with_a_body_are_parsed_every_time(relay):
    proxy, backend, port = relay
    post = b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 0\r\n\r\n"
    backend.scripts += [[OK]] * 6
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        for _ in range(2):
            assert await exchange(reader, writer, GET + GET, 2 * len(OK)) == OK + OK
            assert await exchange(reader, writer, post, len(OK)) == OK
    finally:
        writer.close()
    assert proxy.request_heads == {}
    assert [r.split(b"\r\n")[0] for r in backend.requests] == \
        [b"GET / HTTP/1.1"] * 2 + [b"POST / HTTP/1.1"] + [b"GET / HTTP/1.1"] * 2 + \
        [b"POST / HTTP/1.1"]
    assert b"\r\nContent-Length: 0\r\n" in backend.requests[-1]


async def test_a_remembered_request_that_closes_reads_nothing_after_it(relay):
    """After `Connection: close` nothing more is read, as nginx does: the request is
    answered and what follows it discarded (not answered 400 because llhttp refuses data
    after such a request), whether the request was parsed or remembered."""
    proxy, backend, port = relay
    close = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    closed = OK.replace(b"\r\n\r\nok", b"\r\nConnection: close\r\n\r\nok")
    backend.scripts += [[b"", OK], [b"", OK], [OK]]  # answers after PAUSE_S
    for _ in range(2):
        reader, writer = await asyncio.open_connection(PROXY_HOST, port)
        try:
            writer.write(close)
            await asyncio.sleep(PAUSE_S / 5)
            writer.write(GET)  # before the answer
            assert await asyncio.wait_for(reader.read(-1), 5) == closed
        finally:
            writer.close()
    assert close in proxy.request_heads
    assert len(backend.requests) == 2


# -- the memo of responses (UpstreamConnection.data_received) ------------------------------------

async def test_a_read_that_ends_a_response_is_never_taken_for_a_remembered_one(relay):
    """Bytes equal to a remembered response, arriving after part of another response's
    head, are the rest of that head (here, a header's value and the fields after it)."""
    proxy, backend, port = relay
    backend.scripts += [[OK], [b"HTTP/1.1 200 OK\r\nX-A: ", OK]]
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        assert await exchange(reader, writer, GET, len(OK)) == OK
        assert list(proxy.pool.responses) == [OK]
        expected = b"HTTP/1.1 200 OK\r\n" + HEAD + b"X-A: HTTP/1.1 200 OK\r\n" \
            b"Content-Length: 2\r\n\r\nok"
        assert await exchange(reader, writer, GET, len(expected)) == expected
    finally:
        writer.close()


async def test_a_remembered_response_head_is_rewritten_for_each_kind_of_client(relay):
    """The head sent depends on the client too: kept connections, closing ones and
    HTTP/1.0 ones each get theirs, remembered or not."""
    proxy, backend, port = relay
    backend.scripts += [[OK]] * 6
    get10 = b"GET / HTTP/1.0\r\nHost: a.com\r\nConnection: keep-alive\r\n\r\n"
    close = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    ok10 = OK.replace(b"\r\n\r\nok", b"\r\nConnection: keep-alive\r\n\r\nok")
    closed = OK.replace(b"\r\n\r\nok", b"\r\nConnection: close\r\n\r\nok")
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        for request, answer in ((GET, OK), (get10, ok10), (GET, OK), (get10, ok10)):
            assert await exchange(reader, writer, request, len(answer)) == answer
    finally:
        writer.close()
    for _ in range(2):
        reader, writer = await asyncio.open_connection(PROXY_HOST, port)
        try:
            writer.write(close)
            assert await asyncio.wait_for(reader.read(-1), 5) == closed
        finally:
            writer.close()
    assert list(proxy.pool.responses) == list(proxy.pool.closing_responses) == [OK]


# -- both memos --------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["requests", "responses"])
async def test_a_memo_rests_while_messages_do_not_repeat(relay, monkeypatch, side):
    """A memo that fills with fewer hits than entries rests: the next REST_MESSAGES
    messages are parsed, none looked up or remembered; then it works again."""
    proxy, backend, port = relay
    monkeypatch.setattr(Memo, "MAX_ENTRIES", 2)
    monkeypatch.setattr(Memo, "REST_MESSAGES", 3)
    if side == "requests":
        memo = proxy.request_heads
        message = [GET.replace(b"GET / ", b"GET /%d " % i) for i in range(4)]
    else:
        memo = proxy.pool.responses
        message = [OK.replace(b"Content-Length", b"X-N: %d\r\nContent-Length" % i)
                   for i in range(4)]
    order = [message[i] for i in (1, 2, 3, 3, 3, 3, 3, 0)]
    backend.scripts += [[OK if side == "requests" else m] for m in order]
    seen = []
    reader, writer = await asyncio.open_connection(PROXY_HOST, port)
    try:
        for m in order:
            request, answer = (m, OK) if side == "requests" else (GET, m)
            assert await exchange(reader, writer, request, len(answer)) == answer
            seen.append((sorted(memo), memo.hits, memo.resting))
    finally:
        writer.close()
    assert seen == [
        ([message[1]], 0, 0),
        ([message[1], message[2]], 0, 0),
        ([message[3]], 0, 3),  # full with no hit: emptied, and a rest
        ([message[3]], 0, 2),
        ([message[3]], 0, 1),
        ([message[3]], 0, 0),
        ([message[3]], 1, 0),  # found again
        ([message[0], message[3]], 1, 0),
    ]
    assert len(backend.requests) == 8
