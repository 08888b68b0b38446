"""Stage 05, part 2: `WebSocketResponse` over an in-memory connection.

The client's end is played by hand: masked frames go in through the receiver the response
hands to the connection (stage 06's `upgrade()` contract), and what the server writes is read
back from the `MemoryTransport` with part 1's parser. Handshake answers and refusals (400,
426), message round trips with and without permessage-deflate, autoping, both directions of
the closing handshake, close codes per protocol error, the heartbeat, timeouts, back-pressure
both ways and the server's shutdown.
"""
import asyncio
import json
import logging

import pytest
from multidict import CIMultiDict

from lowserver.exceptions import HTTPBadRequest, HTTPUpgradeRequired
from lowserver.http_parser import HttpVersion
from lowserver.testing import MemoryTransport, MockProtocol, make_mocked_request, run_handler
from lowserver.websocket import (
    MESSAGE_OVERHEAD,
    READ_HIGH_WATER,
    WebSocketReady,
    WebSocketResponse,
    WSMessageTypeError,
)
from lowserver.websocket_deflate import PerMessageDeflate
from lowserver.websocket_frames import (
    FrameWriter,
    WebSocketError,
    WSMsgType,
    apply_mask,
    build_close_frame,
    build_frame,
    frame_header,
)
from lowserver.websocket_handshake import accept_key
from lowserver.websocket_parser import WebSocketParser

TEXT, BINARY, PING, PONG = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG
CLOSE, CLOSING, CLOSED, ERROR = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                 WSMsgType.ERROR)
# The client's FrameWriter(mask=True) draws its masking keys from os.urandom: seeded here
# (conftest.py), so every run sends the same bytes.
pytestmark = pytest.mark.usefixtures("seeded_urandom", "mask_path")   # mask_path: tests/conftest.py

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
HANDSHAKE = {"Host": "example.com", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}


class UpgradableProtocol(MockProtocol):
    """The in-memory connection, with stage 06's hand-over: `upgrade(receiver)` feeds the
    receiver the bytes that came behind the head, then the connection's bytes go to it."""

    def __init__(self, loop, transport, tail=b""):
        super().__init__(loop, transport)
        self.receiver = None
        self.tail = tail

    def upgrade(self, receiver):
        self.receiver = receiver
        if self.tail:
            receiver.data_received(self.tail)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if self.receiver is not None:
            self.receiver.connection_lost(exc)


def client_frame(payload, opcode=BINARY, *, fin=True, rsv1=False, mask=MASK):
    header = frame_header(len(payload), opcode, fin=fin, rsv1=rsv1, mask=mask)
    return header + (apply_mask(mask, payload) if mask else payload)


class Client:
    """The client's end of one in-memory WebSocket connection."""

    def __init__(self, headers=None, *, tail=b"", method="GET", version=HttpVersion(1, 1),
                 deflate=False):
        loop = asyncio.get_running_loop()
        self.transport = MemoryTransport()
        self.protocol = UpgradableProtocol(loop, self.transport, tail)
        self.transport.set_protocol(self.protocol)
        headers = CIMultiDict(HANDSHAKE if headers is None else headers)
        if deflate:
            headers["Sec-WebSocket-Extensions"] = "permessage-deflate"
        self.request = make_mocked_request(method, "/ws", headers, transport=self.transport,
                                           protocol=self.protocol, version=version)
        self.deflate = PerMessageDeflate() if deflate else None
        self.parser = WebSocketParser(0, deflate=self.deflate, from_client=False)
        self.writer = FrameWriter(deflate=self.deflate, mask=True)
        self.head = None

    def feed(self, data: bytes) -> None:
        """Bytes from the client, as the server would pass them on."""
        self.protocol.receiver.data_received(data)

    def send(self, data, opcode=BINARY, **options) -> None:
        self.feed(b"".join(self.writer.message(data, opcode, **options)))

    def send_close(self, code=1000, reason=b"") -> None:
        self.feed(build_close_frame(code, reason, mask=MASK))

    async def output(self) -> bytes:
        """What the server wrote since the last look (the 101 head split off). Frames
        written in one turn of the event loop leave at its end: give it one."""
        await asyncio.sleep(0)
        data = self.transport.take()
        if self.head is None:
            head, sep, data = data.partition(b"\r\n\r\n")
            assert sep, head
            self.head = head + sep
        return data

    async def frames(self) -> list:
        """The server's frames since the last look, as messages."""
        return self.parser.feed(await self.output())


async def open_ws(client=None, **options):
    client = client or Client()
    ws = WebSocketResponse(**options)
    await ws.prepare(client.request)
    assert await client.output() == b""
    return client, ws


def server_frames(data: bytes) -> list:
    """Split unmasked server frames into (first byte, payload)."""
    out, pos = [], 0
    while pos < len(data):
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length, start = int.from_bytes(data[pos + 2:pos + 4], "big"), pos + 4
        elif length == 127:
            length, start = int.from_bytes(data[pos + 2:pos + 10], "big"), pos + 10
        out.append((data[pos], data[start:start + length]))
        pos = start + length
    return out


# --- the opening handshake -----------------------------------------------------------------

