"""Grading tests for the exercises of notebook 04 (streaming bodies both ways).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import asyncio

from lowserver.body_writer import StreamWriter, frame_chunk
from lowserver.codings import parse_accept_encoding
from lowserver.flow_control import BaseProtocol, next_reading_state
from lowserver.streams import StreamReader


class _Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.writes = []
        self.reading = True

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return False

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True


def test_exercise_1_next_reading_state():
    low, high = 10, 20
    # not paused: pause only above the high-water mark
    assert next_reading_state(0, False, low, high) is False
    assert next_reading_state(15, False, low, high) is False
    assert next_reading_state(20, False, low, high) is False
    assert next_reading_state(21, False, low, high) is True
    # paused: stay paused until below the low-water mark (hysteresis)
    assert next_reading_state(21, True, low, high) is True
    assert next_reading_state(15, True, low, high) is True
    assert next_reading_state(10, True, low, high) is True
    assert next_reading_state(9, True, low, high) is False
    assert next_reading_state(0, True, low, high) is False


async def test_exercise_1_next_reading_state_drives_the_reader():
    protocol = BaseProtocol(asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    reader = StreamReader(protocol, limit=4)
    reader.feed_data(b"12345678")
    assert transport.reading
    reader.feed_data(b"9")
    assert not transport.reading
    await reader.read(5)
    assert not transport.reading
    await reader.read(1)
    assert transport.reading


def test_exercise_2_frame_chunk():
    assert frame_chunk(b"hello") == b"5\r\nhello\r\n"
    assert frame_chunk(b"") == b""                       # never the last chunk by accident
    assert frame_chunk(b"x" * 10) == b"a\r\n" + b"x" * 10 + b"\r\n"      # hex, lower case
    assert frame_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert frame_chunk(b"x" * 4096) == b"1000\r\n" + b"x" * 4096 + b"\r\n"
    assert frame_chunk(bytearray(b"ab")) == b"2\r\nab\r\n"
    assert frame_chunk(b"\r\n") == b"2\r\n\r\n\r\n"      # data is opaque
    assert isinstance(frame_chunk(b"abc"), bytes)


async def test_exercise_2_frame_chunk_in_the_writer():
    protocol = BaseProtocol(asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    writer = StreamWriter(protocol, None)
    writer.enable_chunking()
    await writer.write(b"abc")
    await writer.write(b"")
    await writer.write_eof(b"d" * 16)
    assert b"".join(transport.writes) == b"3\r\nabc\r\n10\r\n" + b"d" * 16 + b"\r\n0\r\n\r\n"


def test_exercise_3_parse_accept_encoding():
    assert parse_accept_encoding("gzip") == {"gzip": 1.0}
    assert parse_accept_encoding("gzip, deflate") == {"gzip": 1.0, "deflate": 1.0}
    assert parse_accept_encoding("gzip;q=0.5, deflate;q=0") == {"gzip": 0.5, "deflate": 0.0}
    assert parse_accept_encoding("GZip;Q=0.25") == {"gzip": 0.25}
    assert parse_accept_encoding("x-gzip;q=0.3") == {"gzip": 0.3}
    assert parse_accept_encoding(" gzip ; q=0.5 ,  * ;q=0.1 ") == {"gzip": 0.5, "*": 0.1}
    assert parse_accept_encoding("") == {}
    assert parse_accept_encoding(", ,") == {}
    assert parse_accept_encoding("identity;q=1.000, br;q=1.0") == {"identity": 1.0, "br": 1.0}
    assert parse_accept_encoding("gzip;q=0.001") == {"gzip": 0.001}
    # malformed weights: the element is ignored
    for bad in ("gzip;q=1.1", "gzip;q=2", "gzip;q=0.1234", "gzip;q=abc", "gzip;q=",
                "gzip;q=-0.5", "gzip;q=.5", "gzip;q=1.01"):
        assert parse_accept_encoding(bad + ", deflate") == {"deflate": 1.0}, bad
    # names that are not tokens are ignored
    assert parse_accept_encoding("gz ip, deflate") == {"deflate": 1.0}
    assert parse_accept_encoding("g(z), deflate") == {"deflate": 1.0}
    # other parameters do not matter; a repeated coding keeps the lower weight
    assert parse_accept_encoding("gzip;level=1;q=0.4") == {"gzip": 0.4}
    assert parse_accept_encoding("gzip, gzip;q=0") == {"gzip": 0.0}
    assert parse_accept_encoding("gzip;q=0.2, x-gzip;q=0.9") == {"gzip": 0.2}
