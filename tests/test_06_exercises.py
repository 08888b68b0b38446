"""Grading tests for the exercises of notebook 06 (the server).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import asyncio
import zlib

import pytest

from lowserver.body_decoding import decompression_wbits
from lowserver.server import DRAIN_LIMIT, RequestHandler, timer_verdict


def test_exercise_1_timer_verdict():
    assert timer_verdict("", 10.0, 5.0, False, False) == "nothing"
    assert timer_verdict("", 1.0, 5.0, True, True) == "nothing"
    for watch in ("idle", "head", "body"):
        assert timer_verdict(watch, 4.0, 5.0, False, False) == "wait"
    assert timer_verdict("idle", 6.0, 5.0, False, False) == "close"
    assert timer_verdict("idle", 6.0, 5.0, False, True) == "nothing"
    assert timer_verdict("head", 6.0, 5.0, False, False) == "close"
    assert timer_verdict("head", 6.0, 5.0, True, True) == "close"
    assert timer_verdict("body", 6.0, 5.0, False, True) == "fail body"
    assert timer_verdict("body", 6.0, 5.0, True, True) == "wait"
    assert timer_verdict("body", 5.0, 5.0, False, False) == "fail body"   # at the deadline


def test_exercise_2_decompression_wbits():
    assert decompression_wbits("gzip", 0x1F) == 16 + zlib.MAX_WBITS
    assert decompression_wbits("deflate", 0x78) == zlib.MAX_WBITS       # zlib header 0x78
    assert decompression_wbits("deflate", 0x08) == zlib.MAX_WBITS
    assert decompression_wbits("deflate", 0xED) == -zlib.MAX_WBITS      # raw deflate block
    assert decompression_wbits("deflate", 0x4B) == -zlib.MAX_WBITS
    for body in (b"hello " * 50, b""):
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw_data = raw.compress(body) + raw.flush()
        wrapped = zlib.compress(body)
        for data in (raw_data, wrapped):
            wbits = decompression_wbits("deflate", data[0])
            assert zlib.decompressobj(wbits=wbits).decompress(data) == body
    with pytest.raises(ValueError):
        decompression_wbits("br", 0x00)


class FakeBody:
    """The part of a StreamReader `_drain` uses, serving pieces then EOF (or hanging)."""

    def __init__(self, pieces, *, hang=False, fail=None):
        self.pieces = list(pieces)
        self.total_bytes = 0
        self.hang = hang
        self.fail = fail

    def at_eof(self):
        return not self.pieces and not self.hang and self.fail is None

    async def readany(self):
        if self.fail is not None:
            raise self.fail
        if not self.pieces:
            if self.hang:
                await asyncio.sleep(3600)
            return b""
        piece = self.pieces.pop(0)
        self.total_bytes += len(piece)
        return piece


def drainer(lingering_time=5.0):
    handler = RequestHandler.__new__(RequestHandler)   # only _drain's attributes are needed
    handler.lingering_time = lingering_time
    return handler


async def test_exercise_3_drain():
    assert await drainer()._drain(FakeBody([b"a" * 1000, b"b" * 1000]), 2000) is True
    assert await drainer()._drain(FakeBody([b"x"] * 10), None) is True
    assert await drainer()._drain(FakeBody([b"a"]), DRAIN_LIMIT + 10) is False   # too big: not read
    big = [b"z" * 65536] * (DRAIN_LIMIT // 65536 + 2)
    assert await drainer()._drain(FakeBody(big), None) is False          # chunked, over the limit
    assert await drainer(lingering_time=0.05)._drain(FakeBody([], hang=True), None) is False
    assert await drainer()._drain(FakeBody([], fail=ConnectionResetError()), None) is False
