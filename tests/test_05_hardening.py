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

import pytest

from loopback import serve
from lowserver import web
from lowserver.websocket_protocol import WSHandshakeError, WSMsgType, server_handshake

LONG = 10.0           # upper bound for anything that should take (much) less
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY}


def handshake(*, upgrade: str = "websocket", version: str = "13", key: str = KEY,
              extra: str = "") -> bytes:
    """The bytes of an opening handshake; the values go on the wire as UTF-8."""
    return (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: {upgrade}\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode("utf-8")


def echo_handler(results: list | None = None, **options):
    """An echo WebSocket; what it saw at the end goes to `results`."""
    async def handler(request):
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        seen = []
        async for msg in ws:
            seen.append(msg.type)
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        if results is not None:
            results.append((seen, ws.close_code, ws.exception()))
        return ws
    return handler


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)


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
