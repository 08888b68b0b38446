"""Grading tests for the exercises of notebook 01 (the HTTP/1.1 request parser).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from lowserver.http_parser import (
    ContentLengthError,
    HttpProcessingError,
    HttpVersion10,
    HttpVersion11,
    TransferEncodingError,
    UnsupportedTransferCoding,
    body_framing,
    connection_options,
    parse_chunk_size,
)


def headers(*pairs):
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_exercise_1_parse_chunk_size():
    assert parse_chunk_size(b"0") == 0
    assert parse_chunk_size(b"1a") == 26
    assert parse_chunk_size(b"1A") == 26
    assert parse_chunk_size(b"ffffffffffffffff") == 2**64 - 1
    assert parse_chunk_size(b"10;name") == 16
    assert parse_chunk_size(b"10;name=value;other") == 16
    assert parse_chunk_size(b'10 ; name = "quoted; value"') == 16
    for bad in (b"", b"zz", b"-1", b"+1", b" 1", b"0x10", b"1" * 17, b"10;", b"10;a b",
                b"10 garbage"):
        with pytest.raises(TransferEncodingError):
            parse_chunk_size(bad)


def test_exercise_2_body_framing():
    v11, v10 = HttpVersion11, HttpVersion10
    assert body_framing(v11, headers()) == (False, None)
    assert body_framing(v11, headers(("Content-Length", "0"))) == (False, 0)
    assert body_framing(v11, headers(("content-length", "1234"))) == (False, 1234)
    assert body_framing(v10, headers(("Content-Length", "5"))) == (False, 5)
    assert body_framing(v11, headers(("Transfer-Encoding", "chunked"))) == (True, None)
    assert body_framing(v11, headers(("Transfer-Encoding", "Chunked"))) == (True, None)
    for value in ("+5", "-5", "5 5", "5,5", "0x5", "five", "", "٥"):
        with pytest.raises(ContentLengthError):
            body_framing(v11, headers(("Content-Length", value)))
    with pytest.raises(ContentLengthError):
        body_framing(v11, headers(("Content-Length", "5"), ("Content-Length", "5")))
    with pytest.raises(HttpProcessingError) as both:
        body_framing(v11, headers(("Transfer-Encoding", "chunked"), ("Content-Length", "5")))
    assert both.value.code == 400
    for value in ("chunked, gzip", "chunked, chunked"):
        with pytest.raises(TransferEncodingError):
            body_framing(v11, headers(("Transfer-Encoding", value)))
    with pytest.raises(TransferEncodingError):
        body_framing(v11, headers(("Transfer-Encoding", "chunked"),
                                  ("Transfer-Encoding", "chunked")))
    for value in ("gzip, chunked", "gzip"):
        with pytest.raises(HttpProcessingError) as unsupported:
            body_framing(v11, headers(("Transfer-Encoding", value)))
        assert unsupported.value.code in (400, 501)
    with pytest.raises(UnsupportedTransferCoding):
        body_framing(v11, headers(("Transfer-Encoding", "gzip, chunked")))
    with pytest.raises(TransferEncodingError):
        body_framing(v10, headers(("Transfer-Encoding", "chunked")))
    # chunked takes no parameters (RFC 9112 §7); tokens fold ASCII letters only
    for value in ("chunked;q=1", "chunked ; a=b"):
        with pytest.raises(TransferEncodingError):
            body_framing(v11, headers(("Transfer-Encoding", value)))
    with pytest.raises(HttpProcessingError):
        body_framing(v11, headers(("Transfer-Encoding", "chun\u212aed")))   # KELVIN SIGN, no "k"


def test_exercise_3_connection_options():
    v11, v10 = HttpVersion11, HttpVersion10
    assert connection_options(v11, headers()) == (False, False)
    assert connection_options(v10, headers()) == (True, False)
    assert connection_options(v11, headers(("Connection", "close"))) == (True, False)
    assert connection_options(v11, headers(("Connection", "Close"))) == (True, False)
    assert connection_options(v11, headers(("Connection", "foo, close"))) == (True, False)
    assert connection_options(v10, headers(("Connection", "keep-alive"))) == (False, False)
    assert connection_options(v10, headers(("Connection", "Keep-Alive"))) == (False, False)
    assert connection_options(v11, headers(("Connection", "keep-alive"))) == (False, False)
    upgrade = (("Connection", "Upgrade"), ("Upgrade", "websocket"))
    assert connection_options(v11, headers(*upgrade)) == (False, True)
    assert connection_options(v11, headers(("Connection", "keep-alive, upgrade"),
                                           ("Upgrade", "websocket"))) == (False, True)
    assert connection_options(v11, headers(("Connection", "upgrade"))) == (False, False)
    assert connection_options(v11, headers(("Upgrade", "websocket"))) == (False, False)
    assert connection_options(v10, headers(*upgrade)) == (True, False)  # RFC 9110 §7.8
    # a list on several field lines is one list (RFC 9110 §5.3)
    assert connection_options(v11, headers(("Connection", "keep-alive"),
                                           ("Connection", "close"))) == (True, False)
    assert connection_options(v11, headers(("Connection", "keep-alive"), ("Connection", "upgrade"),
                                           ("Upgrade", "websocket"))) == (False, True)
    # tokens fold ASCII letters only: str.lower() would make "\u212aeep-alive" "keep-alive"
    assert connection_options(v10, headers(("Connection", "\u212aeep-alive"))) == (True, False)
