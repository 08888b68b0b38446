"""Stage 05, part 1: the sans-I/O WebSocket layer, tested with byte strings alone.

The opening handshake (RFC 6455 §4.2), the frame parser (every protocol error with the close
code to send, fragmentation, UTF-8, limits, split invariance, fuzzing), masking, the frame
writer, and permessage-deflate (RFC 7692: negotiation, compression, bombs).
"""
import random
import zlib
from itertools import cycle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from lowserver.websocket_deflate import (
    DeflateParams,
    PerMessageDeflate,
    negotiate_permessage_deflate,
    parse_extensions,
)
from lowserver.websocket_frames import (
    DEFAULT_MAX_MSG_SIZE,
    WS_CLOSE_NO_STATUS,
    FrameWriter,
    WebSocketError,
    WSCloseCode,
    WSMessage,
    WSMsgType,
    apply_mask,
    build_close_frame,
    build_frame,
    close_payload,
    frame_header,
    is_valid_close_code,
    parse_close_payload,
)
from lowserver.websocket_handshake import WSHandshakeError, server_handshake
from lowserver.websocket_parser import WebSocketParser

# FrameWriter(mask=True) draws its masking keys from os.urandom: seeded here (conftest.py).
pytestmark = pytest.mark.usefixtures("seeded_urandom", "mask_path")   # mask_path: tests/conftest.py

KEY = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
PING, PONG, CLOSE, ERROR = WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE, WSMsgType.ERROR


def frame(payload: bytes, opcode: int = BINARY, *, fin: bool = True, rsv1: bool = False,
          mask: bytes | None = KEY) -> bytes:
    """A client's (masked) frame."""
    header = frame_header(len(payload), opcode, fin=fin, rsv1=rsv1, mask=mask)
    return header + (apply_mask(mask, payload) if mask else payload)


def raw_frame(first: int, payload: bytes, mask: bytes = KEY) -> bytes:
    """A masked frame with any first byte (FIN/RSV/opcode), even an invalid one."""
    return bytes((first,)) + frame_header(len(payload), 0, mask=mask)[1:] + apply_mask(mask, payload)


def feed(data: bytes, **options) -> list:
    return WebSocketParser(**options).feed(data)


def error_of(data: bytes, **options) -> WebSocketError:
    events = feed(data, **options)
    assert events, "no event"
    last = events[-1]
    assert last.type is ERROR, events
    assert all(event.type is not ERROR for event in events[:-1])
    return last.data


def code_of(data: bytes, **options) -> int:
    return error_of(data, **options).code


def feed_in_pieces(data: bytes, sizes, **options) -> list:
    parser = WebSocketParser(**options)
    events, pos = [], 0
    sizes = cycle(sizes)
    while pos < len(data):
        step = next(sizes)
        events += parser.feed(data[pos:pos + step])
        pos += step
    return events


def normalise(events: list) -> list:
    """Events comparable across runs: errors by their code."""
    return [(e.type, e.data.code, None) if e.type is ERROR else tuple(e) for e in events]


# --- models ----------------------------------------------------------------------------------

def test_models_follow_aiohttp():
    assert [(m.name, m.value) for m in WSMsgType] == [
        ("CONTINUATION", 0), ("TEXT", 1), ("BINARY", 2), ("PING", 9), ("PONG", 10),
        ("CLOSE", 8), ("CLOSING", 0x100), ("CLOSED", 0x101), ("ERROR", 0x102)]
    assert WSMsgType.text is WSMsgType.TEXT and WSMsgType.error is WSMsgType.ERROR
    assert WSCloseCode.OK == 1000 and WSCloseCode.MESSAGE_TOO_BIG == 1009
    assert WSCloseCode.BAD_GATEWAY == 1014 and WSCloseCode.ABNORMAL_CLOSURE == 1006
    message = WSMessage(TEXT, '{"a": [1, 2]}', "")
    assert message.json() == {"a": [1, 2]}
    assert message.json(loads=lambda s: s.upper()) == '{"A": [1, 2]}'
    assert message.type is TEXT and message.extra == ""
    error = WebSocketError(1002, "bad frame")
    assert error.code == 1002 and str(error) == "bad frame" and error.args == (1002, "bad frame")
    assert DEFAULT_MAX_MSG_SIZE == 4 * 1024 * 1024


# --- handshake (RFC 6455 §4.2) ---------------------------------------------------------------

