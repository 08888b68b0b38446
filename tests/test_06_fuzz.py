"""Stage 06, end to end: mutated requests over loopback sockets.

Valid requests of every framing (none, Content-Length, chunked, gzip, br, an Upgrade) are
mutated at random (bytes changed, dropped, inserted, the rest cut off, another request
appended), sent on a raw socket that then half-closes, and the server must: answer every
connection that sent anything with an HTTP status line (a 400 for what was malformed or cut
short, RFC 9112 §8), never hang, and never log an error of its own. Seeded: the same cases
every run.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import random

import pytest

from lowserver import web
from loopback import LONG, serve

VALID = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b"
    % (len(gzip.compress(b"abc" * 100, mtime=0)), gzip.compress(b"abc" * 100, mtime=0)),
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
]


def mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        if op < 0.3 and out:
            out[rnd.randrange(len(out))] = rnd.randrange(256)
        elif op < 0.5 and out:
            del out[rnd.randrange(len(out))]
        elif op < 0.7:
            out.insert(rnd.randrange(len(out) + 1), rnd.choice(b"\r\n :;,0aZ\x00\x7f\xff"))
        elif op < 0.85:
            out = out[:rnd.randrange(len(out) + 1)]
        else:
            out += rnd.choice(VALID)
    return bytes(out)


async def handler(request):
    body = await request.read()
    return web.Response(text=f"{request.method} {len(body)}")


async def send_and_half_close(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), LONG)
    finally:
        writer.close()


@pytest.mark.parametrize("seed", range(4))
async def test_mutated_requests_are_all_answered_and_nothing_is_logged(seed, caplog):
    caplog.set_level(logging.WARNING)
    rnd = random.Random(seed)
    cases = [mutate(rnd.choice(VALID), rnd) for _ in range(100)]
    async with serve(handler, header_timeout=LONG, read_timeout=LONG) as (_server, port):
        answers = await asyncio.gather(*(send_and_half_close(port, data) for data in cases))
    for data, answer in zip(cases, answers):
        if data:
            assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (data, answer)
        else:
            assert answer == b""
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
