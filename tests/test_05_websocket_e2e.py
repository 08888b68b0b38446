"""Stage 05, end to end: WebSocketResponse behind lowserver's Server, over loopback sockets.

Two independent clients, aiohttp's WebSocket client and the `websockets` library, echo
messages of every length class (7-, 16- and 64-bit lengths, up to 16 MiB) with and without
permessage-deflate; a raw socket sends hand-made frames that break RFC 6455 and reads the
close code of the server's Close frame; the closing handshake both ways, the heartbeat, the
bytes behind the handshake and `Server.shutdown()` (1001). Every server binds port 0 on
127.0.0.1; every wait is bounded and no duration is asserted.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from websockets.asyncio.client import connect as websockets_connect

from lowserver import web
from loopback import client_frame, echo_handler, read_frame, read_head, serve
from lowserver.websocket_frames import WSMsgType, frame_header

pytestmark = pytest.mark.usefixtures("mask_path")   # both masking paths: tests/conftest.py

LONG = 20.0           # upper bound for anything that should take (much) less
SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")




def payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def text(size: int) -> str:
    return ("aé€𝄞" * (size // 10 + 1))[:size // 3]


# --- echo with two independent clients ----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_echo_with_aiohttp_client(compress):
    results = []
    async with serve(echo_handler(results, max_msg_size=32 << 20)) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", compress=compress,
                                          max_msg_size=32 << 20) as ws:
                assert ws.compress == compress
                for size in SIZES:
                    data = payload(size)
                    await ws.send_bytes(data)
                    message = await asyncio.wait_for(ws.receive(), LONG)
                    assert message.type == aiohttp.WSMsgType.BINARY
                    assert message.data == data, size
                    await ws.send_str(text(size))
                    message = await asyncio.wait_for(ws.receive(), LONG)
                    assert message.type == aiohttp.WSMsgType.TEXT
                    assert message.data == text(size), size
            assert ws.close_code == 1000
        await _settle(results)
    seen, close_code, exception, negotiated = results[0]
    assert len(seen) == 2 * len(SIZES)
    assert close_code == 1000 and exception is None and negotiated == compress


@pytest.mark.slow
@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_echo_with_websockets_library(compression):
    results = []
    async with serve(echo_handler(results, max_msg_size=32 << 20)) as (_, port):
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws", compression=compression,
                                      max_size=None, open_timeout=LONG,
                                      close_timeout=LONG) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (extensions is not None) == (compression is not None)
            for size in SIZES:
                data = payload(size)
                await ws.send(data)
                assert await asyncio.wait_for(ws.recv(), LONG) == data, size
                await ws.send(text(size))
                assert await asyncio.wait_for(ws.recv(), LONG) == text(size), size
        assert ws.close_code == 1000
        await _settle(results)
    seen, close_code, exception, negotiated = results[0]
    assert len(seen) == 2 * len(SIZES)
    assert close_code == 1000 and exception is None
    assert negotiated == (15 if compression else 0)


async def _settle(results: list) -> None:
    """Wait (bounded) for the handler to record its results."""
    for _ in range(int(LONG / 0.01)):
        if results:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the handler did not finish")


async def test_fragmented_and_interleaved_from_websockets():
    """The websockets library fragments an async iterator into one message's frames."""
    async with serve(echo_handler()) as (_, port):
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
            async def pieces():
                for piece in (b"frag", b"men", b"ted"):
                    yield piece
            await ws.send(pieces())
            assert await asyncio.wait_for(ws.recv(), LONG) == b"fragmented"
            pong = await ws.ping(b"between")
            await asyncio.wait_for(pong, LONG)                 # autoping answered


async def test_server_fragments_with_max_frame_size():
    async with serve(echo_handler(max_frame_size=1000)) as (_, port):
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
            await ws.send(payload(10_000))
            assert await asyncio.wait_for(ws.recv(), LONG) == payload(10_000)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", compress=15) as ws:
                await ws.send_str(text(30_000))
                assert (await asyncio.wait_for(ws.receive(), LONG)).data == text(30_000)


