"""Stage 09 end to end: FileResponse served by stage 06's server over real loopback sockets.

Plain TCP takes `loop.sendfile()` (the kernel copies the file; the calls are counted by a
wrapper around the loop's method); TLS (trustme's certificates) cannot, and takes the
chunked fallback. aiohttp's client and raw sockets read the answers; a few behaviours are
checked against aiohttp's own FileResponse served the same way. Files get fixed mtimes.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import ssl
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest
import trustme

from lowserver import web
from loopback import LONG, read_all, read_head, serve

MTIME_NS = 1_700_000_000_123_456_789
MIB = 1024 * 1024


def touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


def pattern(size: int) -> bytes:
    """`size` seeded pseudo-random bytes: a misplaced or repeated block shows in the hash."""
    return random.Random(size).randbytes(size)


def files_handler(root: Path, **options):
    async def handler(request: web.BaseRequest) -> web.FileResponse:
        return web.FileResponse(root / request.path.lstrip("/"), **options)
    return handler


@pytest.fixture
async def sendfile_calls(monkeypatch):
    """Each loop.sendfile() call: ("sent", n) or ("refused", exception type name)."""
    loop = asyncio.get_running_loop()
    real = loop.sendfile
    calls: list[tuple[str, object]] = []

    async def counting(transport, file, offset=0, count=None, *, fallback=True):
        try:
            sent = await real(transport, file, offset, count, fallback=fallback)
        except RuntimeError as exc:
            calls.append(("refused", type(exc).__name__))
            raise
        calls.append(("sent", sent))
        return sent
    monkeypatch.setattr(loop, "sendfile", counting)
    return calls


@pytest.fixture(scope="module")
def tls():
    """(server context, client context) for 127.0.0.1, from a throwaway CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> tuple[bytes, bytes]:
    """One response with a Content-Length (or none, for HEAD and 304): (head, body)."""
    head = await read_head(reader)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if method == "HEAD" or b" 304 " in head.split(b"\r\n")[0]:
        length = 0
    return head, await asyncio.wait_for(reader.readexactly(length), LONG)


# --- the sendfile path, and the fallback -------------------------------------------------

@pytest.mark.slow
async def test_64_mib_by_sendfile_arrive_intact(tmp_path, sendfile_calls):
    data = pattern(64 * MIB)
    touch(tmp_path / "big.bin", data)
    async with serve(files_handler(tmp_path)) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/big.bin") as resp:
                body = await resp.read()
                assert resp.status == 200 and resp.headers["Content-Length"] == str(64 * MIB)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert sendfile_calls == [("sent", 64 * MIB)]


@pytest.mark.slow
async def test_64_mib_over_tls_by_the_fallback_arrive_intact(tmp_path, tls, sendfile_calls):
    data = pattern(64 * MIB)
    touch(tmp_path / "big.bin", data)
    server_context, client_context = tls
    async with serve(files_handler(tmp_path), ssl=server_context) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/big.bin",
                                   ssl=client_context) as resp:
                body = await resp.read()
                assert resp.status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert sendfile_calls == [("refused", "RuntimeError")]   # asyncio: no sendfile over TLS


