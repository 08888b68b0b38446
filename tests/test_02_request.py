"""Stage 02: BaseRequest over a parsed message, and make_mocked_request."""
import asyncio
import datetime
import json
import ssl

import pytest
from multidict import CIMultiDictProxy, MultiDictProxy
from yarl import URL

from lowserver.exceptions import HTTPBadRequest, HTTPRequestEntityTooLarge, HTTPUnsupportedMediaType
from lowserver.http_parser import HttpRequestParser, HttpVersion10, HttpVersion11, RawRequestMessage
from lowserver.request import BaseRequest, FileField, InvalidJSONBody, InvalidRequestBody
from lowserver.fields import ETag
from lowserver.streams import EMPTY_PAYLOAD, StreamReader
from lowserver.testing import MemoryTransport, MockProtocol, make_mocked_request


def parsed(raw: bytes, **kwargs) -> BaseRequest:
    """Build a request the way the server does: parser events -> BaseRequest."""
    events = HttpRequestParser().feed(raw)
    message = events[0]
    assert isinstance(message, RawRequestMessage)
    loop = asyncio.get_running_loop()
    transport = MemoryTransport(peername=("192.0.2.7", 51000), sockname=("127.0.0.1", 8080))
    protocol = MockProtocol(loop, transport)
    body = b"".join(e for e in events[1:] if isinstance(e, bytes))
    if message.chunked or message.content_length:
        payload = StreamReader(protocol, 2**16, loop=loop)
        payload.feed_data(body)
        payload.feed_eof()
    else:
        payload = EMPTY_PAYLOAD
    template = make_mocked_request("GET", "/", transport=transport, protocol=protocol)
    return BaseRequest(message, payload, protocol, template.writer, None, loop, **kwargs)


# --- the request line ------------------------------------------------------------------------