async def test_subprotocol_and_server_initiated_close():
    async def handler(request):
        ws = web.WebSocketResponse(protocols=("v1.chat", "v2.chat"))
        await ws.prepare(request)
        await ws.send_str(f"hello {ws.ws_protocol}")
        await ws.close(code=4000, message=b"bye")
        return ws

    async with serve(handler) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws",
                                          protocols=("v2.chat", "v1.chat")) as ws:
                assert ws.protocol == "v2.chat"
                assert (await ws.receive()).data == "hello v2.chat"
                message = await asyncio.wait_for(ws.receive(), LONG)
                assert message.type == aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (4000, "bye")
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws",
                                      subprotocols=["v1.chat"]) as ws:
            assert ws.subprotocol == "v1.chat"
            assert await ws.recv() == "hello v1.chat"
            await asyncio.wait_for(ws.wait_closed(), LONG)
            assert (ws.close_code, ws.close_reason) == (4000, "bye")


async def test_ping_pong_with_aiohttp_client():
    async with serve(echo_handler()) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws",
                                          autoping=False) as ws:
                await ws.ping(b"are you there")
                message = await asyncio.wait_for(ws.receive(), LONG)
                assert (message.type, message.data) == (aiohttp.WSMsgType.PONG,
                                                        b"are you there")


# --- the handshake on the wire ---------------------------------------------------------------

async def open_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection to /ws, past the handshake (its 101 read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HANDSHAKE)
        await read_head(reader)
    except BaseException:
        writer.close()
        raise
    return reader, writer


