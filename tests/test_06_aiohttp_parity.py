"""aiohttp 3.14.5's remaining low-level names and contracts (issue #13, points 5-8), over
real loopback sockets where the wire matters: BadHttpMethod (TLS bytes on the plain port),
RequestPayloadError and PayloadAccessError, the loggers' messages, ETag and ``__all__``."""
from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
import pytest

import lowserver
from lowserver import web
from lowserver.http_parser import BadHttpMethod, BadStatusLine, HttpRequestParser

from loopback import LONG, exchange, read_head, serve


async def ok(request: web.BaseRequest) -> web.Response:
    return web.Response(text="ok")


# --- point 5: BadHttpMethod ---------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "Received HTTPS traffic on an HTTP port"),
    (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", "method must be a token (RFC 9110 §9.1), got 'G(T'"),
    (b"G\x00T", "method must be a token (RFC 9110 §9.1), got 'G\\x00'"),
], ids=["tls-client-hello", "parenthesis", "nul"])
def test_a_method_that_is_not_a_token_is_a_bad_http_method(data: bytes, message: str) -> None:
    [error] = HttpRequestParser().feed(data)
    assert type(error) is BadHttpMethod and isinstance(error, BadStatusLine)
    assert (error.code, error.message) == (400, message)


def test_bad_http_method_is_importable_where_aiohttp_users_look() -> None:
    import lowserver.http_events
    assert lowserver.BadHttpMethod is BadHttpMethod is lowserver.http_events.BadHttpMethod
    assert issubclass(lowserver.InvalidURLError, lowserver.BadHttpMessage)


async def test_tls_on_the_plain_port_is_answered_400_and_closed() -> None:
    async with serve(ok) as (_, port):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # a real ClientHello, from Python's own TLS client
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            writer.write(outgoing.read())
            head = await read_head(reader)
            rest = await asyncio.wait_for(reader.read(), LONG)
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"Connection: close\r\n" in head
        assert b"Received HTTPS traffic on an HTTP port" in rest


# --- point 6: names -----------------------------------------------------------------------

def test_etag_and_the_payload_errors_have_aiohttps_names() -> None:
    from lowserver.fields import ETag
    assert lowserver.ETag is web.ETag is ETag
    assert ETag(value="x", is_weak=True) == ETag("x", True)
    assert issubclass(web.RequestPayloadError, Exception)
    assert issubclass(web.PayloadAccessError, Exception)
    from lowserver.server import PayloadAccessError, RequestPayloadError
    assert (web.RequestPayloadError, web.PayloadAccessError) == (RequestPayloadError,
                                                                 PayloadAccessError)


@pytest.mark.parametrize("module", ["lowserver", "lowserver.web"])
def test_all_lists_every_public_name_and_each_resolves(module: str) -> None:
    import importlib
    names = importlib.import_module(module).__all__
    assert len(names) == len(set(names))
    for name in ("Server", "Response", "StreamResponse", "WebSocketResponse", "FileResponse",
                 "HTTPNotFound", "HTTPException", "ETag", "RequestPayloadError",
                 "PayloadAccessError", "BadHttpMethod", "run_app", "BaseRequest"):
        assert name in names
    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    missing = [name for name in names if name not in namespace]
    assert not missing
    assert "_register" not in names and "annotations" not in names


def test_aiohttps_low_level_names_are_all_there() -> None:
    """Every name aiohttp.web exports that belongs to the low-level server (no Application,
    routing, middlewares or client) exists in lowserver.web."""
    wanted = ["BaseRequest", "FileResponse", "StreamResponse", "Response", "json_response",
              "WebSocketResponse", "WebSocketReady", "WSMsgType", "Server",
              "RequestHandler", "BaseRunner", "ServerRunner", "BaseSite", "TCPSite",
              "UnixSite", "SockSite", "GracefulExit", "run_app", "HTTPException",
              "HTTPOk", "HTTPNotFound", "HTTPInternalServerError", "ContentCoding",
              "RequestPayloadError", "PayloadAccessError", "AbstractAccessLogger",
              "AccessLogger"]
    import aiohttp.web
    for name in wanted:
        assert hasattr(aiohttp.web, name), name          # the list is aiohttp's
        assert name in web.__all__ and getattr(web, name) is not None, name


# --- point 6: RequestPayloadError, PayloadAccessError, over the wire ----------------------

BAD_CHUNK = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\nzz\r\n")


async def test_a_body_that_breaks_the_framing_raises_request_payload_error() -> None:
    seen: list = []

    async def reads(request: web.BaseRequest) -> web.Response:
        try:
            await request.read()
        except web.RequestPayloadError as error:
            seen.append(error)
            return web.Response(status=422, text="caught")
        return web.Response(text="read")

    async with serve(reads) as (_, port):
        reply = await exchange(port, BAD_CHUNK)
    [error] = seen
    assert isinstance(error, lowserver.BadHttpMessage) and error.code == 400
    assert isinstance(error.__cause__, lowserver.HttpProcessingError)
    assert "chunk" in error.message
    # the handler's answer, then the close (`exchange` reads to it): the stream cannot be
    # trusted after a framing error
    assert reply.startswith(b"HTTP/1.1 422 ") and reply.endswith(b"caught")


