"""Stage 09: FileResponse and its sans-I/O rooms (ranges, conditions), without sockets.

Responses are sent to an in-memory transport (lowserver.testing), which has no sendfile, so
they take the chunked fallback; the sendfile path is driven by a stand-in for
`loop.sendfile` that writes the file's bytes to the transport (the real one runs over
loopback in test_09_file_response_e2e.py). Files get fixed modification times.
"""
from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path

import pytest

from lowserver import web
from lowserver import file_response as file_response_module
from lowserver.conditions import (NOT_MODIFIED, PRECONDITION_FAILED, etag_matches,
                                  evaluate_preconditions, file_etag, if_range_allows)
from lowserver.fields import ETag, format_http_date
from lowserver.file_response import FileResponse, guess_content_type, open_file
from lowserver.ranges import content_range, unsatisfied_range
from lowserver.testing import MemoryTransport, MockProtocol, make_mocked_request
from lowserver.write_batching import WriteCoalescer

MTIME_NS = 1_700_000_000_123_456_789          # 2023-11-14 22:13:20.123456789 UTC
MTIME = MTIME_NS / 1e9
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:21 GMT"  # rounded up to the second
BEFORE = "Tue, 14 Nov 2023 22:13:19 GMT"
DATA = bytes(range(256)) * 4                   # 1024 bytes


def touch(path: Path, data: bytes, mtime_ns: int = MTIME_NS) -> Path:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return touch(tmp_path / "data.bin", DATA)


ETAG = f"{MTIME_NS:x}-{len(DATA):x}"


async def answer(method: str, path: Path, fields: dict | None = None, *, request=None,
                 **options) -> tuple[bytes, bytes, FileResponse, object]:
    """(head, body, response, request) for `method` answered by FileResponse(path)."""
    if request is None:
        request = make_mocked_request(method, "/file", fields)
    response = FileResponse(path, **options)
    await response.prepare(request)
    await response.write_eof()
    head, _, body = bytes(request.transport.data).partition(b"\r\n\r\n")
    return head + b"\r\n", body, response, request


