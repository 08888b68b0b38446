"""Stage 06, end to end: lowserver's Server over real loopback sockets.

Clients: aiohttp's client, and raw sockets (asyncio streams) for exact and malformed bytes.
Every server binds port 0 on 127.0.0.1 (or ::1) and is closed by the fixture; every wait
has a generous upper bound, and no test asserts a duration.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import random
import socket
import zlib

import aiohttp
import pytest

from lowserver import web
from loopback import LONG, exchange, serve



async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict, bytes]:
    """Read one response with a Content-Length body from a raw stream."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    body = b""
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), LONG)
    return status_line, headers, body


async def ask(port: int, data: bytes) -> tuple[bytes, dict, bytes]:
    """Send one raw request on a new connection; read its response (see read_response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read_response(reader)
    finally:
        writer.close()


async def hello(request):
    return web.Response(text="Hello, World!")


async def echo(request):
    body = await request.read()
    return web.Response(body=body, headers={"X-Method": request.method,
                                            "X-Path": request.path_qs})


# --- basic service ----------------------------------------------------------------------

async def test_every_method_on_random_paths_with_aiohttp_client():
    rng = random.Random(6)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "PURGE"]
    async with serve(echo) as (_server, port):
        async with aiohttp.ClientSession() as session:
            for _ in range(40):
                method = rng.choice(methods)
                path = "/" + "/".join(rng.choice(["a", "b%20c", "d-e", "f.g", "1"])
                                      for _ in range(rng.randint(1, 4)))
                body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
                url = f"http://127.0.0.1:{port}{path}?x={rng.randint(0, 99)}"
                async with session.request(method, url, data=body or None) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Method"] == method
                    assert resp.headers["X-Path"].startswith(path)
                    assert await resp.read() == body


async def test_head_response_has_no_body():
    async with serve(hello) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 13" in head
        status, _headers, body = await read_response(reader)   # no body bytes in between
        assert status == b"HTTP/1.1 200 OK" and body == b"Hello, World!"
        writer.close()


async def test_keep_alive_reuses_one_connection():
    async with serve(hello) as (server, port):
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    assert await resp.text() == "Hello, World!"
        assert server.requests_count == 20


async def test_response_head_is_what_aiohttp_sends():
    async with serve(hello) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_response(reader)
        writer.close()
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "13"
    assert "date" in headers and "server" in headers
    assert body == b"Hello, World!"


async def test_sixteen_pipelined_requests_in_one_write_answered_in_order():
    delays = random.Random(16)                       # seeded: the same delays every run
    async def numbered(request):
        await asyncio.sleep(delays.random() / 100)   # finish out of order if we let them
        return web.Response(text=request.path)
    async with serve(numbered) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(16)))
        for i in range(16):
            status, _headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK" and body == f"/{i}".encode()
        writer.close()


async def test_pipelined_responses_are_coalesced_and_a_slow_handler_is_not_held_back():
    async def maybe_slow(request):
        if request.path == "/slow":
            await asyncio.sleep(0.05)
        return web.Response(text=request.path)
    async with serve(maybe_slow) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        # /a must arrive before /slow finishes: the coalesced writes leave when /slow waits
        status, _headers, body = await asyncio.wait_for(read_response(reader), 0.04 + LONG)
        assert body == b"/a"
        for expected in (b"/slow", b"/b"):
            status, _headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK" and body == expected
        writer.close()


class RecordingTransport(asyncio.Transport):
    """Records every call that reaches it."""
    def __init__(self):
        super().__init__()
        self.calls = []
    def __getattribute__(self, name):
        if name in ("calls", "__class__", "__dict__") or name.startswith("_"):
            return super().__getattribute__(name)
        def record(*args):
            self.calls.append((name, *args))
            return {"is_closing": False, "can_write_eof": True, "is_reading": True,
                    "get_write_buffer_size": 7, "get_write_buffer_limits": (1, 2),
                    "get_extra_info": "value", "get_protocol": "protocol"}.get(name)
        return record


async def test_the_write_coalescer_is_the_whole_transport_api():
    from lowserver.write_batching import WriteCoalescer
    transport = RecordingTransport()
    batch = WriteCoalescer(transport, asyncio.get_running_loop())
    assert batch.get_extra_info("peername", "none") == "value"
    assert batch.can_write_eof() and batch.is_reading() and not batch.is_closing()
    assert batch.get_protocol() == "protocol" and batch.get_write_buffer_limits() == (1, 2)
    batch.set_protocol("other")
    batch.pause_reading()
    batch.resume_reading()
    batch.set_write_buffer_limits(10, 5)
    batch.write(b"queued")
    assert batch.get_write_buffer_size() == 7 + len(b"queued")
    batch.write_eof()                                  # what is queued goes first
    batch.write(b"dropped")
    batch.abort()                                      # at once: the queue is dropped
    batch.write(b"last")
    batch.close()
    assert [call for call in transport.calls if call[0] != "is_closing"] == [
        ("get_extra_info", "peername", "none"), ("can_write_eof",), ("is_reading",),
        ("get_protocol",), ("get_write_buffer_limits",), ("set_protocol", "other"),
        ("pause_reading",), ("resume_reading",), ("set_write_buffer_limits", 10, 5),
        ("get_write_buffer_size",), ("write", b"queued"), ("write_eof",), ("abort",),
        ("write", b"last"), ("close",)]


async def test_a_write_batch_schedules_one_flush_a_turn_however_often_it_fills():
    from lowserver.write_batching import WriteBatch
    transport = RecordingTransport()
    loop = asyncio.get_running_loop()
    scheduled = []
    real_call_soon = loop.call_soon
    def call_soon(callback, *args, **kw):
        if getattr(callback, "__self__", None) is batch:
            scheduled.append(callback)
        return real_call_soon(callback, *args, **kw)
    loop.call_soon = call_soon
    try:
        batch = WriteBatch(transport, loop, limit=4)
        for piece in (b"ab", b"cd", b"ef", b"gh", b"ij"):   # full at cd and at gh
            batch.write(piece)
        assert len(scheduled) == 1
        await asyncio.sleep(0)                              # the end of the turn: ij
        batch.write(b"kl")                                  # a new turn, a new flush
        assert len(scheduled) == 2
        await asyncio.sleep(0)
    finally:
        del loop.call_soon
    assert [call[1] for call in transport.calls if call[0] == "write"] == [
        b"abcd", b"efgh", b"ij", b"kl"]


async def test_http10_client_gets_http10_and_close():
    async with serve(hello) as (_server, port):
        data = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert data.endswith(b"Hello, World!")


async def test_http10_keep_alive_is_honoured():
    async with serve(hello) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.0 200 OK" and body == b"Hello, World!"
            assert headers.get("connection", "").lower() == "keep-alive"
        writer.close()


async def test_http10_streamed_response_is_close_delimited():
    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(3):
            await response.write(b"part%d;" % i)
        await response.write_eof()
        return response
    async with serve(stream) as (_server, port):
        data = await exchange(port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert body == b"part0;part1;part2;"   # and then the server closed: read() returned


# --- streaming --------------------------------------------------------------------------

async def test_ten_thousand_chunk_streamed_response():
    async def stream(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(10_000):
            await response.write(b"%d," % i)
        await response.write_eof()
        return response
    async with serve(stream) as (_server, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.headers["Transfer-Encoding"] == "chunked"
                body = await resp.read()
    assert body == b"".join(b"%d," % i for i in range(10_000))


async def test_a_streamed_body_leaves_in_writes_of_up_to_64_kib():
    # every send() wakes the reader up: 64 chunks of 16 KiB go in 16 writes, not 64
    sizes = []
    async def stream(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        transport = request.transport
        write = transport.write
        def counted(data):
            sizes.append(len(data))
            write(data)
        transport.write = counted
        for i in range(64):
            await response.write(bytes([65 + i % 26]) * 16384)
        await response.write_eof()
        return response
    async with serve(stream) as (_server, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                body = await resp.read()
    assert body == b"".join(bytes([65 + i % 26]) * 16384 for i in range(64))
    framing = len(b"4000\r\n\r\n")
    assert len(sizes) <= 17 and max(sizes) <= 4 * (16384 + framing), sizes


async def test_a_streamed_piece_leaves_when_the_handler_waits():
    # batched per loop turn, never held longer: an event stream's event arrives while the
    # handler waits for the next one
    seen = asyncio.Event()
    async def events(request):
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.wait_for(seen.wait(), LONG)   # set once the client has read it
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response
    async with serve(events) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"data: first" not in data:
            data += await asyncio.wait_for(reader.read(4096), LONG)
        assert b"second" not in data
        seen.set()
        while not data.endswith(b"0\r\n\r\n"):
            data += await asyncio.wait_for(reader.read(4096), LONG)
        assert b"data: second" in data
        writer.close()


@pytest.mark.slow
async def test_fifty_megabyte_upload_read_in_chunks():
    total = 50 * 1024 * 1024
    peaks = []

    async def upload(request):
        received = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            received += len(chunk)
        peaks.append(request.content.peak_buffered)
        return web.Response(text=str(received))

    async def body():
        block = b"z" * (256 * 1024)
        for _ in range(total // len(block)):
            yield block

    async with serve(upload) as (_server, port):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/up", data=body()) as resp:
                assert await resp.text() == str(total)
    assert peaks and peaks[0] <= 8 * 2**16 + 256 * 1024   # bounded by flow control


async def test_expect_100_continue_sent_only_when_the_body_is_read():
    async def reads(request):
        return web.Response(text=(await request.read()).decode())

    async def refuses(request):
        raise web.HTTPForbidden(text="no")

    head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    async with serve(reads) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        status, _headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and body == b"hello"
        writer.close()
    async with serve(refuses) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        status, headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 403 Forbidden" and body == b"no"   # no 100 before it
        # the body will not come: the server says it closes, and does (RFC 9110 §10.1.1)
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), LONG) == b""
        writer.close()


async def test_expect_100_continue_with_aiohttp_client():
    async with serve(echo) as (_server, port):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=b"payload",
                                    expect100=True) as resp:
                assert resp.status == 200 and await resp.read() == b"payload"


# --- request bodies: content codings, chunk ends, expectations -------------------------

async def body_echo(request):
    """Answers what the handler read, and the chunks readchunk() returned."""
    if request.query.get("chunks"):
        pieces = []
        while True:
            data, end_of_chunk = await request.content.readchunk()
            if not data and not end_of_chunk:
                break
            pieces.append(f"{data.decode()}{'|' if end_of_chunk else '~'}")
        return web.Response(text="".join(pieces))
    return web.Response(body=await request.read())


def compressed(coding: str, data: bytes) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "raw-deflate":
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if coding == "br":
        return pytest.importorskip("brotli").compress(data)
    if coding == "zstd":
        try:
            from compression import zstd
        except ImportError:
            zstd = pytest.importorskip("backports.zstd")
        return zstd.compress(data)
    raise AssertionError(coding)


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "raw-deflate", "br", "zstd"])
async def test_compressed_request_body_is_decoded(coding):
    data = b"the quick brown fox " * 5000
    body = compressed(coding, data)
    header = "deflate" if coding == "raw-deflate" else coding
    async with serve(body_echo) as (_server, port):
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=body,
                                    headers={"Content-Encoding": header}) as resp:
                assert resp.status == 200 and await resp.read() == data
            # the same body, chunked: decoded all the same
            async def pieces():
                for start in range(0, len(body), 1000):
                    yield body[start:start + 1000]
            async with session.post(f"http://127.0.0.1:{port}/", data=pieces(),
                                    headers={"Content-Encoding": header}) as resp:
                assert resp.status == 200 and await resp.read() == data



@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_a_decompression_bomb_is_inflated_only_as_fast_as_the_handler_reads(coding):
    # 32 MiB of zeros in a few KiB: decoded a piece at a time, never more than the body
    # stream's flow-control window buffered, however little the client sent
    size = 32 * 1024 * 1024
    body = compressed(coding, bytes(size))
    assert len(body) < size // 500
    seen = {}

    async def slow_reader(request):
        total = 0
        while chunk := await request.content.readany():
            total += len(chunk)
            await asyncio.sleep(0)
        seen["peak"] = request.content.peak_buffered
        return web.Response(text=str(total))

    async with serve(slow_reader, read_bufsize=2**16) as (_server, port):
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=body,
                                    headers={"Content-Encoding": coding}) as resp:
                assert resp.status == 200 and await resp.text() == str(size)
    assert seen["peak"] <= 4 * 2**16, seen   # the stream's high-water mark and one piece


# mtime=0: gzip's header would otherwise hold the current time, and the bytes would change from
# run to run (in a test id, that made pytest-xdist's two workers collect different tests).
GZIPPED_X = gzip.compress(b"x" * 1000, mtime=0)


async def test_auto_decompress_false_hands_the_body_over_as_sent():
    body = GZIPPED_X
    async with serve(body_echo, auto_decompress=False) as (_server, port):
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=body,
                                    headers={"Content-Encoding": "gzip"}) as resp:
                assert resp.status == 200 and await resp.read() == body


@pytest.mark.parametrize("body, reason", [
    (b"not gzip at all", b"not valid gzip"),
    (GZIPPED_X[:-12], b"ends inside the compressed stream"),
    (GZIPPED_X + b"trailing", b"after the end of the compressed stream"),
], ids=["not-gzip", "truncated", "trailing-bytes"])
async def test_bad_compressed_body_is_a_400(body, reason):
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
               b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
    async with serve(body_echo) as (_server, port):
        status, _headers, text = await ask(port, request)
        assert status == b"HTTP/1.1 400 Bad Request" and reason in text


async def test_a_coding_without_its_package_is_a_415_naming_what_would_do(monkeypatch):
    import lowserver.body_decoding as body_decoding
    monkeypatch.setattr(body_decoding, "_brotli", None)
    body = b"\x8b\x02\x80hello\x03"   # whatever: it is never decoded
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
               b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
    async with serve(body_echo) as (_server, port):
        status, headers, text = await ask(port, request)
    assert status == b"HTTP/1.1 415 Unsupported Media Type"      # RFC 9110 §15.5.16
    assert "br" not in headers["accept-encoding"].split(", ")
    assert {"gzip", "deflate"} <= set(headers["accept-encoding"].split(", "))
    assert b"'br'" in text


async def test_readchunk_returns_whole_http_chunks():
    # RFC 9112 §7.1: three chunks, the second split across two TCP writes
    async with serve(body_echo) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /?chunks=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n wo")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"rld\r\n1\r\n!\r\n0\r\n\r\n")
        status, _headers, text = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK"
        # each chunk ends with end_of_http_chunk True; a piece of a chunk that arrived
        # before the rest of it may come on its own, with False
        assert text in (b"hello| world|!|", b"hello| wo~rld|!|")
        writer.close()


async def test_readchunk_on_a_content_length_body_reports_no_chunk_ends():
    async with serve(body_echo) as (_server, port):
        status, _headers, text = await ask(
            port, b"POST /?chunks=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert status == b"HTTP/1.1 200 OK" and text == b"hello~"


async def test_an_unknown_expectation_is_a_417_and_the_handler_is_not_run():
    ran = []

    async def handler(request):
        ran.append(request.path)
        return web.Response(text="ran")

    async with serve(handler) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n"
                     b"Content-Length: 3\r\n\r\nabc"
                     b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _headers, text = await read_response(reader)
        assert status == b"HTTP/1.1 417 Expectation Failed"     # RFC 9110 §10.1.1
        assert b"something-else" in text
        # the body was read past, and the connection serves the next request
        status, _headers, text = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and text == b"ran" and ran == ["/b"]
        # HTTP/1.0: an expectation is ignored
        writer.write(b"GET /c HTTP/1.0\r\nExpect: something-else\r\n\r\n")
        status, _headers, text = await read_response(reader)
        assert status == b"HTTP/1.0 200 OK" and ran == ["/b", "/c"]
        writer.close()


# --- errors -----------------------------------------------------------------------------

async def test_a_500_leaves_the_connection_usable(caplog):
    async def sometimes(request):
        if request.path == "/boom":
            raise RuntimeError("secret internals")
        return web.Response(text="fine")
    async with serve(sometimes) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with caplog.at_level(logging.ERROR):
            writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert b"secret internals" not in body
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and body == b"fine"
        writer.close()
    assert "secret internals" in caplog.text    # logged, not sent


async def test_http_exception_is_sent_as_its_status():
    async def missing(request):
        raise web.HTTPNotFound()
    async with serve(missing) as (_server, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/x") as resp:
                assert resp.status == 404
                assert await resp.text() == "404: Not Found"


async def test_handler_returning_a_non_response_is_a_500(caplog):
    async def wrong(request):
        return "not a response"
    async with serve(wrong) as (_server, port):
        with caplog.at_level(logging.ERROR):
            data = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert "wrong" in caplog.text


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GARBAGE\r\n\r\n", 400),
])
async def test_parse_error_gets_its_status_and_closes(request_bytes, status):
    async with serve(hello) as (_server, port):
        data = await exchange(port, request_bytes)
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:60]
    head = data.partition(b"\r\n\r\n")[0]
    assert b"Connection: close" in head
    assert data.count(b"HTTP/1.1 ") == 1


async def test_parse_error_after_valid_pipelined_requests():
    async with serve(hello) as (_server, port):
        data = await exchange(port, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /3 HTTP/1.1\r\n\r\n")
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.rfind(b"HTTP/1.1 400 ") > data.rfind(b"HTTP/1.1 200 OK")


async def test_exception_after_head_sent_closes_without_second_status_line(caplog):
    async def breaks(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"partial")
        raise RuntimeError("midway")
    async with serve(breaks) as (_server, port):
        with caplog.at_level(logging.ERROR):
            data = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.count(b"HTTP/1.1") == 1
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")     # the client can tell the body was cut


async def test_a_header_with_crlf_becomes_a_500_not_a_split_response(caplog):
    async def splits(request):
        return web.Response(text="x", headers={"X-Evil": "a\r\nSet-Cookie: stolen=1"})
    async with serve(splits) as (_server, port):
        with caplog.at_level(logging.ERROR):
            data = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ") and b"stolen" not in data


async def test_unread_body_is_drained_and_connection_kept():
    async with serve(hello) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"a" * 10000)
        status, _headers, _body = await read_response(reader)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and body == b"Hello, World!"
        writer.close()


async def test_a_large_unread_body_closes_the_connection_instead_of_draining():
    async with serve(hello) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"
                     + b"a" * 65536)
        status, _headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and body == b"Hello, World!"
        assert await asyncio.wait_for(reader.read(), LONG) == b""   # closed, not drained
        writer.close()


async def test_many_pipelined_requests_beyond_the_queue_bound_are_all_answered():
    from lowserver.server import MAX_PIPELINED
    count = MAX_PIPELINED * 4

    async def numbered(request):
        await asyncio.sleep(0)
        return web.Response(text=request.path)
    async with serve(numbered) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count)))
        for i in range(count):
            _status, _headers, body = await read_response(reader)
            assert body == f"/{i}".encode()
        writer.close()


async def test_connect_answered_2xx_without_a_tunnel_closes_and_4xx_keeps_http():
    async def connect(request):
        if request.method == "CONNECT" and request.headers.get("X-Allow"):
            return web.Response(text="tunnel bytes would follow")
        if request.method == "CONNECT":
            raise web.HTTPMethodNotAllowed("CONNECT", ["GET"])
        return web.Response(text="http again")
    async with serve(connect) as (_server, port):
        data = await exchange(port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                                    b"X-Allow: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 OK") and data.count(b"HTTP/1.1") == 1
        assert data.endswith(b"\r\n\r\n")     # RFC 9110 §9.3.6: a 2xx to CONNECT has no content
        data = await exchange(port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                                    b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 405 ") and data.endswith(b"http again")


async def test_head_to_a_streaming_handler_puts_no_body_on_the_wire():
    async def streams(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"body bytes the handler writes anyway")
        await response.write_eof()
        return response
    async with serve(streams) as (_server, port):
        data = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\n")
    assert b"body bytes" not in data


# --- timeouts, half-close, cancellation, shutdown --------------------------------------

async def test_a_body_that_stops_arriving_gets_408():
    async def reads(request):
        return web.Response(text=str(len(await request.read())))
    async with serve(reads, read_timeout=0.2) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        status, _headers, _body = await read_response(reader)
        assert status == b"HTTP/1.1 408 Request Timeout"
        assert await asyncio.wait_for(reader.read(), LONG) == b""
        writer.close()



async def test_slowloris_is_closed_by_header_timeout():
    async with serve(hello, header_timeout=0.2) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")    # never finishes the head
        data = await asyncio.wait_for(reader.read(), LONG)  # returns once the server closes
        assert data == b""
        writer.close()


async def test_idle_keep_alive_connection_is_closed():
    async with serve(hello, keepalive_timeout=0.2) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_response(reader)
        assert await asyncio.wait_for(reader.read(), LONG) == b""
        writer.close()


async def test_half_closed_client_still_gets_its_response():
    async def slow(request):
        await asyncio.sleep(0.05)
        return web.Response(text="after half-close")
    async with serve(slow) as (_server, port):
        data = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", half_close=True)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"after half-close")



@pytest.mark.parametrize("sent, status, words", [
    # RFC 9112 §8: an incomplete request may be answered before the connection closes
    (b"GET / HTTP/1.1\r\nHost: x\r\nAcc", b"400 Bad Request", b"middle of a request head"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", b"400 Bad Request",
     b"7 bytes short of the declared Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
     b"400 Bad Request", b"inside a chunked body"),
])
async def test_a_request_cut_short_by_a_half_close_gets_a_400(sent, status, words, caplog):
    async with serve(echo) as (_server, port):
        data = await exchange(port, sent, half_close=True)
    assert data.startswith(b"HTTP/1.1 " + status) and words in data
    assert data.count(b"HTTP/1.1 ") == 1                       # one answer, not two
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]   # not a 500


async def test_a_clean_half_close_between_requests_gets_nothing_more():
    async with serve(echo) as (_server, port):
        assert await exchange(port, b"", half_close=True) == b""
        data = await exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", half_close=True)
    assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 200 OK")


async def test_a_client_gone_mid_body_is_not_logged_as_a_server_error(caplog):
    started = asyncio.Event()

    async def reads(request):
        started.set()
        return web.Response(body=await request.read())

    async with serve(reads) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        await asyncio.wait_for(started.wait(), LONG)
        writer.transport.abort()        # a reset, not a half-close: no one left to answer
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

@pytest.mark.parametrize("debug", [False, True], ids=["not-debug", "debug"])
async def test_handler_cancellation_true_cancels_when_client_goes_away(caplog, debug):
    """...and, in debug mode only, says so in aiohttp's words (web_protocol.py 732-735)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits(request):
        started.set()
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response()
    caplog.set_level(logging.DEBUG, logger="lowserver")
    async with serve(waits, handler_cancellation=True, debug=debug) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), LONG)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), LONG)
        for _ in range(5):
            await asyncio.sleep(0)
    said = ("lowserver.server", "DEBUG", "Ignored premature client disconnection")
    assert (said in [(r.name, r.levelname, r.getMessage()) for r in caplog.records]) is debug
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_handler_cancellation_false_lets_the_handler_finish():
    started, finished = asyncio.Event(), asyncio.Event()

    async def waits(request):
        started.set()
        await asyncio.sleep(0.1)
        finished.set()
        return web.Response(text="nobody hears this")
    async with serve(waits) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), LONG)
        writer.close()
        await asyncio.wait_for(finished.wait(), LONG)