async def test_target_path_and_query():
    request = parsed(b"GET /caf%C3%A9/a%20b?x=1&y=a+b&x=2&z=%26 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert request.method == "GET"
    assert request.version == HttpVersion11
    assert request.path == "/café/a b"
    assert request.raw_path == "/caf%C3%A9/a%20b?x=1&y=a+b&x=2&z=%26"
    assert isinstance(request.query, MultiDictProxy)
    assert request.query.getall("x") == ["1", "2"]
    assert request.query["y"] == "a b" and request.query["z"] == "&"
    assert request.query_string == "x=1&y=a b&x=2&z=%26"   # decoded, as yarl and aiohttp do
    assert request.path_qs == "/caf%C3%A9/a%20b?x=1&y=a+b&x=2&z=%26"
    assert request.rel_url == URL("/caf%C3%A9/a%20b?x=1&y=a+b&x=2&z=%26", encoded=True)
    assert str(request.url) == "http://example.com/caf%C3%A9/a%20b?x=1&y=a+b&x=2&z=%26"


async def test_method_case_is_kept_and_read_only():
    request = parsed(b"Patch / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request.method == "Patch"
    with pytest.raises(AttributeError):
        request.method = "GET"
    with pytest.raises(AttributeError):
        request.path = "/other"


async def test_host_from_field_then_socket():
    assert parsed(b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n").host == "example.com:8080"
    assert parsed(b"GET / HTTP/1.0\r\n\r\n").host == "127.0.0.1"
    assert make_mocked_request("GET", "/").host == "127.0.0.1"
    v6 = make_mocked_request("GET", "/", transport=MemoryTransport(sockname=("::1", 80, 0, 0)))
    assert v6.host == "[::1]"


async def test_absolute_form_target_wins_over_host():
    request = parsed(b"GET http://origin.example:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    assert request.host == "origin.example"
    assert request.path == "/p" and request.query["q"] == "1"
    assert str(request.url) == "http://origin.example:81/p?q=1"
    assert request.rel_url == URL("/p?q=1")


async def test_asterisk_form():
    request = parsed(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request.raw_path == "*"


async def test_remote_scheme_secure():
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request.remote == "192.0.2.7"
    assert request.scheme == "http" and request.secure is False
    tls = make_mocked_request("GET", "/", sslcontext=ssl.create_default_context())
    assert tls.scheme == "https" and tls.secure is True
    assert str(tls.url) == "https://127.0.0.1/"
    assert make_mocked_request("GET", "/").remote is None


async def test_transport_and_extra_info():
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(request.transport, MemoryTransport)
    assert request.get_extra_info("peername") == ("192.0.2.7", 51000)
    assert request.get_extra_info("missing", "default") == "default"


# --- header fields -------------------------------------------------------------------------

async def test_headers_and_raw_headers():
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n")
    assert isinstance(request.headers, CIMultiDictProxy)
    assert request.headers.getall("X-MULTI") == ["1", "2"]
    assert request.raw_headers == ((b"Host", b"h"), (b"X-Multi", b"1"), (b"x-multi", b"2"))


async def test_keep_alive_rules():
    assert parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive is True
    assert parsed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive is False
    assert parsed(b"GET / HTTP/1.0\r\n\r\n").keep_alive is False
    assert parsed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is True
    assert make_mocked_request("GET", "/", version=HttpVersion10).keep_alive is False


async def test_cookies():
    request = parsed(b'GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b="two words"; '
                     b'c=x=y; junk; =nameless; d="\\054"\r\n\r\n')
    assert dict(request.cookies) == {"a": "1", "b": "two words", "c": "x=y", "d": ","}
    with pytest.raises(TypeError):
        request.cookies["a"] = "2"
    assert dict(make_mocked_request("GET", "/").cookies) == {}


async def test_content_type_charset_length():
    request = parsed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: Text/Plain; Charset=ISO-8859-1"
                     b"\r\nContent-Length: 3\r\n\r\nabc")
    assert request.content_type == "text/plain"
    assert request.charset == "ISO-8859-1"
    assert request.content_length == 3
    bare = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert bare.content_type == "application/octet-stream"
    assert bare.charset is None and bare.content_length is None


async def test_conditional_fields():
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n"
                     b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                     b"If-Unmodified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n"
                     b'If-None-Match: "a", W/"b"\r\nIf-Match: *\r\n'
                     b"If-Range: Sun Nov  6 08:49:37 1994\r\n\r\n")
    when = datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.timezone.utc)
    assert request.if_modified_since == when
    assert request.if_unmodified_since == when
    assert request.if_range == when
    assert request.if_none_match == (ETag("a"), ETag("b", is_weak=True))
    assert request.if_match == (ETag("*"),)
    bare = parsed(b"GET / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: yesterday\r\n\r\n")
    assert bare.if_modified_since is None and bare.if_none_match is None


async def test_http_range():
    def rng(value):
        return parsed(b"GET / HTTP/1.1\r\nHost: h\r\nRange: " + value + b"\r\n\r\n").http_range
    assert rng(b"bytes=0-499") == slice(0, 500, 1)
    assert rng(b"bytes=500-") == slice(500, None, 1)
    assert rng(b"bytes=-500") == slice(-500, None, 1)
    for bad in (b"bytes=5-1", b"lines=1-2", b"bytes=-"):
        with pytest.raises(ValueError):
            rng(bad)
    assert parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").http_range == slice(None, None, 1)


async def test_forwarded():
    request = parsed(b'GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=192.0.2.60;proto=http;'
                     b'by="[2001:db8::1]", for=198.51.100.17\r\n\r\n')
    assert [dict(elem) for elem in request.forwarded] == [
        {"for": "192.0.2.60", "proto": "http", "by": "[2001:db8::1]"}, {"for": "198.51.100.17"}]


# --- state and clone -------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::lowserver.state.NotAppKeyWarning")  # str keys, as aiohttp allows
async def test_request_is_a_mutable_mapping():
    request = make_mocked_request("GET", "/")
    request["user"] = "ann"
    assert request["user"] == "ann" and len(request) == 1 and list(request) == ["user"]
    del request["user"]
    assert "user" not in request
    assert request == request and request != make_mocked_request("GET", "/") and bool(request)


@pytest.mark.filterwarnings("ignore::lowserver.state.NotAppKeyWarning")  # str keys, as aiohttp allows
async def test_clone():
    request = make_mocked_request("GET", "/a?x=1", headers={"Host": "h"})
    request["k"] = "v"
    clone = request.clone(method="POST", rel_url="/b?y=2", headers={"X": "1"}, scheme="https",
                          host="other", remote="10.1.1.1", client_max_size=5)
    assert clone.method == "POST" and clone.path == "/b" and clone.query["y"] == "2"
    assert clone.headers["X"] == "1" and "Host" not in clone.headers
    assert clone.raw_headers == ((b"X", b"1"),)
    assert clone.scheme == "https" and clone.host == "other" and clone.remote == "10.1.1.1"
    assert clone.client_max_size == 5
    assert clone["k"] == "v"
    clone["k"] = "changed"
    assert request["k"] == "v"
    same = request.clone()
    assert same.path == "/a" and same.method == "GET" and same is not request


async def test_clone_after_read_is_refused():
    request = make_mocked_request("POST", "/", body=b"abc")
    await request.read()
    with pytest.raises(RuntimeError):
        request.clone()


async def test_repr():
    assert repr(make_mocked_request("GET", "/caf%C3%A9")) == "<BaseRequest GET /caf\\xe9 >"


# --- the body ------------------------------------------------------------------------------

async def test_no_body():
    request = make_mocked_request("GET", "/")
    assert request.body_exists is False and request.can_read_body is False
    assert await request.read() == b"" and await request.text() == ""


async def test_read_text_json():
    request = make_mocked_request("POST", "/", body='{"name": "café"}')
    assert request.body_exists and request.can_read_body
    assert request.content_length == len('{"name": "café"}'.encode())
    assert await request.json() == {"name": "café"}
    assert not request.can_read_body and request.body_exists
    assert await request.read() == '{"name": "café"}'.encode()   # read once, remembered


async def test_json_with_custom_loads():
    request = make_mocked_request("POST", "/", body=b"[1, 2]")
    assert await request.json(loads=lambda text: ("custom", text)) == ("custom", "[1, 2]")


async def test_text_honours_the_charset():
    request = make_mocked_request("POST", "/", headers={"Content-Type": "text/plain; charset=koi8-r"},
                                  body="привет".encode("koi8-r"))
    assert await request.text() == "привет"


async def test_invalid_json_is_a_clear_400():
    request = make_mocked_request("POST", "/", body=b'{"a": ')
    with pytest.raises(InvalidJSONBody) as caught:
        await request.json()
    error = caught.value
    assert isinstance(error, HTTPBadRequest) and isinstance(error, json.JSONDecodeError)
    assert error.status == 400
    assert error.text.startswith("Invalid JSON body: Expecting value: line 1 column 7")
    assert error.pos == 6


async def test_undecodable_text_is_a_400_and_unknown_charset_a_415():
    request = make_mocked_request("POST", "/", body=b"\xff\xfe")
    with pytest.raises(InvalidRequestBody) as caught:
        await request.text()
    assert caught.value.status == 400 and isinstance(caught.value, ValueError)
    assert "utf-8" in caught.value.text
    request = make_mocked_request("POST", "/", headers={"Content-Type": "text/plain; charset=nope"},
                                  body=b"x")
    with pytest.raises(HTTPUnsupportedMediaType):
        await request.text()


async def test_read_over_client_max_size_declared():
    request = make_mocked_request("POST", "/", body=b"x" * 11, client_max_size=10)
    with pytest.raises(HTTPRequestEntityTooLarge) as caught:
        await request.read()
    assert caught.value.status == 413
    assert caught.value.max_size == 10 and caught.value.actual_size == 11
    assert request.can_read_body   # refused before reading a byte


async def test_read_over_client_max_size_streamed():
    request = make_mocked_request("POST", "/", headers={"Transfer-Encoding": "chunked"},
                                  body=b"x" * 2000, client_max_size=1000)
    with pytest.raises(HTTPRequestEntityTooLarge) as caught:
        await request.read()
    assert caught.value.max_size == 1000 and caught.value.actual_size > 1000


async def test_read_at_exactly_the_limit_and_no_limit():
    request = make_mocked_request("POST", "/", body=b"x" * 10, client_max_size=10)
    assert await request.read() == b"x" * 10
    request = make_mocked_request("POST", "/", body=b"x" * (2 * 1024**2), client_max_size=0)
    assert len(await request.read()) == 2 * 1024**2


async def test_default_client_max_size_is_one_mebibyte():
    request = make_mocked_request("POST", "/", body=b"x" * (1024**2 + 1))
    assert request.client_max_size == 1024**2
    with pytest.raises(HTTPRequestEntityTooLarge):
        await request.read()


async def test_read_from_a_stream_fed_in_pieces():
    loop = asyncio.get_running_loop()
    request = make_mocked_request("POST", "/", headers={"Transfer-Encoding": "chunked"})
    payload = StreamReader(request.protocol, 2**16, loop=loop)
    request = make_mocked_request("POST", "/", headers={"Transfer-Encoding": "chunked"},
                                  payload=payload, protocol=request.protocol,
                                  transport=request.transport)

    async def feed():
        for piece in (b"ab", b"cd", b"ef"):
            await asyncio.sleep(0)
            payload.feed_data(piece)
        payload.feed_eof()

    feeder = asyncio.create_task(feed())
    assert await request.read() == b"abcdef"
    await feeder


async def test_release_drops_the_rest():
    request = make_mocked_request("POST", "/", body=b"x" * 100_000)
    await request.release()
    assert not request.can_read_body


# --- forms ---------------------------------------------------------------------------------

async def test_post_urlencoded():
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"name=Ann+Lee&tag=a&tag=b&empty=&caf%C3%A9=%E2%9C%93")
    form = await request.post()
    assert isinstance(form, MultiDictProxy)
    assert form["name"] == "Ann Lee" and form.getall("tag") == ["a", "b"]
    assert form["empty"] == "" and form["café"] == "✓"
    assert await request.post() is form


async def test_post_for_other_methods_and_types_is_empty():
    assert dict(await make_mocked_request("GET", "/", body=b"a=1").post()) == {}
    request = make_mocked_request("POST", "/", headers={"Content-Type": "application/json"},
                                  body=b'{"a": 1}')
    assert dict(await request.post()) == {}


async def test_post_too_many_fields():
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"&".join(b"f%d=1" % i for i in range(20)), client_max_fields=10)
    with pytest.raises(HTTPRequestEntityTooLarge) as caught:
        await request.post()
    assert caught.value.text == "Maximum number of form fields 10 exceeded."


