"""Stage 03: the HTTPException family, and the mapping from errors to responses."""
import asyncio
import json
import logging

import pytest
from aiohttp import web as aiohttp_web
from yarl import URL

from lowserver import exceptions as exc_module
from lowserver.exceptions import (
    HTTPBadRequest,
    HTTPClientError,
    HTTPError,
    HTTPException,
    HTTPFound,
    HTTPGatewayTimeout,
    HTTPInternalServerError,
    HTTPMethodNotAllowed,
    HTTPMove,
    HTTPNoContent,
    HTTPNotFound,
    HTTPNotModified,
    HTTPOk,
    HTTPRedirection,
    HTTPRequestEntityTooLarge,
    HTTPRequestHeaderFieldsTooLarge,
    HTTPResetContent,
    HTTPServerError,
    HTTPSuccessful,
    HTTPUnavailableForLegalReasons,
    response_for_exception,
    response_for_result,
)
from lowserver.http_parser import BadStatusLine, HttpProcessingError, HttpRequestParser, LineTooLong
from lowserver.response import Response, StreamResponse
from lowserver.testing import make_mocked_request, run_handler

AIOHTTP_NAMES = sorted(name for name in dir(aiohttp_web) if name.startswith("HTTP"))


def test_every_aiohttp_exception_exists_with_the_same_code_and_parents():
    assert set(AIOHTTP_NAMES) <= set(exc_module.__all__)
    for name in AIOHTTP_NAMES:
        theirs = getattr(aiohttp_web, name)
        ours = getattr(exc_module, name)
        assert ours.status_code == theirs.status_code, name
        assert [b.__name__ for b in ours.__bases__] == [b.__name__ for b in theirs.__bases__], name
        assert ours.empty_body == theirs.empty_body, name


def test_the_class_tree():
    assert issubclass(HTTPException, Response) and issubclass(HTTPException, Exception)
    assert issubclass(HTTPNotFound, HTTPClientError) and issubclass(HTTPClientError, HTTPError)
    assert issubclass(HTTPInternalServerError, HTTPServerError)
    assert issubclass(HTTPServerError, HTTPError)
    assert issubclass(HTTPFound, HTTPMove) and issubclass(HTTPMove, HTTPRedirection)
    assert issubclass(HTTPNotModified, HTTPRedirection) and not issubclass(HTTPNotModified, HTTPMove)
    assert issubclass(HTTPOk, HTTPSuccessful)


@pytest.mark.parametrize("name", [n for n in AIOHTTP_NAMES
                                  if getattr(aiohttp_web, n).status_code > 0])
def test_default_body_matches_aiohttp(name):
    theirs_cls = getattr(aiohttp_web, name)
    ours_cls = getattr(exc_module, name)
    args = ()
    if issubclass(ours_cls, HTTPMove):
        args = ("/there",)
    elif ours_cls is HTTPMethodNotAllowed:
        args = ("GET", ["POST"])
    elif ours_cls is HTTPRequestEntityTooLarge:
        args = (100, 200)
    elif ours_cls is HTTPUnavailableForLegalReasons:
        args = ("http://example.com/court",)
    ours, theirs = ours_cls(*args), theirs_cls(*args)
    assert ours.status == theirs.status
    assert ours.reason == theirs.reason
    assert ours.text == theirs.text
    assert dict(ours.headers) == dict(theirs.headers)


def test_raise_and_catch():
    with pytest.raises(HTTPNotFound) as caught:
        raise HTTPNotFound(text="no such page")
    error = caught.value
    assert error.status == 404 and error.text == "no such page"
    assert str(error) == "Not Found"
    assert isinstance(error, HTTPError) and bool(error)
    with pytest.raises(HTTPException):
        raise HTTPBadRequest(reason="Bad Input")


def test_default_bodies_and_empty_ones():
    assert HTTPNotFound().text == "404: Not Found"
    assert HTTPInternalServerError().text == "500: Internal Server Error"
    for cls in (HTTPNoContent, HTTPResetContent, HTTPNotModified):
        assert cls().body is None and cls().text is None


def test_custom_text_reason_headers_and_content_type():
    error = HTTPBadRequest(text="<b>no</b>", content_type="text/html", reason="Nope",
                           headers={"X-Why": "because"})
    assert error.reason == "Nope" and error.headers["X-Why"] == "because"
    assert error.headers["Content-Type"] == "text/html; charset=utf-8"
    with pytest.raises(ValueError):
        HTTPBadRequest(reason="a\r\nb")


