"""Grading tests for the exercises of notebook 05 (the WebSocket protocol, sans-I/O).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution. Exercise 3 grades
`python_apply_mask`, the pure-Python path, whatever `apply_mask` is (the C accelerator, when
websockets is installed); so this module does not run on both masking paths (tests/conftest.py).
"""
import base64
import hashlib
from itertools import cycle

import pytest

from lowserver.websocket_deflate import DeflateParams, accept_deflate_offer
from lowserver.websocket_frames import WebSocketError, decode_payload_length
from lowserver.websocket_frames import python_apply_mask as apply_mask   # the exercise: pure Python
from lowserver.websocket_handshake import accept_key


def test_exercise_1_accept_key():
    # RFC 6455 §1.3 and §4.2.2: the example key and its answer
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key("x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
    for raw in (bytes(16), bytes(range(16)), b"\xff" * 16):
        key = base64.b64encode(raw).decode()
        expected = base64.b64encode(hashlib.sha1(
            key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        assert accept_key(key) == expected
        assert isinstance(accept_key(key), str)


def test_exercise_2_decode_payload_length():
    # 7-bit lengths: the header is 2 bytes
    assert decode_payload_length(b"\x81\x00") == (0, 2)
    assert decode_payload_length(b"\x81\x05Hello") == (5, 2)
    assert decode_payload_length(b"\x82\xfd") == (125, 2)          # the mask bit is not length
    # 16-bit: 126 then 2 bytes
    assert decode_payload_length(b"\x82\x7e\x00\x7e") == (126, 4)
    assert decode_payload_length(b"\x82\xfe\xff\xff") == (65535, 4)
    assert decode_payload_length(b"\x82\x7e\x01\x00") == (256, 4)  # RFC 6455 §5.7
    # 64-bit: 127 then 8 bytes
    assert decode_payload_length(b"\x82\x7f" + (65536).to_bytes(8, "big")) == (65536, 10)
    assert decode_payload_length(b"\x82\x7f" + (2**63 - 1).to_bytes(8, "big")) == (2**63 - 1, 10)
    # an offset into a buffer
    assert decode_payload_length(b"junk\x82\x7e\x01\x00", 4) == (256, 8)
    assert decode_payload_length(b"\x82\x05" * 3, 2) == (5, 4)
    # not enough bytes yet
    for partial in (b"", b"\x82", b"\x82\x7e", b"\x82\x7e\x01", b"\x82\x7f",
                    b"\x82\x7f" + bytes(7)):
        assert decode_payload_length(partial) is None, partial
    assert decode_payload_length(b"junk\x82\x7e\x01", 4) is None
    # non-minimal encodings and the 64-bit most significant bit: protocol errors (1002)
    bad = [b"\x82\x7e\x00\x00", b"\x82\x7e\x00\x7d",
           b"\x82\x7f" + (0).to_bytes(8, "big"), b"\x82\x7f" + (65535).to_bytes(8, "big"),
           b"\x82\x7f" + (2**63).to_bytes(8, "big"), b"\x82\x7f" + b"\xff" * 8]
    for header in bad:
        with pytest.raises(WebSocketError) as caught:
            decode_payload_length(header)
        assert caught.value.code == 1002, header


def _naive(mask, data):
    return bytes(b ^ m for b, m in zip(data, cycle(mask)))


def test_exercise_3_apply_mask():
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d
    assert apply_mask(b"\x37\xfa\x21\x3d", b"Hello") == b"\x7f\x9f\x4d\x51\x58"
    assert apply_mask(b"\x37\xfa\x21\x3d", b"\x7f\x9f\x4d\x51\x58") == b"Hello"
    assert apply_mask(b"abcd", b"") == b""
    for mask in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04", b"\x80\x00\x7f\xaa"):
        for size in (1, 2, 3, 4, 5, 7, 8, 31, 32, 125, 126, 1023, 1024, 1025, 4099, 65536, 65539,
                     200_003):
            data = bytes((i * 7 + 3) % 256 for i in range(size))
            masked = apply_mask(mask, data)
            assert isinstance(masked, bytes)
            assert masked == _naive(mask, data), (mask, size)
            assert apply_mask(mask, masked) == data
    data = bytes(range(256)) * 10
    expected = _naive(b"wxyz", data)
    assert apply_mask(b"wxyz", bytearray(data)) == expected
    assert apply_mask(b"wxyz", memoryview(data)) == expected


def test_exercise_4_accept_deflate_offer():
    assert accept_deflate_offer([]) == DeflateParams()
    assert accept_deflate_offer([("client_max_window_bits", None)]) == DeflateParams()
    assert accept_deflate_offer([("client_max_window_bits", "8")]) == DeflateParams()
    assert accept_deflate_offer([("client_max_window_bits", "15")]) == DeflateParams()
    assert accept_deflate_offer([("server_no_context_takeover", None)]) == DeflateParams(
        server_no_context_takeover=True)
    assert accept_deflate_offer([("client_no_context_takeover", None)]) == DeflateParams(
        client_no_context_takeover=True)
    for bits in range(9, 16):
        assert accept_deflate_offer([("server_max_window_bits", str(bits))]) == DeflateParams(
            server_max_window_bits=bits)
    assert accept_deflate_offer([
        ("server_no_context_takeover", None), ("client_no_context_takeover", None),
        ("server_max_window_bits", "12"), ("client_max_window_bits", None)]) == DeflateParams(
            True, True, 12)
    declined = [
        [("server_max_window_bits", "8")],                 # zlib cannot compress with 8 bits
        [("server_max_window_bits", None)],                # a value is required
        [("server_max_window_bits", "16")], [("server_max_window_bits", "7")],
        [("server_max_window_bits", "010")], [("server_max_window_bits", "ten")],
        [("client_max_window_bits", "16")], [("client_max_window_bits", "0")],
        [("client_max_window_bits", "09")],
        [("server_no_context_takeover", "1")], [("client_no_context_takeover", "yes")],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "10")],
        [("mystery", None)], [("server_max_window_bits", "10"), ("x", "y")],
    ]
    for params in declined:
        assert accept_deflate_offer(params) is None, params