MULTIPART = (
    b"--BOUNDARY\r\n"
    b'Content-Disposition: form-data; name="title"\r\n\r\n'
    b"Hello \xc3\xa9\r\n"
    b"--BOUNDARY\r\n"
    b'Content-Disposition: form-data; name="upload"; filename="notes.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"line one\r\nline two\r\n"
    b"--BOUNDARY\r\n"
    b'Content-Disposition: form-data; name="blob"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
    b"\x00\x01\x02\r\n"
    b"--BOUNDARY\r\n"
    b'Content-Disposition: form-data; name="title"\r\n\r\n'
    b"second\r\n"
    b"--BOUNDARY--\r\n")


async def test_post_multipart():
    request = make_mocked_request(
        "POST", "/upload", headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
        body=MULTIPART)
    form = await request.post()
    assert form.getall("title") == ["Hello é", "second"]
    upload = form["upload"]
    assert isinstance(upload, FileField)
    assert upload.name == "upload" and upload.filename == "notes.txt"
    assert upload.content_type == "text/plain"
    assert upload.headers["Content-Disposition"].startswith("form-data")
    assert upload.file.read() == b"line one\r\nline two"
    assert bytes(form["blob"]) == b"\x00\x01\x02"
    request._finish()
    assert upload.file.closed