def test_body_argument_is_deprecated():
    with pytest.warns(DeprecationWarning):
        error = HTTPBadRequest(body=b"raw")
    assert error.body == b"raw"


def test_redirects_carry_location():
    for cls, status in [(exc_module.HTTPMovedPermanently, 301), (HTTPFound, 302),
                        (exc_module.HTTPSeeOther, 303), (exc_module.HTTPTemporaryRedirect, 307),
                        (exc_module.HTTPPermanentRedirect, 308)]:
        error = cls("/new/place?x=1")
        assert error.status == status
        assert error.headers["Location"] == "/new/place?x=1"
        assert error.location == "/new/place?x=1"
    assert HTTPFound(URL("http://example.com/é")).headers["Location"] == "http://example.com/%C3%A9"
    for empty in ("", None):
        with pytest.raises(ValueError):
            HTTPFound(empty)


def test_method_not_allowed():
    error = HTTPMethodNotAllowed("delete", ["POST", "GET"])
    assert error.status == 405
    assert error.headers["Allow"] == "GET,POST"
    assert error.allowed_methods == {"GET", "POST"}
    assert error.method == "DELETE"
    generated = HTTPMethodNotAllowed("PUT", (m for m in ["GET", "HEAD"]))
    assert generated.allowed_methods == {"GET", "HEAD"} and generated.headers["Allow"] == "GET,HEAD"


def test_request_entity_too_large():
    error = HTTPRequestEntityTooLarge(max_size=1024, actual_size=4096)
    assert error.status == 413
    assert error.text == "Maximum request body size 1024 exceeded."
    assert (error.max_size, error.actual_size) == (1024, 4096)
    assert HTTPRequestEntityTooLarge(10, text="custom").text == "custom"


def test_unavailable_for_legal_reasons():
    error = HTTPUnavailableForLegalReasons("https://example.org/order")
    assert error.status == 451
    assert error.link == URL("https://example.org/order")
    assert error.headers["Link"] == '<https://example.org/order>; rel="blocked-by"'
    assert HTTPUnavailableForLegalReasons(None).link is None


async def test_exception_on_the_wire():
    request = make_mocked_request("GET", "/")
    error = HTTPFound("/elsewhere")
    await error.prepare(request)
    await error.write_eof()
    data = bytes(request.transport.data)
    assert data.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"Location: /elsewhere\r\n" in data and data.endswith(b"\r\n\r\n302: Found")


async def test_not_modified_on_the_wire_has_no_body():
    request = make_mocked_request("GET", "/")
    await run_handler(_raiser(HTTPNotModified(headers={"ETag": '"v1"'})), request)
    data = bytes(request.transport.data)
    assert data.startswith(b"HTTP/1.1 304 Not Modified\r\n") and data.endswith(b"\r\n\r\n")
    assert b'ETag: "v1"' in data


def _raiser(error):
    async def handler(request):
        raise error
    return handler


# --- the mapping --------------------------------------------------------------------------------

def test_http_exception_maps_to_itself():
    error = HTTPNotFound()
    assert response_for_exception(error) is error


@pytest.mark.parametrize("raw, status, phrase", [
    (b"GET /\r\n\r\n", 400, b"Bad Request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n", 431,
     b"Request Header Fields Too Large"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, b"Request-URI Too Long"),
    (b"GET / HTTP/2.0\r\n\r\n", 505, b"HTTP Version Not Supported"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, b"Not Implemented"),
])
async def test_parse_errors_map_to_their_status_and_message(raw, status, phrase, caplog):
    error = HttpRequestParser().feed(raw)[-1]
    assert isinstance(error, HttpProcessingError)
    response = response_for_exception(error)
    assert response.status == status
    assert response.text == error.message and error.message
    request = make_mocked_request("GET", "/")
    await response.prepare(request)
    await response.write_eof()
    data = bytes(request.transport.data)
    assert data.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))
    assert b"Connection: close\r\n" in data       # a parse error always closes
    assert response.keep_alive is False


def test_parse_error_response_is_the_matching_exception_class():
    response = response_for_exception(LineTooLong("too many bytes in a header line"))
    assert isinstance(response, HTTPRequestHeaderFieldsTooLarge)
    assert response.status == 431 and response.text == "too many bytes in a header line"
    response = response_for_exception(BadStatusLine("no"))
    assert isinstance(response, HTTPBadRequest)
    odd = response_for_exception(HttpProcessingError("teapot", code=418))
    assert odd.status == 418 and odd.text == "teapot"
    empty = response_for_exception(HttpProcessingError(code=400))
    assert empty.text == "400: Bad Request"


