"""httptools vs h11 on one typical request head: why the ingress parses with httptools.

Run: pip install --target /tmp/h11pkg h11; .venv/bin/python bench/bench_ingress_parsers.py
(h11 is not a meshnet dependency; it is only measured here.)
"""
import sys, timeit
sys.path.insert(0, "/tmp/h11pkg")
import h11, httptools
REQ = (b"GET /api/v1/items?page=2&limit=50 HTTP/1.1\r\nHost: shop.example.com\r\n"
       b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) curl/8.0\r\nAccept: */*\r\n"
       b"Accept-Encoding: gzip, deflate\r\nCookie: session=abcdef0123456789abcdef\r\n"
       b"X-Request-Id: 9f1c2a7e-0000-4000-8000-123456789abc\r\n\r\n")
class P:
    def on_url(self, u): pass
    def on_header(self, n, v): pass
    def on_headers_complete(self): pass
    def on_message_complete(self): pass
def ht():
    httptools.HttpRequestParser(P()).feed_data(REQ)
def hh():
    c = h11.Connection(h11.SERVER); c.receive_data(REQ); c.next_event(); c.next_event()
n = 20000
for name, f in (("httptools", ht), ("h11", hh)):
    t = min(timeit.repeat(f, number=n, repeat=3)) / n
    print(f"{name}: {t*1e6:.1f} us per {len(REQ)}-byte request")