async def test_post_multipart_in_small_pieces():
    loop = asyncio.get_running_loop()
    template = make_mocked_request("POST", "/")
    payload = StreamReader(template.protocol, 2**16, loop=loop)
    for i in range(0, len(MULTIPART), 7):
        payload.feed_data(MULTIPART[i:i + 7])
    payload.feed_eof()
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
        payload=payload)
    form = await request.post()
    assert form["upload"].file.read() == b"line one\r\nline two"


@pytest.mark.parametrize("content_type, body, message", [
    ("multipart/form-data", MULTIPART, "boundary"),
    ("multipart/form-data; boundary=BOUNDARY", MULTIPART[:-20], "closing boundary"),
    ("multipart/form-data; boundary=BOUNDARY",
     b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nx\r\n--BOUNDARY--\r\n", "Content-Disposition"),
    ("multipart/form-data; boundary=BOUNDARY",
     b"--BOUNDARY\r\nContent-Disposition: form-data\r\n\r\nx\r\n--BOUNDARY--\r\n", "name"),
    ("multipart/form-data; boundary=BOUNDARY", b"garbage without boundaries", "multipart"),
])
async def test_post_multipart_errors_are_400(content_type, body, message):
    request = make_mocked_request("POST", "/", headers={"Content-Type": content_type}, body=body)
    with pytest.raises(HTTPBadRequest) as caught:
        await request.post()
    assert caught.value.status == 400 and message in caught.value.text


async def test_post_multipart_over_the_size_limit():
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY",
                              "Transfer-Encoding": "chunked"},
        body=MULTIPART, client_max_size=50)
    with pytest.raises(HTTPRequestEntityTooLarge):
        await request.post()


