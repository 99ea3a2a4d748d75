"""The pure HTTP/1.1 head functions: header splitting, forwarding values, heads written."""

from __future__ import annotations

import ipaddress

import pytest

from meshnet.ingress import http1

SPLIT_CASES = [
    # (description, headers, special names expected, rest expected)
    ("plain headers pass in order", [(b"Host", b"a"), (b"Accept", b"*/*"), (b"X-A", b"1")],
     {b"host": b"a"}, [(b"Accept", b"*/*"), (b"X-A", b"1")]),
    ("hop-by-hop and forwarding headers are taken out",
     [(b"Connection", b"keep-alive"), (b"Keep-Alive", b"5"), (b"TE", b"trailers"),
      (b"X-Forwarded-For", b"6.6.6.6"), (b"Cookie", b"c=1")],
     {b"connection": b"keep-alive", b"keep-alive": b"5", b"te": b"trailers",
      b"x-forwarded-for": b"6.6.6.6"}, [(b"Cookie", b"c=1")]),
    ("headers named by Connection are hop-by-hop too (RFC 9110 7.6.1)",
     [(b"Connection", b"close, X-Secret"), (b"x-secret", b"s"), (b"X-Other", b"o")],
     {b"connection": b"close, X-Secret"}, [(b"X-Other", b"o")]),
    ("a lone Connection option, in any case, names no field",
     [(b"Connection", b"Close"), (b"Close", b"x"), (b"X-A", b"1")],
     {b"connection": b"Close"}, [(b"Close", b"x"), (b"X-A", b"1")]),
    ("several Connection headers are joined",
     [(b"Connection", b"X-A"), (b"Connection", b"X-B"), (b"X-A", b"1"), (b"X-B", b"2")],
     {b"connection": b"X-A,X-B"}, []),
    ("the first of a repeated special header wins; repeated plain ones all pass",
     [(b"Host", b"a"), (b"Host", b"b"), (b"Set-Cookie", b"1"), (b"Set-Cookie", b"2")],
     {b"host": b"a"}, [(b"Set-Cookie", b"1"), (b"Set-Cookie", b"2")]),
    ("names are matched case-insensitively", [(b"CONTENT-LENGTH", b"3"), (b"eXpEcT", b"x")],
     {b"content-length": b"3", b"expect": b"x"}, []),
]


@pytest.mark.parametrize("desc,headers,special,rest", SPLIT_CASES,
                         ids=[c[0] for c in SPLIT_CASES])
def test_split_request_headers(desc, headers, special, rest):
    assert http1.split_headers(headers, http1.REQUEST_SPECIAL) == (special, rest)


def trusted_in(*cidrs):
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return lambda addr: any(ipaddress.ip_address(addr) in n for n in nets)


FORWARDED_CASES = [
    # (description, incoming X-Forwarded-For, peer, trusted networks, (XFF, X-Real-IP))
    ("no incoming header: the peer", None, "192.0.2.1", (), (b"192.0.2.1", b"192.0.2.1")),
    ("a trusted load balancer: its list is kept, the peer appended, the client is real",
     b"203.0.113.9", "10.0.0.5", ("10.0.0.0/8",),
     (b"203.0.113.9, 10.0.0.5", b"203.0.113.9")),
    ("recursive: trusted hops on the right are skipped",
     b"203.0.113.9, 10.1.1.1, 10.2.2.2", "10.0.0.5", ("10.0.0.0/8",),
     (b"203.0.113.9, 10.1.1.1, 10.2.2.2, 10.0.0.5", b"203.0.113.9")),
    ("a spoofed left part stops at the rightmost untrusted address",
     b"1.1.1.1, 198.51.100.7", "10.0.0.5", ("10.0.0.0/8",),
     (b"1.1.1.1, 198.51.100.7, 10.0.0.5", b"198.51.100.7")),
    ("all trusted: the leftmost", b"10.9.9.9", "10.0.0.5", ("10.0.0.0/8",),
     (b"10.9.9.9, 10.0.0.5", b"10.9.9.9")),
]


@pytest.mark.parametrize("desc,incoming,peer,nets,expected", FORWARDED_CASES,
                         ids=[c[0] for c in FORWARDED_CASES])
def test_forwarded_for(desc, incoming, peer, nets, expected):
    assert http1.forwarded_for(incoming, peer, trusted_in(*nets)) == expected