def field(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    return None


# --- conditions (sans-I/O) ----------------------------------------------------------------

def test_file_etag_is_aiohttps_mtime_ns_hex_dash_size_hex(data_file):
    assert file_etag(os.stat(data_file)) == ETAG == "17979cfe3d85cd15-400"


def test_etag_matches_strong_and_weak():
    ours = ETAG
    assert etag_matches(ours, (ETag(ours),), weak=False)
    assert not etag_matches(ours, (ETag(ours, is_weak=True),), weak=False)
    assert etag_matches(ours, (ETag(ours, is_weak=True),), weak=True)
    assert etag_matches(ours, (ETag("*"),), weak=False)
    assert etag_matches(ours, (ETag("a"), ETag(ours)), weak=False)
    assert not etag_matches(ours, (), weak=True)
    assert not etag_matches(ours, (ETag("a"),), weak=True)


def _verdict(method: str, **fields: str) -> int | None:
    request = make_mocked_request(method, "/", {k.replace("_", "-"): v for k, v in fields.items()})
    return evaluate_preconditions(
        method, ETAG, MTIME, if_match=request.if_match,
        if_unmodified_since=request.if_unmodified_since, if_none_match=request.if_none_match,
        if_modified_since=request.if_modified_since)


@pytest.mark.parametrize("method, fields, verdict", [
    ("GET", {}, None),
    ("GET", {"If_None_Match": f'"{ETAG}"'}, NOT_MODIFIED),
    ("HEAD", {"If_None_Match": f'W/"{ETAG}"'}, NOT_MODIFIED),   # weak comparison
    ("GET", {"If_None_Match": '"x", "y"'}, None),
    ("GET", {"If_None_Match": "*"}, NOT_MODIFIED),
    ("POST", {"If_None_Match": "*"}, PRECONDITION_FAILED),      # §13.1.2: not GET/HEAD
    ("GET", {"If_Modified_Since": LAST_MODIFIED}, NOT_MODIFIED),
    ("GET", {"If_Modified_Since": BEFORE}, None),
    ("POST", {"If_Modified_Since": LAST_MODIFIED}, None),       # §13.1.3: GET/HEAD only
    ("GET", {"If_Modified_Since": "yesterday"}, None),          # invalid date: ignored
    ("GET", {"If_Modified_Since": LAST_MODIFIED, "If_None_Match": '"x"'}, None),
    ("PUT", {"If_Match": f'"{ETAG}"'}, None),
    ("PUT", {"If_Match": f'W/"{ETAG}"'}, PRECONDITION_FAILED),  # strong comparison
    ("PUT", {"If_Match": '"x"'}, PRECONDITION_FAILED),
    ("PUT", {"If_Match": "*"}, None),
    ("PUT", {"If_Unmodified_Since": BEFORE}, PRECONDITION_FAILED),
    ("PUT", {"If_Unmodified_Since": LAST_MODIFIED}, None),
    ("PUT", {"If_Unmodified_Since": BEFORE, "If_Match": "*"}, None),  # §13.1.4: yields
    # §13.2.2: If-Match before If-None-Match
    ("GET", {"If_Match": '"x"', "If_None_Match": f'"{ETAG}"'}, PRECONDITION_FAILED),
    ("GET", {"If_Match": f'"{ETAG}"', "If_None_Match": f'"{ETAG}"'}, NOT_MODIFIED),
    ("GET", {"If_Unmodified_Since": BEFORE, "If_Modified_Since": LAST_MODIFIED},
     PRECONDITION_FAILED),
])
def test_preconditions_in_rfc_9110_order(method, fields, verdict):
    assert _verdict(method, **fields) == verdict


@pytest.mark.parametrize("value, allowed", [
    (None, True), (f'"{ETAG}"', True), (f' "{ETAG}" ', True), (f'W/"{ETAG}"', False),
    ('"other"', False), (LAST_MODIFIED, True), (BEFORE, False), ("garbage", False),
    ('"unterminated', False),
])
def test_if_range(value, allowed):
    assert if_range_allows(value, ETAG, MTIME) is allowed


def test_content_range_fields():
    assert content_range(slice(0, 1), 10) == "bytes 0-0/10"
    assert content_range(slice(5, 10), 10) == "bytes 5-9/10"
    assert unsatisfied_range(10) == "bytes */10"


# --- choosing and opening the file ---------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Path:
    touch(tmp_path / "app.js", b"A" * 300)
    touch(tmp_path / "app.js.gz", gzip.compress(b"A" * 300, mtime=0))
    touch(tmp_path / "app.js.br", b"brotli-bytes")
    return tmp_path


@pytest.mark.parametrize("accept, coding", [
    ("", None), ("gzip", "gzip"), ("br", "br"), ("gzip, br", "br"), ("br;q=0.1, gzip", "br"),
    ("br;q=0, gzip", "gzip"), ("GZIP", "gzip"), ("x-gzip", "gzip"), ("gzip;q=0", None),
    ("*", None), ("deflate", None), ("identity", None),
])
def test_pre_compressed_sibling_by_accept_encoding(site, accept, coding):
    file, st, chosen = open_file(site / "app.js", accept)
    with file:
        assert chosen == coding
        expected = {None: "app.js", "gzip": "app.js.gz", "br": "app.js.br"}[coding]
        assert st.st_size == (site / expected).stat().st_size


def test_a_sibling_that_is_a_symlink_or_not_a_file_is_skipped(tmp_path):
    touch(tmp_path / "a.css", b"plain")
    touch(tmp_path / "elsewhere", b"secret")
    (tmp_path / "a.css.br").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "a.css.gz").mkdir()
    file, st, coding = open_file(tmp_path / "a.css", "br, gzip")
    with file:
        assert coding is None and file.read() == b"plain"