async def test_post_multipart_too_many_fields():
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
        body=MULTIPART, client_max_fields=2)
    with pytest.raises(HTTPRequestEntityTooLarge):
        await request.post()


# --- make_mocked_request itself ---------------------------------------------------------------

async def test_make_mocked_request_defaults():
    request = make_mocked_request("get", "/path?x=1", {"Host": "example.com"})
    assert request.method == "GET"          # upper-cased, as aiohttp's helper does
    assert request.version == HttpVersion11 and request.keep_alive
    assert request.headers["Host"] == "example.com"
    assert request.raw_headers == ((b"Host", b"example.com"),)
    assert request.content is EMPTY_PAYLOAD
    assert isinstance(request.transport, MemoryTransport)
    assert request.protocol.transport is request.transport
    assert request.client_max_size == 1024**2
    assert request.task is asyncio.current_task()


async def test_make_mocked_request_body_adds_content_length():
    request = make_mocked_request("POST", "/", body=b"12345")
    assert request.headers["Content-Length"] == "5"
    request = make_mocked_request("POST", "/", {"Content-Length": "5"}, body=b"12345")
    assert request.headers.getall("Content-Length") == ["5"]
    with pytest.raises(ValueError):
        make_mocked_request("POST", "/", body=b"x", payload=EMPTY_PAYLOAD)


def test_make_mocked_request_without_a_running_loop():
    request = make_mocked_request("GET", "/x")
    assert request.path == "/x" and request.task is None


async def test_multipart_reader_streams_parts():
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
        body=MULTIPART)
    reader = await request.multipart()
    seen = []
    async for part in reader:
        if part.filename:
            pieces = []
            while chunk := await part.read_chunk(5):
                assert len(chunk) <= 5
                pieces.append(chunk)
            seen.append((part.name, part.filename, b"".join(pieces)))
        elif part.name == "blob":
            seen.append((part.name, None, bytes(await part.read())))
        else:
            seen.append((part.name, None, await part.text()))
    assert seen == [("title", None, "Hello é"), ("upload", "notes.txt", b"line one\r\nline two"),
                    ("blob", None, b"\x00\x01\x02"), ("title", None, "second")]
    assert reader.at_eof() and await reader.next() is None


async def test_multipart_reader_skips_unread_parts_and_reads_json_and_forms():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"skip\"\r\n\r\n" + b"x" * 100_000 +
            b"\r\n--b\r\nContent-Disposition: form-data; name=\"j\"\r\n"
            b"Content-Type: application/json\r\n\r\n{\"k\": [1, 2]}\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\na=1&b=%20\r\n--b--\r\n")
    request = make_mocked_request("POST", "/", body=body,
                                  headers={"Content-Type": "multipart/form-data; boundary=b"})
    reader = await request.multipart()
    first = await reader.next()
    assert first.name == "skip" and first.headers["Content-Disposition"].startswith("form-data")
    second = await reader.next()          # the rest of the first part is dropped
    assert await second.json() == {"k": [1, 2]}
    third = await reader.next()
    assert await third.form() == [("a", "1"), ("b", " ")]
    assert await reader.next() is None


async def test_multipart_part_read_is_limited_but_streaming_is_not():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"big\"; filename=\"big.bin\"\r\n\r\n"
            + b"z" * 3000 + b"\r\n--b--\r\n")
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    request = make_mocked_request("POST", "/", body=body, headers=headers, client_max_size=1000)
    part = await (await request.multipart()).next()
    with pytest.raises(HTTPRequestEntityTooLarge):
        await part.read()
    request = make_mocked_request("POST", "/", body=body, headers=headers, client_max_size=1000)
    part = await (await request.multipart()).next()
    total = 0
    while chunk := await part.read_chunk():
        total += len(chunk)
    assert total == 3000


async def test_multipart_reader_needs_a_boundary():
    request = make_mocked_request("POST", "/", body=b"x",
                                  headers={"Content-Type": "multipart/form-data"})
    with pytest.raises(HTTPBadRequest):
        await request.multipart()


# --- differential: the same mocked request in aiohttp and in lowserver ----------------------

