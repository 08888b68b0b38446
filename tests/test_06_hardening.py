"""Issue 10, end to end: no bad input hangs a connection, every request framed by the RFC.

Raw sockets (asyncio streams) for exact and malformed bytes, aiohttp's client where a real
client matters. Every server binds port 0 on 127.0.0.1; every wait is bounded; no test asserts
a duration beyond "within the bound the issue names". `serve()` (tests/loopback.py) checks the
safety net after each scenario: no live connection without a handler task or a timer.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import ssl
import struct
import subprocess
import sys
import textwrap

import aiohttp
import pytest
import trustme

from lowserver import web
from loopback import LONG, client_frame, exchange, read_all, read_frame, serve

# --- helpers ------------------------------------------------------------------------


def statuses(raw: bytes) -> list[int]:
    """The status codes of the responses in `raw` (none of the bodies here holds one)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] ([0-9]{3}) ", raw)]


class Calls:
    """A handler that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, request: web.BaseRequest) -> web.Response:
        self.count += 1
        return web.Response(text=f"{request.method} {request.path}")


# --- 1. authorities the URL library rejects -------------------------------------------

BAD_AUTHORITIES = [
    ("port-above-65535", b"GET http://x:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", b"65535"),
    ("connect-port-above-65535", b"CONNECT example.com:443443 HTTP/1.1\r\n"
                                 b"Host: example.com\r\n\r\n", b"65535"),
    ("unclosed-bracket", b"GET http://[/abs HTTP/1.1\r\nHost: x\r\n\r\n", b"'['"),
    ("ipv6-port-above-65535", b"GET http://[::1]:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", b"65535"),
    ("port-not-a-number", b"GET http://a:12ab/ HTTP/1.1\r\nHost: x\r\n\r\n", b"not a number"),
    ("connect-ipv6-port-above-65535", b"CONNECT [::1]:99999 HTTP/1.1\r\nHost: x\r\n\r\n",
     b"65535"),
    ("idna-failure", b"GET http://xn--a/ HTTP/1.1\r\nHost: x\r\n\r\n", b"IDNA"),
    ("host-field-port-above-65535", b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", b"65535"),
    ("empty-host", b"GET http://:80/ HTTP/1.1\r\nHost: x\r\n\r\n", b"empty host"),
]


@pytest.mark.parametrize("request_bytes, reason", [case[1:] for case in BAD_AUTHORITIES],
                         ids=[case[0] for case in BAD_AUTHORITIES])
async def test_an_authority_no_url_can_hold_is_a_400_and_the_connection_closes(
        request_bytes, reason):
    calls = Calls()
    async with serve(calls) as (server, port):
        raw = await exchange(port, request_bytes)   # read_all: fails if it stays open
        assert statuses(raw) == [400], raw
        assert reason in raw, raw
        assert calls.count == 0


async def test_a_request_factory_that_raises_is_a_400_not_a_dead_task():
    calls = Calls()

    def factory(message, payload, protocol, writer, task):
        if message.path == "/explode":
            raise ValueError("no such request")
        return web.BaseRequest(message, payload, protocol, writer, task, protocol._loop)

    async with serve(calls, request_factory=factory) as (server, port):
        raw = await exchange(port, b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n"
                                   b"GET /explode HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(raw) == [200, 400], raw
        assert b"no such request" in raw
        assert calls.count == 1


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
async def test_two_hundred_bad_authorities_leave_no_descriptor_behind():
    async with serve(Calls()) as (server, port):
        baseline = open_descriptors()

        async def one(index: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(BAD_AUTHORITIES[index % len(BAD_AUTHORITIES)][1])
                writer.write_eof()   # the client gives up and half-closes, as in the issue
                return await read_all(reader)
            finally:
                writer.close()
                await writer.wait_closed()

        answers = await asyncio.gather(*(one(index) for index in range(200)))
        assert all(statuses(raw) == [400] for raw in answers)
        for _ in range(200):   # the server's side closes as soon as each answer is sent
            if open_descriptors() <= baseline and not server.connections:
                break
            await asyncio.sleep(0.05)
        assert open_descriptors() <= baseline, (open_descriptors(), baseline)
        assert not server.connections


# --- 3. a handler that raises a BaseException that is not an Exception ----------------

class Abort(BaseException):
    """A handler's own BaseException."""