async def test_an_uncaught_request_payload_error_is_its_400_not_a_500(caplog) -> None:
    async def reads(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(text="read")

    caplog.set_level(logging.DEBUG, logger="lowserver")
    async with serve(reads) as (_, port):
        reply = await exchange(port, BAD_CHUNK)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"500" not in reply.split(b"\r\n")[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_reading_the_body_after_the_response_raises_payload_access_error() -> None:
    later: asyncio.Future = asyncio.get_running_loop().create_future()

    async def keeps(request: web.BaseRequest) -> web.Response:
        first = await request.content.read(2)

        async def read_rest() -> None:
            await asyncio.sleep(0.05)
            try:
                later.set_result(await request.content.read())
            except Exception as error:   # what aiohttp raises: PayloadAccessError
                later.set_result(error)
        asyncio.ensure_future(read_rest())
        return web.Response(text=first.decode())

    async with serve(keeps) as (_, port):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=b"hello") as response:
                assert await response.text() == "he"
        result = await asyncio.wait_for(later, LONG)
    assert isinstance(result, web.PayloadAccessError)


# --- point 7: the loggers -----------------------------------------------------------------

async def test_an_unhandled_error_is_logged_as_aiohttp_logs_it(caplog) -> None:
    async def fails(request: web.BaseRequest) -> web.Response:
        raise ValueError("boom")

    caplog.set_level(logging.DEBUG, logger="lowserver")
    async with serve(fails) as (_, port):
        reply = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500 ")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # aiohttp 3.14.5 web_protocol.py 871-873: log_exception("Error handling request from %s",
    # request.remote, exc_info=exc), i.e. logger.exception on aiohttp.server
    assert (record.name, record.levelname) == ("lowserver.server", "ERROR")
    assert record.msg == "Error handling request from %s" and record.args == ("127.0.0.1",)
    assert record.exc_info and isinstance(record.exc_info[1], ValueError)


async def test_a_callers_logger_sees_the_unhandled_error(caplog) -> None:
    mine = logging.getLogger("tests.mine")

    async def fails(request: web.BaseRequest) -> web.Response:
        raise ValueError("boom")

    caplog.set_level(logging.DEBUG, logger="tests.mine")
    async with serve(fails, logger=mine) as (_, port):
        await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [r.getMessage() for r in caplog.records if r.name == "tests.mine"] == [
        "Error handling request from 127.0.0.1"]


# (the debug-mode message when a disconnect cancels the handler: test_06_server's
# test_handler_cancellation_true_cancels_when_client_goes_away)


# --- point 8: make_mocked_request(protocol=...), typed keys -------------------------------

async def test_make_mocked_request_with_a_mock_protocol_has_inert_writes() -> None:
    from unittest import mock
    from lowserver.testing import make_mocked_request
    protocol = mock.Mock()
    request = make_mocked_request("GET", "/", protocol=protocol)
    assert request.protocol is protocol and request.transport is protocol.transport
    response = web.Response(text="hi")
    await response.prepare(request)
    await response.write_eof()
    assert response.prepared and protocol.method_calls == []
    stream = web.StreamResponse()
    await stream.prepare(make_mocked_request("GET", "/", protocol=mock.Mock()))
    await stream.write(b"x" * 100_000)
    await stream.write_eof()


@pytest.mark.parametrize("kind", ["request", "response"])
def test_a_string_key_warns_once_per_key_a_typed_key_never(kind: str) -> None:
    from lowserver.testing import make_mocked_request
    holder = make_mocked_request("GET", "/") if kind == "request" else web.Response()
    key_class = web.RequestKey if kind == "request" else web.ResponseKey
    name = f"test-key-{kind}"
    typed = key_class("user", str)
    with pytest.warns(web.NotAppKeyWarning, match=f"use web.{key_class.__name__} instances"):
        holder[name] = 1
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        holder[name] = 2                 # the same key again: no second warning
        holder[typed] = "ada"
    assert holder[name] == 2 and holder[typed] == "ada"
    # the name is prefixed with the module of the nearest module-level frame, as aiohttp's
    import re
    assert re.fullmatch(rf"<{key_class.__name__}\([\w.]+\.user, type=str\)>", repr(typed))


def test_not_app_key_warning_is_filtered_out_by_default_as_aiohttp_does() -> None:
    import subprocess
    import sys
    # a plain python process, no warning options: nothing shown (the filter aiohttp.web adds)
    done = subprocess.run([sys.executable, "-c", "from lowserver.testing import "
                           "make_mocked_request; r = make_mocked_request('GET', '/'); "
                           "r['k'] = 1; print('ok')"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n"
    assert "NotAppKeyWarning" not in done.stderr


# --- point 6, our extension: request.trailers ---------------------------------------------

async def test_trailers_are_read_only_fields_once_the_body_has_arrived() -> None:
    seen: list = []

    async def reads(request: web.BaseRequest) -> web.Response:
        try:
            request.trailers
        except RuntimeError as error:
            seen.append(str(error))
        body = await request.read()
        trailers = request.trailers
        seen.append((body, list(trailers.items())))
        with pytest.raises(TypeError):
            trailers["X"] = "1"          # read-only
        return web.Response(text="ok")

    async with serve(reads) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n")
            await asyncio.sleep(0.05)     # the handler runs before the body has ended
            writer.write(b"0\r\nChecksum: 42\r\nX-Note: done\r\n\r\n"
                         b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), LONG)
        finally:
            writer.close()
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert seen[0] == "the trailer fields come after the body: read the body first"
    assert seen[1] == (b"hello", [("Checksum", "42"), ("X-Note", "done")])
    assert seen[2:] == [(b"", [])]       # the GET: no body, so no wait and no trailers


async def test_a_sock_site_on_a_unix_socket_is_named_as_aiohttp_names_it(tmp_path) -> None:
    import socket
    import aiohttp.web
    path = str(tmp_path / "s.sock")
    names = []
    for module in (web, aiohttp.web):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            runner = module.ServerRunner(module.Server(ok))
            await runner.setup()
            names.append(module.SockSite(runner, sock).name)
            await runner.cleanup()
        finally:
            sock.close()
            import os
            os.unlink(path)
    assert names == [f"http://unix:{path}:"] * 2