AIOHTTP_CASES = [
    ("GET", "/path/to?a=1&b=2", {}),
    ("get", "/caf%C3%A9/a%2Fb?x=%20y&x=z+w", {"Host": "example.com:8080"}),
    ("POST", "/", {"Content-Type": "application/json; charset=UTF-8", "Content-Length": "10"}),
    ("GET", "http://other.example/abs?q=1", {"Host": "h"}),
    ("GET", "/", {"Cookie": 'a=1; b="x y"; c=', "If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}),
    ("GET", "/", {"Forwarded": 'for=1.2.3.4;proto=https, for="[::1]:80"', "Range": "bytes=1-5"}),
    ("OPTIONS", "*", {}),
    ("GET", "/?a=1&a=2&b", {"If-None-Match": '"x", W/"y"', "Content-Type": "text/plain"}),
]
AIOHTTP_ATTRS = ["method", "path", "raw_path", "path_qs", "query_string", "host", "scheme",
                 "secure", "remote", "url", "rel_url", "keep_alive", "content_type", "charset",
                 "content_length", "if_modified_since", "http_range", "version", "body_exists",
                 "can_read_body"]


@pytest.mark.parametrize("method, path, headers", AIOHTTP_CASES)
async def test_request_attributes_match_aiohttp(method, path, headers):
    from aiohttp.test_utils import make_mocked_request as aiohttp_mocked_request

    theirs = aiohttp_mocked_request(method, path, headers)
    ours = make_mocked_request(method, path, headers)
    for name in AIOHTTP_ATTRS:
        assert str(getattr(ours, name)) == str(getattr(theirs, name)), name
    assert list(ours.query.items()) == list(theirs.query.items())
    assert dict(ours.cookies) == dict(theirs.cookies)
    assert [dict(e) for e in ours.forwarded] == [dict(e) for e in theirs.forwarded]
    assert [(t.value, t.is_weak) for t in ours.if_none_match or ()] == \
        [(t.value, t.is_weak) for t in theirs.if_none_match or ()]


@pytest.mark.parametrize("target", [
    "/", "/a/b", "/a/../b", "/./a", "//double", "/a+b", "/a;p=1", "/~user/x.y", "/a:b@c",
    "/a%20b", "/caf%C3%A9", "/a?x=1", "/a%2Fb?q", "/?", "/%", "/a/%2e%2e/b",
])
def test_path_without_anything_to_decode_is_the_target_as_yarl_gives_it(target):
    """`path` skips building the URL when there is nothing to decode (no '%', no '?'):
    the answer must be the one the URL gives, for every kind of target."""
    from lowserver.http_parser import HttpRequestParser
    [message, _] = HttpRequestParser().feed(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    request = make_mocked_request("GET", "/")
    request = type(request)(message, request._payload, request._protocol,
                            request._payload_writer, None, None)
    assert request.path == message.url.path      # the URL the server builds (target_url)


@pytest.mark.parametrize("no_speedups", ["", "0", "1"],
                         ids=["propcache", "zero-is-off", "pure-python"])
def test_reify_is_propcache_unless_speedups_are_off_and_both_behave_alike(no_speedups):
    import os
    import subprocess
    import sys
    code = ("import lowserver.request as r\n"
            "from lowserver.testing import make_mocked_request\n"
            "q = make_mocked_request('GET', '/a%20b?x=1')\n"
            "assert (q.path, q.query_string, q.path) == ('/a b', 'x=1', '/a b')\n"
            "try:\n    q.path = 'x'\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('assignable')\n"
            "print(r.reify is r.PyReify)\n")
    env = {**os.environ, "LOWSERVER_NO_SPEEDUPS": no_speedups}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("True\n" if no_speedups == "1" else "False\n")


def test_state_is_made_on_the_first_key_and_never_shared():
    import warnings
    from lowserver.response import Response
    from lowserver.state import RequestKey, ResponseKey
    from lowserver.testing import make_mocked_request
    first, second = make_mocked_request("GET", "/"), make_mocked_request("GET", "/")
    assert len(first) == 0 and list(first) == [] and "k" not in first
    with pytest.raises(KeyError):
        first["k"]
    key = RequestKey("k", int)
    first[key] = 1
    assert first[key] == 1 and len(first) == 1 and key not in second and len(second) == 0
    clone = first.clone()
    clone[key] = 2
    assert first[key] == 1 and clone[key] == 2
    del first[key]
    assert len(first) == 0 and len(second) == 0
    one, other = Response(text="a"), Response(text="b")
    rkey = ResponseKey("r", str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one[rkey] = "x"
    assert one[rkey] == "x" and rkey not in other and len(other) == 0