async def test_101_head():
    client, ws = await open_ws()
    lines = client.head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    fields = CIMultiDict(line.split(": ", 1) for line in lines[1:] if line)
    assert fields["Upgrade"] == "websocket"
    assert fields["Connection"] == "upgrade"
    assert fields["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" == accept_key(KEY)
    for name in ("Content-Length", "Transfer-Encoding", "Content-Type",
                 "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"):
        assert name not in fields, name                     # RFC 9110 §8.6: no body framing
    assert "Date" in fields and "Server" in fields
    assert ws.prepared and not ws.closed and ws.close_code is None
    assert ws.keep_alive is False                 # the connection ends with the WebSocket
    assert ws.status == 101 and ws.ws_protocol is None and ws.compress == 0
    assert ws.get_extra_info("sockname") == ("127.0.0.1", 80)
    assert ws.get_extra_info("nothing", "default") == "default"


async def test_prepare_twice_sends_one_head():
    client, ws = await open_ws()
    writer = ws._payload_writer
    assert await ws.prepare(client.request) is writer
    assert client.transport.take() == b""


async def test_subprotocol_chosen_in_the_clients_order():
    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "v2.chat, v1.chat"}
    client, ws = await open_ws(Client(headers), protocols=("v1.chat", "v2.chat"))
    assert ws.ws_protocol == "v2.chat"
    assert b"\r\nSec-WebSocket-Protocol: v2.chat\r\n" in client.head


async def test_no_common_subprotocol():
    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "mqtt"}
    client, ws = await open_ws(Client(headers), protocols=("chat",))
    assert ws.ws_protocol is None
    assert b"Sec-WebSocket-Protocol" not in client.head


WS_LOGGER = "lowserver.websocket"       # aiohttp's ws_logger is "aiohttp.websocket" (aiohttp/log.py)


def ws_records(caplog):
    return [(record.name, record.levelno, record.getMessage()) for record in caplog.records
            if record.name == WS_LOGGER]


async def test_no_common_subprotocol_logs_a_warning(caplog):
    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "mqtt, amqp"}
    with caplog.at_level(logging.DEBUG, logger=WS_LOGGER):
        await open_ws(Client(headers), protocols=("chat",))
    assert ws_records(caplog) == [(
        WS_LOGGER, logging.WARNING,
        "None: Client protocols ['mqtt', 'amqp'] don’t overlap server-known ones ('chat',)")]


async def test_no_common_subprotocol_warning_is_aiohttps_word_for_word(caplog):
    """aiohttp 3.14.5's WebSocketResponse, given the same handshake, logs the same line
    (aiohttp/web_ws.py, `_handshake`: `ws_logger.warning(...)`), from `can_prepare()` too."""
    from aiohttp import web as aiohttp_web
    from aiohttp.test_utils import make_mocked_request as aiohttp_mocked_request

    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "mqtt, amqp"}
    for protocols in (["chat"], ("chat", "superchat"), ()):
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            theirs = aiohttp_web.WebSocketResponse(protocols=protocols).can_prepare(
                aiohttp_mocked_request("GET", "/ws", headers=CIMultiDict(headers)))
            ours = WebSocketResponse(protocols=protocols).can_prepare(Client(headers).request)
        assert (theirs.ok, theirs.protocol) == (ours.ok, ours.protocol) == (True, None)
        records = [record for record in caplog.records
                   if record.name in ("aiohttp.websocket", WS_LOGGER)]
        assert [record.name for record in records] == ["aiohttp.websocket", WS_LOGGER]
        aiohttp_record, record = records
        assert aiohttp_record.levelno == record.levelno == logging.WARNING
        assert aiohttp_record.msg == record.msg
        assert aiohttp_record.getMessage() == record.getMessage()


async def test_common_subprotocol_logs_nothing(caplog):
    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "mqtt, chat"}
    with caplog.at_level(logging.DEBUG, logger=WS_LOGGER):
        client, ws = await open_ws(Client(headers), protocols=("chat",))
        assert WebSocketResponse(protocols=["chat"]).can_prepare(Client(headers).request)
        await open_ws(Client(), protocols=("chat",))       # none offered: nothing to say
    assert ws.ws_protocol == "chat"
    assert ws_records(caplog) == []


async def test_permessage_deflate_negotiated():
    client, ws = await open_ws(Client(deflate=True))
    assert ws.compress == 15
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in client.head


async def test_permessage_deflate_window_bits():
    headers = {**HANDSHAKE, "Sec-WebSocket-Extensions":
               "permessage-deflate; server_max_window_bits=10; client_max_window_bits"}
    client, ws = await open_ws(Client(headers))
    assert ws.compress == 10
    assert b"permessage-deflate; server_max_window_bits=10\r\n" in client.head


async def test_permessage_deflate_declined_when_compress_false():
    client, ws = await open_ws(Client(deflate=True), compress=False)
    assert ws.compress == 0
    assert b"Sec-WebSocket-Extensions" not in client.head
    client.feed(client_frame(b"x", rsv1=True))          # RSV1 now means nothing agreed
    assert (await ws.receive()).type is ERROR
    assert ws.close_code == 1002


BAD_HANDSHAKES = [
    ("POST", {}, "must be a GET request"),
    ("GET", {"Upgrade": None}, "Upgrade header must contain 'websocket'"),
    ("GET", {"Upgrade": "h2c"}, "Upgrade header must contain 'websocket'"),
    ("GET", {"Connection": "keep-alive"}, "Connection header must contain 'upgrade'"),
    ("GET", {"Sec-WebSocket-Key": None}, "exactly one Sec-WebSocket-Key"),
    ("GET", {"Sec-WebSocket-Key": "c2hvcnQ="}, "is not the base64 encoding of 16 bytes"),
    ("GET", {"Sec-WebSocket-Key": "not base64!!"}, "is not the base64 encoding of 16 bytes"),
]


def handshake_with(changes):
    headers = dict(HANDSHAKE)
    for name, value in changes.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    return headers


@pytest.mark.parametrize("method, changes, message", BAD_HANDSHAKES)
async def test_bad_handshake_is_400(method, changes, message):
    client = Client(handshake_with(changes), method=method)
    ws = WebSocketResponse()
    with pytest.raises(HTTPBadRequest) as info:
        await ws.prepare(client.request)
    assert info.value.status == 400
    assert message in info.value.text
    assert client.transport.take() == b""               # nothing was sent
    assert not ws.prepared
    assert ws.can_prepare(client.request) == WebSocketReady(False, None)


