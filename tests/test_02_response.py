"""Stage 02: StreamResponse, Response and json_response, checked on the bytes they send."""
import asyncio
import datetime
import gzip
import io
import json
import re
import zlib

import pytest
from multidict import CIMultiDict

from lowserver import fields as fields_module
from lowserver import http_writer
from lowserver.exceptions import HTTPNotFound
from lowserver.http_parser import HttpRequestParser, HttpVersion, HttpVersion10, HttpVersion11
from lowserver.request import BaseRequest
from lowserver.fields import ETag, parse_content_type
from lowserver.http_writer import check_header_fields
from lowserver.response import ContentCoding, Response, StreamResponse, json_bytes_response, json_response
from lowserver.streams import ContentLengthExceededError
from lowserver.testing import MemoryTransport, RecordingWriter, make_mocked_request

DATE_RE = re.compile(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul"
                     rb"|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n")
SERVER = http_writer.SERVER_SOFTWARE.encode()


def wire(request):
    """The bytes sent so far, with the Date field (checked here) replaced by a marker."""
    data = bytes(request.transport.data)
    assert len(DATE_RE.findall(data)) <= 1
    return DATE_RE.sub(b"Date: DATE\r\n", data)


def split(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        fields.add(name.decode(), value.decode())
    return lines[0], fields, body


async def send(response, request):
    await response.prepare(request)
    await response.write_eof()
    return wire(request)


def request_from_wire(raw: bytes, **kwargs) -> BaseRequest:
    """A request built the way the server builds it: parsed from bytes."""
    message = HttpRequestParser().feed(raw)[0]
    template = make_mocked_request("GET", "/")
    return BaseRequest(message, template.content, template.protocol, template.writer, None,
                       None, **kwargs)


# --- Response's constructor ------------------------------------------------------------

def test_text_defaults_to_text_plain_utf8():
    resp = Response(text="héllo")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.body == "héllo".encode()
    assert resp.text == "héllo"
    assert resp.content_type == "text/plain"
    assert resp.charset == "utf-8"
    assert resp.content_length == 6
    assert resp.status == 200 and resp.reason == "OK"


def test_text_with_content_type_and_charset():
    resp = Response(text="привет", content_type="text/html", charset="koi8-r")
    assert resp.headers["Content-Type"] == "text/html; charset=koi8-r"
    assert resp.body == "привет".encode("koi8-r")
    assert resp.text == "привет"


def test_text_with_content_type_header_uses_its_charset():
    resp = Response(text="é", headers={"Content-Type": "text/csv; charset=latin-1"})
    assert resp.body == b"\xe9"
    assert resp.headers["Content-Type"] == "text/csv; charset=latin-1"


@pytest.mark.parametrize("kwargs, error", [
    (dict(body=b"x", text="x"), ValueError),
    (dict(text="x", content_type="text/plain; charset=utf-8"), ValueError),
    (dict(text="x", headers={"Content-Type": "text/plain"}, content_type="text/html"),
     ValueError),
    (dict(text="x", headers={"Content-Type": "text/plain"}, charset="utf-8"), ValueError),
    (dict(body=b"x", headers={"Content-Type": "a/b"}, content_type="c/d"), ValueError),
    (dict(text=b"bytes"), TypeError),
    (dict(body=12), ValueError),
    (dict(body=object()), ValueError),
])
def test_constructor_rules(kwargs, error):
    with pytest.raises(error):
        Response(**kwargs)


def test_body_bytes_and_types():
    assert Response(body=b"abc").body == b"abc"
    assert Response(body=bytearray(b"abc")).body == bytearray(b"abc")
    assert Response(body=memoryview(b"abc")).body == b"abc"
    resp = Response(body="text body")
    assert resp.body == b"text body"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    resp = Response(body=b"x", content_type="application/x-thing", charset="utf-8")
    assert resp.headers["Content-Type"] == "application/x-thing; charset=utf-8"
    assert Response(body=b"x", charset="utf-8").headers.get("Content-Type") is None
    assert Response().body is None and Response().text is None


def test_content_length_is_automatic():
    resp = Response(body=b"12345")
    assert resp.content_length == 5
    with pytest.raises(RuntimeError):
        resp.content_length = 3
    assert Response().content_length == 0


def test_reason_phrases_and_status():
    assert Response(status=404).reason == "Not Found"
    assert Response(status=299).reason == ""
    assert Response(status=200, reason="Fine").reason == "Fine"
    for bad in ("a\r\nb", "a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError):
            Response(reason=bad)
    resp = Response()
    resp.set_status(201)
    assert (resp.status, resp.reason) == (201, "Created")
    resp.set_status(202, "Queued")
    assert resp.reason == "Queued"


# --- serialisation on the wire ------------------------------------------------------------

async def test_response_bytes_exactly():
    request = make_mocked_request("GET", "/")
    data = await send(Response(text="Hello, world"), request)
    assert data == (b"HTTP/1.1 200 OK\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n"
                    b"Content-Length: 12\r\n"
                    b"Date: DATE\r\n"
                    b"Server: " + SERVER + b"\r\n"
                    b"\r\n"
                    b"Hello, world")


async def test_head_and_small_body_leave_in_one_write():
    request = make_mocked_request("GET", "/")
    await send(Response(text="Hello", headers={"X-A": "1"}), request)
    assert len(request.transport.writes) == 1
    assert request.transport.writes[0].endswith(b"\r\n\r\nHello")


async def test_status_line_follows_request_version():
    for version, expected in [(HttpVersion10, b"HTTP/1.0 "), (HttpVersion11, b"HTTP/1.1 "),
                              (HttpVersion(1, 2), b"HTTP/1.1 "), (HttpVersion(2, 0), b"HTTP/1.1 ")]:
        request = make_mocked_request("GET", "/", version=version)
        data = await send(Response(text="x"), request)
        assert data.startswith(expected + b"200 OK\r\n"), (version, data)


async def test_unknown_status_keeps_the_space_before_an_empty_reason():
    request = make_mocked_request("GET", "/")
    data = await send(Response(status=299), request)
    assert data.startswith(b"HTTP/1.1 299 \r\n")


@pytest.mark.parametrize("status", [0, 99, 600, 1000, -1])
async def test_status_outside_100_599_is_refused(status):
    request = make_mocked_request("GET", "/")
    with pytest.raises(ValueError):
        await Response(status=status).prepare(request)
    assert request.transport.data == b""


@pytest.mark.parametrize("status", [100, 103, 199])
async def test_an_interim_status_leaves_the_writer_untouched_for_the_500(status):
    # The refusal comes before the body writer is set up: the 500 that run_handler sends
    # next on the same writer carries the body its Content-Length declares.
    from lowserver.testing import run_handler

    async def handler(request):
        return Response(status=status, text="x")

    request = make_mocked_request("GET", "/")
    response = await run_handler(handler, request)
    head, _, body = bytes(request.transport.data).partition(b"\r\n\r\n")
    assert response.status == 500 and head.startswith(b"HTTP/1.1 500 ")
    assert f"Content-Length: {len(body)}".encode() in head and body


async def test_date_is_an_imf_fixdate_cached_per_second(monkeypatch):
    calls = []
    real_format = fields_module.format_http_date

    def counting(ts):
        calls.append(ts)
        return real_format(ts)

    monkeypatch.setattr(fields_module, "format_http_date", counting)
    monkeypatch.setattr(fields_module, "_date_second", -1)
    monkeypatch.setattr(fields_module.time, "time", lambda: 784111777.25)
    dates = set()
    for _ in range(5):
        request = make_mocked_request("GET", "/")
        await send(Response(text="x"), request)
        dates.add(split(bytes(request.transport.data))[1]["Date"])
    assert dates == {"Sun, 06 Nov 1994 08:49:37 GMT"}
    assert calls == [784111777]
    monkeypatch.setattr(fields_module.time, "time", lambda: 784111778.0)
    request = make_mocked_request("GET", "/")
    await send(Response(text="x"), request)
    assert split(bytes(request.transport.data))[1]["Date"] == "Sun, 06 Nov 1994 08:49:38 GMT"
    assert len(calls) == 2


async def test_handler_set_date_and_server_are_kept():
    request = make_mocked_request("GET", "/")
    data = await send(Response(text="x", headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT",
                                                  "Server": "mine"}), request)
    _, fields, _ = split(bytes(request.transport.data))
    assert fields.getall("Date") == ["Thu, 01 Jan 1970 00:00:00 GMT"]
    assert fields.getall("Server") == ["mine"]
    assert data


async def test_connection_close_when_client_asks():
    request = make_mocked_request("GET", "/", closing=True)
    resp = Response(text="x")
    data = await send(resp, request)
    assert b"Connection: close\r\n" in data
    assert resp.keep_alive is False


async def test_keep_alive_by_default_on_http11_without_connection_field():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    data = await send(resp, request)
    assert b"Connection" not in data
    assert resp.keep_alive is True


async def test_http10_keep_alive_is_announced():
    request = request_from_wire(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert request.keep_alive
    resp = Response(text="x")
    data = await send(resp, request)
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Connection: keep-alive\r\n" in data
    assert resp.keep_alive is True


async def test_http10_without_keep_alive_says_nothing_and_closes():
    request = make_mocked_request("GET", "/", version=HttpVersion10)
    resp = Response(text="x")
    data = await send(resp, request)
    assert b"Connection" not in data
    assert resp.keep_alive is False


async def test_force_close():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    resp.force_close()
    data = await send(resp, request)
    assert b"Connection: close\r\n" in data and resp.keep_alive is False


async def test_handler_connection_close_field_closes():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x", headers={"Connection": "close"})
    await send(resp, request)
    assert resp.keep_alive is False


async def test_empty_body_has_content_length_zero_and_no_type():
    request = make_mocked_request("GET", "/")
    data = await send(Response(), request)
    status, fields, body = split(data)
    assert fields["Content-Length"] == "0" and "Content-Type" not in fields and body == b""


async def test_bytes_body_without_type_is_octet_stream():
    request = make_mocked_request("GET", "/")
    _, fields, body = split(await send(Response(body=b"\x00\x01"), request))
    assert fields["Content-Type"] == "application/octet-stream"
    assert body == b"\x00\x01"


# --- no body for HEAD, 1xx, 204, 304 ------------------------------------------------------

async def test_head_keeps_content_length_but_sends_no_body():
    request = make_mocked_request("HEAD", "/")
    data = await send(Response(text="Hello"), request)
    status, fields, body = split(data)
    assert fields["Content-Length"] == "5" and body == b""
    assert data.endswith(b"\r\n\r\n")


async def test_head_stream_response_writes_are_dropped():
    request = make_mocked_request("HEAD", "/")
    resp = StreamResponse()
    resp.content_length = 10
    await resp.prepare(request)
    await resp.write(b"0123456789")
    await resp.write_eof(b"")
    data = wire(request)
    assert data.endswith(b"\r\n\r\n") and b"0123456789" not in data
    assert resp.keep_alive is True


async def test_head_chunked_stream_sends_no_chunks():
    request = make_mocked_request("HEAD", "/")
    resp = StreamResponse()
    await resp.prepare(request)
    await resp.write(b"abc")
    await resp.write_eof()
    data = wire(request)
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"" and b"Transfer-Encoding" not in head


@pytest.mark.parametrize("status", [204, 304])
async def test_204_and_304_never_carry_a_body(status):
    request = make_mocked_request("GET", "/")
    data = await send(Response(status=status, text="ignored body"), request)
    status_line, fields, body = split(data)
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert body == b"" and b"ignored" not in data
    assert "Transfer-Encoding" not in fields
    if status == 204:
        assert "Content-Length" not in fields        # RFC 9110 §8.6


async def test_204_stream_response_writes_are_dropped():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse(status=204)
    await resp.prepare(request)
    await resp.write(b"nope")
    await resp.write_eof(b"nope")
    data = wire(request)
    assert b"nope" not in data and data.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in data and b"Content-Length" not in data


@pytest.mark.parametrize("status", [100, 101, 103])
async def test_a_1xx_is_not_a_final_response_and_is_refused_before_anything_is_sent(status):
    # RFC 9110 §15.2, RFC 9112 §9.3.2: one final response per request; a 1xx is interim
    request = make_mocked_request("GET", "/")
    resp = StreamResponse(status=status, headers={"Link": "</style.css>; rel=preload"})
    with pytest.raises(ValueError, match=f"interim status {status}"):
        await resp.prepare(request)
    assert not resp.prepared and wire(request) == b""


async def test_connect_2xx_has_no_content_length():
    request = make_mocked_request("CONNECT", "example.com:443")
    data = await send(Response(text="tunnel"), request)
    assert b"Content-Length" not in data and b"tunnel" not in data


# --- framing of streams -------------------------------------------------------------------

async def test_stream_without_length_is_chunked_on_http11():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    await resp.prepare(request)
    await resp.write(b"Hello")
    await resp.write(b", world")
    await resp.write_eof()
    status, fields, body = split(wire(request))
    assert fields["Transfer-Encoding"] == "chunked" and "Content-Length" not in fields
    assert body == b"5\r\nHello\r\n7\r\n, world\r\n0\r\n\r\n"
    assert resp.keep_alive is True


async def test_stream_to_http10_is_close_delimited():
    request = make_mocked_request("GET", "/", version=HttpVersion10)
    resp = StreamResponse()
    await resp.prepare(request)
    await resp.write(b"Hello")
    await resp.write_eof(b"!")
    status, fields, body = split(wire(request))
    assert status == b"HTTP/1.0 200 OK"
    assert "Transfer-Encoding" not in fields and "Content-Length" not in fields
    assert body == b"Hello!"
    assert resp.keep_alive is False


async def test_stream_to_http10_keep_alive_client_still_closes():
    request = request_from_wire(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    resp = StreamResponse()
    await resp.prepare(request)
    await resp.write_eof(b"data")
    data = wire(request)
    assert b"keep-alive" not in data
    assert resp.keep_alive is False


async def test_enable_chunked_encoding_on_http10_falls_back_to_close():
    request = make_mocked_request("GET", "/", version=HttpVersion10)
    resp = StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write_eof(b"data")
    status, fields, body = split(wire(request))
    assert "Transfer-Encoding" not in fields and body == b"data"
    assert resp.keep_alive is False


async def test_stream_with_content_length():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    resp.content_length = 6
    await resp.prepare(request)
    await resp.write(b"abc")
    await resp.write_eof(b"def")
    status, fields, body = split(wire(request))
    assert fields["Content-Length"] == "6" and body == b"abcdef"
    assert resp.keep_alive is True


async def test_writing_past_content_length_raises():
    request = make_mocked_request("GET", "/")   # (aiohttp silently truncates)
    resp = StreamResponse()
    resp.content_length = 4
    await resp.prepare(request)
    await resp.write(b"abc")
    with pytest.raises(ContentLengthExceededError, match="Content-Length"):
        await resp.write(b"de")
    with pytest.raises(ContentLengthExceededError, match="Content-Length"):
        await resp.write_eof(b"de")
    assert wire(request).endswith(b"\r\n\r\nabc")


async def test_the_length_is_enforced_with_an_injected_writer_too():
    writer = RecordingWriter()
    request = make_mocked_request("GET", "/", writer=writer)
    resp = StreamResponse()
    resp.content_length = 2
    await resp.prepare(request)
    with pytest.raises(ContentLengthExceededError):
        await resp.write(b"abc")
    assert bytes(writer.body) == b"" and writer.calls == ["write_headers"]


async def test_ending_short_of_content_length_closes_the_connection():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    resp.content_length = 10
    await resp.prepare(request)
    await resp.write(b"abc")
    await resp.write_eof()
    assert resp.keep_alive is False


async def test_user_transfer_encoding_with_content_length_keeps_one_framing():
    request = make_mocked_request("GET", "/")
    resp = Response(body=b"abc", headers={"Transfer-Encoding": "chunked"})
    data = await send(resp, request)
    _, fields, body = split(data)
    assert "Transfer-Encoding" not in fields and fields["Content-Length"] == "3"
    assert body == b"abc"


def test_chunked_and_content_length_exclude_each_other():
    resp = StreamResponse()
    resp.content_length = 3
    with pytest.raises(RuntimeError):
        resp.enable_chunked_encoding()
    resp = StreamResponse()
    resp.enable_chunked_encoding()
    assert resp.chunked
    with pytest.raises(RuntimeError):
        resp.content_length = 3


async def test_write_misuse():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    with pytest.raises(RuntimeError):
        await resp.write(b"x")
    with pytest.raises(RuntimeError):
        await resp.write_eof()
    writer = await resp.prepare(request)
    assert resp.prepared
    assert await resp.prepare(request) is writer
    with pytest.raises(TypeError):
        await resp.write("text")
    with pytest.raises(RuntimeError):
        resp.set_status(404)
    await resp.write_eof()
    with pytest.raises(RuntimeError):
        await resp.write(b"x")
    assert await resp.prepare(request) is None
    await resp.write_eof()   # a second EOF is a no-op


async def test_stream_response_sends_its_head_at_prepare():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    await resp.prepare(request)
    assert request.transport.data.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_response_waits_for_its_body():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    await resp.prepare(request)
    assert request.transport.data == b""
    await resp.write_eof()
    assert request.transport.data.endswith(b"\r\n\r\nx")


async def test_response_write_eof_refuses_extra_data():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    await resp.prepare(request)
    with pytest.raises(RuntimeError):
        await resp.write_eof(b"more")


# --- header checks: no response splitting -------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"X-A": "a\r\nSet-Cookie: evil=1"}, {"X-A": "a\nb"}, {"X-A": "a\rb"}, {"X-A": "a\x00b"},
    {"X-A": "a\x7fb"}, {"X-A": "a\x1bb"}, {"X A": "1"}, {"X-A:": "1"}, {"": "1"},
    {"X-A\r\nB": "1"}, {"Ünï": "1"},
])
async def test_header_injection_is_refused_before_the_writer(headers):
    writer = RecordingWriter()
    request = make_mocked_request("GET", "/", writer=writer)
    with pytest.raises(ValueError):
        await Response(text="x", headers=headers).prepare(request)
    assert writer.calls.count("write_headers") == 0 and writer.output == b""


async def test_injection_through_content_type_and_location_is_refused():
    request = make_mocked_request("GET", "/")
    with pytest.raises(ValueError):
        await Response(text="x", content_type="text/plain\r\nX: y").prepare(request)
    resp = Response(text="x")
    resp.headers["Location"] = "/a\r\n\r\n<html>"
    with pytest.raises(ValueError):
        await resp.prepare(make_mocked_request("GET", "/"))


async def test_tab_and_obs_text_are_allowed_in_values():
    request = make_mocked_request("GET", "/")
    data = await send(Response(text="x", headers={"X-A": "a\tb", "X-B": "café"}), request)
    assert b"X-A: a\tb\r\n" in data and "X-B: café\r\n".encode() in data


async def test_non_str_header_value_is_a_clear_type_error():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    resp.headers["X-Count"] = 3
    with pytest.raises(TypeError, match="X-Count"):
        await resp.prepare(request)


def test_check_header_fields_directly():
    check_header_fields(CIMultiDict({"A": "b", "X-Custom-Name": "v\tw"}))
    with pytest.raises(ValueError):
        check_header_fields(CIMultiDict({"A": "b\n"}))


# --- the recording writer sees checked, complete headers -------------------------------------

async def test_injected_writer_gets_status_line_and_framing_headers():
    writer = RecordingWriter()
    request = make_mocked_request("GET", "/", writer=writer)
    resp = Response(text="hi")
    await resp.prepare(request)
    await resp.write_eof()
    assert writer.status_line == "HTTP/1.1 200 OK"
    assert writer.headers["Content-Length"] == "2"
    assert "Date" in writer.headers and writer.headers["Server"] == http_writer.SERVER_SOFTWARE
    assert bytes(writer.body) == b"hi" and writer.eof
    assert writer.calls == ["write_headers", "write_eof"]


async def test_injected_writer_chunking():
    writer = RecordingWriter()
    request = make_mocked_request("POST", "/", writer=writer)
    resp = StreamResponse()
    await resp.prepare(request)
    await resp.write(b"ab")
    await resp.write_eof()
    assert writer.chunked and writer.headers["Transfer-Encoding"] == "chunked"
    assert bytes(writer.output).endswith(b"2\r\nab\r\n0\r\n\r\n")


# --- cookies (RFC 6265 §4.1) ------------------------------------------------------------------

async def test_set_cookie_and_del_cookie():
    request = make_mocked_request("GET", "/")
    resp = Response(text="x")
    resp.set_cookie("session", "abc123", max_age=3600, httponly=True, secure=True,
                    samesite="Lax")
    resp.set_cookie("theme", "dark mode", path="/app")
    resp.del_cookie("old")
    data = await send(resp, request)
    _, fields, _ = split(data)
    cookies = fields.getall("Set-Cookie")
    assert "session=abc123; HttpOnly; Max-Age=3600; Path=/; SameSite=Lax; Secure" in cookies
    assert 'theme="dark mode"; Path=/app' in cookies
    assert ('old=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/' in cookies)


def test_set_cookie_updates_only_given_attributes():
    resp = StreamResponse()
    resp.set_cookie("a", "1", domain="example.com")
    resp.set_cookie("a", "2")
    assert resp.cookies["a"].value == "2"
    assert resp.cookies["a"]["domain"] == "example.com"


# --- representation metadata -----------------------------------------------------------------

def test_content_type_and_charset_setters():
    resp = StreamResponse()
    assert resp.content_type == "application/octet-stream"
    with pytest.raises(RuntimeError):
        resp.charset = "utf-8"
    resp.content_type = "text/html"
    resp.charset = "UTF-8"
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.charset == "utf-8"
    resp.charset = None
    assert resp.headers["Content-Type"] == "text/html"
    resp.headers["Content-Type"] = "application/json; charset=latin-1"
    assert (resp.content_type, resp.charset) == ("application/json", "latin-1")


def test_last_modified():
    resp = StreamResponse()
    resp.last_modified = 784111777
    assert resp.headers["Last-Modified"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert resp.last_modified == datetime.datetime(1994, 11, 6, 8, 49, 37,
                                                   tzinfo=datetime.timezone.utc)
    resp.last_modified = 784111777.2
    assert resp.headers["Last-Modified"] == "Sun, 06 Nov 1994 08:49:38 GMT"
    resp.last_modified = datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.timezone.utc)
    assert resp.headers["Last-Modified"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    resp.last_modified = "Mon, 07 Nov 1994 00:00:00 GMT"
    assert resp.last_modified.day == 7
    resp.last_modified = None
    assert "Last-Modified" not in resp.headers and resp.last_modified is None
    with pytest.raises(TypeError):
        resp.last_modified = object()


def test_etag():
    resp = StreamResponse()
    resp.etag = "abc"
    assert resp.headers["ETag"] == '"abc"' and resp.etag == ETag("abc")
    resp.etag = ETag("xyz", is_weak=True)
    assert resp.headers["ETag"] == 'W/"xyz"' and resp.etag == ETag("xyz", True)
    resp.etag = "*"
    assert resp.etag == ETag("*")
    with pytest.raises(ValueError):
        resp.etag = 'bad"quote'
    with pytest.raises(ValueError):
        resp.etag = 42
    resp.etag = None
    assert resp.etag is None


def test_parse_content_type():
    assert parse_content_type("Text/HTML; Charset=UTF-8") == ("text/html", (("charset", "UTF-8"),))
    assert parse_content_type('a/b; x="1;2"; y=3') == ("a/b", (("x", "1;2"), ("y", "3")))
    assert parse_content_type('text/plain; charset="utf\\"8"') == (
        "text/plain", (("charset", 'utf"8'),))
    assert parse_content_type("garbage")[0] == "application/octet-stream"
    assert parse_content_type("text/plain; a=1; a=2")[1] == (("a", "1"),)


# --- compression -------------------------------------------------------------------------------

async def test_compression_negotiated_from_accept_encoding():
    request = make_mocked_request("GET", "/", headers={"Accept-Encoding": "gzip, deflate"})
    resp = Response(text="hello " * 100)
    resp.enable_compression()
    _, fields, body = split(await send(resp, request))
    assert fields["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in fields["Vary"]
    assert int(fields["Content-Length"]) == len(body)
    assert gzip.decompress(body) == b"hello " * 100


async def test_compression_forced_deflate_is_zlib_format():
    request = make_mocked_request("GET", "/")
    resp = Response(text="hello " * 100)
    resp.enable_compression(ContentCoding.deflate)
    _, fields, body = split(await send(resp, request))
    assert fields["Content-Encoding"] == "deflate"
    assert zlib.decompress(body) == b"hello " * 100


async def test_no_compression_without_accept_encoding():
    request = make_mocked_request("GET", "/")
    resp = Response(text="hello")
    resp.enable_compression()
    _, fields, body = split(await send(resp, request))
    assert "Content-Encoding" not in fields and body == b"hello"


async def test_streamed_compression_drops_content_length():
    writer = RecordingWriter()
    request = make_mocked_request("GET", "/", headers={"Accept-Encoding": "gzip"},
                                  writer=writer)
    resp = StreamResponse()
    resp.content_length = 5
    resp.enable_compression()
    await resp.prepare(request)
    await resp.write(b"hello")
    await resp.write_eof()
    assert writer.compression == "gzip" and "Content-Length" not in writer.headers
    assert writer.headers["Transfer-Encoding"] == "chunked"


def test_enable_compression_checks_its_argument():
    with pytest.raises(TypeError):
        StreamResponse().enable_compression("gzip")
    with pytest.warns(DeprecationWarning):
        StreamResponse().enable_compression(True)


# --- json_response ------------------------------------------------------------------------------

async def test_json_response():
    resp = json_response({"a": [1, 2]}, status=201)
    assert resp.status == 201
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(resp.text) == {"a": [1, 2]}
    resp = json_response([1], dumps=lambda d: "custom")
    assert resp.text == "custom"
    resp = json_response(text='{"x": 1}', content_type="application/vnd.api+json")
    assert resp.headers["Content-Type"] == "application/vnd.api+json; charset=utf-8"
    with pytest.raises(ValueError):
        json_response({"a": 1}, text="{}")
    resp = json_bytes_response({"a": 1}, dumps=lambda d: b'{"a":1}')
    assert resp.body == b'{"a":1}' and resp.headers["Content-Type"] == "application/json"


# --- streamed bodies of Response -----------------------------------------------------------------

async def test_file_body_gets_a_content_length():
    request = make_mocked_request("GET", "/")
    resp = Response(body=io.BytesIO(b"file contents"))
    _, fields, body = split(await send(resp, request))
    assert fields["Content-Length"] == "13" and body == b"file contents"


async def test_real_file_body(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 200_000)
    request = make_mocked_request("GET", "/")
    with open(path, "rb") as handle:
        resp = Response(body=handle)
        _, fields, body = split(await send(resp, request))
    assert fields["Content-Length"] == "200000" and body == b"x" * 200_000


async def test_async_iterable_body_is_chunked():
    async def pieces():
        yield b"one"
        yield b"two"

    request = make_mocked_request("GET", "/")
    _, fields, body = split(await send(Response(body=pieces()), request))
    assert fields["Transfer-Encoding"] == "chunked"
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


# --- the rest of StreamResponse's surface -------------------------------------------------------

@pytest.mark.filterwarnings("ignore::lowserver.state.NotAppKeyWarning")  # str keys, as aiohttp allows
def test_state_mapping_and_identity():
    resp = StreamResponse()
    resp["key"] = "value"
    assert resp["key"] == "value" and len(resp) == 1 and list(resp) == ["key"]
    del resp["key"]
    assert len(resp) == 0
    assert resp != StreamResponse() and resp == resp and bool(resp)
    assert {resp: 1}[resp] == 1


async def test_repr():
    resp = StreamResponse()
    assert repr(resp) == "<StreamResponse OK not prepared>"
    request = make_mocked_request("GET", "/path")
    await resp.prepare(request)
    assert repr(resp) == "<StreamResponse OK GET /path >"
    await resp.write_eof()
    assert repr(resp) == "<StreamResponse OK eof>"


async def test_http_exception_serialises_like_aiohttp():
    request = make_mocked_request("GET", "/missing")
    _, fields, body = split(await send(HTTPNotFound(), request))
    assert body == b"404: Not Found"
    assert fields["Content-Type"] == "text/plain; charset=utf-8"


async def test_memory_transport_records_and_closes():
    transport = MemoryTransport(peername=("10.0.0.1", 5000))
    transport.write(b"ab")
    transport.writelines([b"c", b"d"])
    assert transport.data == b"abcd" and transport.writes == [b"ab", b"cd"]
    assert transport.get_extra_info("peername") == ("10.0.0.1", 5000)
    assert transport.get_extra_info("nothing", 5) == 5
    transport.pause_reading()
    assert not transport.is_reading()
    transport.resume_reading()
    assert transport.is_reading()
    assert transport.take() == b"abcd" and transport.data == b""
    transport.close()
    assert transport.is_closing()
    with pytest.raises(ConnectionResetError):
        transport.write(b"late")


async def test_misuse_is_also_an_assertion_error_as_in_aiohttp():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    with pytest.raises(AssertionError):
        await resp.write_eof()
    with pytest.raises(AssertionError):
        await resp.drain()
    with pytest.raises(AssertionError):
        StreamResponse().enable_compression("gzip")
    await resp.prepare(request)
    with pytest.raises(AssertionError):
        resp.set_status(500)
    with pytest.raises(AssertionError):
        await resp.write(12)
    with pytest.raises(TypeError):
        await resp.write(12)
    full = Response(text="x")
    with pytest.raises(AssertionError):
        full.text = b"bytes"
    await full.prepare(make_mocked_request("GET", "/"))
    with pytest.raises(AssertionError):
        await full.write_eof(b"data")


async def test_drain_is_kept_but_deprecated():
    request = make_mocked_request("GET", "/")
    resp = StreamResponse()
    await resp.prepare(request)
    with pytest.warns(DeprecationWarning):
        await resp.drain()


# --- differential: the same response from aiohttp and from lowserver ------------------------

class _AiohttpTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.data = bytearray()

    def write(self, data):
        self.data += data

    def writelines(self, chunks):
        self.data += b"".join(chunks)

    def is_closing(self):
        return False


async def _aiohttp_bytes(make, method, version, headers, pieces):
    from aiohttp import web as aiohttp_web
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.http_writer import StreamWriter as AiohttpWriter
    from aiohttp.test_utils import make_mocked_request as aiohttp_mocked_request

    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.transport = transport = _AiohttpTransport()
    request = aiohttp_mocked_request(method, "/", headers, version=version,
                                     writer=AiohttpWriter(protocol, loop))
    response = make(aiohttp_web)
    await response.prepare(request)
    for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return bytes(transport.data), response.keep_alive


async def _lowserver_bytes(make, method, version, headers, pieces):
    import lowserver.web
    request = make_mocked_request(method, "/", headers, version=version)
    response = make(lowserver.web)
    await response.prepare(request)
    for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return bytes(request.transport.data), response.keep_alive


def _masked(data):
    data = re.sub(rb"Date: [^\r]*\r\n", b"Date: D\r\n", data)
    return re.sub(rb"Server: [^\r]*\r\n", b"Server: S\r\n", data)


def _stream_with_length(web):
    response = web.StreamResponse()
    response.content_length = 5
    return response


SAME_AS_AIOHTTP = {
    "text": (lambda web: web.Response(text="hi"), "GET", (1, 1), {}, []),
    "bytes": (lambda web: web.Response(body=b"\x00\x01"), "GET", (1, 1), {}, []),
    "empty": (lambda web: web.Response(), "GET", (1, 1), {}, []),
    "json": (lambda web: web.json_response({"a": [1]}), "GET", (1, 1), {}, []),
    "charset": (lambda web: web.Response(text="x", content_type="text/html", charset="latin-1"),
                "GET", (1, 1), {}, []),
    "reason": (lambda web: web.Response(status=201, reason="Made"), "GET", (1, 1), {}, []),
    "head": (lambda web: web.Response(text="hello"), "HEAD", (1, 1), {}, []),
    "204": (lambda web: web.Response(status=204), "GET", (1, 1), {}, []),
    "304": (lambda web: web.Response(status=304), "GET", (1, 1), {}, []),
    "404": (lambda web: web.HTTPNotFound(), "GET", (1, 1), {}, []),
    "302": (lambda web: web.HTTPFound("/x"), "GET", (1, 1), {}, []),
    "405": (lambda web: web.HTTPMethodNotAllowed("PUT", ["GET"]), "GET", (1, 1), {}, []),
    "http10": (lambda web: web.Response(text="x"), "GET", (1, 0), {}, []),
    "close": (lambda web: web.Response(text="x"), "GET", (1, 1), {"Connection": "close"}, []),
    "chunked": (lambda web: web.StreamResponse(), "GET", (1, 1), {}, [b"ab", b"cde"]),
    "stream-length": (_stream_with_length, "GET", (1, 1), {}, [b"ab", b"cde"]),
    "headers": (lambda web: web.Response(text="x", headers={"X-A": "1", "x-a": "2"}),
                "GET", (1, 1), {}, []),
}


@pytest.mark.parametrize("case", sorted(SAME_AS_AIOHTTP))
async def test_same_bytes_as_aiohttp(case):
    make, method, version, headers, pieces = SAME_AS_AIOHTTP[case]
    theirs = await _aiohttp_bytes(make, method, HttpVersion(*version), headers, pieces)
    ours = await _lowserver_bytes(make, method, HttpVersion(*version), headers, pieces)
    assert _masked(ours[0]) == _masked(theirs[0])
    assert ours[1] == theirs[1]


# --- Response._send_at_once: prepare() and write_eof() in one synchronous call ----------------

AT_ONCE_CASES = [
    ("GET", HttpVersion11, dict(text="Hello")),
    ("HEAD", HttpVersion11, dict(text="Hello")),
    ("GET", HttpVersion10, dict(body=b"old client")),
    ("GET", HttpVersion11, dict(status=204)),
    ("GET", HttpVersion11, dict(status=304, headers={"ETag": '"v1"'})),
    ("GET", HttpVersion11, dict(body=None, headers={"Connection": "close"})),
    ("POST", HttpVersion11, dict(status=201, reason="Made", headers={"Location": "/n/1"},
                                 body=b"{}", content_type="application/json")),
]


@pytest.mark.parametrize("method,version,kwargs", AT_ONCE_CASES)
async def test_send_at_once_sends_what_prepare_and_write_eof_send(method, version, kwargs):
    sent = []
    for at_once in (False, True):
        request = make_mocked_request(method, "/", version=version)
        response = Response(**kwargs)
        if at_once:
            assert response._send_at_once(request) is True
            data = wire(request)
        else:
            data = await send(response, request)
        sent.append((data, response.keep_alive, response.prepared, response.body_length,
                     len(request.transport.writes)))
    assert sent[0] == sent[1]
    assert sent[1][4] == 1   # head and body in one write


async def test_send_at_once_leaves_to_prepare_what_has_to_wait():
    def cases():
        compressed = Response(text="x" * 100)
        compressed.enable_compression()
        yield "compression", compressed, make_mocked_request("GET", "/")
        chunked = Response(body=b"abc")
        chunked.enable_chunked_encoding()
        yield "chunked", chunked, make_mocked_request("GET", "/")
        yield "a file", Response(body=io.BytesIO(b"abc")), make_mocked_request("GET", "/")
        yield "a bytearray", Response(body=bytearray(b"abc")), make_mocked_request("GET", "/")

        class Hooked(BaseRequest):
            async def _prepare_hook(self, response):
                response.headers["X-Hooked"] = "1"
        template = make_mocked_request("GET", "/")
        message = HttpRequestParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0]
        yield "a prepare hook", Response(text="x"), Hooked(
            message, template.content, template.protocol, template.writer, None, None)
    for what, response, request in cases():
        assert response._send_at_once(request) is False, what
        assert not response.prepared and request.transport.data == b"", what
        await send(response, request)    # the two steps still work after the refusal
        assert response.keep_alive is not None, what


async def test_send_at_once_refuses_bad_fields_before_anything_goes_out():
    request = make_mocked_request("GET", "/")
    response = Response(text="x", headers={"X-Split": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="control character"):
        response._send_at_once(request)
    assert not response.prepared and request.transport.data == b""
    request = make_mocked_request("GET", "/")
    response = Response(body=b"abc", headers={"Content-Length": "5"})
    with pytest.raises(ValueError, match="disagrees"):
        response._send_at_once(request)
    assert not response.prepared and request.transport.data == b""


# --- heads sent before: the second identical head is looked up, not worked out -------------

from lowserver import response as response_module  # noqa: E402


def _set_date(monkeypatch, date):
    for module in (response_module, http_writer):
        monkeypatch.setattr(module, "http_date_now", lambda: date)


class _SeenAlready(set):
    """Every head counts as seen once already: kept the first time (see the test below)."""

    def __contains__(self, item):
        return True


@pytest.fixture
def no_heads_sent(monkeypatch):
    monkeypatch.setattr(response_module, "_HEADS_SENT", {})
    monkeypatch.setattr(response_module, "_HEADS_SEEN", _SeenAlready())
    _set_date(monkeypatch, "Fri, 04 Dec 2026 18:00:00 GMT")
    return response_module._HEADS_SENT


async def test_a_head_is_kept_the_second_time_its_inputs_come(no_heads_sent, monkeypatch):
    monkeypatch.setattr(response_module, "_HEADS_SEEN", set())
    sent = [_sent_at_once(text="Hello") for _ in range(3)]
    assert sent[0] == sent[1] == sent[2]
    assert len(no_heads_sent) == 1 and len(response_module._HEADS_SEEN) == 1
    for n in range(3):               # a field that changes every time: only ever noted
        _sent_at_once(text="Hello", headers={"X-Id": str(n)})
    assert len(no_heads_sent) == 1 and len(response_module._HEADS_SEEN) == 4
    for n in range(response_module._HEADS_SEEN_MAX + 5):
        _sent_at_once(text="Hello", headers={"X-Id": str(n)})
        assert len(response_module._HEADS_SEEN) <= response_module._HEADS_SEEN_MAX


def _sent_at_once(method="GET", version=HttpVersion11, closing=False, **kwargs):
    request = make_mocked_request(method, "/", version=version, closing=closing)
    response = Response(**kwargs)
    assert response._send_at_once(request) is True
    return (bytes(request.transport.data), list(response.headers.items()), response.keep_alive,
            response.body_length, len(request.transport.writes))


@pytest.mark.parametrize("method,version,kwargs", AT_ONCE_CASES)
async def test_a_head_sent_again_is_the_same_bytes_and_fields(no_heads_sent, method, version,
                                                              kwargs):
    first = _sent_at_once(method, version, **kwargs)
    second = _sent_at_once(method, version, **kwargs)
    assert second == first
    request = make_mocked_request(method, "/", version=version)
    response = Response(**kwargs)
    await send(response, request)
    assert bytes(request.transport.data) == first[0]     # the two-step path sends the same
    assert list(response.headers.items()) == first[1]


async def test_only_length_framed_heads_the_rules_only_added_to_are_kept(no_heads_sent):
    _sent_at_once(text="Hello")                              # kept
    _sent_at_once("HEAD", text="Hello")                      # no body framing: not kept
    _sent_at_once(status=204)                                # not kept
    _sent_at_once(text="x", closing=True)  # kept
    # Connection: keep-alive said to a request that closes: the rules replace it, not kept
    _sent_at_once(body=b"xy", headers={"Connection": "keep-alive"},
                  closing=True)
    _sent_at_once(body=b"xyz", headers={"Content-Length": "3"})   # the handler's: not kept
    kept = [inputs[2:6] for inputs in no_heads_sent]
    assert ("HEAD", HttpVersion11, True, False) not in kept
    assert all(inputs[0] != 204 for inputs in no_heads_sent)
    assert kept == [("GET", HttpVersion11, True, False), ("GET", HttpVersion11, False, False)]


async def test_whatever_the_rules_read_tells_two_heads_apart(no_heads_sent):
    base = _sent_at_once(text="Hello")[0]
    variants = {
        "status": _sent_at_once(text="Hello", status=201)[0],
        "reason": _sent_at_once(text="Hello", reason="Fine")[0],
        "method": _sent_at_once("HEAD", text="Hello")[0],
        "version": _sent_at_once(version=HttpVersion10, text="Hello")[0],
        "keep-alive": _sent_at_once(closing=True, text="Hello")[0],
        "length": _sent_at_once(text="Hello!")[0],
        "a field": _sent_at_once(text="Hello", headers={"X-Id": "1"})[0],
        "a value": _sent_at_once(text="Hello", headers={"X-Id": "2"})[0],
        "the case of a name": _sent_at_once(text="Hello", headers={"x-id": "2"})[0],
    }
    for what, data in variants.items():
        assert data != base, what
    assert _sent_at_once(text="Hello")[0] == base
    assert b"HTTP/1.0 200 OK\r\n" in variants["version"]
    assert b"Connection: close\r\n" in variants["keep-alive"]
    assert b"x-id: 2\r\n" in variants["the case of a name"]


async def test_bodies_of_any_length_share_one_head_each_with_its_own_length(no_heads_sent):
    for body in (b"x", b"x" * 10, b"x" * 1000, b"", None, b"yy"):
        data, fields, *_ = _sent_at_once(body=body)
        request = make_mocked_request("GET", "/")
        response = Response(body=body)
        await send(response, request)                           # the rules, the long way
        assert bytes(request.transport.data) == data and list(response.headers.items()) == fields
        assert f"Content-Length: {len(body or b'')}\r\n".encode() in data
        assert data.endswith(b"\r\n\r\n" + (body or b""))
    # one head for the bodies, one for the empty ones (no Content-Type is added to those)
    assert len(no_heads_sent) == 2


async def test_the_handlers_content_length_is_held_to_the_body_every_time(no_heads_sent):
    _sent_at_once(body=b"abc", headers={"Content-Length": "3"})
    _sent_at_once(body=b"abc", headers={"Content-Length": "3"})
    request = make_mocked_request("GET", "/")
    response = Response(body=b"abcd", headers={"Content-Length": "3"})
    with pytest.raises(ValueError, match="disagrees"):
        response._send_at_once(request)
    assert request.transport.data == b""


async def test_a_new_second_is_a_new_head(no_heads_sent, monkeypatch):
    first = _sent_at_once(text="Hello")[0]
    _set_date(monkeypatch, "Fri, 04 Dec 2026 18:00:01 GMT")
    second = _sent_at_once(text="Hello")[0]
    assert b"Date: Fri, 04 Dec 2026 18:00:01 GMT\r\n" in second
    assert first.replace(b":00 GMT", b":01 GMT") == second


async def test_a_bad_field_is_refused_though_a_good_head_of_its_shape_was_kept(no_heads_sent):
    _sent_at_once(text="x", headers={"X-Note": "fine"})
    request = make_mocked_request("GET", "/")
    response = Response(text="x", headers={"X-Note": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="control character"):
        response._send_at_once(request)
    assert not response.prepared and request.transport.data == b""
    response = Response(text="x", headers={"X-Note": ["unhashable"]})
    with pytest.raises(TypeError, match="header values are str"):
        response._send_at_once(make_mocked_request("GET", "/"))


async def test_a_cookie_always_takes_the_rules(no_heads_sent):
    for _ in range(2):
        request = make_mocked_request("GET", "/")
        response = Response(text="x")
        response.set_cookie("id", "7")
        assert response._send_at_once(request) is True
        assert bytes(request.transport.data).count(b"Set-Cookie: id=7; Path=/\r\n") == 1
    assert no_heads_sent == {}


async def test_force_close_is_part_of_the_head(no_heads_sent):
    _sent_at_once(text="x")
    request = make_mocked_request("GET", "/")
    response = Response(text="x")
    response.force_close()
    assert response._send_at_once(request) is True
    assert b"Connection: close\r\n" in bytes(request.transport.data)
    assert response.keep_alive is False


async def test_the_heads_kept_are_bounded(no_heads_sent):
    for n in range(response_module._HEADS_SENT_MAX + 10):
        _sent_at_once(body=b"x", headers={"X-N": str(n)})
        assert len(no_heads_sent) <= response_module._HEADS_SENT_MAX
    assert no_heads_sent