async def test_a_custom_base_exception_closes_at_once_and_propagates():
    tasks: list[asyncio.Task] = []

    async def handler(request):
        if request.path == "/abort":
            tasks.append(asyncio.current_task())
            raise Abort("stop")
        return web.Response(text="ok")

    async with serve(handler) as (server, port):
        raw = await exchange(port, b"GET /abort HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw == b""      # closed, and nothing sent
        await asyncio.wait(tasks, timeout=LONG)
        assert isinstance(tasks[0].exception(), Abort)   # it propagated to the task
        raw = await exchange(port, b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(raw) == [200]   # the server serves on


SUBPROCESS_SERVER = textwrap.dedent("""
    import asyncio, sys, time
    from lowserver import web

    async def handler(request):
        raise {exception}

    async def main():
        global server   # kept alive after the loop ends: only the protocol may close
        server = web.Server(handler)
        listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
        print(listener.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)

    try:
        asyncio.run(main())
    except BaseException as exc:
        print("propagated", type(exc).__name__, flush=True)
        time.sleep(10)   # the process lives on: the connection must be closed already
""")


@pytest.mark.parametrize("exception", ["KeyboardInterrupt()", "SystemExit(3)"])
async def test_keyboard_interrupt_and_system_exit_close_the_connection_and_propagate(exception):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBPROCESS_SERVER.format(exception=exception),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(await asyncio.wait_for(process.stdout.readline(), LONG))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            # closed at once, nothing sent, while the process is still alive
            assert await read_all(reader, bound=5.0) == b""
        finally:
            writer.close()
        said = await asyncio.wait_for(process.stdout.readline(), LONG)
        assert said == f"propagated {exception.split('(')[0]}\n".encode()
        assert process.returncode is None
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


# --- 4. read_timeout is the time allowed between two pieces of a body -------------------

async def body_length(request):
    return web.Response(text=str(len(await request.read())))


async def test_a_slow_body_that_keeps_coming_is_read_to_its_end():
    async with serve(body_length, read_timeout=2.0) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20480\r\n\r\n")
            for _ in range(20):   # 1 KiB every 0.25 s: 5 s in all, longer than read_timeout
                await asyncio.sleep(0.25)
                writer.write(b"x" * 1024)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert await asyncio.wait_for(reader.readexactly(5), LONG) == b"20480"
        finally:
            writer.close()


async def test_a_body_that_stops_is_a_408_and_closed():
    async with serve(body_length, read_timeout=2.0) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n")
            for _ in range(4):
                await asyncio.sleep(0.25)
                writer.write(b"x" * 512)
            # ... and then nothing for longer than read_timeout
            raw = await read_all(reader, bound=5.0)
            assert statuses(raw) == [408], raw
        finally:
            writer.close()


# --- 5. Connection on several field lines is one list ------------------------------------

async def test_connection_keep_alive_then_close_on_two_lines_closes():
    async with serve(Calls()) as (server, port):
        raw = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
                                   b"Connection: close\r\n\r\n")   # read_all: it must close
        assert statuses(raw) == [200] and b"Connection: close" in raw


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{connection}"
           b"Sec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


async def ws_echo(request):
    if request.path != "/ws":
        return web.Response(text="plain")
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str("echo " + message.data)
    return ws


async def test_connection_keep_alive_then_upgrade_on_two_lines_is_an_upgrade():
    async with serve(ws_echo) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(UPGRADE.replace(b"{connection}", b"Connection: keep-alive\r\n"
                                                          b"Connection: upgrade\r\n")
                         + client_frame(b"hi", 0x1))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert await read_frame(reader) == (0x81, b"echo hi")
            writer.write(client_frame(struct.pack("!H", 1000), 0x8))
            assert (await read_frame(reader))[0] == 0x88
        finally:
            writer.close()


# --- 6 and 7. tokens are ASCII; chunked takes no parameters -----------------------------

@pytest.mark.parametrize("coding, status", [
    ("chun\u212aed", 400), ("chun\u212aed, chunked", 501), ("chunked;q=1", 400),
], ids=["kelvin-sign", "kelvin-sign-before-chunked", "chunked-with-a-parameter"])
async def test_a_transfer_coding_that_is_not_chunked_is_refused(coding, status):
    calls = Calls()
    async with serve(calls) as (server, port):
        raw = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                   + coding.encode() + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        assert statuses(raw) == [status], raw
        assert calls.count == 0


async def test_a_kelvin_sign_upgrade_is_no_websocket_upgrade():
    async with serve(ws_echo) as (server, port):
        raw = await exchange(port, UPGRADE.replace(b"Upgrade: websocket",
                                                   "Upgrade: websoc\u212aet".encode())
                             .replace(b"{connection}", b"Connection: Upgrade\r\n"),
                             half_close=True)
        assert statuses(raw) and statuses(raw)[0] != 101, raw


# --- 8. the handler's response must be a legal final response -------------------------

async def test_an_interim_status_from_the_handler_is_a_500(caplog):
    async def handler(request):
        if request.path == "/early":
            return web.Response(status=103)
        return web.Response(text="second")

    async with serve(handler) as (server, port):
        with caplog.at_level(logging.ERROR, logger="lowserver.server"):
            raw = await exchange(port, b"GET /early HTTP/1.1\r\nHost: x\r\n\r\n"
                                       b"GET /next HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
        assert statuses(raw) == [500, 200], raw
        assert raw.endswith(b"second")
        assert "interim status 103" in caplog.text


@pytest.mark.parametrize("declared", ["3", "10"], ids=["longer-body", "shorter-body"])
async def test_a_content_length_that_disagrees_with_the_body_is_a_500(declared, caplog):
    async def handler(request):
        response = web.Response(body=b"hello")
        response.headers["Content-Length"] = declared
        return response

    async with serve(handler) as (server, port):
        with caplog.at_level(logging.ERROR, logger="lowserver.server"):
            raw = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(raw) == [500], raw
        assert b"hello" not in raw
        assert "disagrees with the body" in caplog.text


# --- 10. frames pipelined behind an upgrade that follows a request ---------------------

async def test_frames_behind_an_upgrade_behind_a_request_reach_its_handler():
    async with serve(ws_echo) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                         + UPGRADE.replace(b"{connection}", b"Connection: Upgrade\r\n")
                         + client_frame(b"first", 0x1))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert await asyncio.wait_for(reader.readexactly(5), LONG) == b"plain"
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert await read_frame(reader) == (0x81, b"echo first")
            writer.write(client_frame(struct.pack("!H", 1000), 0x8))
            assert (await read_frame(reader))[0] == 0x88
        finally:
            writer.close()


# --- 13. TLS ---------------------------------------------------------------------------



async def test_tls_http_and_websocket_log_no_warning(caplog):
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def handler(request):
        if request.path == "/ws":
            return await ws_echo(request)
        return web.Response(text=f"{request.scheme} {request.secure}")

    server = web.Server(handler)
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.WARNING):
        listener = await loop.create_server(server, "127.0.0.1", 0, ssl=server_context)
        port = listener.sockets[0].getsockname()[1]
        try:
            connector = aiohttp.TCPConnector(ssl=client_context)
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(3):
                    async with session.get(f"https://127.0.0.1:{port}/") as response:
                        assert response.status == 200
                        assert await response.text() == "https True"
                async with session.get(f"https://127.0.0.1:{port}/",
                                       headers={"Connection": "close"}) as response:
                    assert await response.text() == "https True"
                async with session.ws_connect(f"wss://127.0.0.1:{port}/ws") as ws:
                    await ws.send_str("over tls")
                    assert (await ws.receive(timeout=LONG)).data == "echo over tls"
            # and a raw TLS client that half-closes after its request
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert statuses(await read_all(reader)) == [200]
            writer.close()
            for _ in range(100):
                if not server.connections:
                    break
                await asyncio.sleep(0.02)
        finally:
            listener.close()
            server.pre_shutdown()
            await asyncio.wait_for(server.shutdown(1.0), LONG)
            await asyncio.wait_for(listener.wait_closed(), LONG)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not warnings, [record.getMessage() for record in warnings]