async def test_http10_handshake_is_400():
    client = Client(version=HttpVersion(1, 0))
    with pytest.raises(HTTPBadRequest) as info:
        await WebSocketResponse().prepare(client.request)
    assert "needs HTTP/1.1 or later, got HTTP/1.0" in info.value.text


@pytest.mark.parametrize("version", ["8", "14", "", "13, 8"])
async def test_other_version_is_426(version):
    client = Client(handshake_with({"Sec-WebSocket-Version": version}))
    with pytest.raises(HTTPUpgradeRequired) as info:
        await WebSocketResponse().prepare(client.request)
    error = info.value
    assert error.status == 426
    assert error.headers["Sec-WebSocket-Version"] == "13"      # RFC 6455 §4.4
    assert error.headers["Upgrade"] == "websocket"             # RFC 9110 §15.5.22
    assert "Sec-WebSocket-Version" in error.text
    assert client.transport.take() == b""


async def test_handshake_errors_on_the_wire():
    """A handler that lets the error propagate: the server sends it as that response."""
    async def handler(request):
        ws = WebSocketResponse()
        await ws.prepare(request)
        return ws

    client = Client(handshake_with({"Upgrade": "h2c"}))
    await run_handler(handler, client.request)
    data = client.transport.take()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.endswith(b"the Upgrade header must contain 'websocket' (got 'h2c'; "
                         b"RFC 6455 \xc2\xa74.2.1)")

    client = Client(handshake_with({"Sec-WebSocket-Version": "8"}))
    await run_handler(handler, client.request)
    data = client.transport.take()
    assert data.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in data


async def test_can_prepare():
    headers = {**HANDSHAKE, "Sec-WebSocket-Protocol": "chat"}
    client = Client(headers)
    ws = WebSocketResponse(protocols=["chat"])
    ready = ws.can_prepare(client.request)
    assert ready == WebSocketReady(True, "chat") and ready and ready.ok
    assert not WebSocketReady(False, None)
    assert client.transport.take() == b""               # can_prepare() sends nothing
    await ws.prepare(client.request)
    with pytest.raises(RuntimeError, match="Already started"):
        ws.can_prepare(client.request)


async def test_a_protocol_without_upgrade_is_routed():
    """A test double without stage 06's upgrade(): its own callbacks reach the WebSocket."""
    request = make_mocked_request("GET", "/ws", HANDSHAKE)      # a plain MockProtocol
    ws = WebSocketResponse()
    await ws.prepare(request)
    assert request.transport.take().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    request.protocol.data_received(client_frame(b"hello"))
    assert await ws.receive() == (BINARY, b"hello", "")
    transport = request.transport
    transport.close()                                   # calls the protocol's connection_lost
    assert ws.closed and ws.close_code == 1006
    assert request.protocol.transport is None           # its own connection_lost ran too


async def test_bytes_behind_the_head_are_not_lost():
    third = client_frame(b"third")
    tail = client_frame(b"first") + client_frame("second".encode(), TEXT) + third[:4]
    client, ws = await open_ws(Client(tail=tail))
    assert await ws.receive() == (BINARY, b"first", "")
    assert await ws.receive() == (TEXT, "second", "")
    client.feed(third[4:])                               # the rest of a frame comes later
    assert await ws.receive_bytes() == b"third"


async def test_not_prepared():
    ws = WebSocketResponse()
    for call in (ws.receive(), ws.send_str("x"), ws.send_bytes(b"x"), ws.ping(), ws.pong(),
                 ws.close(), ws.write_eof()):
        with pytest.raises(RuntimeError):
            await call
    with pytest.raises(RuntimeError, match="Cannot call .write"):
        await ws.write(b"x")
    assert not ws.prepared and ws.close_code is None and ws.exception() is None


async def test_options_are_checked():
    with pytest.raises(ValueError, match="heartbeat"):
        WebSocketResponse(heartbeat=0)
    with pytest.raises(ValueError, match="max_msg_size"):
        WebSocketResponse(max_msg_size=-1)
    with pytest.raises(ValueError, match="max_frame_size"):
        WebSocketResponse(max_frame_size=-1)


# --- messages ------------------------------------------------------------------------------

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]


