"""Stage 07: the demo `python -m lowserver` serves (`lowserver.demo`, notebook 07).

The body description (text, hex preview, the cap), then the handler over loopback sockets:
the page (and that it loads nothing from the network), the echo of any other request with
its body, the stream, the WebSocket echo with permessage-deflate, and `python -m lowserver`
itself answering `GET /` with the page. Every server binds port 0 on 127.0.0.1; every wait is
bounded; the loopback helpers assert no connection is left without a watch.
"""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from loopback import LONG, exchange, serve
from lowserver import demo
from lowserver.testing import make_mocked_request

ROOT = Path(__file__).resolve().parent.parent


# --- the body, described ------------------------------------------------------------------

def test_no_body():
    assert demo.describe_body(b"", 0) == ["body: none"]


def test_a_utf8_body_is_shown_as_text():
    body = "héllo ✓\nsecond line".encode()
    assert demo.describe_body(body, len(body)) == [
        f"body: {len(body)} bytes, UTF-8 text:", "héllo ✓\nsecond line"]


def test_a_body_that_is_not_utf8_is_a_bounded_hex_preview():
    body = bytes(range(256)) * 4                     # 1024 bytes, not UTF-8
    lines = demo.describe_body(body, len(body))
    assert lines[0] == f"body: 1024 bytes, not UTF-8 text; the first {demo.HEX_LIMIT} in hex:"
    assert len(lines) == 1 + demo.HEX_LIMIT // 16
    assert lines[1] == ("  0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  "
                        "................")
    assert lines[-1].startswith(f"  {demo.HEX_LIMIT - 16:04x}  f0 f1")


def test_a_cut_inside_a_character_is_still_text():
    body = "é".encode() * 10                         # 20 bytes; 9 end inside the fifth é
    assert demo.describe_body(body[:9], len(body)) == [
        "body: 20 bytes, UTF-8 text; only the first 9 echoed:", "éééé"]


def test_invalid_utf8_before_the_cut_is_not_text():
    kept = b"ok \xff" + b"a" * 10
    assert demo.describe_body(kept, 1000)[0].startswith("body: 1000 bytes, not UTF-8 text")


@pytest.mark.parametrize("size", [0, 1, demo.ECHO_LIMIT, demo.ECHO_LIMIT + 1, 300_000],
                         ids=["empty", "one", "limit", "limit+1", "300k"])
async def test_read_capped_keeps_the_limit_and_counts_everything(size):
    body = bytes(i % 251 for i in range(size))
    kept, counted = await demo.read_capped(make_mocked_request("POST", "/", body=body))
    assert counted == size
    assert kept == body[:demo.ECHO_LIMIT]


# --- the handler, served ------------------------------------------------------------------

def network_references(html: str) -> list[str]:
    """What in `html` would load from the network: a src/href/action that is not a path of
    this origin, a fragment or data:, and any CSS url() or @import."""
    found = [value for value in re.findall(r"""\b(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""",
                                           html, re.I)
             if not (value.startswith(("/", "#", "data:")) and not value.startswith("//"))]
    return found + re.findall(r"url\(|@import", html, re.I)


async def test_get_slash_is_the_page():
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                assert response.headers["Content-Security-Policy"] == demo.PAGE_POLICY
                page = await response.text()
    assert page == demo.PAGE
    assert "new WebSocket(url)" in page
    assert '"wss://" : "ws://") + location.host + "/ws"' in page
    assert '<a href="/stream?n=20">' in page
    assert "ws.extensions" in page


def test_the_page_loads_nothing_from_the_network():
    assert network_references(demo.PAGE) == []
    assert "default-src 'none'" in demo.PAGE_POLICY and "connect-src 'self'" in demo.PAGE_POLICY


@pytest.mark.parametrize("bad", ['<script src="https://cdn.example/x.js">',
                                 '<link rel="stylesheet" href="//cdn.example/a.css">',
                                 "<img src=x.png>", "<style>@import 'x.css'</style>",
                                 "body { background: url(x.png) }"],
                         ids=["absolute", "protocol-relative", "relative", "import", "url"])