def test_timeout_maps_to_504(caplog):
    response = response_for_exception(asyncio.TimeoutError())
    assert isinstance(response, HTTPGatewayTimeout) and response.status == 504
    assert response.text == "504: Gateway Timeout"


def test_other_exceptions_map_to_500_without_internals(caplog):
    try:
        {}["secret-key-name"]
    except KeyError as error:
        with caplog.at_level(logging.ERROR, logger="lowserver.server"):
            response = response_for_exception(error)
    assert response.status == 500
    assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"
    assert "secret" not in response.text and "KeyError" not in response.text
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)


def test_debug_500_shows_the_traceback():
    try:
        raise ZeroDivisionError("divided")
    except ZeroDivisionError as error:
        response = response_for_exception(error, debug=True)
    assert response.status == 500
    assert response.text.startswith("500 Internal Server Error\n\nTraceback")
    assert "ZeroDivisionError: divided" in response.text


def test_500_as_html_when_the_client_wants_html():
    request = make_mocked_request("GET", "/", headers={"Accept": "text/html,*/*"})
    try:
        raise ValueError("<script>")
    except ValueError as error:
        plain = response_for_exception(error, request=request)
        debug = response_for_exception(error, request=request, debug=True)
    assert plain.content_type == "text/html"
    assert "<h1>500 Internal Server Error</h1>" in plain.text and "script" not in plain.text
    assert "&lt;script&gt;" in debug.text and "<script>" not in debug.text


def test_cancellation_is_not_mapped():
    with pytest.raises(asyncio.CancelledError):
        response_for_exception(asyncio.CancelledError())


def test_the_logger_can_be_injected():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("test.lowserver.mapping")
    logger.addHandler(Collect())
    logger.propagate = False
    response_for_exception(RuntimeError("boom"), logger=logger)
    assert records and records[0].levelno == logging.ERROR


def test_handler_result_checks(caplog):
    async def my_handler(request):
        return None

    ok = Response(text="fine")
    assert response_for_result(my_handler, ok) is ok
    with pytest.warns(DeprecationWarning, match="raise the exception"):
        returned = response_for_result(my_handler, HTTPNotFound())
    assert returned.status == 404
    with caplog.at_level(logging.ERROR, logger="lowserver.server"):
        missing = response_for_result(my_handler, None)
        wrong = response_for_result(my_handler, "a string")
    assert missing.status == 500 and wrong.status == 500
    messages = [record.getMessage() for record in caplog.records]
    assert any("my_handler" in m and "Missing return" in m for m in messages)
    assert any("my_handler" in m and "str" in m for m in messages)
    assert "a string" not in wrong.text


async def test_run_handler_applies_the_mapping():
    async def broken(request):
        raise RuntimeError("internal detail")

    request = make_mocked_request("GET", "/")
    response = await run_handler(broken, request)
    assert response.status == 500
    data = bytes(request.transport.data)
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"internal detail" not in data

    async def returns_number(request):
        return 42

    request = make_mocked_request("GET", "/")
    assert (await run_handler(returns_number, request)).status == 500

    async def streams(request):
        response = StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        raise RuntimeError("after the head")

    request = make_mocked_request("GET", "/")
    with pytest.raises(RuntimeError):
        await run_handler(streams, request)
    assert bytes(request.transport.data).count(b"HTTP/1.1") == 1


async def test_run_handler_turns_an_unsendable_response_into_a_500():
    async def splits(request):
        return Response(status=302, headers={"Location": "/x\r\nSet-Cookie: a=1"})

    request = make_mocked_request("GET", "/")
    response = await run_handler(splits, request)
    assert response.status == 500
    data = bytes(request.transport.data)
    assert data.startswith(b"HTTP/1.1 500 ") and b"Set-Cookie" not in data


async def test_a_refused_prepare_leaves_the_response_unprepared():
    request = make_mocked_request("GET", "/")
    response = Response(headers={"X": "a\nb"})
    with pytest.raises(ValueError):
        await response.prepare(request)
    assert not response.prepared
    del response.headers["X"]
    await response.prepare(request)
    await response.write_eof()
    assert bytes(request.transport.data).startswith(b"HTTP/1.1 200 OK")


async def test_json_error_is_a_400():
    async def handler(request):
        return Response(text=str(await request.json()))

    request = make_mocked_request("POST", "/", body=b"{not json")
    response = await run_handler(handler, request)
    assert response.status == 400
    assert response.text.startswith("Invalid JSON body: Expecting property name")
    request = make_mocked_request("POST", "/", body=b"{not json")
    with pytest.raises(json.JSONDecodeError):
        await request.json()
