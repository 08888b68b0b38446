"""Request-parser benchmark: lowserver's parser against aiohttp's pure-Python parser and h11.

In-process, no sockets, no event loop. Each parser gets the very same byte stream, in the
very same pieces, and must report the same number of complete requests (head and body):

    browser    GET with 11 browser-like headers, one request per feed (keep-alive traffic)
    post1k     POST with a 1 KiB Content-Length body, one request per feed
    chunked    POST with a chunked body (4 chunks, a chunk extension, a trailer), one per feed
    pipeline16 batches of 16 requests (browser GETs and 1 KiB POSTs) in one feed each

    python benchmarks/parser.py                 # ~1 minute; prints a Markdown table
    python benchmarks/parser.py -n 20000 --repeat 3 --parsers lowserver,aiohttp-py

aiohttp's parser runs as `aiohttp.http_parser.HttpRequestParserPy` (its C helpers, multidict
and yarl keep their C builds, as for AIOHTTP_NO_EXTENSIONS=1); `aiohttp-c` (llhttp) is there
for reference. h11 is driven as a server must drive it: after each request, a minimal
response and `start_next_cycle()`. Targets (issue 2): ≥ 2× aiohttp-py and ≥ 3× h11.
A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BROWSER = (b"GET /static/app/main.css?v=3.2.1 HTTP/1.1\r\n"
           b"Host: www.example.com\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
           b"Accept: text/css,*/*;q=0.1\r\n"
           b"Accept-Language: en-GB,en;q=0.5\r\n"
           b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
           b"Connection: keep-alive\r\n"
           b"Referer: https://www.example.com/app/\r\n"
           b"Cookie: session=2b1f0c3e9a7d4e5f8a6b; theme=dark; lang=en\r\n"
           b"Sec-Fetch-Dest: style\r\n"
           b"Sec-Fetch-Mode: no-cors\r\n"
           b"Sec-Fetch-Site: same-origin\r\n\r\n")
POST1K = (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
          b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024)
CHUNKED = (b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"100;part=1\r\n" + b"a" * 256 + b"\r\n"
           + b"100\r\n" + b"b" * 256 + b"\r\n"
           + b"100\r\n" + b"c" * 256 + b"\r\n"
           + b"100\r\n" + b"d" * 256 + b"\r\n"
           + b"0\r\nX-Checksum: 1234\r\n\r\n")
BATCH16 = (BROWSER * 3 + POST1K) * 4

SHAPES = {  # name -> (one feed, requests in it)
    "browser": (BROWSER, 1),
    "post1k": (POST1K, 1),
    "chunked": (CHUNKED, 1),
    "pipeline16": (BATCH16, 16),
}


# --- adapters: make() -> feed(chunk) -> number of complete requests --------------------

def lowserver_parser():
    from lowserver.http_parser import EndOfMessage, HttpRequestParser
    parser = HttpRequestParser()

    def feed(chunk):
        done = 0
        for event in parser.feed(chunk):
            if event.__class__ is EndOfMessage:
                done += 1
            elif isinstance(event, Exception):
                raise event
        return done
    return feed


def _aiohttp(cls):
    from aiohttp.base_protocol import BaseProtocol
    loop = asyncio.new_event_loop()  # never run: the parser only keeps it
    parser = cls(BaseProtocol(loop), loop, 2**16)

    def feed(chunk):
        messages, _upgraded, _tail = parser.feed_data(chunk)
        done = 0
        for _message, payload in messages:  # a request is complete when its payload is
            if payload.is_eof():
                done += 1
            else:
                pending.append(payload)
        while pending and pending[0].is_eof():
            pending.pop(0)
            done += 1
        return done
    pending: list = []
    return feed


def aiohttp_py():
    from aiohttp.http_parser import HttpRequestParserPy
    return _aiohttp(HttpRequestParserPy)


def aiohttp_c():
    from aiohttp.http_parser import HttpRequestParserC
    return _aiohttp(HttpRequestParserC)


def h11_server():
    import h11
    conn = h11.Connection(h11.SERVER)
    need_data, end_of_message = h11.NEED_DATA, h11.EndOfMessage
    response = h11.Response(status_code=200, headers=[(b"content-length", b"0")])
    eom = h11.EndOfMessage()

    def feed(chunk):
        conn.receive_data(chunk)
        done = 0
        while True:
            event = conn.next_event()
            if event is need_data:
                return done
            if type(event) is end_of_message:
                done += 1
                conn.send(response)
                conn.send(eom)
                conn.start_next_cycle()
    return feed


PARSERS = {"lowserver": lowserver_parser, "aiohttp-py": aiohttp_py,
           "aiohttp-c": aiohttp_c, "h11": h11_server}


def one_pass(make, chunk: bytes, per_chunk: int, feeds: int) -> float:
    feed = make()
    done = 0
    start = time.perf_counter()
    for _ in range(feeds):
        done += feed(chunk)
    elapsed = time.perf_counter() - start
    if done != per_chunk * feeds:
        raise RuntimeError(f"parsed {done} requests, expected {per_chunk * feeds}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parsers", default="lowserver,aiohttp-py,h11,aiohttp-c")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("-n", type=int, default=30000, help="requests per timed pass")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes (the median counts)")
    args = ap.parse_args(argv)
    results: dict[tuple[str, str], float] = {}
    for shape in args.shapes.split(","):
        chunk, per_chunk = SHAPES[shape]
        feeds = max(1, args.n // per_chunk)
        for name in args.parsers.split(","):
            make = PARSERS[name]
            one_pass(make, chunk, per_chunk, max(1, 2000 // per_chunk))  # warm-up
            gc.collect()
            times = [one_pass(make, chunk, per_chunk, feeds) for _ in range(args.repeat)]
            rate = feeds * per_chunk / statistics.median(times)
            results[shape, name] = rate
            print(f"{shape:11s} {name:11s} {rate:>10,.0f} req/s", file=sys.stderr)
    names = args.parsers.split(",")
    print("\n| shape | " + " | ".join(f"{n} req/s" for n in names)
          + " | lowserver / aiohttp-py | lowserver / h11 |")
    print("|---|" + "---:|" * (len(names) + 2))
    for shape in args.shapes.split(","):
        cells = [f"{results[shape, n]:,.0f}" for n in names]
        ratio = lambda other: (f"×{results[shape, 'lowserver'] / results[shape, other]:.2f}"
                               if (shape, other) in results and (shape, "lowserver") in results
                               else "—")
        print(f"| {shape} | " + " | ".join(cells) + f" | {ratio('aiohttp-py')} | {ratio('h11')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