@pytest.mark.parametrize("replace, status, expect", [
    (b"Sec-WebSocket-Version: 13", 426, b"\r\nSec-WebSocket-Version: 13\r\n"),
    (b"Upgrade: websocket", 400, b"the Upgrade header must contain 'websocket'"),
    (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 400, b"Sec-WebSocket-Key"),
])
async def test_refused_handshakes(replace, status, expect):
    async with serve(echo_handler()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            request = HANDSHAKE.replace(replace, b"X-Nothing: 0" if status == 400 else
                                        b"Sec-WebSocket-Version: 8")
            writer.write(request)
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 %d " % status)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await asyncio.wait_for(reader.readexactly(length), LONG)
            assert expect in head + body
        finally:
            writer.close()


async def test_frames_right_behind_the_handshake():
    async with serve(echo_handler()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(HANDSHAKE + client_frame(b"early") + client_frame(b"bird"))
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
            assert await read_frame(reader) == (0x82, b"early")
            assert await read_frame(reader) == (0x82, b"bird")
        finally:
            writer.close()


# --- protocol errors over a raw socket ------------------------------------------------------

def with_first_byte(first: int, frame: bytes) -> bytes:
    return bytes((first,)) + frame[1:]


PROTOCOL_ERRORS = [
    ("unmasked frame", frame_header(2, 0x2) + b"hi", 1002),
    ("reserved opcode", client_frame(b"x", 0x3), 1002),
    ("reserved control opcode", client_frame(b"x", 0xB), 1002),
    ("RSV1 without extension", with_first_byte(0xC2, client_frame(b"x")), 1002),
    ("RSV2", with_first_byte(0xA2, client_frame(b"x")), 1002),
    ("RSV3", with_first_byte(0x92, client_frame(b"x")), 1002),
    ("fragmented control frame", client_frame(b"x", 0x9, fin=False), 1002),
    ("control frame over 125 bytes", with_first_byte(0x89, client_frame(bytes(126))), 1002),
    ("continuation without a message", client_frame(b"x", 0x0), 1002),
    ("new message inside a fragmented one",
     client_frame(b"a", 0x1, fin=False) + client_frame(b"b", 0x1), 1002),
    ("bad UTF-8", client_frame(b"\xce\xbaxyz\xed\xa0\x80", 0x1), 1007),
    ("bad UTF-8 across fragments",
     client_frame(b"\xce", 0x1, fin=False) + client_frame(b"\xff", 0x0), 1007),
    ("too big", client_frame(bytes(4 * 1024 * 1024 + 1)), 1009),
    ("close code 1005 in a frame", client_frame((1005).to_bytes(2, "big"), 0x8), 1002),
    ("close code 1006 in a frame", client_frame((1006).to_bytes(2, "big"), 0x8), 1002),
    ("close code 999", client_frame((999).to_bytes(2, "big"), 0x8), 1002),
    ("1-byte close payload", client_frame(b"\x03", 0x8), 1002),
    ("close reason not UTF-8", client_frame(b"\x03\xe8\xff", 0x8), 1007),
]


@pytest.mark.parametrize("name, data, code", PROTOCOL_ERRORS,
                         ids=[case[0] for case in PROTOCOL_ERRORS])
async def test_protocol_error_close_codes(name, data, code):
    results = []
    async with serve(echo_handler(results)) as (_, port):
        reader, writer = await open_websocket(port)
        try:
            writer.write(client_frame(b"fine") + data)
            await writer.drain()
            assert await read_frame(reader) == (0x82, b"fine")
            first, body = await read_frame(reader)
            assert first == 0x88, "a Close frame"
            assert int.from_bytes(body[:2], "big") == code
            body[2:].decode("utf-8")                          # a reason, valid UTF-8
            writer.write_eof()                                # we hang up: so does the server
            assert await asyncio.wait_for(reader.read(), LONG) == b""
        finally:
            writer.close()
        await _settle(results)
    seen, close_code, exception, _ = results[0]
    assert seen == [WSMsgType.BINARY, WSMsgType.ERROR]
    assert close_code == code and exception.code == code     # aiohttp reports 1006


async def test_peer_close_is_answered_and_echoed():
    results = []
    async with serve(echo_handler(results)) as (_, port):
        reader, writer = await open_websocket(port)
        try:
            writer.write(client_frame(b"last") + client_frame(b"\x0f\xa0bye", 0x8))
            assert await read_frame(reader) == (0x82, b"last")  # answered before the Close
            assert await read_frame(reader) == (0x88, b"\x0f\xa0")
            assert await asyncio.wait_for(reader.read(), LONG) == b""   # the server closes
        finally:
            writer.close()
        await _settle(results)
    assert results[0][:3] == ([WSMsgType.BINARY], 4000, None)


async def test_dropped_connection_is_1006():
    results = []
    async with serve(echo_handler(results)) as (_, port):
        reader, writer = await open_websocket(port)
        writer.close()                                        # no Close frame
        await _settle(results)
    assert results[0][1] == 1006


# --- heartbeat and shutdown ------------------------------------------------------------------

async def test_heartbeat_without_answer_drops_the_connection():
    results = []
    async with serve(echo_handler(results, heartbeat=0.05)) as (_, port):
        reader, writer = await open_websocket(port)
        try:
            assert await read_frame(reader) == (0x89, b"")          # a ping we ignore
            assert await asyncio.wait_for(reader.read(), LONG) == b""  # no Close: dropped
        finally:
            writer.close()
        await _settle(results)
    seen, close_code, exception, _ = results[0]
    assert seen == [WSMsgType.ERROR] and close_code == 1006
    assert isinstance(exception, asyncio.TimeoutError)


async def test_heartbeat_answered_by_a_client_keeps_it_open():
    async with serve(echo_handler(heartbeat=0.05)) as (_, port):
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await asyncio.sleep(0.3)                   # several heartbeats, all answered
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), LONG) == "still here"


async def test_shutdown_closes_open_websockets_with_1001():
    results = []
    async with serve(echo_handler(results)) as (server, port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                await ws.send_str("up")
                assert (await ws.receive()).data == "up"
                async with websockets_connect(f"ws://127.0.0.1:{port}/ws") as other:
                    await other.send("up")
                    assert await other.recv() == "up"
                    shutdown = asyncio.create_task(server.shutdown(LONG))
                    message = await asyncio.wait_for(ws.receive(), LONG)
                    assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1001)
                    await asyncio.wait_for(other.wait_closed(), LONG)
                    assert other.close_code == 1001
                    await asyncio.wait_for(shutdown, LONG)
        await _settle(results)
    assert [result[1] for result in results] == [1001, 1001]
