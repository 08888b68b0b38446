"""Stage 05, hardening (issue 10): the rules found lax, each over a real loopback socket.

- Tokens are ASCII (RFC 9110 §5.6.2, RFC 6455 §4.2.1): `Upgrade: websoc\\u212aet` (KELVIN
  SIGN, which `str.lower()` folds to "k") is no WebSocket upgrade, nor is a token trimmed of
  a Unicode space.
- `close_code` after the server's Close went unanswered is 1006 (RFC 6455 §7.1.5); after the
  server failed the connection, the code it sent.
- Failing the connection ends it at once (RFC 6455 §7.1.7): the peer reads our Close frame,
  then the end of the stream, without sending its own Close; a normal closing handshake
  still waits for the peer's Close.
- permessage-deflate streams with final blocks (RFC 7692 §7.2.2, §7.2.3.4): messages that end
  in a BFINAL block, later messages that refer back across it, several final blocks in one
  message; the size limit (1009) still holds.

Every server binds port 0 on 127.0.0.1 and every wait is bounded.
"""
from __future__ import annotations

import asyncio
import random
import zlib

import pytest

from loopback import MASK, client_frame, echo_handler, read_frame, read_head, serve
from lowserver import web
from lowserver.websocket_deflate import PerMessageDeflate, negotiate_permessage_deflate
from lowserver.websocket_frames import (
    FrameWriter,
    WSMsgType,
    build_frame,
    frame_header,
)
from lowserver.websocket_handshake import WSHandshakeError, server_handshake
from lowserver.websocket_parser import WebSocketParser

pytestmark = pytest.mark.usefixtures("mask_path")   # both masking paths: tests/conftest.py

LONG = 10.0           # upper bound for anything that should take (much) less
SOON = 1.0            # "at once", generously: what the old behaviour took 10 s to do
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY}