GOOD = {"Host": "server.example.com", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def headers(*pairs) -> CIMultiDictProxy:
    return CIMultiDictProxy(CIMultiDict(pairs))


def refuse(method="GET", version=(1, 1), fields=None, **kwargs) -> WSHandshakeError:
    with pytest.raises(WSHandshakeError) as caught:
        server_handshake(method, version, GOOD if fields is None else fields, **kwargs)
    return caught.value


def test_handshake_rfc_example():
    result = server_handshake("GET", (1, 1), {**GOOD, "Sec-WebSocket-Protocol": "chat, superchat"},
                              protocols=("superchat", "chat"))
    assert list(result.headers.items()) == [
        ("Upgrade", "websocket"), ("Connection", "upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("Sec-WebSocket-Protocol", "chat")]       # the client's first choice, as aiohttp
    assert result.protocol == "chat" and result.deflate is None


def test_handshake_protocols():
    fields = {**GOOD, "Sec-WebSocket-Protocol": "a, b"}
    assert server_handshake("GET", (1, 1), fields, protocols=["b"]).protocol == "b"
    none = server_handshake("GET", (1, 1), fields, protocols=["c"])
    assert none.protocol is None and "Sec-WebSocket-Protocol" not in none.headers
    assert server_handshake("GET", (1, 1), GOOD, protocols=["a"]).protocol is None
    multi = headers(*GOOD.items(), ("Sec-WebSocket-Protocol", "x"),
                    ("Sec-WebSocket-Protocol", "y, z"))
    assert server_handshake("GET", (1, 1), multi, protocols=["z"]).protocol == "z"


def test_handshake_accepts_token_lists_and_case():
    for upgrade in ("websocket", "WebSocket", "WEBSOCKET", "h2c, websocket", " websocket "):
        for connection in ("Upgrade", "upgrade", "keep-alive, Upgrade", "UPGRADE,close"):
            fields = {**GOOD, "Upgrade": upgrade, "Connection": connection}
            assert server_handshake("GET", (1, 1), fields).headers["Upgrade"] == "websocket"
    # several field lines count as one list (RFC 9110 §5.3); names are case-insensitive
    multi = headers(("upgrade", "h2c"), ("UPGRADE", "websocket"), ("connection", "keep-alive"),
                    ("Connection", "upgrade"), ("sec-websocket-key", GOOD["Sec-WebSocket-Key"]),
                    ("SEC-WEBSOCKET-VERSION", "13"))
    assert server_handshake("GET", (1, 1), multi).headers["Sec-WebSocket-Accept"] == \
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    lower = {k.lower(): v for k, v in GOOD.items()}
    assert server_handshake("GET", (1, 1), lower).protocol is None
    assert server_handshake("GET", (1, 2), GOOD).headers["Connection"] == "upgrade"


@pytest.mark.parametrize("method, version, change, words", [
    ("POST", (1, 1), {}, "GET"),
    ("get", (1, 1), {}, "GET"),
    ("GET", (1, 0), {}, "HTTP/1.1"),
    ("GET", (0, 9), {}, "HTTP/1.1"),
    ("GET", (1, 1), {"Upgrade": None}, "Upgrade"),
    ("GET", (1, 1), {"Upgrade": "h2c"}, "Upgrade"),
    ("GET", (1, 1), {"Upgrade": "websocketx"}, "Upgrade"),
    ("GET", (1, 1), {"Upgrade": "websocket/13"}, "Upgrade"),
    ("GET", (1, 1), {"Connection": None}, "Connection"),
    ("GET", (1, 1), {"Connection": "keep-alive"}, "Connection"),
    ("GET", (1, 1), {"Connection": "upgraded"}, "Connection"),
    ("GET", (1, 1), {"Sec-WebSocket-Key": None}, "Sec-WebSocket-Key"),
    ("GET", (1, 1), {"Sec-WebSocket-Key": ""}, "Sec-WebSocket-Key"),
    ("GET", (1, 1), {"Sec-WebSocket-Key": "c2hvcnQ="}, "16 bytes"),            # 5 bytes
    ("GET", (1, 1), {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}, "16 bytes"),  # 15 bytes
    ("GET", (1, 1), {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAAA"}, "16 bytes"),  # 18
    ("GET", (1, 1), {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"}, "16 bytes"),  # no pad
    ("GET", (1, 1), {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25j!!=="}, "16 bytes"),
    ("GET", (1, 1), {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==é"}, "16 bytes"),
])
def test_handshake_refused_with_400(method, version, change, words):
    fields = {**GOOD, **change}
    fields = {k: v for k, v in fields.items() if v is not None}
    error = refuse(method, version, fields)
    assert error.status == 400
    assert words in error.message and "RFC 6455" in error.message
    assert error.headers == {}


def test_handshake_duplicate_key_is_400():
    fields = headers(*GOOD.items(), ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="))
    error = refuse(fields=fields)
    assert error.status == 400 and "exactly one" in error.message


@pytest.mark.parametrize("version", [None, "8", "7", "12", "14", "13, 8", "", "thirteen"])
def test_handshake_version_is_426(version):
    fields = {k: v for k, v in {**GOOD, "Sec-WebSocket-Version": version}.items()
              if v is not None}
    error = refuse(fields=fields)
    assert error.status == 426
    assert error.headers == {"Sec-WebSocket-Version": "13"}
    assert "13" in error.message
    assert str(error).startswith("426: ")


def test_handshake_two_version_fields_is_426():
    fields = headers(*GOOD.items(), ("Sec-WebSocket-Version", "13"))
    assert refuse(fields=fields).status == 426


def test_handshake_negotiates_deflate():
    fields = {**GOOD, "Sec-WebSocket-Extensions":
              "permessage-deflate; client_max_window_bits; server_max_window_bits=12"}
    result = server_handshake("GET", (1, 1), fields)
    assert result.headers["Sec-WebSocket-Extensions"] == \
        "permessage-deflate; server_max_window_bits=12"
    assert result.deflate == DeflateParams(server_max_window_bits=12)
    off = server_handshake("GET", (1, 1), fields, compress=False)
    assert off.deflate is None and "Sec-WebSocket-Extensions" not in off.headers
    declined = server_handshake("GET", (1, 1), {**GOOD, "Sec-WebSocket-Extensions":
                                                "permessage-deflate; server_max_window_bits=8"})
    assert declined.deflate is None and "Sec-WebSocket-Extensions" not in declined.headers
    # offers on two field lines are one list
    multi = headers(*GOOD.items(), ("Sec-WebSocket-Extensions", "permessage-deflate; x=1"),
                    ("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover"))
    assert server_handshake("GET", (1, 1), multi).headers["Sec-WebSocket-Extensions"] == \
        "permessage-deflate; client_no_context_takeover"


# --- RFC 6455 §5.7 examples ----------------------------------------------------------------

def test_rfc_5_7_examples():
    server = {"from_client": False}
    hello = [(TEXT, "Hello", "")]
    assert feed(bytes.fromhex("810548656c6c6f"), **server) == hello
    assert feed(bytes.fromhex("818537fa213d7f9f4d5158")) == hello
    assert feed(bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"), **server) == hello
    assert feed(bytes.fromhex("890548656c6c6f"), **server) == [(PING, b"Hello", "")]
    assert feed(bytes.fromhex("8a8537fa213d7f9f4d5158")) == [(PONG, b"Hello", "")]
    assert feed(b"\x82\x7e\x01\x00" + bytes(256), **server) == [(BINARY, bytes(256), "")]
    big = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + bytes(65536)
    assert feed(big, **server) == [(BINARY, bytes(65536), "")]
    # and the writer produces them
    assert build_frame(b"Hello", TEXT) == bytes.fromhex("810548656c6c6f")
    assert build_frame(b"Hello", TEXT, mask=KEY) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert build_frame(b"Hel", TEXT, fin=False) + build_frame(b"lo", CONT) == \
        bytes.fromhex("010348656c80026c6f")
    assert build_frame(b"Hello", PING) == bytes.fromhex("890548656c6c6f")
    assert build_frame(b"Hello", PONG, mask=KEY) == bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert frame_header(256, BINARY) == b"\x82\x7e\x01\x00"
    assert frame_header(65536, BINARY) == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"


# --- lengths and masking ---------------------------------------------------------------------

SIZES = [0, 1, 2, 3, 4, 5, 125, 126, 127, 1023, 1024, 1025, 65535, 65536, 65537, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_lengths_round_trip_masked(size):
    payload = bytes((i * 31 + 7) % 256 for i in range(size))
    data = frame(payload)
    assert feed(data) == [(BINARY, payload, "")]
    assert feed(data, max_msg_size=0) == [(BINARY, payload, "")]
    # in pieces of several sizes (streamed payloads, mask phase carried over)
    for pieces in ([1], [3], [7, 1000], [4096], [65535, 5]):
        if size > 70000 and pieces in ([1], [3]):
            continue
        assert feed_in_pieces(data, pieces) == [(BINARY, payload, "")], pieces
    text = ("aé€😀" * (size // 10 + 1)).encode()[:size]
    text = text.decode("utf-8", "ignore").encode()
    assert feed(frame(text, TEXT)) == [(TEXT, text.decode(), "")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_header_length_encodings(size):
    header = frame_header(size, BINARY)
    expected = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(header) == expected
    assert len(frame_header(size, BINARY, mask=KEY)) == expected + 4
    assert frame_header(size, BINARY, mask=KEY)[1] & 0x80
    assert not header[1] & 0x80


def test_header_extremes():
    assert frame_header(2**63 - 1, BINARY) == b"\x82\x7f" + (2**63 - 1).to_bytes(8, "big")
    with pytest.raises(ValueError):
        frame_header(2**63, BINARY)
    assert frame_header(3, TEXT, fin=False) == b"\x01\x03"
    assert frame_header(3, TEXT, rsv1=True) == b"\xc1\x03"


def test_apply_mask_matches_naive_xor():
    rng = random.Random(5)
    for size in [0, 1, 3, 4, 5, 1023, 1024, 1025, 65535, 65536, 65537, 200_001]:
        data = rng.randbytes(size)
        mask = rng.randbytes(4)
        expected = bytes(b ^ m for b, m in zip(data, cycle(mask)))
        assert apply_mask(mask, data) == expected
        assert apply_mask(mask, bytearray(data)) == expected
        assert apply_mask(mask, memoryview(data)) == expected
        assert apply_mask(mask, expected) == data


@pytest.mark.parametrize("length", [
    b"\x7e\x00\x00", b"\x7e\x00\x7d",                            # 16 bits for < 126
    b"\x7f" + (0).to_bytes(8, "big"), b"\x7f" + (125).to_bytes(8, "big"),
    b"\x7f" + (65535).to_bytes(8, "big"),                        # 64 bits for < 65536
    b"\x7f" + (2**63).to_bytes(8, "big"), b"\x7f" + (2**64 - 1).to_bytes(8, "big"),
])
def test_bad_lengths_are_1002(length):
    data = bytes((0x82, 0x80 | length[0])) + length[1:] + KEY
    assert code_of(data) == 1002
    assert code_of(data, max_msg_size=0) == 1002
    # detected on the header alone, before any payload
    assert code_of(data[:len(data) - 4]) == 1002


def test_unmasked_client_frame_is_1002():
    assert code_of(b"\x81\x05Hello") == 1002
    assert code_of(b"\x89\x00") == 1002
    assert "masked" in str(error_of(b"\x82\x00"))


def test_masked_server_frame_is_1002_for_a_client():
    assert code_of(frame(b"Hello", TEXT), from_client=False) == 1002
    assert feed(frame(b"Hello", TEXT, mask=None), from_client=False) == [(TEXT, "Hello", "")]


# --- header bits and opcodes -------------------------------------------------------------------

@pytest.mark.parametrize("first", [0xA2, 0x92, 0xB2, 0xF2, 0xE2, 0xD1, 0x99])
def test_rsv2_rsv3_are_1002(first):
    assert code_of(raw_frame(first, b"x")) == 1002
    assert code_of(raw_frame(first, b"x"), deflate=PerMessageDeflate()) == 1002


def test_rsv1_without_deflate_is_1002():
    for first in (0xC1, 0xC2, 0x41, 0xC0, 0xC9):
        error = error_of(raw_frame(first, b"x"))
        assert error.code == 1002 and "RSV1" in str(error)


def test_rsv1_with_deflate_only_on_first_data_frame():
    # on a control frame
    for first in (0xC8, 0xC9, 0xCA):
        assert code_of(raw_frame(first, b""), deflate=PerMessageDeflate()) == 1002
    # on a continuation frame
    first = frame(PerMessageDeflate().compress(b"abc"), BINARY, fin=False, rsv1=True)
    assert code_of(first + raw_frame(0xC0, b""), deflate=PerMessageDeflate()) == 1002
    # on the first frame: fine
    assert feed(frame(PerMessageDeflate().compress(b"abc"), rsv1=True),
                deflate=PerMessageDeflate()) == [(BINARY, b"abc", "")]


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_1002(opcode):
    for first in (0x80 | opcode, opcode):
        error = error_of(raw_frame(first, b""))
        assert error.code == 1002 and "opcode" in str(error)


def test_control_frame_rules():
    assert feed(frame(b"x" * 125, PING)) == [(PING, b"x" * 125, "")]
    assert feed(frame(b"", PONG)) == [(PONG, b"", "")]
    for opcode in (PING, PONG, CLOSE):
        # more than 125 bytes, whatever the length encoding
        assert code_of(frame_header(126, opcode, mask=KEY) + bytes(126)) == 1002
        assert code_of(frame_header(70000, opcode, mask=KEY)) == 1002
        assert code_of(bytes((0x80 | opcode, 0xFF)) + (200).to_bytes(8, "big")) == 1002
        # fragmented
        assert code_of(raw_frame(opcode, b"")) == 1002
        assert "fragmented" in str(error_of(raw_frame(opcode, b"")))


# --- fragmentation (RFC 6455 §5.4) ----------------------------------------------------------------

def test_fragments_with_interleaved_control_frames():
    data = (frame(b"Hel", TEXT, fin=False) + frame(b"1", PING) + frame(b"", CONT, fin=False)
            + frame(b"2", PONG) + frame(b"lo", CONT, fin=False) + frame(b"3", PING)
            + frame(b", world", CONT) + frame(b"\x00\x01", BINARY, fin=False)
            + frame(b"\x02", CONT))
    expected = [(PING, b"1", ""), (PONG, b"2", ""), (PING, b"3", ""),
                (TEXT, "Hello, world", ""), (BINARY, b"\x00\x01\x02", "")]
    assert feed(data) == expected
    assert feed_in_pieces(data, [1]) == expected


def test_many_fragments_and_empty_ones():
    parts = [bytes((i,)) * (i % 5) for i in range(200)]
    data = frame(parts[0], BINARY, fin=False)
    data += b"".join(frame(p, CONT, fin=False) for p in parts[1:])
    data += frame(b"", CONT)
    assert feed(data) == [(BINARY, b"".join(parts), "")]
    assert feed(frame(b"", TEXT, fin=False) + frame(b"", CONT)) == [(TEXT, "", "")]


def test_text_split_inside_a_character():
    text = "naïve 😀 café".encode()
    for cut in range(len(text) + 1):
        data = frame(text[:cut], TEXT, fin=False) + frame(text[cut:], CONT)
        assert feed(data) == [(TEXT, "naïve 😀 café", "")], cut


def test_continuation_without_message_is_1002():
    assert code_of(frame(b"x", CONT)) == 1002
    assert code_of(frame(b"x", CONT, fin=False)) == 1002
    # after a complete message, too
    assert code_of(frame(b"a", TEXT) + frame(b"b", CONT)) == 1002
    # a big one is refused on its header, not buffered
    assert code_of(frame_header(100_000, CONT, mask=KEY)) == 1002


def test_new_data_frame_inside_fragmented_message_is_1002():
    for opcode, fin in ((TEXT, True), (TEXT, False), (BINARY, True), (BINARY, False)):
        data = frame(b"a", TEXT, fin=False) + frame(b"b", opcode, fin=fin)
        error = error_of(data)
        assert error.code == 1002 and "continuation" in str(error)
    big = frame(b"a", BINARY, fin=False) + frame_header(100_000, BINARY, mask=KEY)
    assert code_of(big) == 1002
    # even when the new frame is also too big: the sequence error comes first
    assert code_of(big, max_msg_size=10) == 1002


# --- UTF-8 (RFC 6455 §8.1) ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xce", b"ok\xe2\x82",
    b"\x80", b"a\xf8\x88\x80\x80\x80",
])
def test_invalid_utf8_is_1007(bad):
    assert code_of(frame(bad, TEXT)) == 1007
    assert code_of(frame(bad[:1], TEXT, fin=False) + frame(bad[1:], CONT)) == 1007
    assert code_of(frame(bad, TEXT), max_msg_size=0) == 1007


def test_invalid_utf8_fails_fast():
    # the first fragment already makes the text impossible: no need to wait for the rest
    assert code_of(frame(b"ok \xff", TEXT, fin=False)) == 1007
    assert code_of(frame(b"\xf4\x90", TEXT, fin=False)) == 1007      # above U+10FFFF
    # a big frame: refused on its first piece
    big = frame(b"\xc0" + b"a" * 100_000, TEXT)
    assert code_of(big[:5000]) == 1007
    # an incomplete but possible character waits for the next fragment
    assert feed(frame(b"\xe2\x82", TEXT, fin=False)) == []


def test_binary_is_not_checked_for_utf8():
    assert feed(frame(b"\xff\xfe", BINARY)) == [(BINARY, b"\xff\xfe", "")]


# --- message size --------------------------------------------------------------------------------

def test_max_msg_size_is_inclusive():
    assert feed(frame(b"x" * 10), max_msg_size=10) == [(BINARY, b"x" * 10, "")]
    assert code_of(frame(b"x" * 11), max_msg_size=10) == 1009
    assert feed(frame("é".encode() * 5, TEXT), max_msg_size=10) == [(TEXT, "é" * 5, "")]
    assert code_of(frame("é".encode() * 5 + b"x", TEXT), max_msg_size=10) == 1009


def test_max_msg_size_default_exactly():
    limit = DEFAULT_MAX_MSG_SIZE
    assert feed(frame(bytes(limit)))[0].data == bytes(limit)
    assert code_of(frame(bytes(limit + 1))) == 1009


def test_max_msg_size_counts_fragments():
    data = frame(b"x" * 6, BINARY, fin=False) + frame(b"x" * 4, CONT, fin=False)
    assert feed(data + frame(b"", CONT), max_msg_size=10) == [(BINARY, b"x" * 10, "")]
    assert code_of(data + frame(b"x", CONT), max_msg_size=10) == 1009


def test_max_msg_size_refused_on_the_header():
    header = frame_header(10**9, BINARY, mask=KEY)
    error = error_of(header)
    assert error.code == 1009 and "max_msg_size" in str(error)
    assert feed(header, max_msg_size=0) == []          # 0: no limit


def test_control_frames_do_not_count_towards_the_limit():
    data = frame(b"x" * 8, BINARY, fin=False) + frame(b"p" * 100, PING) + frame(b"xx", CONT)
    assert feed(data, max_msg_size=10) == [(PING, b"p" * 100, ""), (BINARY, b"x" * 10, "")]


# --- close frames (RFC 6455 §5.5.1, §7.4) ---------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000,
               3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(code):
    assert is_valid_close_code(code)
    assert feed(frame(code.to_bytes(2, "big") + "fin ✓".encode(), CLOSE)) == \
        [(CLOSE, code, "fin ✓")]
    assert parse_close_payload(code.to_bytes(2, "big")) == (code, "")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes_are_1002(code):
    assert not is_valid_close_code(code)
    error = error_of(frame(code.to_bytes(2, "big"), CLOSE))
    assert error.code == 1002 and str(code) in str(error)


def test_close_payloads():
    assert feed(frame(b"", CLOSE)) == [(CLOSE, WS_CLOSE_NO_STATUS, "")]
    assert WS_CLOSE_NO_STATUS == 1005
    assert code_of(frame(b"\x03", CLOSE)) == 1002
    assert code_of(frame(b"\x03\xe8\xff", CLOSE)) == 1007
    assert code_of(frame(b"\x03\xe8\xc3", CLOSE)) == 1007
    assert feed(frame(b"\x03\xe8" + b"r" * 123, CLOSE)) == [(CLOSE, 1000, "r" * 123)]


def test_input_after_close_is_ignored():
    parser = WebSocketParser()
    data = frame(b"a", TEXT) + frame(b"\x03\xe8", CLOSE) + frame(b"b", TEXT) + b"\xff\xff"
    assert parser.feed(data) == [(TEXT, "a", ""), (CLOSE, 1000, "")]
    assert parser.close_received
    assert parser.feed(frame(b"c", TEXT)) == []
    assert parser.exception is None


def test_close_between_fragments():
    data = frame(b"a", TEXT, fin=False) + frame(b"\x03\xe9", CLOSE)
    assert feed(data) == [(CLOSE, 1001, "")]


# --- errors end the parse ----------------------------------------------------------------------------

def test_error_is_last_and_the_parser_stops():
    parser = WebSocketParser()
    events = parser.feed(frame(b"one", TEXT) + frame(b"two") + raw_frame(0x83, b"")
                         + frame(b"three", TEXT))
    assert normalise(events) == [(TEXT, "one", ""), (BINARY, b"two", ""), (ERROR, 1002, None)]
    assert parser.exception is events[-1].data
    assert events[-1].extra is None
    assert parser.feed(frame(b"four", TEXT)) == []
    assert parser.feed(b"\xff" * 10) == []


def test_feed_accepts_bytes_like_and_empty():
    parser = WebSocketParser()
    assert parser.feed(b"") == []
    assert parser.feed(bytearray(frame(b"a", TEXT))) == [(TEXT, "a", "")]
    assert parser.feed(memoryview(frame(b"b", TEXT))) == [(TEXT, "b", "")]
    with pytest.raises(ValueError):
        WebSocketParser(max_msg_size=-1)


# --- split invariance ----------------------------------------------------------------------------

def _mixed_stream() -> bytes:
    deflate_free = (
        frame(b"", TEXT) + frame(b"hi", TEXT) + frame(bytes(range(256)) * 5)
        + frame(b"ping!", PING) + frame("héllo wörld ".encode() * 200, TEXT)
        + frame(b"ab", TEXT, fin=False) + frame(b"pp", PING) + frame("c€".encode(), CONT, fin=False)
        + frame(b"", PONG) + frame(b"d" * 3000, CONT)
        + frame(random.Random(1).randbytes(70_000)) + frame(b"x" * 125) + frame(b"y" * 126)
        + frame(b"\x03\xe8bye", CLOSE))
    return deflate_free


def test_split_invariance():
    data = _mixed_stream()
    whole = feed(data)
    assert [e.type for e in whole][-1] is CLOSE and len(whole) == 12
    assert feed_in_pieces(data, [1]) == whole
    for sizes in ([2], [3, 5, 7], [1000], [4096, 1, 13], [65536]):
        assert feed_in_pieces(data, sizes) == whole, sizes
    rng = random.Random(6455)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), 8))
        parser = WebSocketParser()
        events = []
        for start, stop in zip([0] + cuts, cuts + [len(data)]):
            events += parser.feed(data[start:stop])
        assert events == whole


@pytest.mark.parametrize("bad", [
    raw_frame(0x83, b""), frame(b"\xff", TEXT), frame_header(10**9, BINARY, mask=KEY),
    frame(b"\x03", CLOSE), frame(b"x", CONT), b"\x82\xfe\x00\x05" + KEY + bytes(5),
])
def test_split_invariance_of_errors(bad):
    data = frame(b"before", TEXT) + frame(b"p", PING) + bad + frame(b"after", TEXT)
    whole = normalise(feed(data))
    assert whole[-1][0] is ERROR and whole[:2] == [(TEXT, "before", ""), (PING, b"p", "")]
    assert normalise(feed_in_pieces(data, [1])) == whole
    assert normalise(feed_in_pieces(data, [3, 11])) == whole


# --- fuzzing -------------------------------------------------------------------------------------

def _check_events(events):
    assert all(isinstance(event, WSMessage) for event in events)
    errors = [event for event in events if event.type is ERROR]
    if errors:
        assert events[-1] is errors[0] and len(errors) == 1
        assert isinstance(errors[0].data, WebSocketError)
        assert errors[0].data.code in (1002, 1007, 1009)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), min_size=1, max_size=8),
       st.booleans(), st.booleans())
def test_random_bytes_never_raise(data, sizes, from_client, with_deflate):
    options = {"from_client": from_client, "max_msg_size": 300}
    if with_deflate:
        options["deflate"] = PerMessageDeflate()
    events = feed_in_pieces(data, sizes, **options)
    _check_events(events)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
                          st.booleans(), st.booleans(), st.binary(max_size=140)),
                max_size=8),
       st.integers(1, 50))
def test_random_frame_sequences_never_raise(frames, piece):
    """Well-formed headers in random orders: every sequence error is caught as such."""
    data = b""
    for opcode, fin, rsv1, payload in frames:
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        data += bytes((first,)) + frame_header(len(payload), 0, mask=KEY)[1:] + \
            apply_mask(KEY, payload)
    for deflate in (False, True):
        whole = feed(data, deflate=PerMessageDeflate() if deflate else None)
        _check_events(whole)
        pieces = feed_in_pieces(data, [piece], deflate=PerMessageDeflate() if deflate else None)
        assert normalise(pieces) == normalise(whole)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=3000)), max_size=6),
       st.sampled_from([0, 1, 7, 100, 1024]), st.booleans(), st.integers(1, 5000))
def test_writer_parser_round_trip(messages, max_frame_size, compress, piece):
    deflate_params = DeflateParams()
    writer = FrameWriter(mask=True, max_frame_size=max_frame_size,
                         deflate=PerMessageDeflate(deflate_params) if compress else None)
    data = b""
    for message in messages:
        opcode = TEXT if isinstance(message, str) else BINARY
        data += b"".join(writer.message(message, opcode))
    parser_options = {"deflate": PerMessageDeflate(deflate_params)} if compress else {}
    events = feed_in_pieces(data, [piece], **parser_options)
    assert events == [(TEXT if isinstance(m, str) else BINARY, m, "") for m in messages]


# --- the writer ----------------------------------------------------------------------------------

def test_server_frames_are_never_masked():
    writer = FrameWriter()
    for data in (b"", b"x" * 125, b"x" * 126, b"x" * 70000):
        wire = b"".join(writer.message(data))
        assert not wire[1] & 0x80
        assert feed(wire, from_client=False) == [(BINARY, data, "")]
    assert writer.message("é", TEXT) == [b"\x81\x02\xc3\xa9"]
    assert writer.ping(b"p") == b"\x89\x01p"
    assert writer.pong() == b"\x8a\x00"
    assert writer.close() == b"\x88\x02\x03\xe8"
    assert writer.close(None) == b"\x88\x00"
    assert writer.close(4000, "bye") == b"\x88\x05\x0f\xa0bye"


def test_writer_big_payload_is_not_copied_into_the_header():
    payload = bytes(100_000)
    frames = FrameWriter().message(payload)
    assert len(frames) == 2 and frames[1] is payload
    assert frames[0] == frame_header(100_000, BINARY)


def test_masking_writer():
    writer = FrameWriter(mask=True)
    wire = b"".join(writer.message("Hello", TEXT))
    assert wire[1] == 0x85 and wire[6:] != b"Hello"
    assert feed(wire) == [(TEXT, "Hello", "")]
    keys = {b"".join(writer.message(b"x"))[2:6] for _ in range(20)}
    assert len(keys) > 1                                   # a fresh key per frame
    assert feed(writer.ping(b"hi") + writer.close(1001)) == [(PING, b"hi", ""), (CLOSE, 1001, "")]


def test_outgoing_fragmentation():
    writer = FrameWriter(max_frame_size=4)
    frames = writer.message(b"0123456789")
    assert frames == [b"\x02\x040123", b"\x00\x044567", b"\x80\x0289"]
    assert FrameWriter(max_frame_size=5).message(b"0123456789") == [
        b"\x02\x0501234", b"\x80\x0556789"]
    assert FrameWriter(max_frame_size=10).message(b"0123456789") == [b"\x82\x0a0123456789"]
    assert FrameWriter().message(b"x" * 100_000)[0][:2] == b"\x82\x7f"   # off by default
    text = "é" * 10                                        # split inside characters: fine
    wire = b"".join(FrameWriter(max_frame_size=3, mask=True).message(text, TEXT))
    assert feed(wire) == [(TEXT, text, "")]


def test_writer_refuses_bad_input():
    with pytest.raises(ValueError):
        FrameWriter().message(b"x", PING)
    with pytest.raises(ValueError):
        FrameWriter().message(b"x", compress=True)
    with pytest.raises(ValueError):
        FrameWriter(max_frame_size=-1)
    with pytest.raises(ValueError):
        build_frame(b"x" * 126, PING)
    with pytest.raises(ValueError):
        build_frame(b"x", CLOSE, fin=False)


def test_close_payload():
    assert close_payload() == b"\x03\xe8"
    assert close_payload(1001, "bye") == b"\x03\xe9bye"
    assert close_payload(3000, b"\xc3\xa9") == b"\x0b\xb8\xc3\xa9"
    assert close_payload(None) == b""
    assert close_payload(1000, "r" * 123) == b"\x03\xe8" + b"r" * 123
    assert build_close_frame(1000, "x", mask=KEY) == frame(b"\x03\xe8x", CLOSE)
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError):
            close_payload(code)
    with pytest.raises(ValueError):
        close_payload(1000, "r" * 124)
    with pytest.raises(ValueError):
        close_payload(1000, "é" * 62)                        # 124 bytes
    with pytest.raises(ValueError):
        close_payload(None, "reason without code")
    with pytest.raises(ValueError):
        close_payload(1000, b"\xff")


# --- permessage-deflate (RFC 7692) -------------------------------------------------------------

@pytest.mark.parametrize("offer, accepted", [
    ("permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=10", "permessage-deflate"),
    ("permessage-deflate;client_max_window_bits=8", "permessage-deflate"),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover"),
    ("permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_max_window_bits=9"),
    ("permessage-deflate; server_max_window_bits=15",
     "permessage-deflate; server_max_window_bits=15"),
    ('permessage-deflate; server_max_window_bits="11"',
     "permessage-deflate; server_max_window_bits=11"),
    ("permessage-deflate ; server_max_window_bits = 10 ; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
     "permessage-deflate"),
    ("permessage-deflate; unknown, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"),
    (", ,permessage-deflate,", "permessage-deflate"),
    ("permessage-deflate; server_max_window_bits=8", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; server_max_window_bits=7", None),
    ("permessage-deflate; server_max_window_bits=010", None),
    ("permessage-deflate; server_max_window_bits=1 0", None),
    ("permessage-deflate; client_max_window_bits=16", None),
    ("permessage-deflate; client_max_window_bits=", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
    ("permessage-deflate; server_max_window_bits=10; server_max_window_bits=11", None),
    ("permessage-deflate; mystery", None),
    ("permessage-deflate; mystery=1", None),
    ("x-webkit-deflate-frame", None),
    ("Permessage-Deflate", None),
    ('permessage-deflate; server_max_window_bits="1\\0"',             # unquoted: "10"
     "permessage-deflate; server_max_window_bits=10"),
    ('permessage-deflate; server_max_window_bits="10', None),
    ("permessage-deflate;", None),
    ("", None),
])
def test_deflate_negotiation(offer, accepted):
    result = negotiate_permessage_deflate(offer)
    assert (result.header() if result else None) == accepted


def test_parse_extensions():
    assert parse_extensions('a; b=1; c="x\\yz", d ,, e;f') == [
        ("a", [("b", "1"), ("c", "xyz")]), ("d", []), ("e", [("f", None)])]
    assert parse_extensions("") == [] and parse_extensions(" , ") == []
    for bad in ("a b", "a;", "a; =1", 'a; b="c d"', "a; b=c=d", ";a", "a; b=\"\""):
        with pytest.raises(ValueError):
            parse_extensions(bad)


def _client_compress(messages, **options):
    """Messages as a client compresses them: raw deflate, sync flush, tail removed."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -options.get("bits", 15))
    out = []
    for message in messages:
        if options.get("fresh"):
            compressor = zlib.compressobj(6, zlib.DEFLATED, -options.get("bits", 15))
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def test_compressed_round_trip_with_context_takeover():
    messages = [b"the same words again " * 20] * 3
    sender = PerMessageDeflate()
    payloads = [sender.compress(m) for m in messages]
    assert len(payloads[1]) < len(payloads[0])          # refers back to the first message
    receiver = PerMessageDeflate()
    assert [receiver.decompress(p) for p in payloads] == messages
    # a fresh decompressor cannot read the second message alone
    with pytest.raises(WebSocketError) as caught:
        PerMessageDeflate().decompress(payloads[1])
    assert caught.value.code == 1007
    # client-compressed messages, through the parser
    data = b"".join(frame(p, TEXT, rsv1=True) for p in _client_compress(messages))
    parser_events = feed(data, deflate=PerMessageDeflate())
    assert parser_events == [(TEXT, m.decode(), "") for m in messages]


def test_compressed_round_trip_without_context_takeover():
    params = DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True)
    sender = PerMessageDeflate(params)
    message = b"the same words again " * 20
    first, second = sender.compress(message), sender.compress(message)
    assert first == second                       # nothing is remembered between messages
    assert PerMessageDeflate().decompress(second) == message
    receiver = PerMessageDeflate(params)
    payloads = _client_compress([message, message], fresh=True)
    data = b"".join(frame(p, BINARY, rsv1=True) for p in payloads)
    assert feed(data, deflate=receiver) == [(BINARY, message, "")] * 2


def test_server_max_window_bits_is_honoured():
    data = random.Random(2).randbytes(3000) * 2     # a repeat 3000 bytes back: beyond 2**10
    payload = PerMessageDeflate(DeflateParams(server_max_window_bits=10)).compress(data)
    assert zlib.decompressobj(-10).decompress(payload + b"\x00\x00\xff\xff") == data
    # and a client using a small window is read by our 15-bit decompressor
    small = _client_compress([data], bits=9)[0]
    assert PerMessageDeflate().decompress(small) == data


def test_rfc_7692_examples():
    examples = [["c1 07 f2 48 cd c9 c9 07 00"],                          # §7.2.3.1
                ["41 03 f2 48 cd", "80 04 c9 c9 07 00"],                 # §7.2.3.1 fragmented
                ["c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00"],              # §7.2.3.3
                ["c1 08 f3 48 cd c9 c9 07 00 00"],                       # §7.2.3.4 BFINAL
                ["c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00"]]        # §7.2.3.5
    for frames in examples:
        data = b"".join(bytes.fromhex(f) for f in frames)
        assert feed(data, from_client=False, deflate=PerMessageDeflate()) == \
            [(TEXT, "Hello", "")], frames
    # §7.2.3.2: the second message shares the LZ77 window
    both = bytes.fromhex("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00")
    assert feed(both, from_client=False, deflate=PerMessageDeflate()) == [(TEXT, "Hello", "")] * 2
    # after a BFINAL block, the next message starts a new stream
    twice = bytes.fromhex("c1 08 f3 48 cd c9 c9 07 00 00") * 2
    assert feed(twice, from_client=False, deflate=PerMessageDeflate()) == [(TEXT, "Hello", "")] * 2


def test_rsv1_on_the_first_frame_only():
    writer = FrameWriter(deflate=PerMessageDeflate(), max_frame_size=5)
    frames = writer.message(random.Random(3).randbytes(50))
    assert len(frames) > 2
    assert frames[0][0] == 0x42
    assert all(f[0] == 0x00 for f in frames[1:-1]) and frames[-1][0] == 0x80
    single = FrameWriter(deflate=PerMessageDeflate()).message(b"abc")
    assert single[0][0] == 0xC2
    plain = FrameWriter(deflate=PerMessageDeflate()).message(b"abc", compress=False)
    assert plain == [b"\x82\x03abc"]
    # control frames are never compressed
    assert FrameWriter(deflate=PerMessageDeflate()).ping(b"x") == b"\x89\x01x"


def test_compressed_fragmented_message_with_ping():
    payload = PerMessageDeflate().compress(b"fragmented and compressed " * 50)
    cut = len(payload) // 2
    data = (frame(payload[:cut], TEXT, fin=False, rsv1=True) + frame(b"?", PING)
            + frame(payload[cut:], CONT))
    expected = [(PING, b"?", ""), (TEXT, "fragmented and compressed " * 50, "")]
    assert feed(data, deflate=PerMessageDeflate()) == expected
    assert feed_in_pieces(data, [1], deflate=PerMessageDeflate()) == expected


def test_uncompressed_messages_on_a_deflate_connection():
    assert feed(frame(b"plain", TEXT), deflate=PerMessageDeflate()) == [(TEXT, "plain", "")]


def test_decompression_bomb_is_stopped():
    bomb = PerMessageDeflate().compress(bytes(20_000_000))
    assert len(bomb) < 200_000
    error = error_of(frame(bomb, rsv1=True), deflate=PerMessageDeflate())
    assert error.code == 1009
    assert code_of(frame(bomb, rsv1=True), deflate=PerMessageDeflate(), max_msg_size=1000) == 1009
    # in fragments, the total counts
    payload = PerMessageDeflate().compress(bytes(1200))
    data = frame(payload[:3], fin=False, rsv1=True) + frame(payload[3:], CONT)
    assert feed(data, deflate=PerMessageDeflate())[0].data == bytes(1200)
    assert code_of(data, deflate=PerMessageDeflate(), max_msg_size=1000) == 1009
    with pytest.raises(WebSocketError) as caught:
        PerMessageDeflate().decompress(bomb, 1000)
    assert caught.value.code == 1009


def test_compressed_limit_is_inclusive():
    data = random.Random(4).randbytes(1000)        # incompressible: the payload grows a little
    payload = PerMessageDeflate().compress(data)
    assert len(payload) > 1000
    assert feed(frame(payload, rsv1=True), deflate=PerMessageDeflate(),
                max_msg_size=1000) == [(BINARY, data, "")]
    assert code_of(frame(PerMessageDeflate().compress(data + b"!"), rsv1=True),
                   deflate=PerMessageDeflate(), max_msg_size=1000) == 1009
    # far too big on the wire, even for a compressed message: refused on the header
    assert code_of(frame_header(10_000, BINARY, rsv1=True, mask=KEY),
                   deflate=PerMessageDeflate(), max_msg_size=1000) == 1009
    assert feed(frame(PerMessageDeflate().compress(bytes(10**6)), rsv1=True),
                deflate=PerMessageDeflate(), max_msg_size=0)[0].data == bytes(10**6)


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff", b"\x07", b"\x03\x00\x00\x00\x00" * 3])
def test_invalid_compressed_data_is_1007(garbage):
    assert code_of(frame(garbage, rsv1=True), deflate=PerMessageDeflate()) == 1007


def test_compressed_text_must_be_utf8():
    payload = PerMessageDeflate().compress(b"ok \xff")
    assert code_of(frame(payload, TEXT, rsv1=True), deflate=PerMessageDeflate()) == 1007


def test_several_final_blocks_in_one_piece_are_read():
    final = bytes.fromhex("f3 48 cd c9 c9 07 00")        # "Hello" in a BFINAL block
    # each a DEFLATE stream of its own; then RFC 7692 §7.2.1's empty block, minus 4 bytes
    assert PerMessageDeflate().decompress(final * 3 + b"\x00") == b"Hello" * 3