def test_the_network_check_finds_what_it_must(bad):
    assert network_references(bad)


async def test_head_slash_is_the_page_head_without_its_body():
    async with serve(demo.handler) as (_, port):
        answer = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(demo.PAGE.encode())}".encode() in head
    assert body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_slash_are_echoed(method):
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"http://127.0.0.1:{port}/?a=1",
                                       data="some body") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                text = await response.text()
    lines = text.splitlines()
    assert lines[0] == f"{method} /?a=1 HTTP/1.1"
    assert "Content-Length: 9" in lines
    assert lines[-4:] == ["body: 9 bytes, UTF-8 text:", "some body", "", "served by lowserver"]


async def test_a_chunked_body_is_echoed_exactly():
    request = (b"POST /upload HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n, wire\r\n0\r\n\r\n")
    async with serve(demo.handler) as (_, port):
        answer = await exchange(port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body.decode() == ("POST /upload HTTP/1.1\n\nHost: demo\nTransfer-Encoding: chunked\n"
                             "Connection: close\n\nbody: 11 bytes, UTF-8 text:\nhello, wire\n\n"
                             "served by lowserver\n")


async def test_a_binary_body_is_echoed_as_hex():
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/image",
                                    data=b"\x89PNG\r\n\x1a\n") as response:
                text = await response.text()
    assert text.splitlines()[-4:] == [
        "body: 8 bytes, not UTF-8 text; the first 8 in hex:",
        "  0000  89 50 4e 47 0d 0a 1a 0a                          .PNG....",
        "", "served by lowserver"]


async def test_a_large_body_is_counted_and_only_its_start_echoed():
    size = 5 * demo.ECHO_LIMIT + 3
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/big", data=b"a" * size) as response:
                assert response.status == 200
                text = await response.text()
    assert f"body: {size} bytes, UTF-8 text; only the first {demo.ECHO_LIMIT} echoed:" in text
    assert "a" * demo.ECHO_LIMIT in text and "a" * (demo.ECHO_LIMIT + 1) not in text
    assert len(text) < demo.ECHO_LIMIT + 1024


async def test_ws_without_an_upgrade_is_echoed():
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/ws") as response:
                assert response.status == 200
                assert (await response.text()).startswith("GET /ws HTTP/1.1\n")


async def test_stream_sends_n_lines_chunked():
    async with serve(demo.handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/stream?n=3") as response:
                assert response.headers["Transfer-Encoding"] == "chunked"
                assert await response.text() == "line 1 of 3\nline 2 of 3\nline 3 of 3\n"
            async with session.get(f"http://127.0.0.1:{port}/stream?n=many") as response:
                assert response.status == 400
                assert await response.text() == "n must be a whole number"


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_the_websocket_echoes_with_aiohttp_client(compress):
    async with serve(demo.handler) as (server, port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws",
                                          compress=compress) as ws:
                assert ws.compress == compress
                await ws.send_str("héllo ✓")
                message = await asyncio.wait_for(ws.receive(), LONG)
                assert (message.type, message.data) == (aiohttp.WSMsgType.TEXT, "héllo ✓")
                await ws.send_bytes(bytes(range(256)) * 64)
                message = await asyncio.wait_for(ws.receive(), LONG)
                assert (message.type, message.data) == (aiohttp.WSMsgType.BINARY,
                                                        bytes(range(256)) * 64)
                await ws.close()
            assert ws.close_code == 1000


# --- python -m lowserver ------------------------------------------------------------------

async def test_python_m_lowserver_serves_the_page_and_stops_on_sigint():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lowserver", "--host", "127.0.0.1", "--port", "0",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        match = re.search(rb"http://127\.0\.0\.1:(\d+)/", first)
        assert match, first
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{int(match.group(1))}/") as response:
                assert response.status == 200
                assert await response.text() == demo.PAGE
        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stdout.read(), LONG)
        assert await asyncio.wait_for(process.wait(), LONG) == 0, rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