def handshake(*, upgrade: str = "websocket", version: str = "13", key: str = KEY,
              extra: str = "") -> bytes:
    """The bytes of an opening handshake; the values go on the wire as UTF-8."""
    return (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: {upgrade}\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode("utf-8")


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await read_head(reader)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await asyncio.wait_for(reader.readexactly(length), LONG)


async def settle(results: list) -> None:
    """Wait (bounded) for the handler to record its results."""
    for _ in range(int(LONG / 0.01)):
        if results:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the handler did not finish")


# --- 6. tokens are ASCII ------------------------------------------------------------------

@pytest.mark.parametrize("fields, status, expect", [
    ({"upgrade": "websoc\u212aet"}, 400, b"the Upgrade header must contain 'websocket'"),
    ({"upgrade": "WEBSOC\u212aET"}, 400, b"the Upgrade header must contain 'websocket'"),
    ({"upgrade": "websocket\u00a0"}, 400, b"the Upgrade header must contain 'websocket'"),
    ({"upgrade": "h2c, websoc\u212aet"}, 400, b"the Upgrade header must contain 'websocket'"),
    ({"version": "13\u00a0"}, 426, b"unsupported Sec-WebSocket-Version"),
    ({"key": KEY + "\u00a0"}, 400, b"is not the base64 encoding of 16 bytes"),
], ids=["kelvin", "kelvin-upper", "nbsp", "kelvin-in-list", "version-nbsp", "key-nbsp"])
async def test_non_ascii_look_alikes_are_no_websocket_handshake(fields, status, expect):
    async with serve(echo_handler()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(handshake(**fields))
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 %d " % status), head
            assert expect in body
        finally:
            writer.close()


@pytest.mark.parametrize("upgrade", ["websocket", "WebSocket", "WEBSOCKET", "h2c, WebSocket"])
async def test_ascii_case_still_does_not_matter(upgrade):
    async with serve(echo_handler()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(handshake(upgrade=upgrade))
            assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
        finally:
            writer.close()


def test_header_names_of_a_plain_mapping_fold_ascii_only():
    """server_handshake() also takes a plain mapping: its names are folded as ASCII too."""
    fields = {**GOOD}
    fields["Sec-WebSocket-\u212aey"] = fields.pop("Sec-WebSocket-Key")
    with pytest.raises(WSHandshakeError, match="exactly one Sec-WebSocket-Key"):
        server_handshake("GET", (1, 1), fields)
    fields = {name.upper(): value for name, value in GOOD.items()}
    assert server_handshake("GET", (1, 1), fields).headers["Upgrade"] == "websocket"


# --- frames over a raw socket -----------------------------------------------------------------

def close_frame(code: int, reason: bytes = b"") -> bytes:
    return client_frame(code.to_bytes(2, "big") + reason, WSMsgType.CLOSE)


async def open_websocket(port: int, request: bytes | None = None
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A raw connection to /ws, past the handshake: (reader, writer, the 101's head)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request or handshake())
        head = await read_head(reader)
        assert head.startswith(b"HTTP/1.1 101 "), head
    except BaseException:
        writer.close()
        raise
    return reader, writer, head


def closing_handler(results: list, code: int = 4000, **options):
    """The server begins the closing handshake at once, and records how it ended."""
    async def handler(request):
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        closed = await ws.close(code=code, message=b"bye")
        results.append((closed, ws.close_code, ws.exception()))
        return ws
    return handler


# --- 9. close_code after an unanswered Close ----------------------------------------------------

async def test_close_unanswered_within_the_timeout_is_1006():
    results = []
    async with serve(closing_handler(results, timeout=0.2)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            assert await read_frame(reader) == (0x88, b"\x0f\xa0bye")
            # we never answer: after its timeout, the server closes anyway
            assert await asyncio.wait_for(reader.read(), LONG) == b""
        finally:
            writer.close()
        await settle(results)
    closed, close_code, exception = results[0]
    assert closed is True
    assert close_code == 1006                                # RFC 6455 §7.1.5, not 4000
    assert isinstance(exception, asyncio.TimeoutError)


async def test_close_unanswered_before_the_peer_hangs_up_is_1006():
    results = []
    async with serve(closing_handler(results, timeout=LONG)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            assert await read_frame(reader) == (0x88, b"\x0f\xa0bye")
            writer.write_eof()                               # a FIN, no Close frame
            assert await asyncio.wait_for(reader.read(), LONG) == b""
        finally:
            writer.close()
        await settle(results)
    assert results[0][:2] == (True, 1006)


async def test_close_answered_keeps_its_code():
    results = []
    async with serve(closing_handler(results, timeout=LONG)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            assert await read_frame(reader) == (0x88, b"\x0f\xa0bye")
            writer.write(close_frame(4000))
            assert await asyncio.wait_for(reader.read(), LONG) == b""
        finally:
            writer.close()
        await settle(results)
    assert results[0] == (True, 4000, None)


# --- 12. failing the connection ends it -------------------------------------------------------

FAILURES = [
    ("unmasked frame", frame_header(2, 0x2) + b"hi", 1002),
    ("reserved opcode", client_frame(b"x", 0x3), 1002),
    ("bad UTF-8", client_frame(b"\xce\xbaxyz\xed\xa0\x80", 0x1), 1007),
    ("too big", client_frame(bytes(17)), 1009),
    ("close code 1006 in a frame", close_frame(1006), 1002),
]


@pytest.mark.parametrize("name, data, code", FAILURES, ids=[case[0] for case in FAILURES])
async def test_failing_the_connection_ends_it_at_once(name, data, code):
    """RFC 6455 §7.1.7: after our Close frame, the end of the connection, with no wait for
    the peer's Close (the server's `timeout`, 10 s, is not waited for either)."""
    results = []
    async with serve(echo_handler(results, max_msg_size=16)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            writer.write(client_frame(b"fine") + data)
            assert await read_frame(reader) == (0x82, b"fine")
            first, body = await read_frame(reader)
            assert first == 0x88 and int.from_bytes(body[:2], "big") == code
            # nothing sent: no Close, no FIN; the server's side ends anyway
            assert await asyncio.wait_for(reader.read(), SOON) == b""
        finally:
            writer.close()                                   # and when we hang up...
        await asyncio.wait_for(settle(results), SOON)        # ...the handler is done
    seen, close_code, exception, _ = results[0]
    assert seen == [WSMsgType.BINARY, WSMsgType.ERROR]
    assert close_code == code and exception.code == code     # the code sent (aiohttp: 1006)


async def test_failing_while_the_peer_keeps_sending_still_delivers_the_close():
    """The peer's bytes keep coming after the error: they are read and dropped, so that our
    Close frame and the end of the stream reach the peer, not a TCP reset."""
    results = []
    async with serve(echo_handler(results)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            writer.write(client_frame(b"x", 0x3) + client_frame(bytes(1 << 20)) * 4)
            drained = asyncio.ensure_future(writer.drain())
            first, body = await read_frame(reader)
            assert first == 0x88 and body[:2] == (1002).to_bytes(2, "big")
            assert await asyncio.wait_for(reader.read(), SOON) == b""
            await asyncio.wait_for(drained, LONG)            # all 4 MiB taken: no reset
        finally:
            writer.close()
        await settle(results)
    assert results[0][1] == 1002


async def test_a_normal_closing_handshake_still_waits_for_the_peer():
    results = []
    async with serve(closing_handler(results, code=1000, timeout=LONG)) as (_, port):
        reader, writer, _ = await open_websocket(port)
        try:
            assert await read_frame(reader) == (0x88, b"\x03\xe8bye")
            with pytest.raises(asyncio.TimeoutError):        # the server waits for our Close
                await asyncio.wait_for(reader.read(1), 0.3)
            assert not results
            writer.write(close_frame(1000))
            assert await asyncio.wait_for(reader.read(), LONG) == b""   # then closes first
        finally:
            writer.close()
        await settle(results)
    assert results[0] == (True, 1000, None)


# --- 11. permessage-deflate streams with final blocks -----------------------------------------

WINDOW = 32 * 1024
TAIL = b"\x00\x00\xff\xff"
DEFLATE = handshake(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")


def final_blocks(parts: list[bytes], window: bytes) -> tuple[bytes, bytes]:
    """A client's compressed payload: each part a DEFLATE stream of its own, started with the
    window so far as its dictionary (so it refers back to earlier parts and messages) and
    ended by a final block (Z_FINISH); then RFC 7692 §7.2.1: an empty stored block appended
    (00 00 00 ff ff), its last 4 bytes removed. Returns (payload, the window after it)."""
    payload = b""
    for part in parts:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=window)
        payload += compressor.compress(part) + compressor.flush(zlib.Z_FINISH)
        window = (window + part)[-WINDOW:]
    return payload + b"\x00\x00\x00\xff\xff"[:-4], window


class DeflateClient:
    """A raw-socket client with permessage-deflate: it sends hand-built frames (RSV1 set,
    masked) and reads the server's compressed echoes with a zlib decompressor of its own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.window = b""
        self.inflate = zlib.decompressobj(-15)

    def send(self, parts: list[bytes], opcode: int = WSMsgType.BINARY) -> bytes:
        payload, self.window = final_blocks(parts, self.window)
        self.writer.write(client_frame(payload, opcode, rsv1=True))
        return payload

    async def receive(self) -> tuple[int, bytes]:
        first, body = await read_frame(self.reader)
        if first & 0x40:                                     # RSV1: compressed (RFC 7692 §6)
            body = self.inflate.decompress(body + TAIL)
        return first & ~0x40, body


async def open_deflate(port: int) -> DeflateClient:
    reader, writer, head = await open_websocket(port, DEFLATE)
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in head
    return DeflateClient(reader, writer)


def rotations(seed: int, size: int, count: int) -> list[bytes]:
    """`count` messages, each the same random bytes rotated: each refers back to the last."""
    base = random.Random(seed).randbytes(size)
    step = size // count
    return [base[k * step:] + base[:k * step] for k in range(count)]


async def test_messages_ending_in_final_blocks_refer_back_across_them():
    """RFC 7692 §7.2.2: the window outlives the final block that ends each message."""
    async with serve(echo_handler()) as (_, port):
        client = await open_deflate(port)
        try:
            messages = rotations(7692, 12 * 1024, 6)        # 72 KiB: past one 32 KiB window
            for number, data in enumerate(messages):
                payload = client.send([data])
                if number:                                  # back-references, not the bytes
                    assert len(payload) < len(data) // 8
                assert await client.receive() == (0x82, data), number
            for text in ("Hello, world", "Hello, world, Hello, world"):
                client.send([text.encode()], WSMsgType.TEXT)
                assert await client.receive() == (0x81, text.encode())
        finally:
            client.writer.close()


async def test_several_final_blocks_in_one_message():
    async with serve(echo_handler()) as (_, port):
        client = await open_deflate(port)
        try:
            a, b, c = rotations(7693, 6 * 1024, 3)
            parts = [a, b[:3000], a + c]                    # later streams repeat earlier ones
            client.send(parts)
            assert await client.receive() == (0x82, b"".join(parts))
            client.send([b"".join(parts)])                  # and the next message refers back
            assert await client.receive() == (0x82, b"".join(parts))
            client.send([b"one ", b"two ", b"one two"], WSMsgType.TEXT)
            assert await client.receive() == (0x81, b"one two one two")
        finally:
            client.writer.close()


async def test_a_bomb_made_of_final_blocks_is_still_1009():
    results = []
    async with serve(echo_handler(results, max_msg_size=1 << 20)) as (_, port):
        client = await open_deflate(port)
        try:
            payload = client.send([bytes(512 * 1024)] * 3)   # 1.5 MiB from ~1.5 KB
            assert len(payload) < 4096
            first, body = await read_frame(client.reader)
            assert first == 0x88 and body[:2] == (1009).to_bytes(2, "big")
            assert await asyncio.wait_for(client.reader.read(), SOON) == b""
        finally:
            client.writer.close()
        await settle(results)
    assert results[0][1] == 1009


async def test_too_many_final_blocks_in_one_piece_is_1008():
    """An empty final block is two bytes (03 00) and costs a new decompressor: bounded."""
    async with serve(echo_handler()) as (_, port):
        client = await open_deflate(port)
        try:
            client.writer.write(client_frame(b"\x03\x00" * 1000 + b"\x00", rsv1=True))
            first, body = await read_frame(client.reader)
            assert first == 0x88 and body[:2] == (1008).to_bytes(2, "big")
            assert b"too many DEFLATE streams" in body
        finally:
            client.writer.close()


def test_history_from_before_the_first_final_block_is_never_misread():
    """The window is kept from the first final block on (the common path keeps none): a
    reference from a later message to data before the message that carried that first final
    block is either read right, or refused with 1007; never decoded wrong."""
    a = random.Random(7694).randbytes(4000)
    writer = FrameWriter(deflate=PerMessageDeflate(), mask=True)
    server = WebSocketParser(deflate=PerMessageDeflate())
    assert server.feed(b"".join(writer.message(a))) == [(WSMsgType.BINARY, a, "")]  # sync flush
    payload, window = final_blocks([b"then a final block"], a)
    assert server.feed(build_frame(payload, 0x2, rsv1=True, mask=MASK)) == [
        (WSMsgType.BINARY, b"then a final block", "")]
    payload, _ = final_blocks([a], window)                   # refers back to `a`
    last, = server.feed(build_frame(payload, 0x2, rsv1=True, mask=MASK))
    assert last == (WSMsgType.BINARY, a, "") or (
        last.type is WSMsgType.ERROR and last.data.code == 1007), last


def test_no_context_takeover_with_final_blocks():
    """client_no_context_takeover: each message stands alone, final blocks or not."""
    deflate = PerMessageDeflate(negotiate_permessage_deflate(
        "permessage-deflate; client_no_context_takeover"))
    server = WebSocketParser(deflate=deflate)
    for parts in ([b"abc", b"abcabc"], [b"xyz"], [b"abc" * 100]):
        payload, _ = final_blocks(parts, b"")               # no window across messages
        assert server.feed(build_frame(payload, 0x2, rsv1=True, mask=MASK)) == [
            (WSMsgType.BINARY, b"".join(parts), "")]
