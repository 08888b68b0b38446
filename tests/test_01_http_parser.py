"""Stage 01: the HTTP/1.1 request parser (lowserver/http_parser.py), on byte strings alone."""
from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from lowserver.http_parser import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    END_OF_CHUNK,
    EndOfMessage,
    HeaderFieldsTooLarge,
    HttpProcessingError,
    HttpRequestParser,
    HttpVersion,
    HttpVersion10,
    HttpVersion11,
    HttpVersionNotSupported,
    InvalidHeader,
    LineTooLong,
    RawRequestMessage,
    TransferEncodingError,
    UnsupportedTransferCoding,
)


def parse(data: bytes, **limits) -> list:
    return HttpRequestParser(**limits).feed(data)


def error_of(data: bytes, **limits) -> HttpProcessingError:
    events = parse(data, **limits)
    assert events, "expected an error event"
    assert isinstance(events[-1], HttpProcessingError), events
    return events[-1]


def only_message(data: bytes, **limits) -> RawRequestMessage:
    events = parse(data, **limits)
    assert isinstance(events[0], RawRequestMessage), events
    assert isinstance(events[-1], EndOfMessage), events
    return events[0]


def body_of(events: list) -> bytes:
    return b"".join(e for e in events if isinstance(e, bytes))


def req(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + body


# --- the request line (RFC 9112 §3) ----------------------------------------------------

@pytest.mark.parametrize("line, method, target, version", [
    ("GET / HTTP/1.1", "GET", "/", HttpVersion11),
    ("get /x HTTP/1.1", "get", "/x", HttpVersion11),           # case kept as sent
    ("PaTcH /x HTTP/1.1", "PaTcH", "/x", HttpVersion11),
    ("M-SEARCH * HTTP/1.1", None, None, None),                  # '*' only for OPTIONS
    ("OPTIONS * HTTP/1.1", "OPTIONS", "*", HttpVersion11),
    ("GET /a?b=c&d=%20 HTTP/1.0", "GET", "/a?b=c&d=%20", HttpVersion10),
    ("GET / HTTP/1.9", "GET", "/", HttpVersion11),             # higher minor → 1.1 (RFC 9110 §2.5)
    ("GET http://example.com/x?y HTTP/1.1", "GET", "http://example.com/x?y", HttpVersion11),
    ("CONNECT example.com:443 HTTP/1.1", "CONNECT", "example.com:443", HttpVersion11),
    ("CONNECT [::1]:443 HTTP/1.1", "CONNECT", "[::1]:443", HttpVersion11),
    ("X-CUSTOM.METHOD_1 /p HTTP/1.1", "X-CUSTOM.METHOD_1", "/p", HttpVersion11),
])
def test_request_line_forms(line, method, target, version):
    data = (line + "\r\nHost: example.com\r\n\r\n").encode()
    events = parse(data)
    if method is None:
        assert isinstance(events[-1], BadStatusLine)
        return
    message = events[0]
    assert (message.method, message.path, message.version) == (method, target, version)


@pytest.mark.parametrize("line, code", [
    ("GET / HTTP/2.0", 505), ("GET / HTTP/3.0", 505), ("GET / HTTP/0.9", 505),
    ("GET / HTTP/9.9", 505),
    ("GET / http/1.1", 400), ("GET / HTTP/1.12", 400), ("GET / HTTP/1", 400),
    ("GET / HTTP/11.1", 400), ("GET / HTTP/1.", 400), ("GET / HTTP/", 400),
    ("GET /", 400), ("GET", 400), ("/ HTTP/1.1", 400), ("GET  / HTTP/1.1", 400),
    ("GET / HTTP/1.1 ", 400), (" GET / HTTP/1.1", 400), ("GET\t/ HTTP/1.1", 400),
    ("G(ET / HTTP/1.1", 400), ("GET /a b HTTP/1.1", 400), ("GET /a#frag HTTP/1.1", 400),
    ("GET /caf\u00e9 HTTP/1.1", 400), ("GET /\x7f HTTP/1.1", 400), ("GET a/b HTTP/1.1", 400),
    ("GET example.com:80 HTTP/1.1", 400), ("CONNECT / HTTP/1.1", 400),
    ("CONNECT example.com HTTP/1.1", 400), ("GET http:// HTTP/1.1", 400),
])
def test_malformed_request_lines(line, code):
    error = error_of((line + "\r\nHost: example.com\r\n\r\n").encode())
    assert error.code == code, error
    assert error.message
    if code == 505:
        assert isinstance(error, HttpVersionNotSupported)


def test_bare_lf_is_refused_in_complete_and_partial_heads():
    assert error_of(b"GET / HTTP/1.1\nHost: x\r\n\r\n").code == 400
    assert error_of(b"GET / HTTP/1.1\r\nHost: x\n\r\n").code == 400
    assert "bare LF" in error_of(b"GET / HTTP/1.1\n\n").message     # never completes: caught early
    parser = HttpRequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r") == []
    assert isinstance(parser.feed(b"\nHost: x\n")[-1], BadHttpMessage)


@pytest.mark.parametrize("start", [
    b"\x16\x03\x01\x00\xa5\x01\x00\x00",      # a TLS ClientHello on the HTTP port
    b"GET\t/",                                  # a tab after the method
    b"G(ET /",                                   # not a token
    b"\x00\x00\x00",
])
def test_not_http_is_refused_before_any_line_end(start):
    error = error_of(start)                     # no CRLF yet: refused without waiting
    assert isinstance(error, BadHttpMethod) and isinstance(error, BadStatusLine)
    if start.startswith(b"\x16\x03"):           # aiohttp's words for TLS on the plain port
        assert error.message == "Received HTTPS traffic on an HTTP port"
    else:
        assert "token" in error.message


def test_leading_empty_lines_are_ignored():
    message = only_message(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert message.method == "GET"
    parser = HttpRequestParser()
    assert parser.feed(b"\r\n") == []
    assert parser.feed(b"\r") == []
    events = parser.feed(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events[0].path == "/"


# --- header fields (RFC 9112 §5, RFC 9110 §5.5) ------------------------------------------

def test_fields_multidict_and_raw_pairs():
    message = only_message(req("GET / HTTP/1.1\nHost: x\nAccept:  a/b \t\nX-Dup: 1\n"
                               "x-dup: 2\nX-Empty:\nX-Tab: a\tb\n\n"))
    assert message.headers["accept"] == "a/b"
    assert message.headers.getall("X-DUP") == ["1", "2"]
    assert message.headers["X-Empty"] == ""
    assert message.headers["X-Tab"] == "a\tb"
    assert message.raw_headers == ((b"Host", b"x"), (b"Accept", b"a/b"), (b"X-Dup", b"1"),
                                   (b"x-dup", b"2"), (b"X-Empty", b""), (b"X-Tab", b"a\tb"))
    assert type(message.headers).__name__ == "CIMultiDictProxy"


def test_obs_text_is_allowed_and_decoded_like_aiohttp():
    message = only_message(b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n")
    assert message.headers["X-Name"] == "café \udcff"
    assert message.raw_headers[1] == (b"X-Name", b"caf\xc3\xa9 \xff")


@pytest.mark.parametrize("field, words", [
    (b"Host : x", "whitespace"), (b"Host\t: x", "whitespace"), (b" X: folded", "folding"),
    (b"\tX: folded", "folding"), (b"X: a\x00b", "NUL"), (b"X: a\rb", "bare CR"),
    (b"X: a\x01b", "0x01"), (b"X: a\x7fb", "0x7f"), (b"X: a\x1bb", "0x1b"),
    (b"Bad Name: x", "token"), (b"Bad\"Name: x", "token"), (b"NoColon", "colon"),
    (b": novalue", "empty field name"), (b"X\x00: y", "token"),
])
def test_invalid_field_lines(field, words):
    error = error_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n")
    assert error.code == 400 and isinstance(error, InvalidHeader)
    assert words in error.message


def test_obs_fold_right_after_request_line():
    assert error_of(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n").code == 400


# --- limits -----------------------------------------------------------------------------

def test_request_line_limit_exact_and_over():
    def line_of(length: int) -> bytes:
        return b"GET /" + b"a" * (length - len("GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line_of(8190)) == 8190
    assert only_message(line_of(8190) + b"\r\nHost: x\r\n\r\n").method == "GET"
    error = error_of(line_of(8191) + b"\r\nHost: x\r\n\r\n")
    assert error.code == 414 and isinstance(error, LineTooLong)
    error = error_of(line_of(8191))   # incomplete: refused before the line ends
    assert error.code == 414
    assert error_of(line_of(101), max_line_size=100).code == 414


def test_field_line_limit_exact_and_over():
    field = b"X: " + b"v" * (8190 - 3)
    assert len(field) == 8190
    assert only_message(b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n")
    error = error_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"v\r\n\r\n")
    assert error.code == 431 and isinstance(error, LineTooLong)
    error = error_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"vv")   # incomplete
    assert error.code == 431


def test_header_count_limit_exact_and_over():
    head = b"GET / HTTP/1.1\r\nHost: x\r\n"
    assert only_message(head + b"A: b\r\n" * 127 + b"\r\n").headers.getall("A") == ["b"] * 127
    error = error_of(head + b"A: b\r\n" * 128 + b"\r\n")
    assert error.code == 431 and isinstance(error, HeaderFieldsTooLarge)
    assert error_of(head + b"A: b\r\n" * 200).code == 431        # incomplete, refused early
    assert only_message(head + b"A: b\r\n" * 8 + b"\r\n", max_headers=9)
    assert error_of(head + b"A: b\r\n" * 9 + b"\r\n", max_headers=9).code == 431


def test_partial_head_memory_is_bounded_when_fed_byte_by_byte():
    parser = HttpRequestParser(max_line_size=100, max_field_size=100, max_headers=5)
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"y" * 200
    events: list = []
    for i in range(len(data)):
        events = parser.feed(data[i:i + 1])
        if events:
            break
    assert isinstance(events[-1], LineTooLong)
    assert i < 130   # refused as soon as the line passed the limit


def test_trailer_limits():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    assert isinstance(parse(head + b"T: 1\r\n" * 128 + b"\r\n")[-1], EndOfMessage)
    assert error_of(head + b"T: 1\r\n" * 129 + b"\r\n").code == 431
    assert error_of(head + b"T: " + b"v" * 9000 + b"\r\n\r\n").code == 431
    assert error_of(head + b"T: " + b"v" * 9000).code == 431


# --- framing (RFC 9112 §6, §7) ---------------------------------------------------------

def test_content_length_body_in_pieces():
    parser = HttpRequestParser()
    events = parser.feed(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123")
    assert events[0].content_length == 10 and events[0].chunked is False
    assert events[1:] == [b"0123"]
    assert parser.feed(b"45") == [b"45"]
    events = parser.feed(b"6789GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events[0] == b"6789" and isinstance(events[1], EndOfMessage)
    assert events[2].method == "GET"


def test_no_body_without_framing_headers():
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e).__name__ for e in events] == ["RawRequestMessage", "EndOfMessage",
                                                   "RawRequestMessage", "EndOfMessage"]
    assert events[0].content_length is None


@pytest.mark.parametrize("fields, code, cls", [
    (b"Content-Length: -1", 400, ContentLengthError),
    (b"Content-Length: +1", 400, ContentLengthError),
    (b"Content-Length: 1 1", 400, ContentLengthError),
    (b"Content-Length: 1,1", 400, ContentLengthError),
    (b"Content-Length: 0x10", 400, ContentLengthError),
    (b"Content-Length: ", 400, ContentLengthError),
    (b"Content-Length: 1\r\nContent-Length: 1", 400, ContentLengthError),
    (b"Content-Length: 1\r\nContent-Length: 2", 400, ContentLengthError),
    (b"Content-Length: 99999999999999999999", 400, ContentLengthError),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 3", 400, BadHttpMessage),
    (b"Transfer-Encoding: chunked, chunked", 400, TransferEncodingError),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400, TransferEncodingError),
    (b"Transfer-Encoding: chunked, gzip", 400, TransferEncodingError),
    (b"Transfer-Encoding: gzip", 400, TransferEncodingError),
    (b"Transfer-Encoding: ", 400, TransferEncodingError),
    (b"Transfer-Encoding: gzip, chunked", 501, UnsupportedTransferCoding),
    (b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked", 501, UnsupportedTransferCoding),
])
def test_framing_errors(fields, code, cls):
    error = error_of(b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n\r\n")
    assert error.code == code and isinstance(error, cls), error


def test_transfer_encoding_in_http10_is_refused():
    error = error_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert error.code == 400


def test_chunked_body_with_extensions_and_trailers():
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
                   b"4;a=1;b\r\nWiki\r\n5 ; c=\"q;x\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                   b"0;last\r\nExpires: never\r\nX-Sum: 42\r\n\r\n")
    message = events[0]
    assert message.chunked and message.content_length is None
    assert body_of(events) == b"Wikipedia in\r\n\r\nchunks."
    end = events[-1]
    assert isinstance(end, EndOfMessage)
    assert dict(end.trailers) == {"Expires": "never", "X-Sum": "42"}
    assert message.trailers is end.trailers


@pytest.mark.parametrize("chunks, words", [
    (b"zz\r\n", "not hex"), (b"-5\r\n", "not hex"), (b"10000000000000000\r\n", "16 hex"),
    (b"5\r\nhelloXX", "CRLF"), (b"5\r\nhello\n", "CRLF"), (b"5;=x\r\n", "extension"),
    (b"5; a b\r\n", "extension"), (b"\r\n", "not hex"),
    (b"0\r\nContent-Length: 5\r\n\r\n", "trailer"),
    (b"0\r\nTransfer-Encoding: chunked\r\n\r\n", "trailer"),
    (b"0\r\nHost: y\r\n\r\n", "trailer"), (b"0\r\nBad Name: x\r\n\r\n", "trailer section"),
    (b"0\r\n folded\r\n\r\n", "trailer section"),
])
def test_chunked_errors(chunks, words):
    error = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert error.code == 400 and words in error.message, error


def test_chunk_size_line_limit():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert error_of(head + b"5;" + b"a" * 9000).code == 400          # incomplete
    assert error_of(head + b"5;" + b"a" * 9000 + b"\r\n").code == 400  # complete


# --- Host (RFC 9112 §3.2) ---------------------------------------------------------------

@pytest.mark.parametrize("fields, ok", [
    (b"Host: example.com", True), (b"Host: example.com:8080", True), (b"Host: [::1]:80", True),
    (b"Host: 127.0.0.1", True), (b"Host: ", True), (b"Host: xn--bcher-kva.example", True),
    (b"", False), (b"Host: a\r\nHost: a", False), (b"Host: a b", False),
    (b"Host: a/b", False), (b"Host: a:b", False), (b"Host: a@b", False), (b"Host: [::1", False),
])
def test_host_rules_http11(fields, ok):
    data = b"GET / HTTP/1.1\r\n" + (fields + b"\r\n" if fields else b"") + b"\r\n"
    events = parse(data)
    if ok:
        assert isinstance(events[-1], EndOfMessage)
    else:
        assert events[-1].code == 400 and "Host" in events[-1].message


def test_host_rules_http10():
    assert only_message(b"GET / HTTP/1.0\r\n\r\n").version == HttpVersion10
    assert error_of(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n").code == 400
    assert error_of(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n").code == 400


def test_host_valid_value_is_cached_but_each_value_checked():
    parser = HttpRequestParser()
    assert isinstance(parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[-1], EndOfMessage)
    assert isinstance(parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[-1], EndOfMessage)
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")[-1].code == 400


def test_absolute_form_url_wins_over_host():
    message = only_message(b"GET http://example.com:8080/a%20b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    assert message.url == URL("http://example.com:8080/a%20b?x=1", encoded=True)
    assert message.url.host == "example.com" and message.url.port == 8080
    assert message.url.path == "/a b"
    assert message.headers["Host"] == "other"


def test_url_forms_match_aiohttp():
    assert only_message(b"GET /p/a%2Fb?q=1&r=%20 HTTP/1.1\r\nHost: x\r\n\r\n").url == \
        URL.build(path="/p/a%2Fb", query_string="q=1&r=%20", encoded=True)
    assert str(only_message(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").url) == "*"
    connect = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")[0]
    assert connect.url.host == "example.com" and connect.url.port == 443


# --- connection semantics ---------------------------------------------------------------

@pytest.mark.parametrize("version, connection, should_close", [
    (b"1.1", None, False), (b"1.1", b"close", True), (b"1.1", b"Keep-Alive", False),
    (b"1.1", b"foo, CLOSE", True), (b"1.0", None, True), (b"1.0", b"keep-alive", False),
    (b"1.0", b"close", True),
])
def test_keep_alive_rules(version, connection, should_close):
    data = b"GET / HTTP/" + version + b"\r\nHost: x\r\n"
    if connection:
        data += b"Connection: " + connection + b"\r\n"
    message = only_message(data + b"\r\n")
    assert message.should_close is should_close
    assert message.keep_alive is (not should_close)


def test_expect_continue_flag():
    base = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    assert parse(base + b"Expect: 100-continue\r\n\r\n")[0].expect_continue is True
    assert parse(base + b"Expect: 100-Continue\r\n\r\n")[0].expect_continue is True
    assert parse(base + b"\r\n")[0].expect_continue is False
    http10 = b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    assert parse(http10)[0].expect_continue is False   # RFC 9110 §10.1.1


def test_compression_field():
    def compression(value: bytes):
        return parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: " + value +
                     b"\r\nContent-Length: 0\r\n\r\n")[0].compression
    assert compression(b"gzip") == "gzip"
    assert compression(b"DEFLATE") == "deflate"
    assert compression(b"br") == "br"
    assert compression(b"zstd") == "zstd"
    assert compression(b"x-gzip") == "gzip"           # RFC 9110 §8.4.1.3
    assert compression(b"identity") is None
    assert compression(b"gzip, br") is None            # stacked codings are left alone


def test_chunk_ends_are_reported_when_asked():
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # by default, none: the event stream is the same as without the option
    plain = HttpRequestParser().feed(head + body)
    assert END_OF_CHUNK not in plain and plain[1:3] == [b"hello", b" world"]
    # with chunk_ends=True: END_OF_CHUNK after each chunk's data, at any split of the bytes
    whole = head + body
    expected = [b"hello", END_OF_CHUNK, b" world", END_OF_CHUNK]
    for cut in range(len(head), len(whole) + 1):
        parser = HttpRequestParser(chunk_ends=True)
        events = parser.feed(whole[:cut]) + parser.feed(whole[cut:])
        assert isinstance(events[-1], EndOfMessage)
        data, ends = b"", []
        for event in events[1:-1]:
            if event is END_OF_CHUNK:
                ends.append(data)
            else:
                data += event
        assert ends == [b"hello", b"hello world"], cut
    # Content-Length bodies have no chunks
    events = HttpRequestParser(chunk_ends=True).feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert END_OF_CHUNK not in events



@pytest.mark.parametrize("sent, error, words", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", BadHttpMessage, "middle of a request head"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOS", BadHttpMessage, "middle of a request head"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", ContentLengthError,
     "7 bytes short"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
     TransferEncodingError, "inside a chunked body"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
     TransferEncodingError, "inside a chunked body"),
])
def test_feed_eof_in_the_middle_of_a_request_is_an_error(sent, error, words):
    # RFC 9112 §8: an incomplete message; at any split of what was sent
    for cut in range(len(sent) + 1):
        parser = HttpRequestParser()
        parser.feed(sent[:cut])
        parser.feed(sent[cut:])
        events = parser.feed_eof()
        assert len(events) == 1 and isinstance(events[0], error) and words in str(events[0])
        assert events[0].code == 400
        with pytest.raises(error):
            parser.feed(b"GET / HTTP/1.1\r\n\r\n")     # dead, as after any error


@pytest.mark.parametrize("sent", [
    b"",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",            # an empty line between requests
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxyz",
])
def test_feed_eof_between_requests_is_a_clean_end(sent):
    parser = HttpRequestParser()
    parser.feed(sent)
    assert parser.feed_eof() == []

def test_upgrade_pauses_and_hands_back_the_bytes_behind():
    parser = HttpRequestParser()
    frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    events = parser.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\n" + frame[:4])
    assert events[0].upgrade is True and isinstance(events[1], EndOfMessage)
    assert parser.paused
    assert parser.feed(frame[4:]) == []
    assert parser.take_unprocessed() == frame
    assert parser.take_unprocessed() == b""


def test_declined_upgrade_resumes_http():
    parser = HttpRequestParser()
    events = parser.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         b"Upgrade: h2c\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(events) == 2 and parser.paused
    events = parser.resume()
    assert events[0].path == "/next" and not parser.paused


def test_upgrade_with_body_pauses_after_the_body():
    parser = HttpRequestParser()
    events = parser.feed(b"POST /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n"
                         b"Content-Length: 3\r\n\r\nabcRAW")
    assert body_of(events) == b"abc" and parser.paused
    assert parser.take_unprocessed() == b"RAW"


def test_connect_pauses():
    parser = HttpRequestParser()
    parser.feed(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01")
    assert parser.paused and parser.take_unprocessed() == b"\x16\x03\x01"


def test_upgrade_ignored_in_http10():
    parser = HttpRequestParser()
    events = parser.feed(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert events[0].upgrade is False and not parser.paused


# --- pipelining and errors as events ---------------------------------------------------

def test_pipelined_requests_come_out_in_order():
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(16))
    events = parse(data)
    assert [e.path for e in events if isinstance(e, RawRequestMessage)] == \
        [f"/{i}" for i in range(16)]


def test_bad_request_after_valid_ones_loses_nothing():
    parser = HttpRequestParser()
    events = parser.feed(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
                         b"GET /3 HTTP/9.0\r\nHost: x\r\n\r\nGET /4 HTTP/1.1\r\n\r\n")
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RawRequestMessage", "EndOfMessage", "RawRequestMessage", "bytes",
                     "EndOfMessage", "HttpVersionNotSupported"]
    with pytest.raises(HttpVersionNotSupported):
        parser.feed(b"more")
    assert parser.error is events[-1]


def test_error_message_and_repr():
    error = error_of(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
    assert str(error).startswith("400: Content-Length")
    assert "ContentLengthError" in repr(error)


# --- the message object ----------------------------------------------------------------

def test_message_fields_like_aiohttp_and_replace():
    message = only_message(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert message._fields == ("method", "path", "version", "headers", "raw_headers",
                               "should_close", "compression", "upgrade", "chunked", "url")
    assert tuple(message)[0] == "GET"
    changed = message._replace(method="POST", path="/z", url=URL("/z"))
    assert (changed.method, changed.path, changed.url) == ("POST", "/z", URL("/z"))
    assert (message.method, message.path) == ("GET", "/a?b=1")
    assert changed.raw_headers == message.raw_headers
    assert message._replace() == message
    with pytest.raises(TypeError):
        message._replace(nope=1)
    assert "GET /a?b=1 HTTP/1.1" in repr(message)
    assert isinstance(message.version, HttpVersion) and message.version == (1, 1)


# --- split invariance -------------------------------------------------------------------

CORPUS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET /a?b=c HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nhello world!",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\nU: 2\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\r\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Content-Length: 1\r\n\r\nx",
]


def normalise(events: list) -> list:
    """Events as comparable values; body pieces joined (their cut depends on the split)."""
    out: list = []
    for event in events:
        if isinstance(event, bytes):
            if out and isinstance(out[-1], bytes):
                out[-1] += event
            else:
                out.append(bytes(event))
        elif isinstance(event, RawRequestMessage):
            out.append(("head", event.method, event.path, event.version,
                        tuple(event.headers.items()), event.raw_headers, event.should_close,
                        event.chunked, event.content_length, event.upgrade))
        elif isinstance(event, EndOfMessage):
            out.append(("end", tuple(event.trailers.items())))
        else:
            out.append(("error", event.code, type(event)))
    return out


def feed_pieces(pieces: list[bytes]) -> tuple[list, bytes]:
    parser = HttpRequestParser()
    events: list = []
    for piece in pieces:
        if parser.error is not None:
            break
        events.extend(parser.feed(piece))
    tail = parser.take_unprocessed() if parser.paused else b""
    return normalise(events), tail


@pytest.mark.parametrize("data", CORPUS)
def test_every_two_way_split_and_byte_at_a_time_parse_identically(data):
    whole = feed_pieces([data])
    assert feed_pieces([data[i:i + 1] for i in range(len(data))]) == whole
    for cut in range(len(data) + 1):
        assert feed_pieces([data[:cut], data[cut:]]) == whole, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=4), st.data())
def test_random_splits_of_pipelined_requests(requests, data):
    stream = b"".join(requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    assert feed_pieces(pieces) == feed_pieces([stream])


# --- fuzzing: only the error family ever comes out ---------------------------------------

ALLOWED = (RawRequestMessage, EndOfMessage, bytes, HttpProcessingError)


def run_fuzz(pieces: list[bytes]) -> None:
    parser = HttpRequestParser(max_line_size=200, max_field_size=200, max_headers=10)
    for piece in pieces:
        try:
            events = parser.feed(piece)
        except HttpProcessingError:
            assert parser.error is not None
            return
        for event in events:
            assert isinstance(event, ALLOWED), event
        if parser.paused:
            parser.take_unprocessed()
            parser.resume()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_random_bytes_raise_nothing_but_the_family(pieces):
    run_fuzz(pieces)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=3)),
                                         max_size=5), st.integers(1, 40))
def test_mutated_requests_raise_nothing_but_the_family(base, mutations, step):
    data = bytearray(base)
    for where, what in mutations:
        where %= len(data) + 1
        data[where:where + len(what)] = what
    data = bytes(data)
    run_fuzz([data[i:i + step] for i in range(0, len(data), step)])


# --- differential: the same answers as h11 ----------------------------------------------

DIFFERENTIAL = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a/b%20c?d=e&f HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
    b"User-Agent: curl/8.0\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"\r\nhello world",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n",
    b"DELETE /thing/1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /old HTTP/1.0\r\nUser-Agent: old\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"PATCH /p HTTP/1.1\r\nHost: h\r\nX-Spaces:   padded value \t \r\nX-Empty:\r\n"
    b"Content-Length: 2\r\n\r\nok",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
]


def h11_parse(data: bytes):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request, body = None, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) or event is h11.NEED_DATA:
            break
    return request, body


@pytest.mark.parametrize("data", DIFFERENTIAL)
def test_same_as_h11(data):
    expected, expected_body = h11_parse(data)
    events = parse(data)
    message = events[0]
    assert message.method.encode() == expected.method
    assert message.path.encode() == expected.target
    assert f"{message.version.major}.{message.version.minor}".encode() == expected.http_version
    assert [(n.lower(), v) for n, v in message.raw_headers] == \
        [(n, v) for n, v in expected.headers]   # h11 lower-cases names
    assert body_of(events) == expected_body
    assert isinstance(events[-1], EndOfMessage)


# --- issue 10: authorities, ASCII tokens, chunked without parameters, Connection lists ------

from lowserver.http_parser import InvalidURLError, ascii_lower, check_authority  # noqa: E402


@pytest.mark.parametrize("request_line, host, reason", [
    (b"GET http://x:99999/ HTTP/1.1", b"x", "above 65535"),
    (b"CONNECT example.com:443443 HTTP/1.1", b"example.com:443", "above 65535"),
    (b"GET http://[/abs HTTP/1.1", b"x", "'[' without ']'"),
    (b"GET http://[::1]:99999/ HTTP/1.1", b"x", "above 65535"),
    (b"GET http://a:12ab/ HTTP/1.1", b"x", "not a number"),
    (b"CONNECT [::1]:99999 HTTP/1.1", b"x", "above 65535"),
    (b"GET http://xn--a/ HTTP/1.1", b"x", "IDNA"),
    (b"GET http://[zz]/ HTTP/1.1", b"x", "not an IPv6 address"),
    (b"GET http://:80/ HTTP/1.1", b"x", "empty host"),
    (b"GET / HTTP/1.1", b"a:99999", "above 65535"),
    (b"GET / HTTP/1.1", b":80", "empty host"),
    (b"GET / HTTP/1.1", b"xn--a", "IDNA"),
    (b"GET / HTTP/1.1", b"[::1]:123456", "above 65535"),
])
def test_an_authority_no_url_can_hold_is_an_invalid_url_error(request_line, host, reason):
    error = error_of(request_line + b"\r\nHost: " + host + b"\r\n\r\n")
    assert isinstance(error, InvalidURLError) and isinstance(error, BadHttpMessage), error
    assert error.code == 400 and reason in error.message, error


@pytest.mark.parametrize("authority", [
    "example.com", "example.com:8080", "[::1]", "[::1]:65535", "a:0", "xn--bcher-kva.example",
    "127.0.0.1:80", "a:",
])
def test_good_authorities_pass(authority):
    check_authority(authority, "Host")
    events = parse(b"GET http://" + authority.encode() + b"/p HTTP/1.1\r\nHost: "
                   + authority.encode() + b"\r\n\r\n")
    assert isinstance(events[0], RawRequestMessage), events
    events[0].url.host   # the URL the handler reads can be built


def test_an_empty_host_field_is_legal():
    # RFC 9110 §7.2: an empty Host when the target has no authority
    assert isinstance(parse(b"GET / HTTP/1.1\r\nHost: \r\n\r\n")[0], RawRequestMessage)


def test_ascii_lower_folds_ascii_letters_only():
    assert ascii_lower("Chunked") == "chunked"
    assert ascii_lower("chun\u212aed") == "chun\u212aed"
    assert "chun\u212aed".lower() == "chunked"   # what str.lower() would have made of it


@pytest.mark.parametrize("coding, code", [
    ("chun\u212aed", 400),           # not chunked: the last coding is unknown (§6.3 rule 4)
    ("chun\u212aed, chunked", 501),  # an unknown coding before chunked (§6.1)
    ("CHUNKED", None),               # ASCII case is folded
])
def test_transfer_codings_compare_in_ascii_only(coding, code):
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding.encode()
                   + b"\r\n\r\n0\r\n\r\n")
    if code is None:
        assert events[0].chunked
    else:
        assert isinstance(events[-1], HttpProcessingError) and events[-1].code == code, events


@pytest.mark.parametrize("coding", ["chunked;q=1", "chunked ; x=y", "gzip;q=1, chunked;a"])
def test_chunked_takes_no_parameters(coding):
    error = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding.encode()
                     + b"\r\n\r\n0\r\n\r\n")
    assert error.code == 400 and isinstance(error, TransferEncodingError), error
    assert "no parameters" in error.message


@pytest.mark.parametrize("lines, should_close, upgrade", [
    ([b"keep-alive", b"close"], True, False),
    ([b"close", b"keep-alive"], True, False),
    ([b"keep-alive", b"upgrade"], False, True),
    ([b"keep-alive", b"Upgrade"], False, True),
])
def test_connection_on_several_lines_is_one_list(lines, should_close, upgrade):
    fields = b"".join(b"Connection: " + line + b"\r\n" for line in lines)
    message = parse(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" + fields + b"\r\n")[0]
    assert (message.should_close, message.upgrade) == (should_close, upgrade)


def test_a_kelvin_sign_keep_alive_is_not_keep_alive():
    # str.lower() makes "\u212aeep-alive" "keep-alive"; an HTTP/1.0 request must then close
    assert "\u212aeep-alive".lower() == "keep-alive"
    message = parse("GET / HTTP/1.0\r\nConnection: \u212aeep-alive\r\n\r\n".encode())[0]
    assert message.should_close
    message = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")[0]
    assert not message.should_close



# --- heads parsed before: the same bytes, the same message, looked up -------------------------

from lowserver import http_parser as parser_module  # noqa: E402

HELLO = b"GET /hello HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


@pytest.fixture
def fresh_tables(monkeypatch):
    monkeypatch.setattr(parser_module, "_HEADS_PARSED", {})
    return parser_module._HEADS_PARSED


def _messages(*pieces, **limits):
    parser = HttpRequestParser(**limits)
    return [event for piece in pieces for event in parser.feed(piece)
            if isinstance(event, RawRequestMessage)]


def _as_tuple(message):
    return (message.method, message.path, message.version, list(message.headers.items()),
            message.raw_headers, message.should_close, message.compression, message.upgrade,
            message.chunked, message.content_length, message.expect_continue, message.url)


def test_a_head_seen_before_is_the_same_message(fresh_tables):
    first, = _messages(HELLO)
    # another connection, and the same head pipelined twice in one read and split over two
    again, = _messages(HELLO)
    pipelined = _messages(HELLO + HELLO)
    split = _messages(HELLO[:10], HELLO[10:] + HELLO)
    assert all(message is first for message in [again, *pipelined, *split])
    assert len(pipelined) == len(split) == 2


def test_a_message_looked_up_is_the_message_parsed(fresh_tables):
    for head in (HELLO, b"POST /n HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
                 b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                 b"GET /x?q=1 HTTP/1.1\r\nHost: a\r\nContent-Encoding: gzip\r\n"
                 b"Content-Length: 1\r\nConnection: close\r\n\r\n"):
        parsed = _as_tuple(_messages(head)[0])
        looked_up = _as_tuple(_messages(head)[0])
        fresh_tables.clear()
        assert looked_up == parsed == _as_tuple(_messages(head)[0])


def test_one_byte_more_or_less_is_another_head(fresh_tables):
    first, = _messages(HELLO)
    for other in (HELLO.replace(b"hello", b"hellp"), HELLO.replace(b"*/*", b"*/* "),
                  HELLO.replace(b"Accept", b"accept")):
        message, = _messages(other)
        assert message is not first
    assert _messages(HELLO.replace(b"Accept", b"accept"))[0].headers["ACCEPT"] == "*/*"


def test_what_is_answered_once_is_parsed_every_time(fresh_tables):
    heads = [b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
             b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
             b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
             b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"]
    for head in heads:
        assert _messages(head)[0] is not _messages(head)[0], head[:20]
    assert not any(fresh_tables.values())


def test_a_chunked_bodys_trailers_stay_its_own(fresh_tables):
    head = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    parser = HttpRequestParser()
    events = parser.feed(head + b"0\r\nX-Sum: 1\r\n\r\n" + head + b"0\r\nX-Sum: 2\r\n\r\n")
    first, second = [event for event in events if isinstance(event, RawRequestMessage)]
    assert first.trailers["X-Sum"] == "1" and second.trailers["X-Sum"] == "2"


def test_limits_have_tables_of_their_own(fresh_tables):
    _messages(HELLO)
    refused = HttpRequestParser(max_line_size=10).feed(HELLO)
    assert isinstance(refused[-1], LineTooLong)
    few = HttpRequestParser(max_headers=1).feed(HELLO)
    assert isinstance(few[-1], HeaderFieldsTooLarge)
    assert len(fresh_tables) == 3


def test_a_bad_head_is_refused_every_time(fresh_tables):
    bad = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    for _ in range(2):
        error = HttpRequestParser().feed(bad)[-1]
        assert isinstance(error, BadHttpMessage) and "more than one Host" in error.message
    assert not any(fresh_tables.values())


def test_the_tables_are_bounded(fresh_tables):
    for i in range(parser_module._HEADS_PARSED_MAX + 10):
        _messages(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        assert all(len(table) <= parser_module._HEADS_PARSED_MAX
                   for table in fresh_tables.values())
    for max_headers in range(1, 40):
        HttpRequestParser(max_headers=max_headers)
        assert len(fresh_tables) <= 16


def test_bytes_of_any_kind_are_parsed(fresh_tables):
    first, = _messages(HELLO)
    for kind in (bytearray, memoryview):
        message, = _messages(kind(HELLO))
        assert message is first
