"""Stage 04: StreamReader, StreamWriter, BaseProtocol and content codings (negotiation, compressors).

Everything runs over an in-memory fake transport: no sockets. Flow-control tests assert the
stream's own `peak_buffered`, never process memory or timings.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import zlib

import pytest
from multidict import CIMultiDict

from lowserver.body_buffer import BodyBuffer
from lowserver.body_writer import (
    ContentLengthExceededError,
    StreamWriter,
    frame_chunk,
    serialize_head,
)
from lowserver.codings import choose_content_coding, compressor, parse_accept_encoding
from lowserver.flow_control import BaseProtocol
from lowserver.streams import (
    EMPTY_PAYLOAD,
    EmptyStreamReader,
    EofStream,
    LineTooLongError,
    StreamReader,
)


# --- an in-memory connection --------------------------------------------------------------

class FakeTransport(asyncio.Transport):
    """Records writes; models a send buffer with water marks; obeys pause/resume_reading."""

    def __init__(self, protocol, high_water=64 * 1024, low_water=16 * 1024):
        super().__init__()
        self.protocol = protocol
        self.high_water, self.low_water = high_water, low_water
        self.writes: list[bytes] = []
        self.unsent = 0
        self.reading = True
        self.pauses = self.resumes = 0
        self.closed = False
        self.writing_paused = False

    def write(self, data):
        self.writes.append(bytes(data))
        self.unsent += len(data)
        if not self.writing_paused and self.unsent > self.high_water:
            self.writing_paused = True
            self.protocol.pause_writing()

    def flush(self):
        self.unsent = 0
        if self.writing_paused:
            self.writing_paused = False
            self.protocol.resume_writing()

    def sent(self) -> bytes:
        return b"".join(self.writes)

    def pause_reading(self):
        self.reading = False
        self.pauses += 1

    def resume_reading(self):
        self.reading = True
        self.resumes += 1

    def is_reading(self):
        return self.reading

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True
        self.protocol.connection_lost(None)


class NoFlowControlTransport(FakeTransport):
    def pause_reading(self):
        raise NotImplementedError

    def resume_reading(self):
        raise NotImplementedError


def connect(transport_class=FakeTransport, **kwargs):
    protocol = BaseProtocol(asyncio.get_running_loop())
    transport = transport_class(protocol, **kwargs)
    protocol.connection_made(transport)
    return protocol, transport


def reader_with(*pieces, eof=True, limit=2**16):
    protocol, transport = connect()
    reader = StreamReader(protocol, limit)
    for piece in pieces:
        reader.feed_data(piece)
    if eof:
        reader.feed_eof()
    return reader


async def later(reader, *pieces, eof=True):
    """Feed pieces one loop turn apart, as the network would."""
    for piece in pieces:
        await asyncio.sleep(0)
        reader.feed_data(piece)
    await asyncio.sleep(0)
    if eof:
        reader.feed_eof()


# --- StreamReader: reading ------------------------------------------------------------------

async def test_read_n_returns_what_is_there_up_to_n():
    reader = reader_with(b"abc", b"defg")
    assert await reader.read(2) == b"ab"
    assert await reader.read(5) == b"cdefg"      # across pieces
    assert await reader.read(5) == b""
    assert reader.at_eof()


async def test_read_all_waits_for_eof():
    reader = reader_with(eof=False)
    feeder = asyncio.ensure_future(later(reader, b"one ", b"two ", b"three"))
    assert await reader.read() == b"one two three"
    await feeder


async def test_read_zero_and_waiting_for_first_byte():
    reader = reader_with(eof=False)
    assert await reader.read(0) == b""
    feeder = asyncio.ensure_future(later(reader, b"xy", eof=False))
    assert await reader.read(10) == b"xy"
    await feeder


async def test_readany_returns_everything_buffered_then_empty_at_eof():
    reader = reader_with(b"a", b"b" * 2000, b"c", eof=False)
    assert await reader.readany() == b"a" + b"b" * 2000 + b"c"
    reader.feed_eof()
    assert await reader.readany() == b""
    assert await reader.readany() == b""


async def test_readexactly():
    reader = reader_with(b"ab", b"cdef", b"g")
    assert await reader.readexactly(0) == b""
    assert await reader.readexactly(5) == b"abcde"
    with pytest.raises(asyncio.IncompleteReadError) as info:
        await reader.readexactly(4)
    assert info.value.partial == b"fg" and info.value.expected == 4
    with pytest.raises(ValueError):
        await reader.readexactly(-1)


async def test_readexactly_waits_for_the_rest():
    reader = reader_with(b"12", eof=False)
    feeder = asyncio.ensure_future(later(reader, b"34", b"56"))
    assert await reader.readexactly(5) == b"12345"
    await feeder
    assert await reader.read() == b"6"


async def test_readline_and_lines_across_pieces():
    reader = reader_with(b"first li", b"ne\nsec", b"ond\n", b"no newline")
    assert await reader.readline() == b"first line\n"
    assert await reader.readline() == b"second\n"
    assert await reader.readline() == b"no newline"    # the rest at EOF
    assert await reader.readline() == b""


async def test_readuntil_separator_straddling_pieces():
    reader = reader_with(b"a\r", b"\nb\r", b"\r\n", b"tail")
    assert await reader.readuntil(b"\r\n") == b"a\r\n"
    assert await reader.readuntil(b"\r\n") == b"b\r\r\n"
    assert await reader.readuntil(b"\r\n") == b"tail"
    with pytest.raises(ValueError, match="Separator"):
        await reader.readuntil(b"")


async def test_readuntil_waits_and_searches_only_new_data():
    reader = reader_with(eof=False)
    feeder = asyncio.ensure_future(later(reader, b"ab", b"c|", b"|d", b"ef||"))
    assert await reader.readuntil(b"||") == b"abc||"
    assert await reader.readuntil(b"||") == b"def||"
    await feeder


async def test_readline_over_limit_raises_and_keeps_the_bytes():
    reader = reader_with(b"x" * 30, eof=False, limit=8)      # high water 16
    with pytest.raises(LineTooLongError, match="line too long"):
        await reader.readline()
    assert isinstance(LineTooLongError("x"), ValueError)
    assert reader.read_nowait() == b"x" * 30
    # a line that fits exactly (separator included) is accepted
    reader = reader_with(b"y" * 9 + b"\n", limit=5)           # max 10
    assert await reader.readline() == b"y" * 9 + b"\n"
    reader = reader_with(b"y" * 10 + b"\n", limit=5)
    with pytest.raises(LineTooLongError):
        await reader.readline()
    reader = reader_with(b"abc\n", limit=64)
    with pytest.raises(LineTooLongError):
        await reader.readline(max_line_length=3)


async def test_readline_over_limit_while_waiting():
    reader = reader_with(eof=False, limit=4)
    feeder = asyncio.ensure_future(later(reader, b"aaaa", b"bbbb", eof=False))
    with pytest.raises(LineTooLongError):
        await reader.readline()
    await feeder


async def test_readline_longer_than_high_water_does_not_deadlock():
    protocol, transport = connect()
    reader = StreamReader(protocol, limit=4)          # pauses above 8 bytes

    async def network():
        for _ in range(20):
            while not transport.reading:
                await asyncio.sleep(0)
            reader.feed_data(b"12345")
            await asyncio.sleep(0)
        reader.feed_data(b"\n")
        reader.feed_eof()

    feeder = asyncio.ensure_future(network())
    line = await asyncio.wait_for(reader.readline(max_line_length=200), 10)
    assert line == b"12345" * 20 + b"\n"
    await feeder


async def test_readline_is_cancellation_safe():
    reader = reader_with(b"partial ", eof=False)
    task = asyncio.ensure_future(reader.readline())
    await asyncio.sleep(0)
    reader.feed_data(b"line")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reader.feed_data(b"\n")
    assert await reader.readline() == b"partial line\n"


async def test_readchunk_without_http_chunks():
    reader = reader_with(b"x" * 2000, b"y" * 2000)
    assert await reader.readchunk() == (b"x" * 2000, False)
    assert await reader.readchunk() == (b"y" * 2000, False)
    assert await reader.readchunk() == (b"", False)


async def test_readchunk_with_http_chunk_boundaries():
    protocol, transport = connect()
    reader = StreamReader(protocol)
    reader.begin_http_chunk_receiving()
    reader.feed_data(b"hello")
    reader.end_http_chunk_receiving()
    reader.end_http_chunk_receiving()            # an empty chunk adds no boundary
    reader.feed_data(b"big ")
    reader.feed_data(b"world")
    reader.end_http_chunk_receiving()
    reader.feed_eof()
    assert await reader.readchunk() == (b"hello", True)
    assert await reader.readchunk() == (b"big world", True)
    assert await reader.readchunk() == (b"", False)
    with pytest.raises(RuntimeError):
        StreamReader(protocol).end_http_chunk_receiving()
    late = StreamReader(protocol)
    late.feed_data(b"x")
    with pytest.raises(RuntimeError):
        late.begin_http_chunk_receiving()


async def test_readchunk_waits_for_a_chunk_end():
    protocol, transport = connect()
    reader = StreamReader(protocol)
    reader.begin_http_chunk_receiving()

    async def network():
        await asyncio.sleep(0)
        reader.feed_data(b"abc")
        reader.end_http_chunk_receiving()
        await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(network())
    assert [c async for c in reader.iter_chunks()] == [(b"abc", True)]
    await feeder


async def test_many_tiny_http_chunks_pause_reading():
    protocol, transport = connect()
    reader = StreamReader(protocol, limit=64)          # at most max(4, 64 // 16) = 4 splits
    reader.begin_http_chunk_receiving()
    for _ in range(5):
        reader.feed_data(b"x")
        reader.end_http_chunk_receiving()
    assert not transport.reading
    while not transport.reading:
        data, end = await reader.readchunk()
        assert (data, end) == (b"x", True)
    assert transport.resumes == 1


async def test_iterators():
    reader = reader_with(b"line 1\nline", b" 2\nlast")
    assert [line async for line in reader] == [b"line 1\n", b"line 2\n", b"last"]
    reader = reader_with(b"abcdefg", b"hij")
    assert [c async for c in reader.iter_chunked(3)] == [b"abc", b"def", b"ghi", b"j"]
    reader = reader_with(b"x" * 2000, b"y" * 2000)
    assert b"".join([c async for c in reader.iter_any()]) == b"x" * 2000 + b"y" * 2000
    with pytest.raises(ValueError):
        reader.iter_chunked(0)


async def test_iterator_stops_on_eofstream():
    from lowserver.streams import AsyncStreamIterator

    async def source():
        raise EofStream

    assert [x async for x in AsyncStreamIterator(source)] == []


async def test_read_nowait():
    reader = reader_with(b"abc", b"def", eof=False)
    assert reader.read_nowait(2) == b"ab"
    assert reader.read_nowait() == b"cdef"
    assert reader.read_nowait() == b""
    task = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="waiting"):
        reader.read_nowait()
    reader.feed_eof()
    assert await task == b""


async def test_two_concurrent_readers_are_refused():
    reader = reader_with(eof=False)
    first = asyncio.ensure_future(reader.read(1))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await reader.readany()
    reader.feed_data(b"z")
    assert await first == b"z"


async def test_eof_states_and_total_bytes():
    reader = reader_with(b"abc", eof=False)
    assert not reader.is_eof() and not reader.at_eof()
    reader.feed_eof()
    assert reader.is_eof() and not reader.at_eof()
    await reader.read()
    assert reader.at_eof() and reader.total_bytes == 3
    with pytest.raises(RuntimeError, match="after feed_eof"):
        reader.feed_data(b"more")
    assert "eof" in repr(reader)


async def test_set_exception_wakes_the_waiting_reader():
    reader = reader_with(eof=False)
    task = asyncio.ensure_future(reader.readexactly(10))
    await asyncio.sleep(0)
    reader.feed_data(b"part")
    await asyncio.sleep(0)
    cause = OSError("socket")
    reader.set_exception(ConnectionResetError("client went away"), cause)
    with pytest.raises(ConnectionResetError, match="went away") as info:
        await task
    assert info.value.__cause__ is cause
    assert isinstance(reader.exception(), ConnectionResetError)
    for method in ("read", "readany", "readline", "readchunk", "wait_eof"):
        with pytest.raises(ConnectionResetError):
            await getattr(reader, method)()
    with pytest.raises(ConnectionResetError):
        reader.read_nowait()


async def test_set_exception_wakes_wait_eof_and_drops_eof_callbacks():
    reader = reader_with(eof=False)
    called = []
    reader.on_eof(lambda: called.append(1))
    task = asyncio.ensure_future(reader.wait_eof())
    await asyncio.sleep(0)
    reader.set_exception(ValueError("bad body"))
    with pytest.raises(ValueError):
        await task
    reader.feed_eof()
    assert called == []


async def test_on_eof_and_wait_eof(caplog):
    reader = reader_with(eof=False)
    called = []
    reader.on_eof(lambda: called.append("a"))
    reader.on_eof(lambda: 1 / 0)                  # logged, not raised
    reader.on_eof(lambda: called.append("b"))
    waiter = asyncio.ensure_future(reader.wait_eof())
    await asyncio.sleep(0)
    assert not waiter.done()
    with caplog.at_level(logging.ERROR, logger="lowserver.streams"):
        reader.feed_eof()
    await waiter
    assert called == ["a", "b"] and "eof callback" in caplog.text
    reader.on_eof(lambda: called.append("late"))  # already at EOF: called at once
    assert called == ["a", "b", "late"]
    await reader.wait_eof()


async def test_waiting_on_a_lost_connection_raises():
    protocol, transport = connect()
    reader = StreamReader(protocol)
    transport.close()
    with pytest.raises(ConnectionResetError):
        await reader.read()


async def test_tiny_pieces_are_merged():
    reader = reader_with(*[bytes([65 + i % 26]) for i in range(10_000)])
    assert len(reader._buffer) <= 10_000 // 4096 + 2
    data = await reader.read()
    assert data == bytes(65 + i % 26 for i in range(10_000))


async def test_limit_must_be_positive():
    protocol, transport = connect()
    with pytest.raises(ValueError):
        StreamReader(protocol, 0)


# --- StreamReader: flow control --------------------------------------------------------------

async def test_pause_above_high_water_resume_below_low_water():
    protocol, transport = connect()
    reader = StreamReader(protocol, limit=10)     # pause above 20, resume below 10
    assert reader.get_read_buffer_limits() == (10, 20)
    reader.feed_data(b"x" * 20)
    assert transport.reading                       # 20 is not above 20
    reader.feed_data(b"x")
    assert not transport.reading and transport.pauses == 1 and protocol.reading_paused
    reader.feed_data(b"x" * 5)                     # already paused: no second pause
    assert transport.pauses == 1
    await reader.read(16)                          # 10 left: not below 10
    assert not transport.reading
    await reader.read(1)                           # 9 left: resume
    assert transport.reading and transport.resumes == 1
    await reader.read(100)
    assert transport.resumes == 1


async def test_feed_eof_releases_the_pause():
    protocol, transport = connect()
    reader = StreamReader(protocol, limit=2)
    reader.feed_data(b"12345")
    assert not transport.reading
    reader.feed_eof()
    assert transport.reading                       # the next request must be read
    assert await reader.read() == b"12345"
    assert transport.resumes == 1


@pytest.mark.slow
async def test_100_mb_upload_read_in_chunks_stays_bounded():
    protocol, transport = connect()
    limit = 64 * 1024
    reader = StreamReader(protocol, limit)
    total = 100 * 1024 * 1024
    piece = b"u" * (64 * 1024)

    async def network():
        sent = 0
        while sent < total:
            if transport.reading:                  # a paused transport delivers nothing
                reader.feed_data(piece)
                sent += len(piece)
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(network())
    received = 0
    turn = 0
    async for chunk in reader.iter_chunked(16 * 1024):
        received += len(chunk)
        turn += 1
        if turn % 2:
            await asyncio.sleep(0)                 # a handler slower than the network
    await feeder
    assert received == total
    assert reader.total_bytes == total
    assert reader.peak_buffered <= 3 * limit       # high water (2 * limit) + one piece
    assert transport.pauses > 10 and transport.resumes == transport.pauses


# --- 100-continue ------------------------------------------------------------------------------

READ_CALLS = {
    "read": lambda r: r.read(),
    "read_n": lambda r: r.read(3),
    "readany": lambda r: r.readany(),
    "readexactly": lambda r: r.readexactly(3),
    "readline": lambda r: r.readline(),
    "readuntil": lambda r: r.readuntil(b"x"),
    "readchunk": lambda r: r.readchunk(),
    "iter_any": lambda r: r.iter_any().__anext__(),
    "iter_chunked": lambda r: r.iter_chunked(2).__anext__(),
    "iter_chunks": lambda r: r.iter_chunks().__anext__(),
    "lines": lambda r: r.__aiter__().__anext__(),
    "wait_eof": lambda r: r.wait_eof(),
}


@pytest.mark.parametrize("method", sorted(READ_CALLS))
async def test_first_read_hook_fires_before_waiting(method):
    protocol, transport = connect()
    events = []
    reader = StreamReader(protocol, on_first_read=lambda: events.append("100"))
    task = asyncio.ensure_future(READ_CALLS[method](reader))
    await asyncio.sleep(0)
    assert events == ["100"]                       # before any data: the client waits for it
    reader.feed_data(b"abcx\n")
    reader.feed_eof()
    await task
    await reader.read()
    assert events == ["100"]                       # exactly once


async def test_first_read_hook_read_nowait():
    protocol, transport = connect()
    events = []
    reader = StreamReader(protocol, on_first_read=lambda: events.append("100"))
    assert reader.read_nowait() == b""
    assert events == ["100"]


async def test_first_read_hook_not_fired_without_a_read():
    protocol, transport = connect()
    events = []
    reader = StreamReader(protocol, on_first_read=lambda: events.append("100"))
    reader.at_eof(), reader.is_eof(), reader.exception()
    reader.feed_eof()
    assert events == []


async def test_first_read_hook_omitted_once_content_arrived():
    # RFC 9110 §10.1.1: a server MAY omit 100 once it has some of the content
    protocol, transport = connect()
    events = []
    reader = StreamReader(protocol, on_first_read=lambda: events.append("100"))
    reader.feed_data(b"early")
    assert await reader.read(2) == b"ea"
    reader = StreamReader(protocol, on_first_read=lambda: events.append("100"))
    reader.feed_eof()
    assert await reader.read() == b""
    assert events == []


async def test_100_continue_goes_before_the_final_head():
    protocol, transport = connect()
    writer = StreamWriter(protocol, asyncio.get_running_loop())
    reader = StreamReader(
        protocol, on_first_read=lambda: writer.write_interim("HTTP/1.1 100 Continue"))
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "4"})  # buffered
    task = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    reader.feed_data(b"body")
    reader.feed_eof()
    assert await task == b"body"
    await writer.write_eof(b"done")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n",
                                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"]


async def test_write_interim_refused_after_the_final_head():
    protocol, transport = connect()
    writer = StreamWriter(protocol, None)
    await writer.write_headers("HTTP/1.1 200 OK", {})
    writer.send_headers()
    assert writer.write_interim("HTTP/1.1 100 Continue") is False
    assert writer.write_interim("HTTP/1.1 103 Early Hints") is False
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    protocol, transport = connect()
    writer = StreamWriter(protocol, None)
    assert writer.write_interim("HTTP/1.1 103 Early Hints", {"Link": "</a.css>; rel=preload"})
    assert transport.writes == [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"]


# --- EMPTY_PAYLOAD -------------------------------------------------------------------------------

async def test_empty_payload():
    assert isinstance(EMPTY_PAYLOAD, EmptyStreamReader)
    assert isinstance(EMPTY_PAYLOAD, StreamReader)
    assert EMPTY_PAYLOAD.at_eof() and EMPTY_PAYLOAD.is_eof()
    assert EMPTY_PAYLOAD.exception() is None and EMPTY_PAYLOAD.total_bytes == 0
    for method in ("read", "readany", "readline", "readuntil"):
        assert await getattr(EMPTY_PAYLOAD, method)() == b""
    assert await EMPTY_PAYLOAD.read(10) == b""
    assert await EMPTY_PAYLOAD.readchunk() == (b"", False)
    assert await EMPTY_PAYLOAD.readexactly(0) == b""
    with pytest.raises(asyncio.IncompleteReadError):
        await EMPTY_PAYLOAD.readexactly(1)
    assert EMPTY_PAYLOAD.read_nowait() == b""
    await EMPTY_PAYLOAD.wait_eof()
    assert [x async for x in EMPTY_PAYLOAD] == []
    assert [x async for x in EMPTY_PAYLOAD.iter_chunked(4)] == []
    assert [x async for x in EMPTY_PAYLOAD.iter_any()] == []
    assert [x async for x in EMPTY_PAYLOAD.iter_chunks()] == []
    called = []
    EMPTY_PAYLOAD.on_eof(lambda: called.append(1))
    assert called == [1]
    with pytest.raises(RuntimeError):
        EMPTY_PAYLOAD.feed_data(b"x")
    EMPTY_PAYLOAD.feed_eof()
    EMPTY_PAYLOAD.set_exception(ValueError())
    assert EMPTY_PAYLOAD.exception() is None
    assert repr(EMPTY_PAYLOAD) == "<EmptyStreamReader>"


# --- BaseProtocol --------------------------------------------------------------------------------

async def test_drain_helper_waits_while_writing_is_paused():
    protocol, transport = connect()
    await protocol._drain_helper()                 # not paused: returns at once
    protocol.pause_writing()
    assert protocol.writing_paused
    task = asyncio.ensure_future(protocol._drain_helper())
    await asyncio.sleep(0)
    assert not task.done()
    protocol.resume_writing()
    await task


async def test_drain_helper_raises_when_the_connection_is_lost():
    protocol, transport = connect()
    protocol.pause_writing()
    waiters = [asyncio.ensure_future(protocol._drain_helper()) for _ in range(2)]
    await asyncio.sleep(0)
    protocol.connection_lost(OSError("reset by peer"))
    for waiter in waiters:
        with pytest.raises(ConnectionResetError):
            await waiter
    with pytest.raises(ConnectionResetError):
        await protocol._drain_helper()
    assert not protocol.connected


async def test_cancelling_one_drain_waiter_leaves_the_others_waiting():
    protocol, transport = connect()
    protocol.pause_writing()
    first = asyncio.ensure_future(protocol._drain_helper())
    second = asyncio.ensure_future(protocol._drain_helper())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert first.cancelled() and not second.done()
    protocol.resume_writing()
    await second


async def test_reading_holds_combine():
    protocol, transport = connect()
    protocol.pause_reading()
    protocol.pause_reading()
    assert transport.pauses == 1
    protocol._pause_reading_for_buffer()
    protocol.resume_reading()
    assert not transport.reading                   # still held by the server's buffer
    protocol._resume_reading_for_buffer()
    assert transport.reading and transport.resumes == 1
    protocol._pause_reading_for_buffer()
    protocol.pause_reading()
    protocol._resume_reading_for_buffer()
    assert not transport.reading
    protocol.resume_reading()
    assert transport.reading


async def test_transport_without_flow_control():
    protocol, transport = connect(NoFlowControlTransport)
    reader = StreamReader(protocol, limit=1)
    reader.feed_data(b"abc")                       # pause_reading raises inside: ignored
    assert protocol.reading_paused
    assert reader.read_nowait() == b"abc"
    assert not protocol.reading_paused             # resumed, the transport's error ignored
    protocol.connection_lost(None)
    protocol.pause_reading()                       # no transport: nothing to do


# --- StreamWriter --------------------------------------------------------------------------------

def new_writer(**kwargs):
    protocol, transport = connect(**kwargs)
    return StreamWriter(protocol, asyncio.get_running_loop()), protocol, transport


async def test_head_and_small_body_in_one_transport_write():
    writer, protocol, transport = new_writer()
    writer.length = 13
    headers = CIMultiDict([("Content-Length", "13"), ("Set-Cookie", "a=1"),
                           ("Set-Cookie", "b=2")])
    await writer.write_headers("HTTP/1.1 200 OK", headers)
    assert transport.writes == [] and not writer.headers_sent
    await writer.write_eof(b"Hello, world!")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
                                b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nHello, world!"]
    assert not writer.must_close and not writer.incomplete
    assert writer.output_size == len(transport.writes[0]) and writer.body_size == 13


async def test_head_rides_with_the_first_write_and_empty_write_flushes_it():
    writer, protocol, transport = new_writer()
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "3"})
    writer.length = 3
    await writer.write(b"abc")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"]
    writer, protocol, transport = new_writer()
    await writer.write_headers("HTTP/1.1 200 OK", {})
    await writer.write(b"")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and writer.headers_sent


async def test_send_headers_and_write_headers_twice():
    writer, protocol, transport = new_writer()
    await writer.write_headers("HTTP/1.1 200 OK", {"X": "1"})
    writer.send_headers()
    writer.send_headers()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n"]
    with pytest.raises(RuntimeError, match="twice"):
        await writer.write_headers("HTTP/1.1 200 OK", {})


async def test_large_first_body_is_not_copied_into_the_head():
    writer, protocol, transport = new_writer(high_water=10**9)
    body = b"b" * (1 << 20)
    writer.length = len(body)
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": str(len(body))})
    await writer.write_eof(body)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n", body]


async def test_chunked_framing_exact_bytes():
    writer, protocol, transport = new_writer()
    writer.enable_chunking()
    await writer.write_headers("HTTP/1.1 200 OK", {"Transfer-Encoding": "chunked"})
    await writer.write(b"hello ")
    await writer.write(b"")                       # never a zero-size chunk mid-body
    await writer.write(bytearray(b"x" * 26))
    await writer.write(memoryview(b"world"))
    await writer.write_eof(b"!")
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n",
        b"1a\r\n" + b"x" * 26 + b"\r\n",
        b"5\r\nworld\r\n",
        b"1\r\n!\r\n0\r\n\r\n",
    ]
    assert not writer.must_close and writer.body_size == 38


async def test_chunked_empty_body_in_one_write():
    writer, protocol, transport = new_writer()
    writer.enable_chunking()
    await writer.write_headers("HTTP/1.1 200 OK", {"Transfer-Encoding": "chunked"})
    await writer.write_eof()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]


async def test_content_length_framing_exact_bytes():
    writer, protocol, transport = new_writer()
    writer.length = 10
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "10"})
    await writer.write(b"01234")
    await writer.write(b"567")
    await writer.write_eof(b"89")
    assert transport.sent() == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    assert not writer.must_close


async def test_write_past_length_raises_and_sends_nothing_of_it():
    writer, protocol, transport = new_writer()
    writer.length = 5
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "5"})
    await writer.write(b"abc")
    with pytest.raises(ContentLengthExceededError, match="Content-Length of 5"):
        await writer.write(b"def")
    assert isinstance(ContentLengthExceededError(), ValueError)
    assert transport.sent().endswith(b"\r\n\r\nabc")
    await writer.write(b"de")                      # the rest still fits
    with pytest.raises(ContentLengthExceededError):
        await writer.write_eof(b"!")
    writer, protocol, transport = new_writer()
    writer.length = 2
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "2"})
    with pytest.raises(ContentLengthExceededError):
        await writer.write(b"abc")
    assert transport.writes == [] and not writer.headers_sent   # a 500 can still be sent


async def test_short_body_is_detectable():
    writer, protocol, transport = new_writer()
    writer.length = 100
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "100"})
    await writer.write(b"only sixty" * 6)
    await writer.write_eof()
    assert writer.incomplete and writer.must_close


async def test_close_delimited_body_must_close():
    writer, protocol, transport = new_writer()
    await writer.write_headers("HTTP/1.0 200 OK", {})
    assert writer.close_delimited
    await writer.write(b"streamed ")
    await writer.write_eof(b"to HTTP/1.0")
    assert transport.sent() == b"HTTP/1.0 200 OK\r\n\r\nstreamed to HTTP/1.0"
    assert writer.must_close and not writer.incomplete


async def test_suppressed_body_puts_nothing_on_the_wire():
    for status in ("HTTP/1.1 200 OK", "HTTP/1.1 304 Not Modified"):
        writer, protocol, transport = new_writer()
        writer.length = 11
        writer.suppress_body()
        await writer.write_headers(status, {"Content-Length": "11"})
        await writer.write(b"hello ")
        await writer.write_eof(b"world")
        assert transport.writes == [status.encode() + b"\r\nContent-Length: 11\r\n\r\n"]
        assert not writer.must_close and not writer.close_delimited
    writer, protocol, transport = new_writer()   # 204: no length at all, still keep-alive
    writer.suppress_body()
    await writer.write_headers("HTTP/1.1 204 No Content", {})
    await writer.write_eof(b"ignored")
    assert transport.sent() == b"HTTP/1.1 204 No Content\r\n\r\n" and not writer.must_close
    writer, protocol, transport = new_writer()   # HEAD still held to the declared length
    writer.length = 2
    writer.suppress_body()
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Length": "2"})
    with pytest.raises(ContentLengthExceededError):
        await writer.write(b"abc")
    writer, protocol, transport = new_writer()   # chunked + suppressed: no last chunk either
    writer.enable_chunking()
    writer.suppress_body()
    await writer.write_headers("HTTP/1.1 200 OK", {})
    await writer.write_eof(b"x")
    assert transport.sent() == b"HTTP/1.1 200 OK\r\n\r\n"


async def test_write_after_eof_raises_and_eof_twice_is_harmless():
    writer, protocol, transport = new_writer()
    writer.enable_chunking()
    await writer.write_eof(b"x")
    await writer.write_eof(b"ignored")
    assert transport.sent() == b"1\r\nx\r\n0\r\n\r\n" and writer.eof
    with pytest.raises(RuntimeError, match="after write_eof"):
        await writer.write(b"y")


async def test_configuration_after_body_bytes_is_refused():
    writer, protocol, transport = new_writer()
    await writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.enable_chunking()
    with pytest.raises(RuntimeError):
        writer.enable_compression("gzip")
    with pytest.raises(RuntimeError):
        writer.suppress_body()
    with pytest.raises(ValueError, match="unsupported content coding"):
        writer.enable_compression("br")


@pytest.mark.parametrize("encoding,decompress", [
    ("gzip", gzip.decompress),
    ("deflate", zlib.decompress),                  # the zlib format (RFC 9110 §8.4.1.2)
])
@pytest.mark.parametrize("chunked", [False, True])
async def test_compression_round_trip(encoding, decompress, chunked):
    writer, protocol, transport = new_writer()
    if chunked:
        writer.enable_chunking()
    writer.enable_compression(encoding, zlib.Z_DEFAULT_STRATEGY)
    await writer.write_headers("HTTP/1.1 200 OK", {"Content-Encoding": encoding})
    original = b"".join(b"line %d of a compressible body\n" % i for i in range(2000))
    for start in range(0, len(original), 1000):
        await writer.write(original[start:start + 1000])
    await writer.write_eof(b"the end")
    body = transport.sent().partition(b"\r\n\r\n")[2]
    if chunked:
        decoded, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                assert rest == b"\r\n"
                break
            assert rest[size:size + 2] == b"\r\n"
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        body = decoded
    assert decompress(body) == original + b"the end"
    assert len(body) < len(original) // 5
    assert writer.body_size == len(body)


async def test_compressed_body_with_declared_length_counts_encoded_bytes():
    expected = zlib.compress(b"abc" * 50)
    writer, protocol, transport = new_writer()
    writer.enable_compression("deflate")
    writer.length = len(expected)
    await writer.write_eof(b"abc" * 50)
    assert zlib.decompress(transport.sent()) == b"abc" * 50
    assert not writer.incomplete


async def test_write_waits_while_the_transport_is_paused():
    writer, protocol, transport = new_writer(high_water=100, low_water=10)
    writer.enable_chunking()
    await writer.write_headers("HTTP/1.1 200 OK", {})
    await writer.write(b"x" * 50)                  # under the high-water mark
    task = asyncio.ensure_future(writer.write(b"y" * 100))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and protocol.writing_paused
    assert transport.writes[-1] == b"64\r\n" + b"y" * 100 + b"\r\n"   # sent, then waits
    drain = asyncio.ensure_future(writer.drain())
    await asyncio.sleep(0)
    assert not drain.done()
    transport.flush()
    await task
    await drain
    await writer.drain()                           # not paused: returns at once


async def test_write_without_drain_does_not_wait():
    writer, protocol, transport = new_writer(high_water=10)
    await writer.write(b"x" * 100, drain=False)
    assert protocol.writing_paused


async def test_connection_lost_while_waiting_to_write():
    writer, protocol, transport = new_writer(high_water=10)
    task = asyncio.ensure_future(writer.write(b"x" * 100))
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError("peer reset"))
    with pytest.raises(ConnectionResetError):
        await task
    with pytest.raises(ConnectionResetError, match="closing transport"):
        await writer.write(b"more")


async def test_write_to_a_closing_transport_raises():
    writer, protocol, transport = new_writer()
    transport.closed = True
    with pytest.raises(ConnectionResetError):
        await writer.write(b"x")


async def test_long_write_loop_yields_to_other_tasks():
    writer, protocol, transport = new_writer(high_water=10**9)
    ticks = []

    async def other():
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    before = len(ticks)
    for _ in range(16):
        await writer.write(b"x" * 0x8000)          # 512 KiB, never paused
    assert len(ticks) - before == 0                # under 16 * LIMIT (1 MiB): no turn
    for _ in range(64):
        await writer.write(b"x" * 0x8000)          # 2 MiB more
    assert len(ticks) - before >= 2                # a turn every MiB
    ticks.clear()
    for _ in range(16):
        await writer.write(b"x" * 0x8000, LIMIT=0x2000)   # a turn every 128 KiB
    assert len(ticks) >= 3
    task.cancel()


async def test_write_rejects_text():
    writer, protocol, transport = new_writer()
    with pytest.raises(TypeError, match="str"):
        await writer.write("text")


async def test_callbacks_are_awaited():
    protocol, transport = connect()
    seen = []

    async def on_chunk(chunk):
        seen.append(("chunk", bytes(chunk)))

    async def on_headers(headers):
        seen.append(("headers", dict(headers)))

    writer = StreamWriter(protocol, None, on_chunk_sent=on_chunk, on_headers_sent=on_headers)
    await writer.write_headers("HTTP/1.1 200 OK", {"A": "b"})
    await writer.write(b"1")
    await writer.write_eof(b"2")
    assert seen == [("headers", {"A": "b"}), ("chunk", b"1"), ("chunk", b"2")]
    assert writer.transport is transport and writer.protocol is protocol
    assert "close-delimited" in repr(writer)


@pytest.mark.parametrize("status_line,headers,culprit", [
    ("HTTP/1.1 200 OK", {"X": "a\r\nSet-Cookie: evil=1"}, "value of header 'X'"),
    ("HTTP/1.1 200 OK", {"X": "a\nb"}, "value of header"),
    ("HTTP/1.1 200 OK", {"X": "a\rb"}, "value of header"),
    ("HTTP/1.1 200 OK", {"X\r\nY": "1"}, "header name"),
    ("HTTP/1.1 200 OK", {"X": "nul\x00"}, "value of header"),
    ("HTTP/1.1 200 OK\r\nX: 1", {}, "status line"),
])
async def test_head_with_cr_lf_or_nul_is_refused(status_line, headers, culprit):
    with pytest.raises(ValueError, match=culprit):
        serialize_head(status_line, headers)
    writer, protocol, transport = new_writer()
    with pytest.raises(ValueError):
        await writer.write_headers(status_line, headers)
    assert transport.writes == []


def test_serialize_head_round_trips_parser_bytes():
    value = b"caf\xe9".decode("utf-8", "surrogateescape")   # a latin-1 byte the parser kept
    assert serialize_head("HTTP/1.1 200 OK", {"X": value, "Y": "ünï"}) == \
        b"HTTP/1.1 200 OK\r\nX: caf\xe9\r\nY: \xc3\xbcn\xc3\xaf\r\n\r\n"
    assert serialize_head("HTTP/1.1 200 OK", {"Tab": "a\tb"}).endswith(b"Tab: a\tb\r\n\r\n")


def test_frame_chunk():
    assert frame_chunk(b"") == b""
    assert frame_chunk(b"a") == b"1\r\na\r\n"
    assert frame_chunk(b"z" * 4096) == b"1000\r\n" + b"z" * 4096 + b"\r\n"


# --- content-coding negotiation ----------------------------------------------------------------

NEGOTIATION = [
    (None, None),
    ("", None),                                    # RFC 9110 §12.5.3: empty = no coding
    ("gzip", "gzip"),
    ("deflate", "deflate"),
    ("gzip, deflate", "gzip"),
    ("deflate, gzip", "gzip"),                     # a tie goes to our preference
    ("gzip, deflate, br, zstd", "gzip"),
    ("deflate;q=1, gzip;q=0.5", "deflate"),
    ("gzip;q=0.5, deflate;q=0.6", "deflate"),
    ("gzip;q=0", None),
    ("gzip;q=0.0, deflate", "deflate"),
    ("gzip;q=0.000", None),
    ("gzip;q=0, deflate;q=0", None),
    ("*", "gzip"),
    ("*;q=0", None),
    ("*;q=0, deflate", "deflate"),
    ("gzip;q=0, *", "deflate"),
    ("gzip;q=0.2, *;q=0.5", "deflate"),
    ("identity", None),
    ("identity, gzip;q=0.5", None),                # identity weighted higher: uncompressed
    ("gzip;q=0.5, identity;q=0.2", "gzip"),
    ("gzip, identity", "gzip"),                    # a tie goes to compression
    ("identity;q=0, gzip;q=0.1", "gzip"),
    ("br", None),
    ("br, gzip;q=0.8", "gzip"),
    ("GZIP", "gzip"),
    ("Gzip;Q=0.5", "gzip"),
    ("x-gzip", "gzip"),                            # RFC 9110 §8.4.1.3
    ("x-gzip;q=0, deflate", "deflate"),
    ("gzipx", None),                               # substring matches are not matches
    ("nogzip, x-deflate", None),
    ("gzip;q=1.5", None),                          # malformed weights are ignored
    ("gzip;q=1.0001", None),
    ("gzip;q=abc, deflate", "deflate"),
    ("gzip;q=0.1234", None),
    ("gzip;q=-1", None),
    ("gzip;q=", None),
    ("gzip;q=1.000", "gzip"),
    ("gzip;q=0.001", "gzip"),
    (" gzip ; q=0.5 , deflate ; q=0.4 ", "gzip"),
    (", ,gzip,,", "gzip"),
    ("gzip;level=9", "gzip"),                      # unknown parameters are ignored
    ("gzip;q=0, gzip", None),                      # listed twice: the lower weight
    ("gz ip, deflate", "deflate"),                 # not a token: ignored
    ("compress, deflate;q=0.3", "deflate"),
]


@pytest.mark.parametrize("accept,expected", NEGOTIATION)
def test_choose_content_coding(accept, expected):
    assert choose_content_coding(accept) == expected


def test_choose_content_coding_offered():
    assert choose_content_coding("gzip", offered=("deflate",)) is None
    assert choose_content_coding("gzip, deflate", offered=("deflate", "gzip")) == "deflate"
    assert choose_content_coding("*", offered=()) is None


def test_parse_accept_encoding():
    assert parse_accept_encoding("") == {}
    assert parse_accept_encoding("gzip;q=0.5, , DEFLATE, br;q=2, *;q=0, x-gzip;q=0.7") == \
        {"gzip": 0.5, "deflate": 1.0, "*": 0.0}
    assert parse_accept_encoding("identity;q=0.25") == {"identity": 0.25}


# --- the rooms ------------------------------------------------------------------------------

def test_compressor_makes_the_two_formats_and_refuses_others():
    for coding, decompress in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
        compress = compressor(coding)
        assert decompress(compress.compress(b"abc" * 50) + compress.flush()) == b"abc" * 50
    with pytest.raises(ValueError, match="unsupported content coding 'br'"):
        compressor("br")


def test_old_import_paths_still_work():
    """response, server, testing (and notebooks 02, 06) import these from streams."""
    import lowserver.body_writer
    import lowserver.codings
    import lowserver.flow_control
    import lowserver.streams as streams
    assert streams.BaseProtocol is lowserver.flow_control.BaseProtocol
    assert streams.StreamWriter is lowserver.body_writer.StreamWriter
    assert streams.ContentLengthExceededError is lowserver.body_writer.ContentLengthExceededError
    assert streams.choose_content_coding is lowserver.codings.choose_content_coding


def test_rooms_layering():
    """codings is sans-I/O; the writer never imports the reader, nor the buffer the reader."""
    import ast
    import importlib.util

    def imports(room):
        path = importlib.util.find_spec(f"lowserver.{room}").origin
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        return {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names} | {node.module for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom)}
    assert "asyncio" not in imports("codings")
    assert not {"lowserver.streams", "lowserver.body_buffer"} & imports("body_writer")
    assert "lowserver.streams" not in imports("body_buffer")
    assert not {name for name in imports("flow_control") if name.startswith("lowserver")}
    assert issubclass(StreamReader, BodyBuffer)


# --- StreamWriter.write_whole: write_headers + write_eof in one call ---------------------------

def _configure(writer, framing):
    if framing == "length":
        writer.length = 13
    elif framing == "short":
        writer.length = 20
    elif framing == "chunked":
        writer.enable_chunking()
    elif framing == "suppressed":
        writer.length = 0
        writer.suppress_body()
    elif framing == "gzip":
        writer.enable_compression("gzip")
    elif framing == "large":
        writer.length = 100_000


@pytest.mark.parametrize("framing", ["length", "short", "chunked", "close-delimited",
                                     "suppressed", "gzip", "large"])
async def test_write_whole_sends_what_the_two_steps_send(framing):
    body = {"large": b"x" * 100_000, "suppressed": b""}.get(framing, b"Hello, world!")
    head = CIMultiDict([("Content-Type", "text/plain")])
    sent = []
    for at_once in (False, True):
        writer, protocol, transport = new_writer(high_water=1 << 30)
        _configure(writer, framing)
        if at_once:
            writer.write_whole("HTTP/1.1 200 OK", head, body)
        else:
            await writer.write_headers("HTTP/1.1 200 OK", head)
            await writer.write_eof(body)
        sent.append((transport.writes, writer.must_close, writer.incomplete,
                     writer.body_size, writer.output_size, writer.eof, writer.headers_sent))
    if framing != "gzip":   # (two compressors' outputs are equal too, but say so plainly)
        assert sent[0] == sent[1]
    else:
        assert b"".join(sent[0][0]) == b"".join(sent[1][0]) and sent[0][1:] == sent[1][1:]
    writes, must_close, incomplete = sent[1][:3]
    assert len(writes) == (2 if framing == "large" else 1)   # above 64 KiB: head, then body
    assert must_close == (framing in ("short", "close-delimited", "gzip"))  # gzip: no length
    assert incomplete == (framing == "short")
    if framing == "suppressed":
        assert writes[0].endswith(b"\r\n\r\n")
    if framing == "chunked":
        assert writes[0].endswith(b"\r\n\r\nd\r\nHello, world!\r\n0\r\n\r\n")


async def test_write_whole_refuses_a_writer_that_wrote_or_has_callbacks():
    writer, protocol, transport = new_writer()
    await writer.write_headers("HTTP/1.1 200 OK", {})
    with pytest.raises(RuntimeError, match="already wrote, or has callbacks"):
        writer.write_whole("HTTP/1.1 200 OK", {}, b"")

    async def on_headers(headers):
        pass
    protocol, transport = connect()
    writer = StreamWriter(protocol, None, on_headers_sent=on_headers)
    with pytest.raises(RuntimeError, match="already wrote, or has callbacks"):
        writer.write_whole("HTTP/1.1 200 OK", {}, b"")
    assert transport.writes == []


async def test_write_whole_holds_the_body_to_the_declared_length_before_sending():
    writer, protocol, transport = new_writer()
    writer.length = 2
    with pytest.raises(ContentLengthExceededError):
        writer.write_whole("HTTP/1.1 200 OK", {"Content-Length": "2"}, b"abc")
    assert transport.writes == []


async def test_write_whole_on_a_closing_transport_is_a_connection_reset():
    writer, protocol, transport = new_writer()
    transport.closed = True
    with pytest.raises(ConnectionResetError):
        writer.write_whole("HTTP/1.1 200 OK", {}, b"")