def test_a_symlinked_file_itself_is_followed(tmp_path):
    touch(tmp_path / "real.txt", b"real")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    file, _, _ = open_file(tmp_path / "link.txt")
    with file:
        assert file.read() == b"real"


def test_not_regular_files_and_missing_ones(tmp_path):
    assert open_file(tmp_path)[0] is None
    os.mkfifo(tmp_path / "fifo")
    assert open_file(tmp_path / "fifo")[0] is None      # and the open did not block
    with pytest.raises(FileNotFoundError):
        open_file(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        open_file(touch(tmp_path / "f", b"") / "below")


@pytest.mark.parametrize("name, content_type", [
    ("a.txt", "text/plain"), ("a.html", "text/html"), ("a.css", "text/css"),
    ("a.json", "application/json"), ("a.png", "image/png"), ("a.tar.gz", "application/gzip"),
    ("a.gz", "application/gzip"), ("a.br", "application/x-brotli"), ("a.xz", "application/x-xz"),
    ("a.bz2", "application/x-bzip2"), ("noext", "application/octet-stream"),
    ("a.unknownext", "application/octet-stream"),
])
def test_content_type_as_aiohttp_guesses_it(name, content_type):
    assert guess_content_type(Path(name)) == content_type


# --- FileResponse, in memory (the chunked fallback) ----------------------------------------

async def test_a_plain_get(data_file):
    head, body, response, _ = await answer("GET", data_file)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == DATA
    assert field(head, "Content-Length") == "1024"
    assert field(head, "Content-Type") == "application/octet-stream"
    assert field(head, "ETag") == f'"{ETAG}"'
    assert field(head, "Last-Modified") == LAST_MODIFIED
    assert field(head, "Accept-Ranges") == "bytes"
    assert field(head, "Vary") is None and field(head, "Content-Encoding") is None
    assert response.keep_alive and response.body_length > len(DATA)


async def test_aiohttps_signature_and_a_given_content_type_kept(data_file):
    head, body, response, _ = await answer(
        "GET", data_file, chunk_size=7, status=200, reason="Fine",
        headers={"Content-Type": "text/plain; charset=utf-8", "X-Mine": "1"})
    assert head.startswith(b"HTTP/1.1 200 Fine\r\n") and body == DATA
    assert field(head, "Content-Type") == "text/plain; charset=utf-8"
    assert field(head, "X-Mine") == "1"
    assert web.FileResponse is FileResponse
    import lowserver
    assert lowserver.FileResponse is FileResponse


async def test_text_gets_no_charset_as_in_aiohttp(tmp_path):
    head, _, _, _ = await answer("GET", touch(tmp_path / "a.txt", b"hi"))
    assert field(head, "Content-Type") == "text/plain"


async def test_the_pre_compressed_sibling_with_vary_and_the_type_of_the_original(site):
    head, body, _, _ = await answer("GET", site / "app.js", {"Accept-Encoding": "gzip"})
    assert gzip.decompress(body) == b"A" * 300
    assert field(head, "Content-Encoding") == "gzip"
    assert field(head, "Vary") == "Accept-Encoding"
    assert field(head, "Content-Type") in ("application/javascript", "text/javascript")
    assert field(head, "Content-Length") == str(len(body))
    gz = os.stat(site / "app.js.gz")
    assert field(head, "ETag") == f'"{file_etag(gz)}"'     # the sibling's validators


async def test_enable_compression_never_compresses_a_sibling_twice(site):
    request = make_mocked_request("GET", "/", {"Accept-Encoding": "gzip"})
    response = FileResponse(site / "app.js")
    response.enable_compression()
    await response.prepare(request)
    await response.write_eof()
    _, _, body = bytes(request.transport.data).partition(b"\r\n\r\n")
    assert gzip.decompress(body) == b"A" * 300


async def test_enable_compression_compresses_the_plain_file_on_the_fly(tmp_path):
    path = touch(tmp_path / "big.txt", b"all work and no play " * 1000)
    request = make_mocked_request("GET", "/", {"Accept-Encoding": "gzip"})
    response = FileResponse(path, chunk_size=4096)
    response.enable_compression()
    await response.prepare(request)
    await response.write_eof()
    head, _, body = bytes(request.transport.data).partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and b"Transfer-Encoding: chunked" in head
    assert response.keep_alive


async def test_304_has_validators_no_length_and_keeps_the_connection(data_file):
    head, body, response, _ = await answer("GET", data_file, {"If-None-Match": f'"{ETAG}"'})
    assert head.startswith(b"HTTP/1.1 304 Not Modified\r\n") and body == b""
    assert field(head, "ETag") == f'"{ETAG}"' and field(head, "Last-Modified") == LAST_MODIFIED
    assert field(head, "Content-Length") is None and field(head, "Transfer-Encoding") is None
    assert field(head, "Content-Type") is None
    assert response.keep_alive


async def test_304_from_if_modified_since_and_for_a_sibling_its_vary(site):
    last = format_http_date(MTIME + 1)
    head, _, _, _ = await answer("GET", site / "app.js", {"If-Modified-Since": last,
                                                          "Accept-Encoding": "br"})
    assert head.startswith(b"HTTP/1.1 304 ") and field(head, "Vary") == "Accept-Encoding"


@pytest.mark.parametrize("fields", [{"If-Match": '"other"'}, {"If-Unmodified-Since": BEFORE},
                                    {"If-Match": f'W/"{ETAG}"'}])
async def test_412(data_file, fields):
    head, body, response, _ = await answer("PUT", data_file, fields)
    assert head.startswith(b"HTTP/1.1 412 Precondition Failed\r\n") and body == b""
    assert field(head, "Content-Length") == "0" and response.keep_alive


@pytest.mark.parametrize("value, start, stop", [
    ("bytes=0-0", 0, 1), ("bytes=0-99", 0, 100), ("bytes=1000-", 1000, 1024),
    ("bytes=-24", 1000, 1024), ("bytes=-5000", 0, 1024), ("bytes=10-5000", 10, 1024),
    ("bytes=0-", 0, 1024),
])
async def test_206(data_file, value, start, stop):
    head, body, response, _ = await answer("GET", data_file, {"Range": value}, chunk_size=100)
    assert head.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    assert body == DATA[start:stop]
    assert field(head, "Content-Range") == f"bytes {start}-{stop - 1}/1024"
    assert field(head, "Content-Length") == str(stop - start)
    assert field(head, "ETag") == f'"{ETAG}"' and response.keep_alive


@pytest.mark.parametrize("value", ["bytes=1024-", "bytes=5000-6000", "bytes=-0", "bytes=5-1",
                                   "bytes=0-1,4-5", "bytes=abc", "bytes="])
async def test_416_says_the_size(data_file, value):
    head, body, response, _ = await answer("GET", data_file, {"Range": value})
    assert head.startswith(b"HTTP/1.1 416 ") and body == b""
    assert field(head, "Content-Range") == "bytes */1024"
    assert field(head, "Content-Length") == "0" and response.keep_alive


async def test_any_range_of_an_empty_file_is_416_and_the_file_itself_is_empty(tmp_path):
    path = touch(tmp_path / "empty", b"")
    head, _, _, _ = await answer("GET", path, {"Range": "bytes=0-"})
    assert head.startswith(b"HTTP/1.1 416 ") and field(head, "Content-Range") == "bytes */0"
    head, body, response, _ = await answer("GET", path)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"" and response.keep_alive
    assert field(head, "Content-Length") == "0"


@pytest.mark.parametrize("fields, ranged", [
    ({"Range": "items=0-5"}, False),                              # another unit: ignored
    ({"Range": "bytes=0-9", "If-Range": f'"{ETAG}"'}, True),
    ({"Range": "bytes=0-9", "If-Range": f'W/"{ETAG}"'}, False),   # strong comparison
    ({"Range": "bytes=0-9", "If-Range": '"older"'}, False),
    ({"Range": "bytes=0-9", "If-Range": LAST_MODIFIED}, True),
    ({"Range": "bytes=0-9", "If-Range": BEFORE}, False),
    ({"Range": "bytes=0-9", "If-Range": "garbage"}, False),
    ({"Range": "bytes=5000-", "If-Range": '"older"'}, False),     # no 416 either
])
async def test_if_range_and_ignored_ranges(data_file, fields, ranged):
    head, body, _, _ = await answer("GET", data_file, fields)
    if ranged:
        assert head.startswith(b"HTTP/1.1 206 ") and body == DATA[:10]
    else:
        assert head.startswith(b"HTTP/1.1 200 ") and body == DATA
        assert field(head, "Content-Range") is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_a_range_is_for_get_only(data_file, method):
    head, body, _, _ = await answer(method, data_file, {"Range": "bytes=0-9"})
    assert head.startswith(b"HTTP/1.1 200 ") and body == DATA


async def test_head_has_the_length_and_no_body_and_ignores_range(data_file):
    for fields in ({}, {"Range": "bytes=0-9"}):
        head, body, response, request = await answer("HEAD", data_file, fields)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b""
        assert field(head, "Content-Length") == "1024" and response.keep_alive
        assert not request.writer.must_close


async def test_a_custom_status_serves_the_whole_file_without_conditions(data_file):
    head, body, _, _ = await answer("GET", data_file, {"Range": "bytes=0-9",
                                                       "If-None-Match": "*"}, status=404)
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n") and body == DATA


async def test_directory_403_missing_404_forbidden_403(tmp_path, monkeypatch):
    head, _, response, _ = await answer("GET", tmp_path)
    assert response.status == 403 and field(head, "Content-Length") == "0"
    head, _, response, _ = await answer("GET", tmp_path / "missing.txt")
    assert response.status == 404 and response.keep_alive
    head, _, response, _ = await answer("GET", touch(tmp_path / "x", b"") / "below")
    assert response.status == 404
    secret = touch(tmp_path / "secret", b"s")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(file_response_module, "open_file", denied)
    head, _, response, _ = await answer("GET", secret)
    assert response.status == 403


async def test_prepared_by_the_handler_then_by_the_server(data_file):
    request = make_mocked_request("GET", "/")
    response = FileResponse(data_file)
    await response.prepare(request)
    assert await response.prepare(request) is None        # sent: nothing more to do
    await response.write_eof()
    assert bytes(request.transport.data).endswith(DATA)


class _TransportDoing(MemoryTransport):
    """A transport that does something to the file when the n-th write arrives."""

    def __init__(self, at: int, action) -> None:
        super().__init__()
        self.at, self.action = at, action

    def write(self, data) -> None:
        super().write(data)
        if len(self.writes) == self.at:
            self.action()


async def test_a_file_that_shrinks_while_sent_closes_the_connection(data_file):
    transport = _TransportDoing(2, lambda: os.truncate(data_file, 150))
    request = make_mocked_request("GET", "/", transport=transport)
    head, body, response, _ = await answer("GET", data_file, request=request, chunk_size=100)
    assert field(head, "Content-Length") == "1024" and body == DATA[:150]
    assert not response.keep_alive
    assert request.writer.incomplete and request.writer.must_close


async def test_a_file_that_grows_while_sent_sends_what_was_announced(data_file):
    def grow():
        with open(data_file, "ab") as f:
            f.write(b"more" * 100)
    request = make_mocked_request("GET", "/", transport=_TransportDoing(2, grow))
    head, body, response, _ = await answer("GET", data_file, request=request, chunk_size=100)
    assert body == DATA and response.keep_alive and not request.writer.must_close


async def test_a_file_removed_while_sent_is_sent_whole(data_file):
    request = make_mocked_request("GET", "/", transport=_TransportDoing(2, data_file.unlink))
    head, body, response, _ = await answer("GET", data_file, request=request, chunk_size=100)
    assert body == DATA and response.keep_alive and not data_file.exists()


async def test_a_client_gone_mid_body_ends_the_response_quietly(data_file):
    transport = _TransportDoing(3, lambda: setattr(transport, "closed", True))
    request = make_mocked_request("GET", "/", transport=transport)
    response = FileResponse(data_file, chunk_size=100)
    await response.prepare(request)                     # no ConnectionError out of it
    await response.write_eof()
    assert not response.keep_alive


# --- the sendfile path, with a stand-in for loop.sendfile ---------------------------------

class _Sendfile:
    """Stands in for loop.sendfile: writes the file's bytes (at most `limit`) to the
    transport, as the kernel would, and records what it was given."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.limit = limit

    async def __call__(self, transport, file, offset=0, count=None, *, fallback=True):
        self.calls.append((transport, offset, count, fallback))
        file.seek(offset)
        data = file.read(count if self.limit is None else min(count, self.limit))
        transport.write(data)
        return len(data)


async def test_sendfile_sends_and_the_writer_counts(data_file, monkeypatch):
    sendfile = _Sendfile()
    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", sendfile)
    head, body, response, request = await answer("GET", data_file, {"Range": "bytes=24-"})
    assert body == DATA[24:] and sendfile.calls[0][1:] == (24, 1000, False)
    assert sendfile.calls[0][0] is request.transport
    assert response.keep_alive and not request.writer.must_close
    assert request.writer.body_size == 1000


async def test_sendfile_short_closes_the_connection(data_file, monkeypatch):
    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", _Sendfile(limit=100))
    head, body, response, request = await answer("GET", data_file)
    assert field(head, "Content-Length") == "1024" and body == DATA[:100]
    assert not response.keep_alive and request.writer.incomplete and request.writer.must_close


async def test_sendfile_goes_behind_the_servers_write_batch(data_file, monkeypatch):
    """Pipelined responses are batched (stage 06's WriteCoalescer): what is queued there
    (an earlier response, our head) goes out before the kernel sends the file."""
    sendfile = _Sendfile()
    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", sendfile)
    loop = asyncio.get_running_loop()
    memory = MemoryTransport()
    protocol = MockProtocol(loop, memory)
    batch = WriteCoalescer(memory, loop)
    batch.write(b"EARLIER RESPONSE|")
    request = make_mocked_request("GET", "/", protocol=protocol, transport=batch)
    response = FileResponse(data_file)
    await response.prepare(request)
    await response.write_eof()
    assert sendfile.calls[0][0] is memory
    wire = bytes(memory.data)
    assert wire.startswith(b"EARLIER RESPONSE|HTTP/1.1 200 OK\r\n") and wire.endswith(DATA)


async def test_without_sendfile_the_chunks_go_through_the_writer(data_file, monkeypatch):
    sendfile = _Sendfile()
    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", sendfile)
    monkeypatch.setattr(file_response_module, "NOSENDFILE", True)
    head, body, response, request = await answer("GET", data_file, chunk_size=300)
    assert body == DATA and not sendfile.calls and response.keep_alive
    assert [len(w) for w in request.transport.writes[1:]] == [300, 300, 300, 124]


async def test_a_transport_sendfile_refuses_falls_back(data_file, monkeypatch):
    async def refuses(transport, file, offset=0, count=None, *, fallback=True):
        raise asyncio.SendfileNotAvailableError("no sendfile here")
    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", refuses)
    head, body, response, _ = await answer("GET", data_file)
    assert body == DATA and response.keep_alive
