"""Stage 05, end to end: random frame sequences, valid and broken, over loopback sockets.

After a real handshake (with and without permessage-deflate), each connection sends a few
frames of random opcodes, payloads (close codes valid and not, bad UTF-8), FIN and RSV bits,
sometimes a flipped byte or the rest cut off, then half-closes. The echo server must answer
the handshake with 101, put only well-formed unmasked frames on the wire, close at most once
and with a code that may be sent (RFC 6455 §7.4: never 1005, 1006 or 1015; an echoed
3000-4999 is fine), never hang, and never log an error of its own. Seeded: the same cases every run.
"""
from __future__ import annotations

import asyncio
import logging
import random
import struct

import pytest

from lowserver import web
from loopback import LONG, serve
from lowserver.websocket_frames import apply_mask, frame_header

pytestmark = pytest.mark.usefixtures("mask_path")   # both masking paths: tests/conftest.py


async def echo(request):
    ws = web.WebSocketResponse(compress=request.query.get("c") == "1", max_msg_size=1 << 16)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == web.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def client_frame(rnd: random.Random) -> bytes:
    opcode = rnd.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB])
    payload = rnd.choice([
        b"", b"hi", "héllo".encode(), b"\xff\xfe", rnd.randbytes(rnd.randint(0, 300)),
        struct.pack("!H", rnd.choice([1000, 1001, 999, 1005, 3000, 5000])) + b"bye"])
    first = (0x80 if rnd.random() < 0.8 else 0) | rnd.choice([0, 0, 0, 0x40, 0x20]) | opcode
    mask = rnd.randbytes(4)
    head = bytearray(frame_header(len(payload), 0, mask=mask))
    head[0] = first
    return bytes(head) + apply_mask(mask, payload)


def case(rnd: random.Random) -> bytes:
    data = b"".join(client_frame(rnd) for _ in range(rnd.randint(1, 6)))
    if rnd.random() < 0.3:
        broken = bytearray(data)
        broken[rnd.randrange(len(broken))] = rnd.randrange(256)
        data = bytes(broken)
    if rnd.random() < 0.2:
        data = data[:rnd.randrange(len(data) + 1)]
    return data


def sendable(code: int) -> bool:
    """RFC 6455 §7.4.1-§7.4.2 and IANA's registry: the codes a Close frame may carry."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every frame the server sent; asserts they are well formed."""
    frames, pos = [], 0
    while pos < len(data):
        assert len(data) - pos >= 2, data[pos:]
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80 == 0, "a server never masks (RFC 6455 §5.1)"
        length, pos = b1 & 0x7F, pos + 2
        if length == 126:
            length, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif length == 127:
            length, pos = struct.unpack("!Q", data[pos:pos + 8])[0], pos + 8
        assert len(data) - pos >= length, "a frame cut short"
        frames.append((b0 & 0x0F, data[pos:pos + length]))
        pos += length
    return frames


async def run_case(port: int, data: bytes, compress: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = b"dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455's sample key: the same bytes every run
        writer.write(b"GET /?c=%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: %b\r\n%b\r\n%b"
                     % (compress, key, b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                        if compress else b"", data))
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), LONG)
    finally:
        writer.close()


@pytest.mark.parametrize("seed", range(3))
async def test_random_frame_sequences_get_well_formed_answers_and_valid_close_codes(
        seed, caplog):
    caplog.set_level(logging.WARNING)
    rnd = random.Random(seed)
    cases = [(case(rnd), rnd.random() < 0.5) for _ in range(60)]
    async with serve(echo) as (_server, port):
        answers = await asyncio.gather(*(run_case(port, data, c) for data, c in cases))
    for (data, _compress), answer in zip(cases, answers):
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), answer[:80]
        closes = [payload for opcode, payload in server_frames(rest) if opcode == 0x8]
        assert len(closes) <= 1, (data, rest)
        for payload in closes:   # no body at all, or a code that may go in a frame
            assert payload == b"" or (len(payload) >= 2 and sendable(
                struct.unpack("!H", payload[:2])[0])), (data, payload)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