async def test_shutdown_lets_in_flight_requests_finish():
    started = asyncio.Event()

    async def slow(request):
        started.set()
        await asyncio.sleep(0.2)
        return web.Response(text="completed")
    server = web.Server(slow)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(started.wait(), LONG)
    listener.close()
    server.pre_shutdown()
    await asyncio.wait_for(server.shutdown(LONG), LONG)
    status, _headers, body = await read_response(reader)
    assert status == b"HTTP/1.1 200 OK" and body == b"completed"
    assert await asyncio.wait_for(reader.read(), LONG) == b""   # then closed
    assert server.connections == []
    writer.close()


async def test_shutdown_timeout_cancels_a_handler_that_does_not_finish():
    started = asyncio.Event()

    async def forever(request):
        started.set()
        await asyncio.sleep(3600)
    server = web.Server(forever)
    listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(started.wait(), LONG)
    listener.close()
    await asyncio.wait_for(server.shutdown(0.1), LONG)
    assert await asyncio.wait_for(reader.read(), LONG) == b""
    writer.close()


# --- the Server factory -----------------------------------------------------------------

def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="keepalive_timeoutt"):
        web.Server(hello, keepalive_timeoutt=5)


async def test_connections_and_requests_count():
    async with serve(hello) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_response(reader)
        assert len(server.connections) == 1 and server.requests_count == 1
        writer.close()


async def test_lowserver_runner_and_site():
    runner = web.ServerRunner(web.Server(hello))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        assert site.port == port
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                assert await resp.text() == "Hello, World!"
    finally:
        await runner.cleanup()


async def test_aiohttp_runner_and_site_serve_a_lowserver_server():
    from aiohttp import web as aioweb
    runner = aioweb.ServerRunner(web.Server(hello))
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{site.port}/") as resp:
                assert await resp.text() == "Hello, World!"
    finally:
        await runner.cleanup()


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_available(), reason="::1 cannot be bound here")
async def test_ipv6_loopback():
    async with serve(hello, host="::1") as (_server, port):
        data = await exchange(port, b"GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n",
                              host="::1")
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Hello, World!")


async def test_request_remote_and_access_log(caplog):
    async def who(request):
        return web.Response(text=request.remote)
    async with serve(who) as (_server, port):
        with caplog.at_level(logging.INFO, logger="lowserver.access"):
            data = await exchange(port, b"GET /seen?q=1 HTTP/1.1\r\nHost: x\r\n"
                                        b"User-Agent: tester\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"127.0.0.1")
    assert '"GET /seen?q=1 HTTP/1.1" 200' in caplog.text and "tester" in caplog.text