def test_upstream_request_head_rewrites_framing_and_forwarding():
    special, rest = http1.split_headers(
        [(b"Host", b"a.com"), (b"Transfer-Encoding", b"chunked"), (b"Accept", b"*/*"),
         (b"Connection", b"keep-alive"), (b"X-Real-IP", b"6.6.6.6")], http1.REQUEST_SPECIAL)
    added = http1.forwarded_headers(b"1.2.3.4", b"1.2.3.4", b"https", b"a.com", b"443") + \
        http1.framing_headers(None, True, None)
    head = http1.upstream_request_head(b"POST", b"/p?q", rest, special[b"host"], added)
    assert head == (b"POST /p?q HTTP/1.1\r\nHost: a.com\r\nAccept: */*\r\n"
                    b"X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
                    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: a.com\r\n"
                    b"X-Forwarded-Port: 443\r\nTransfer-Encoding: chunked\r\n\r\n")


FRAMING_CASES = [
    # (description, content_length, chunked, upgrade, lines expected)
    ("no body, no upgrade", None, False, None, b""),
    ("a length wins over chunked", b"5", True, None, b"Content-Length: 5\r\n"),
    ("chunked", None, True, None, b"Transfer-Encoding: chunked\r\n"),
    ("upgrade", None, False, b"websocket",
     b"Connection: upgrade\r\nUpgrade: websocket\r\n"),
]


@pytest.mark.parametrize("desc,length,chunked,upgrade,expected", FRAMING_CASES,
                         ids=[c[0] for c in FRAMING_CASES])
def test_framing_headers(desc, length, chunked, upgrade, expected):
    assert http1.framing_headers(length, chunked, upgrade) == expected


RESPONSE_CASES = [
    # (description, backend headers, framing, keep_alive, expected head after the status)
    ("length kept; the backend's Server and Date are kept",
     [(b"Server", b"b"), (b"Date", b"d"), (b"Content-Length", b"2"), (b"Connection", b"close")],
     "length", True, b"Server: b\r\nDate: d\r\nContent-Length: 2\r\n\r\n"),
    ("re-chunked for the client: Content-Length is never sent with it",
     [(b"Server", b"b"), (b"Date", b"d"), (b"Content-Length", b"2")], "chunked", True,
     b"Server: b\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("close-delimited body", [(b"Server", b"b"), (b"Date", b"d"), (b"X-A", b"1")], "close",
     False, b"Server: b\r\nDate: d\r\nX-A: 1\r\nConnection: close\r\n\r\n"),
]


@pytest.mark.parametrize("desc,headers,framing,keep_alive,expected", RESPONSE_CASES,
                         ids=[c[0] for c in RESPONSE_CASES])
def test_response_head(desc, headers, framing, keep_alive, expected):
    special, rest = http1.split_headers(headers, http1.RESPONSE_SPECIAL)
    head = http1.response_head(200, b"OK", rest, special, framing=framing,
                               keep_alive=keep_alive)
    assert head == b"HTTP/1.1 200 OK\r\n" + expected


def test_response_head_adds_server_and_date_when_missing():
    head = http1.response_head(204, b"", [], {}, framing="none", keep_alive=True)
    assert head.startswith(b"HTTP/1.1 204 \r\nServer: meshnet-ingress\r\nDate: ")


MAX = http1.Memo.MAX_ENTRIES
FULL = {b"%d" % i: 0 for i in range(MAX)}
MEMO_CASES = [
    # (description, entries already in the memo, hits counted since it last filled, message
    #  to remember, memo afterwards, messages it then rests for)
    ("a message is kept", {}, 0, b"GET / HTTP/1.1\r\n\r\n", {b"GET / HTTP/1.1\r\n\r\n": 1}, 0),
    ("one of MAX_MESSAGE_BYTES is kept", {}, 0, b"x" * http1.Memo.MAX_MESSAGE_BYTES,
     {b"x" * http1.Memo.MAX_MESSAGE_BYTES: 1}, 0),
    ("a longer one is not", {b"a": 0}, 0, b"x" * (http1.Memo.MAX_MESSAGE_BYTES + 1), {b"a": 0}, 0),
    ("below MAX_ENTRIES the others stay", dict(list(FULL.items())[1:]), 0, b"new",
     {**dict(list(FULL.items())[1:]), b"new": 1}, 0),
    ("at MAX_ENTRIES, with as many hits as entries: all dropped, no rest", FULL, MAX, b"new",
     {b"new": 1}, 0),
    ("at MAX_ENTRIES with fewer hits than entries: dropped, and a rest", FULL, MAX - 1, b"new",
     {b"new": 1}, http1.Memo.REST_MESSAGES),
]


@pytest.mark.parametrize("desc,before,hits,message,after,resting", MEMO_CASES,
                         ids=[c[0] for c in MEMO_CASES])
def test_memo_is_bounded_and_rests_when_messages_do_not_repeat(desc, before, hits, message,
                                                               after, resting):
    memo = http1.Memo()
    memo.update(before)
    memo.hits = hits
    memo.remember(message, 1)
    assert dict(memo) == after, desc
    assert memo.resting == resting, desc
    assert memo.hits == (hits if len(before) < MAX else 0), desc