def payload_of(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_round_trips(deflate):
    client, ws = await open_ws(Client(deflate=deflate), max_msg_size=0)
    for size in SIZES:
        data = payload_of(size)
        text = "é€" * (size // 5)
        client.send(data)
        client.send(text, TEXT)
        assert await ws.receive() == (BINARY, data, "")
        assert await ws.receive_str() == text
        await ws.send_bytes(data)
        await ws.send_str(text)
        assert await client.frames() == [(BINARY, data, ""), (TEXT, text, "")]
    assert not ws.closed


async def test_server_frames_are_minimal_unmasked_and_unfragmented():
    client, ws = await open_ws()
    for size, header in [(0, b"\x82\x00"), (125, b"\x82\x7d"), (126, b"\x82\x7e\x00\x7e"),
                         (65535, b"\x82\x7e\xff\xff"),
                         (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00")]:
        data = payload_of(size)
        await ws.send_bytes(data)
        assert await client.output() == header + data
    await ws.send_str("€")
    assert await client.output() == b"\x81\x03\xe2\x82\xac"
    await ws.send_bytes(bytearray(b"ab"))
    await ws.send_bytes(memoryview(b"xabcd")[1:])
    await ws.send_bytes(memoryview(bytes(8)).cast("I"))      # two 4-byte items: 8 bytes
    assert await client.output() == b"\x82\x02ab" + b"\x82\x04abcd" + b"\x82\x08" + bytes(8)


async def test_compressed_messages_set_rsv1_on_the_first_frame_only():
    client, ws = await open_ws(Client(deflate=True), max_frame_size=8)
    data = payload_of(100)
    await ws.send_bytes(data)
    output = await client.output()
    frames = server_frames(output)
    assert len(frames) > 2
    assert frames[0][0] == 0x42                          # RSV1, BINARY, no FIN
    assert all(first == 0x00 for first, _ in frames[1:-1])
    assert frames[-1][0] == 0x80
    assert client.parser.feed(output) == [(BINARY, data, "")]
    await ws.send_bytes(b"b" * 4, compress=False)        # this one not compressed
    assert await client.output() == b"\x82\x04bbbb"
    await ws.send_str("hello", compress=15)
    output = await client.output()
    assert output[0] == 0xC1
    assert client.parser.feed(output) == [(TEXT, "hello", "")]


async def test_big_compressed_messages_keep_their_order():
    """A big message is compressed in a thread; what is sent after it waits its turn."""
    client, ws = await open_ws(Client(deflate=True), max_msg_size=0)
    big = payload_of(1 << 20)
    sending = [asyncio.create_task(ws.send_bytes(big)), asyncio.create_task(ws.send_str("x")),
               asyncio.create_task(ws.send_bytes(big[:100], compress=False))]
    await asyncio.wait_for(asyncio.gather(*sending), 10)
    assert await client.frames() == [(BINARY, big, ""), (TEXT, "x", ""),
                                     (BINARY, big[:100], "")]


async def test_a_cancelled_sender_still_sends_its_compressed_message():
    client, ws = await open_ws(Client(deflate=True), max_msg_size=0)
    big = payload_of(1 << 20)
    task = asyncio.create_task(ws.send_bytes(big))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(ws.send_str("after"), 10)       # the compressor's history holds
    assert await client.frames() == [(BINARY, big, ""), (TEXT, "after", "")]


async def test_close_waits_for_a_message_being_compressed():
    client, ws = await open_ws(Client(deflate=True), max_msg_size=0, timeout=0.01)
    big = payload_of(1 << 20)
    sending = asyncio.create_task(ws.send_bytes(big))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(ws.close(), 10) is True
    await sending
    assert await client.frames() == [(BINARY, big, ""), (CLOSE, 1000, "")]


async def test_compress_without_negotiation_sends_plain():
    client, ws = await open_ws()
    await ws.send_bytes(b"abc", compress=True)           # nothing agreed: a plain frame
    assert await client.output() == b"\x82\x03abc"


async def test_max_frame_size_fragments():
    client, ws = await open_ws(max_frame_size=4)
    await ws.send_bytes(b"0123456789")
    assert server_frames(await client.output()) == [(0x02, b"0123"), (0x00, b"4567"),
                                              (0x80, b"89")]
    await ws.send_str("abcd")                            # fits: one frame
    assert await client.output() == b"\x81\x04abcd"
    client.feed(client_frame(b"x", PING))                # pongs are never fragmented either
    assert await client.output() == b"\x8a\x01x"


async def test_send_type_errors():
    client, ws = await open_ws()
    with pytest.raises(TypeError, match="must be str"):
        await ws.send_str(b"bytes")
    with pytest.raises(TypeError, match="byte-ish"):
        await ws.send_bytes("text")
    assert await client.output() == b""


async def test_json():
    client, ws = await open_ws()
    await ws.send_json({"a": [1, 2]})
    assert await client.frames() == [(TEXT, '{"a": [1, 2]}', "")]
    await ws.send_json_bytes({"b": 1}, dumps=lambda value: json.dumps(value).encode())
    assert await client.frames() == [(BINARY, b'{"b": 1}', "")]
    client.send('{"x": null}', TEXT)
    assert await ws.receive_json() == {"x": None}
    client.send(b"{}")
    with pytest.raises(WSMessageTypeError, match="is not WSMsgType.TEXT"):
        await ws.receive_json()
    client.send("text", TEXT)
    with pytest.raises(TypeError, match="is not WSMsgType.BINARY"):
        await ws.receive_bytes()


async def test_message_json_method():
    client, ws = await open_ws()
    client.send("[1, 2]", TEXT)
    assert (await ws.receive()).json() == [1, 2]


async def test_send_frame():
    client, ws = await open_ws()
    await ws.send_frame(b"raw", WSMsgType.TEXT)
    await ws.send_frame(b"\x00", WSMsgType.BINARY)
    await ws.send_frame(b"hb", WSMsgType.PING)
    await ws.send_frame(b"", WSMsgType.PONG)
    assert await client.output() == b"\x81\x03raw\x82\x01\x00\x89\x02hb\x8a\x00"
    for opcode in (WSMsgType.CLOSE, WSMsgType.CONTINUATION, 0x3):
        with pytest.raises(ValueError, match="send_frame"):
            await ws.send_frame(b"", opcode)
    assert await client.output() == b""


async def test_decode_text_false():
    client, ws = await open_ws(decode_text=False)
    client.send("é", TEXT)
    assert await ws.receive() == (TEXT, "é".encode(), "")


async def test_async_iteration_ends_at_close():
    client, ws = await open_ws()
    client.send(b"1")
    client.send("2", TEXT)
    client.send_close(1000)
    assert [message.data async for message in ws] == [b"1", "2"]
    assert ws.closed and ws.close_code == 1000


async def test_async_iteration_passes_pings_and_errors_and_ends_at_closing_and_closed():
    # aiohttp's __anext__: only CLOSE, CLOSING and CLOSED end the iteration
    client, ws = await open_ws(autoping=False, autoclose=False)
    client.feed(client_frame(b"hb", PING))
    client.send(b"1")
    client.send_close(1001)
    seen = [message.type async for message in ws]
    assert seen == [WSMsgType.PING, BINARY]              # the CLOSE ended it
    assert [message.type async for message in ws] == []  # CLOSING: our close() is awaited
    assert (await ws.receive()).type is WSMsgType.CLOSING
    await ws.close()
    assert [message.type async for message in ws] == []  # CLOSED
    client, ws = await open_ws()
    client.feed(b"\x83\x80" + MASK)                     # a reserved opcode: ERROR, then CLOSED
    assert [message.type async for message in ws] == [WSMsgType.ERROR]
    assert ws.close_code == 1002


# --- control frames --------------------------------------------------------------------------

async def test_autoping_answers_at_once_and_hides_pings_and_pongs():
    client, ws = await open_ws()
    client.feed(client_frame(b"are you there?", PING))
    assert await client.output() == b"\x8a\x0eare you there?"   # RFC 6455 §5.5.3: same payload
    client.feed(client_frame(b"unsolicited", PONG))
    client.send(b"data")
    assert await ws.receive() == (BINARY, b"data", "")   # neither ping nor pong delivered
    assert not ws._messages


async def test_ping_between_fragments():
    client, ws = await open_ws()
    client.feed(client_frame(b"frag", BINARY, fin=False) + client_frame(b"p", PING)
                + client_frame(b"ment", 0x0))
    assert await client.output() == b"\x8a\x01p"
    assert await ws.receive() == (BINARY, b"fragment", "")


async def test_without_autoping_pings_and_pongs_are_delivered():
    client, ws = await open_ws(autoping=False)
    client.feed(client_frame(b"1", PING) + client_frame(b"2", PONG))
    assert await ws.receive() == (PING, b"1", "")
    assert await ws.receive() == (PONG, b"2", "")
    assert await client.output() == b""                          # no automatic pong
    await ws.pong(b"1")
    assert await client.output() == b"\x8a\x011"


async def test_ping_and_pong_from_the_server():
    client, ws = await open_ws()
    await ws.ping(b"abc")
    await ws.ping("é")
    await ws.pong()
    assert await client.output() == b"\x89\x03abc\x89\x02\xc3\xa9\x8a\x00"
    with pytest.raises(ValueError, match="125 bytes"):
        await ws.ping(bytes(126))                          # RFC 6455 §5.5
    assert await client.output() == b""


# --- the closing handshake ---------------------------------------------------------------------

async def test_peer_closes_autoclose():
    client, ws = await open_ws()
    client.send(b"last")
    client.send_close(4000, "bye")
    assert ws.close_code == 4000 and not ws.closed
    assert await ws.receive() == (BINARY, b"last", "")     # what came before still comes,
    await ws.send_bytes(b"answer")                          # and may still be answered
    assert await client.frames() == [(BINARY, b"answer", "")]
    assert await ws.receive() == (CLOSE, 4000, "bye")
    # answered when handed over, echoing the code (RFC 6455 §5.5.1); the server closes the
    # TCP connection first (§7.1.1)
    assert await client.output() == b"\x88\x02\x0f\xa0"
    assert client.transport.closed
    assert ws.closed and ws.close_code == 4000
    assert (await ws.receive()).type is CLOSED
    with pytest.raises(ConnectionResetError):
        await ws.send_str("too late")
    assert await ws.close() is False
    await ws.write_eof()                                   # what the server does: harmless


async def test_peer_close_wakes_a_waiting_receive():
    client, ws = await open_ws()
    receiving = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    client.send_close(1000)
    assert await receiving == (CLOSE, 1000, "")
    assert await client.output() == b"\x88\x02\x03\xe8"
    assert client.transport.closed


async def test_peer_closes_without_a_code():
    client, ws = await open_ws()
    client.feed(build_close_frame(None, mask=MASK))
    assert ws.close_code == 1005                           # RFC 6455 §7.1.5
    assert await ws.receive() == (CLOSE, 1005, "")
    assert await client.output() == b"\x88\x00"            # no code back either (§5.5.1)


async def test_close_while_the_peers_close_waits_in_the_queue():
    client, ws = await open_ws()
    client.send(b"unread")
    client.send_close(1001)
    assert await ws.close(code=1000) is True               # no wait: the peer's Close came
    assert await client.output() == b"\x88\x02\x03\xe8"
    assert client.transport.closed and ws.close_code == 1001
    assert (await ws.receive()).type is CLOSED             # close() dropped the rest


async def test_peer_closes_without_autoclose():
    client, ws = await open_ws(autoclose=False)
    client.send_close(1001, "going")
    assert await client.output() == b""                          # the application answers
    assert not client.transport.closed
    assert await ws.receive() == (CLOSE, 1001, "going")
    assert not ws.closed and ws.close_code == 1001
    assert (await ws.receive()).type is CLOSING
    assert await ws.close(code=1000) is True               # no wait: the peer's Close came
    assert await client.output() == b"\x88\x02\x03\xe8"
    assert client.transport.closed
    assert ws.closed and ws.close_code == 1001             # the first Close frame's code
    assert (await ws.receive()).type is CLOSED


async def test_server_closes_and_waits_for_the_peer():
    client, ws = await open_ws()
    closing = asyncio.create_task(ws.close(code=4001, message=b"done"))
    await asyncio.sleep(0)
    assert await client.output() == b"\x88\x06\x0f\xa1done"
    assert ws.closed and not closing.done() and not client.transport.closed
    client.send(b"in flight")                              # dropped: close() wants no more
    client.send_close(1000)
    assert await closing is True
    assert client.transport.closed
    assert ws.close_code == 4001                           # the first Close frame's code
    assert ws.exception() is None
    assert (await ws.receive()).type is CLOSED


async def test_server_close_times_out():
    client, ws = await open_ws(timeout=0.01)
    assert await ws.close() is True
    assert await client.output() == b"\x88\x02\x03\xe8"
    assert client.transport.closed
    assert ws.close_code == 1006                 # no Close came back (RFC 6455 §7.1.5)
    assert isinstance(ws.exception(), asyncio.TimeoutError)


async def test_close_while_peer_drops():
    client, ws = await open_ws()
    closing = asyncio.create_task(ws.close())
    await asyncio.sleep(0)
    client.protocol.receiver.eof_received()                # a FIN, no Close frame
    assert await closing is True
    assert client.transport.closed and ws.close_code == 1006   # RFC 6455 §7.1.5


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 1004, 2999, 5000])
async def test_close_codes_that_may_not_be_sent(code):
    client, ws = await open_ws()
    with pytest.raises(ValueError, match="may not be sent"):
        await ws.close(code=code)
    assert await client.output() == b"" and not ws.closed        # nothing happened
    with pytest.raises(ValueError, match="123 bytes"):
        await ws.close(message=b"x" * 124)


async def test_close_twice_concurrently():
    client, ws = await open_ws()
    first = asyncio.create_task(ws.close())
    second = asyncio.create_task(ws.close())
    await asyncio.sleep(0)
    assert not second.done()                               # it waits for the first
    client.send_close(1000)
    assert await first is True and await second is False
    assert await client.output() == b"\x88\x02\x03\xe8"          # one Close frame


async def test_close_wakes_a_waiting_receive():
    client, ws = await open_ws()
    receiving = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    closing = asyncio.create_task(ws.close())
    assert (await receiving).type is CLOSING
    client.send_close(1000)
    assert await closing is True


async def test_write_eof_closes_an_open_websocket():
    client, ws = await open_ws()
    task = asyncio.create_task(ws.write_eof())
    await asyncio.sleep(0)
    assert await client.output() == b"\x88\x02\x03\xe8"
    client.send_close(1000)
    await task
    assert client.transport.closed
    await ws.write_eof()
    assert await ws.prepare(client.request) is not None    # the server's calls: harmless


async def test_concurrent_receive_is_refused():
    client, ws = await open_ws()
    first = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Concurrent call"):
        await ws.receive()
    client.send(b"x")
    assert await first == (BINARY, b"x", "")


# --- failing the connection (RFC 6455 §7.1.7) --------------------------------------------------

PROTOCOL_ERRORS = [
    ("unmasked", client_frame(b"x", mask=None), 1002, "must be masked"),
    ("reserved opcode", client_frame(b"x", 0x3), 1002, "reserved opcode 0x3"),
    ("RSV bit", bytes((0xA2,)) + client_frame(b"x")[1:], 1002, "RSV2 or RSV3"),
    ("RSV1 without deflate", client_frame(b"x", rsv1=True), 1002, "RSV1"),
    ("fragmented control", client_frame(b"x", PING, fin=False), 1002, "fragmented"),
    ("control too long", bytes((0x89, 0xFE, 0, 126)) + MASK + bytes(126), 1002, "125 bytes"),
    ("continuation first", client_frame(b"x", 0x0), 1002, "no message to continue"),
    ("data inside a fragmented message",
     client_frame(b"a", fin=False) + client_frame(b"b"), 1002, "expected a continuation"),
    ("non-minimal length", bytes((0x82, 0xFE, 0, 5)) + MASK + bytes(5), 1002, "minimal"),
    ("bad UTF-8", client_frame(b"\xff", TEXT), 1007, "UTF-8"),
    ("truncated UTF-8 across fragments",
     client_frame(b"\xe2\x82", TEXT, fin=False) + client_frame(b"", 0x0), 1007, "UTF-8"),
    ("too big", client_frame(bytes(11)), 1009, "max_msg_size"),
    ("close code 1005", build_frame((1005).to_bytes(2, "big"), 0x8, mask=MASK), 1002,
     "invalid close code 1005"),
    ("1-byte close payload", build_frame(b"\x03", 0x8, mask=MASK), 1002, "1 byte"),
    ("close reason not UTF-8", build_frame(b"\x03\xe8\xff", 0x8, mask=MASK), 1007, "UTF-8"),
]


@pytest.mark.parametrize("name, data, code, message", PROTOCOL_ERRORS,
                         ids=[case[0] for case in PROTOCOL_ERRORS])
async def test_protocol_errors_fail_the_connection(name, data, code, message):
    client, ws = await open_ws(max_msg_size=10)
    client.send(b"before")
    client.feed(data)
    assert await client.output() == b""                     # the message before comes first
    assert not ws.closed and ws.close_code is None
    assert await ws.receive() == (BINARY, b"before", "")
    await ws.send_bytes(b"reply")                           # and may still be answered
    error = await ws.receive()
    assert error.type is ERROR and error.data is ws.exception()
    assert isinstance(error.data, WebSocketError) and error.data.code == code
    reply, (first, payload) = server_frames(await client.output())
    assert reply == (0x82, b"reply")
    assert first == 0x88                                    # a Close frame...
    assert int.from_bytes(payload[:2], "big") == code       # ...with the error's code
    assert message in payload[2:].decode("utf-8")           # and what went wrong
    assert ws.closed and ws.close_code == code              # aiohttp would say 1006
    assert (await ws.receive()).type is CLOSED
    client.send(b"ignored")                                 # input is ignored from now on
    assert client.transport.eof_written                     # our FIN: the peer sees the end
    assert not client.transport.closed                      # the socket waits for its FIN
    client.protocol.receiver.eof_received()                 # it hangs up: we close
    assert client.transport.closed
    assert ws.close_code == code
    assert await ws.close() is False


async def test_close_with_a_protocol_error_pending_sends_its_code():
    client, ws = await open_ws(timeout=0.01)
    client.feed(client_frame(b"\xff", TEXT))
    assert await ws.close() is True             # the error not received: close() reports it
    (first, payload), = server_frames(await client.output())
    assert first == 0x88 and payload[:2] == (1007).to_bytes(2, "big")
    assert b"not valid UTF-8" in payload
    assert client.transport.closed                          # after the linger (timeout)
    assert ws.close_code == 1007
    assert (await ws.receive()).type is CLOSED


async def test_failed_connection_closes_when_the_peer_hangs_up():
    client, ws = await open_ws()
    client.feed(client_frame(b"x", mask=None))
    assert (await ws.receive()).type is ERROR
    closing = asyncio.create_task(ws.close())               # what the server does after
    await asyncio.sleep(0)
    assert not closing.done() and not client.transport.closed
    client.protocol.receiver.eof_received()
    assert await closing is False
    assert client.transport.closed and ws.close_code == 1002


async def test_close_reason_is_cut_to_123_bytes():
    client, ws = await open_ws(max_msg_size=1)
    client.feed(client_frame("é".encode() * 200, TEXT))
    assert (await ws.receive()).type is ERROR
    (first, payload), = server_frames(await client.output())
    assert len(payload) <= 125
    payload[2:].decode("utf-8")                             # cut on a character boundary


# --- the connection ends -----------------------------------------------------------------

async def test_eof_without_close_is_1006():
    client, ws = await open_ws()
    client.send(b"x")
    client.protocol.receiver.eof_received()
    assert client.transport.closed
    assert ws.closed and ws.close_code == 1006              # RFC 6455 §7.1.5
    assert await ws.receive() == (BINARY, b"x", "")
    assert (await ws.receive()).type is CLOSED
    assert ws.exception() is None
    assert await client.output() == b""                           # 1006 is never sent (§7.4.1)


async def test_connection_reset_is_an_error_then_closed():
    client, ws = await open_ws()
    receiving = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    reset = ConnectionResetError("reset by peer")
    client.protocol.receiver.connection_lost(reset)
    message = await receiving
    assert message.type is ERROR and message.data is reset and ws.exception() is reset
    assert ws.close_code == 1006
    assert (await ws.receive()).type is CLOSED
    with pytest.raises(ConnectionResetError):
        await ws.send_bytes(b"x")


async def test_receive_after_closed_raises_eventually():
    client, ws = await open_ws()
    client.send_close()
    assert (await ws.receive()).type is CLOSE
    for _ in range(4):
        assert (await ws.receive()).type is CLOSED
    with pytest.raises(RuntimeError, match="WebSocket connection is closed"):
        await ws.receive()


# --- heartbeat and timeouts --------------------------------------------------------------

async def wait_for_output(client, timeout=2.0):
    """Poll the transport until the server writes something (bounded)."""
    for _ in range(int(timeout / 0.005)):
        data = await client.output()
        if data or client.transport.closed:
            return data
        await asyncio.sleep(0.005)
    raise AssertionError("the server wrote nothing")


async def test_heartbeat_without_pong_is_1006():
    client, ws = await open_ws(heartbeat=0.02)
    assert await wait_for_output(client) == b"\x89\x00"     # an empty Ping
    message = await asyncio.wait_for(ws.receive(), 2)
    assert message.type is ERROR
    assert isinstance(message.data, asyncio.TimeoutError)
    assert "No PONG received" in str(message.data)
    assert ws.closed and ws.close_code == 1006
    assert client.transport.closed
    assert await client.output() == b""                           # no Close frame: nobody listens
    assert (await ws.receive()).type is CLOSED


async def test_heartbeat_with_pongs_stays_open():
    client, ws = await open_ws(heartbeat=0.02, timeout=0.01)
    for _ in range(3):
        assert await wait_for_output(client) == b"\x89\x00"
        client.feed(client_frame(b"", PONG))                # answered in time
    assert not ws.closed and not client.transport.closed
    assert await ws.close() is True


async def test_heartbeat_stops_after_close():
    client, ws = await open_ws(heartbeat=0.01)
    client.send_close()
    await ws.receive()
    assert client.transport.closed
    await asyncio.sleep(0.05)
    assert await client.output() == b"\x88\x02\x03\xe8"           # no ping after the close


async def test_receive_timeout():
    client, ws = await open_ws()
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.01)
    assert not ws.closed                                    # a timeout does not close
    client.send(b"late")
    assert await ws.receive(timeout=0.01) == (BINARY, b"late", "")


async def test_receive_timeout_option():
    client, ws = await open_ws(receive_timeout=0.01)
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive()
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive_str()
    client.send("x", TEXT)
    assert await ws.receive_str() == "x"


async def test_cancelled_receive_leaves_the_websocket_usable():
    client, ws = await open_ws()
    task = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    client.send(b"x")
    assert await ws.receive() == (BINARY, b"x", "")


# --- flow control ----------------------------------------------------------------------------

async def test_send_waits_while_writing_is_paused():
    client, ws = await open_ws()
    client.protocol.pause_writing()                         # the transport's buffer is full
    task = asyncio.create_task(ws.send_bytes(b"x"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    assert await client.output() == b"\x82\x01x"                  # written, then waiting
    client.protocol.resume_writing()
    await asyncio.wait_for(task, 1)


async def test_send_fails_when_the_connection_is_lost_while_paused():
    client, ws = await open_ws()
    client.protocol.pause_writing()
    task = asyncio.create_task(ws.send_str("x"))
    await asyncio.sleep(0)
    client.transport.close()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(task, 1)


async def test_reading_pauses_while_messages_pile_up():
    client, ws = await open_ws()
    size = 4096
    count = READ_HIGH_WATER // (size + MESSAGE_OVERHEAD) + 1
    client.feed(client_frame(bytes(size)) * count)
    assert not client.transport.reading                     # too much unread: paused
    for _ in range(count // 2 - 1):
        await ws.receive()
    assert not client.transport.reading                     # still above the low mark
    await ws.receive()
    await ws.receive()
    assert client.transport.reading                         # consumed: reading again


async def test_close_resumes_reading_to_see_the_peers_close():
    client, ws = await open_ws()
    client.feed(client_frame(bytes(READ_HIGH_WATER + 1)))
    assert not client.transport.reading
    closing = asyncio.create_task(ws.close())
    await asyncio.sleep(0)
    assert client.transport.reading
    client.send_close()
    assert await closing is True


async def test_only_the_latest_pong_while_writing_is_paused():
    client, ws = await open_ws()
    client.protocol.pause_writing()
    client.feed(client_frame(b"1", PING) + client_frame(b"2", PING) + client_frame(b"3", PING))
    assert await client.output() == b""                           # RFC 6455 §5.5.2: may skip
    client.protocol.resume_writing()
    for _ in range(3):
        await asyncio.sleep(0)
    assert await client.output() == b"\x8a\x013"


# --- the server shuts down ---------------------------------------------------------------------

async def test_shutdown_closes_with_1001():
    client, ws = await open_ws()
    receiving = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    shutdown = asyncio.create_task(client.protocol.receiver.shutdown(5.0))
    assert (await receiving).type is CLOSING                # the handler's loop ends
    assert await client.output() == b"\x88\x02\x03\xe9"           # 1001: going away
    client.send_close(1001)
    await asyncio.wait_for(shutdown, 1)
    assert client.transport.closed and ws.close_code == 1001
    assert await ws.close() is False


async def test_shutdown_waits_at_most_its_timeout():
    client, ws = await open_ws()
    await asyncio.wait_for(client.protocol.receiver.shutdown(0.01), 1)
    assert await client.output() == b"\x88\x02\x03\xe9"           # 1001 went out...
    assert client.transport.closed and ws.close_code == 1006   # ...and none came back


async def test_close_then_half_close_is_still_answered():
    """A peer that sends its Close and a FIN at once still gets our Close back."""
    client, ws = await open_ws()
    client.send(b"last words")
    client.send_close(1000)
    client.protocol.receiver.eof_received()
    assert not client.transport.closed                      # the queue is not answered yet
    assert await ws.receive() == (BINARY, b"last words", "")
    await ws.send_bytes(b"reply")
    assert await ws.receive() == (CLOSE, 1000, "")
    assert server_frames(await client.output()) == [(0x82, b"reply"), (0x88, b"\x03\xe8")]
    assert client.transport.closed and ws.close_code == 1000


async def test_error_then_half_close_is_still_answered():
    client, ws = await open_ws(timeout=0.01)
    client.feed(client_frame(b"x", 0x3))
    client.protocol.receiver.eof_received()
    assert (await ws.receive()).type is ERROR
    (first, payload), = server_frames(await client.output())
    assert first == 0x88 and payload[:2] == b"\x03\xea"
    assert ws.close_code == 1002
    assert client.transport.closed                          # its FIN came: no linger
    assert await ws.close() is False


async def test_a_ping_behind_the_head_is_answered_after_the_101():
    client = Client(tail=client_frame(b"early", PING))
    ws = WebSocketResponse()
    assert ws.compress is True                              # the option, before prepare()
    await ws.prepare(client.request)
    assert await client.output() == b"\x8a\x05early"        # the head was split off first
    assert client.head.startswith(b"HTTP/1.1 101 ")


# --- the answer to a lone message leaves at once; answers to a burst, in one write ---------

async def test_the_answer_to_a_lone_message_leaves_at_once():
    client, ws = await open_ws()
    client.transport.writes.clear()
    client.send(b"ping?")
    message = await ws.receive()
    await ws.send_bytes(message.data + b"!")
    assert len(client.transport.writes) == 1          # before the turn ends: no callback
    await ws.send_bytes(b"and more")                  # a second answer: batched again
    assert len(client.transport.writes) == 1
    assert [payload for _, payload in server_frames(await client.output())] == [
        b"ping?!", b"and more"]


async def test_the_answers_to_a_burst_leave_in_one_write():
    client, ws = await open_ws()
    client.transport.writes.clear()
    client.feed(b"".join(client_frame(b"m%d" % i) for i in range(4)))
    for _ in range(4):
        message = await ws.receive()
        await ws.send_bytes(message.data)
    # the last answer found the first three queued: it joined them, in order
    assert client.transport.writes == []
    await asyncio.sleep(0)
    assert len(client.transport.writes) == 1
    assert [payload for _, payload in server_frames(await client.output())] == [
        b"m0", b"m1", b"m2", b"m3"]


async def test_a_handler_that_only_sends_is_batched():
    client, ws = await open_ws()
    client.transport.writes.clear()
    for i in range(3):
        await ws.send_str(f"tick {i}")
    assert client.transport.writes == []
    await asyncio.sleep(0)
    assert len(client.transport.writes) == 1


async def test_a_lone_answer_is_not_sent_once_the_transport_closes():
    client, ws = await open_ws()
    client.send(b"last")
    await ws.receive()
    client.transport.writes.clear()
    client.transport.close()
    ws._batch.write(b"\x82\x00")                    # what a send would write: dropped
    assert client.transport.writes == [] and not ws._batch._chunks