async def test_one_connection_serves_sendfile_responses_one_after_another(tmp_path,
                                                                          sendfile_calls):
    data = pattern(3 * MIB + 5)
    touch(tmp_path / "f.bin", data)
    etag = f'"{MTIME_NS:x}-{len(data):x}"'
    requests = [("GET", {}, 200, data), ("GET", {"Range": "bytes=-5"}, 206, data[-5:]),
                ("HEAD", {}, 200, b""), ("GET", {"If-None-Match": etag}, 304, b""),
                ("GET", {"Range": "bytes=99999999-"}, 416, b""),
                ("GET", {"Range": f"bytes={MIB}-{2 * MIB - 1}"}, 206, data[MIB:2 * MIB])]
    async with serve(files_handler(tmp_path)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for method, fields, status, body in requests:
                extra = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
                writer.write(f"{method} /f.bin HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
                head, got = await read_response(reader, method)
                assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
                assert got == body and b"Connection: close" not in head
        finally:
            writer.close()
    assert sendfile_calls == [("sent", len(data)), ("sent", 5), ("sent", MIB)]


async def test_pipelined_requests_behind_the_write_batch(tmp_path, sendfile_calls):
    data = pattern(200_000)
    touch(tmp_path / "f.bin", data)
    etag = f'"{MTIME_NS:x}-{len(data):x}"'
    batch = (b"GET /f.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
             b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /f.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + etag.encode() + b"\r\n\r\n"
             b"GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /f.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-3\r\nConnection: close\r\n\r\n")
    async with serve(files_handler(tmp_path)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(batch)
            answers = [await read_response(reader) for _ in range(5)]
            assert await read_all(reader) == b""
        finally:
            writer.close()
    assert [head.split(b"\r\n")[0] for head, _ in answers] == [
        b"HTTP/1.1 206 Partial Content", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 200 OK", b"HTTP/1.1 206 Partial Content"]
    assert [body for _, body in answers] == [data[:10], b"", b"", data, data[-3:]]
    assert [n for kind, n in sendfile_calls] == [10, len(data), 3]


async def test_a_tls_connection_serves_one_response_after_another(tmp_path, tls):
    data = pattern(MIB + 1)
    touch(tmp_path / "f.bin", data)
    server_context, client_context = tls
    handler = files_handler(tmp_path, chunk_size=100_000)
    async with serve(handler, ssl=server_context) as (server, port):
        async with aiohttp.ClientSession() as session:
            for fields, status, body in [({}, 200, data), ({"Range": "bytes=10-19"}, 206,
                                                             data[10:20]), ({}, 200, data)]:
                async with session.get(f"https://127.0.0.1:{port}/f.bin", headers=fields,
                                       ssl=client_context) as resp:
                    assert resp.status == status and await resp.read() == body
            assert len(server.connections) == 1 and server.requests_count == 3


async def test_an_http_10_client_gets_the_length_and_the_close(tmp_path):
    data = pattern(300_000)
    touch(tmp_path / "f.bin", data)
    async with serve(files_handler(tmp_path)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /f.bin HTTP/1.0\r\n\r\n")
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"Content-Length: 300000" in head
            assert await read_all(reader) == data
        finally:
            writer.close()


# --- a file that shrinks, a client that goes away --------------------------------------------

async def _small_window_connection(port: int, ssl_context=None):
    """A client socket with a small receive buffer, so the server blocks on it soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, ssl=ssl_context,
                                         server_hostname="127.0.0.1" if ssl_context else None)


async def _shrink_while_sent(port: int, path: Path, ssl_context=None) -> tuple[int, int]:
    """GET the file, truncate it to 1 MiB after the first body bytes; (announced, received)."""
    reader, writer = await _small_window_connection(port, ssl_context)
    try:
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await read_head(reader)
        announced = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        first = await asyncio.wait_for(reader.readexactly(64 * 1024), LONG)
        os.truncate(path, MIB)
        rest = await read_all(reader)           # bounded: the server must close
        return announced, len(first) + len(rest)
    finally:
        writer.close()


@pytest.mark.slow
async def test_a_file_truncated_during_sendfile_closes_the_connection(tmp_path, sendfile_calls):
    path = touch(tmp_path / "big.bin", pattern(32 * MIB))
    async with serve(files_handler(tmp_path)) as (server, port):
        announced, received = await _shrink_while_sent(port, path)
        assert announced == 32 * MIB and received < announced
        assert sendfile_calls[0][0] == "sent" and sendfile_calls[0][1] < announced


@pytest.mark.slow
async def test_a_file_truncated_during_the_tls_fallback_closes_the_connection(tmp_path, tls):
    path = touch(tmp_path / "big.bin", pattern(32 * MIB))
    server_context, client_context = tls
    async with serve(files_handler(tmp_path), ssl=server_context) as (server, port):
        announced, received = await _shrink_while_sent(port, path, client_context)
        assert announced == 32 * MIB and received < announced


async def test_aiohttps_client_sees_a_short_body_as_an_error(tmp_path):
    path = touch(tmp_path / "big.bin", pattern(8 * MIB))

    async def opened_then_truncated(request):
        response = web.FileResponse(path)
        original = response._send_file

        async def send(*args):       # after the open and the head (which said 8 MiB)
            os.truncate(path, MIB)
            await original(*args)
        response._send_file = send
        return response
    async with serve(opened_then_truncated) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.headers["Content-Length"] == str(8 * MIB)
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()


@pytest.mark.parametrize("use_tls", [False, True], ids=["sendfile", "tls-fallback"])
async def test_a_client_gone_mid_download_is_no_server_error(tmp_path, tls, caplog, use_tls,
                                                            monkeypatch):
    touch(tmp_path / "big.bin", pattern(16 * MIB))
    closed = []
    force_close = web.FileResponse.force_close
    monkeypatch.setattr(web.FileResponse, "force_close",
                        lambda self: closed.append(self.status) or force_close(self))
    server_context, client_context = tls
    caplog.set_level(logging.DEBUG, logger="lowserver")
    context = serve(files_handler(tmp_path), ssl=server_context) if use_tls else \
        serve(files_handler(tmp_path))
    async with context as (server, port):
        reader, writer = await _small_window_connection(port, client_context if use_tls else None)
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_head(reader)
        await asyncio.wait_for(reader.readexactly(64 * 1024), LONG)
        writer.transport.abort()
        for _ in range(200):                      # bounded: the server notices and closes
            if not server.connections:
                break
            await asyncio.sleep(0.01)
        assert not server.connections
        scheme = "https" if use_tls else "http"
        async with aiohttp.ClientSession() as session:   # and it serves on
            async with session.get(f"{scheme}://127.0.0.1:{port}/big.bin",
                                   headers={"Range": "bytes=0-3"},
                                   ssl=client_context if use_tls else None) as resp:
                assert resp.status == 206 and len(await resp.read()) == 4
    assert closed == [200]       # the ConnectionError was caught while sending, and closed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# --- aiohttp's own FileResponse as the reference -------------------------------------------

@contextlib.asynccontextmanager
async def serve_aiohttp(root: Path):
    async def handler(request):
        return aiohttp.web.FileResponse(root / request.path.lstrip("/"))
    server = aiohttp.web.Server(handler)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await asyncio.wait_for(server.shutdown(1.0), LONG)
        await asyncio.wait_for(listener.wait_closed(), LONG)


@pytest.fixture
def reference_site(tmp_path: Path) -> Path:
    touch(tmp_path / "page.html", pattern(5000))
    touch(tmp_path / "page.html.gz", b"gzip-bytes")
    touch(tmp_path / "page.html.br", b"brotli-bytes")
    touch(tmp_path / "notes.txt", b"some notes\n")
    (tmp_path / "sub").mkdir()
    return tmp_path


COMPARED = ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Content-Range",
            "Content-Encoding", "Vary", "Accept-Ranges")
ETAG = f'"{MTIME_NS:x}-{5000:x}"'
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:21 GMT"
BEFORE = "Tue, 14 Nov 2023 22:13:19 GMT"


async def both(root: Path, requests: list[tuple[str, str, dict]]) -> list[tuple[tuple, tuple]]:
    """Each request answered by aiohttp's FileResponse and by ours: (status, fields, body)."""
    results: dict[str, list] = {}
    for name, context in [("aiohttp", serve_aiohttp(root)), ("lowserver",
                                                            serve(files_handler(root)))]:
        async with context as served:
            port = served if isinstance(served, int) else served[1]
            results[name] = []
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                for method, path, fields in requests:
                    fields = {"Accept-Encoding": "identity", **fields}  # not the client's
                    async with session.request(method, f"http://127.0.0.1:{port}/{path}",
                                               headers=fields) as resp:
                        body = await resp.read()
                        # an empty error body: aiohttp's is chunked, ours Content-Length: 0
                        names = ("Content-Range",) if resp.status >= 400 else COMPARED
                        shown = tuple(resp.headers.get(k) for k in names)
                        results[name].append((resp.status, shown, body))
    return list(zip(results["aiohttp"], results["lowserver"]))


AGREED = [
    ("GET", "page.html", {}), ("GET", "notes.txt", {}), ("HEAD", "page.html", {}),
    ("GET", "page.html", {"Range": "bytes=0-9"}), ("GET", "page.html", {"Range": "bytes=10-"}),
    ("GET", "page.html", {"Range": "bytes=-10"}),
    ("GET", "page.html", {"Range": "bytes=-100000"}),
    ("GET", "page.html", {"Range": "bytes=4990-100000"}),
    ("GET", "page.html", {"Range": "bytes=5000-"}), ("GET", "page.html", {"Range": "bytes=9-3"}),
    ("GET", "page.html", {"Range": "bytes=0-1,3-4"}),
    ("GET", "page.html", {"If-None-Match": ETAG}), ("GET", "page.html", {"If-None-Match": "*"}),
    ("GET", "page.html", {"If-None-Match": f"W/{ETAG}"}),
    ("GET", "page.html", {"If-None-Match": '"other"'}),
    ("GET", "page.html", {"If-Modified-Since": LAST_MODIFIED}),
    ("GET", "page.html", {"If-Modified-Since": BEFORE}),
    ("PUT", "page.html", {"If-Match": '"other"'}), ("PUT", "page.html", {"If-Match": ETAG}),
    ("PUT", "page.html", {"If-Match": f"W/{ETAG}"}),
    ("PUT", "page.html", {"If-Unmodified-Since": BEFORE}),
    ("GET", "page.html", {"If-Match": ETAG, "If-None-Match": ETAG}),
    ("GET", "page.html", {"Range": "bytes=0-9", "If-Range": LAST_MODIFIED}),
    ("GET", "page.html", {"Range": "bytes=0-9", "If-Range": BEFORE}),
    ("GET", "page.html", {"Accept-Encoding": "gzip"}),
    ("GET", "page.html", {"Accept-Encoding": "gzip, deflate, br"}),
    ("GET", "page.html", {"Accept-Encoding": "deflate"}),
    ("GET", "missing.html", {}), ("GET", "sub", {}),
]


async def test_as_aiohttps_file_response_answers(reference_site):
    for request, (theirs, ours) in zip(AGREED, await both(reference_site, AGREED)):
        assert ours == theirs, request


# Where lowserver follows RFC 9110 and aiohttp does not: (request, aiohttp's status,
# lowserver's status).
DEPARTURES = [
    (("GET", "page.html", {"Range": "bytes=-0"}), 206, 416),             # §14.1.1
    (("GET", "page.html", {"Range": "items=0-5"}), 416, 200),            # §14.2
    (("GET", "page.html", {"Range": "bytes=0-9", "If-Range": '"old"'}), 206, 200),  # §13.1.5
    (("HEAD", "page.html", {"Range": "bytes=0-9"}), 206, 200),           # §14.2: GET only
    (("POST", "page.html", {"If-None-Match": "*"}), 304, 412),           # §13.1.2
]


async def test_where_lowserver_follows_rfc_9110_rather_than_aiohttp(reference_site):
    requests = [request for request, _, _ in DEPARTURES]
    answers = await both(reference_site, requests)
    assert [(theirs[0], ours[0]) for theirs, ours in answers] == \
        [(a, b) for _, a, b in DEPARTURES]
    # br;q=0 refuses Brotli (§12.4.2); aiohttp tests for the substring "br"
    [(theirs, ours)] = await both(reference_site, [("GET", "page.html",
                                                    {"Accept-Encoding": "br;q=0, gzip"})])
    assert theirs[2] == b"brotli-bytes" and ours[2] == b"gzip-bytes"
