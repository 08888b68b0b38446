"""Stage 05: the two masking paths, pure Python and the C accelerator (lowserver[speedups]).

`python_apply_mask` and `speedups_apply_mask` (websockets' C `apply_mask`, called in
lowserver's argument order) must give the same bytes for every length and every alignment of
the data in memory, for bytes, bytearray and memoryview inputs; the choice between them is
made at import (LOWSERVER_NO_SPEEDUPS turns the accelerator off) and said by
`MASK_IMPLEMENTATION`; and tests/conftest.py's `mask_path` fixture, on which every other stage
05 module runs twice, really puts the parser on the path it names.
"""
from __future__ import annotations

import os
import subprocess
import sys
from itertools import cycle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowserver.websocket_frames as frames
import lowserver.websocket_parser as parser_module
from lowserver.websocket_frames import build_frame, python_apply_mask, speedups_apply_mask
from lowserver.websocket_parser import WebSocketParser

needs_speedups = pytest.mark.skipif(speedups_apply_mask is None,
                                    reason="the C accelerator is not loaded "
                                           "(websockets missing, or LOWSERVER_NO_SPEEDUPS set)")
MASKS = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x37\xfa\x21\x3d", b"\x80\x01\x7f\xfe"]
BUFFER = bytes((i * 131 + 7) % 256 for i in range(200_011))   # no period of 4 or 256


def naive(mask: bytes, data) -> bytes:
    return bytes(b ^ m for b, m in zip(bytes(data), cycle(mask)))


def inputs(offset: int, length: int):
    """The same bytes as bytes, bytearray and memoryview, starting `offset` bytes into a
    buffer (so the data is aligned 0..7 in memory, as a payload behind a header is)."""
    data = BUFFER[offset:offset + length]
    yield data
    yield bytearray(data)
    yield memoryview(BUFFER)[offset:offset + length]
    yield memoryview(bytearray(BUFFER[:offset + length]))[offset:]


@needs_speedups
def test_every_small_length_and_alignment_agrees():
    # every length through the pure path's integer/translate switch (1024), every alignment
    for mask in MASKS[2:]:
        for length in range(frames._TRANSLATE_FROM + 70):
            for offset in range(8):
                expected = python_apply_mask(mask, BUFFER[offset:offset + length])
                for data in inputs(offset, length):
                    got = speedups_apply_mask(mask, data)
                    assert type(got) is bytes and got == expected, (mask, length, offset)
                    assert python_apply_mask(mask, data) == expected, (mask, length, offset)


@needs_speedups
@pytest.mark.parametrize("length", [65532, 65535, 65536, 65537, 65540, 131071, 131072,
                                    131073, 200_003])
def test_block_boundaries_agree(length):
    # the pure path masks 64 KiB blocks from 64 KiB on: each boundary, every alignment
    for mask in MASKS:
        for offset in range(4):
            expected = naive(mask, BUFFER[offset:offset + length])
            for data in inputs(offset, length):
                assert speedups_apply_mask(mask, data) == expected, (mask, length, offset)
                assert python_apply_mask(mask, data) == expected, (mask, length, offset)


@needs_speedups
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), mask=st.binary(min_size=4, max_size=4),
       offset=st.integers(0, 15))
def test_paths_agree_on_any_input(data, mask, offset):
    padded = bytes(offset) + data
    view = memoryview(padded)[offset:]
    expected = naive(mask, data)
    for path in (python_apply_mask, speedups_apply_mask):
        assert path(mask, data) == expected
        assert path(mask, view) == expected
        assert path(mask, bytearray(data)) == expected
        assert path(mask, path(mask, data)) == data          # masking twice is the identity


def test_a_mask_of_the_wrong_size_is_refused_by_c():
    if speedups_apply_mask is None:
        pytest.skip("the C accelerator is not loaded")
    with pytest.raises(ValueError):
        speedups_apply_mask(b"abc", b"data")


def _implementation(value: str | None) -> tuple[str, bool]:
    """MASK_IMPLEMENTATION in a fresh interpreter with LOWSERVER_NO_SPEEDUPS=value (None:
    unset), and whether websockets was imported at all."""
    env = {key: val for key, val in os.environ.items() if key != "LOWSERVER_NO_SPEEDUPS"}
    if value is not None:
        env["LOWSERVER_NO_SPEEDUPS"] = value
    code = ("import sys, lowserver.websocket_frames as f; "
            "assert f.apply_mask is (f.python_apply_mask if f.speedups_apply_mask is None "
            "else f.speedups_apply_mask); "
            "print(f.MASK_IMPLEMENTATION, 'websockets' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    name, imported = done.stdout.split()
    return name, imported == "True"


def test_the_environment_variable_turns_the_accelerator_off():
    assert _implementation("1") == ("python", False)        # off: websockets is not imported
    assert _implementation("yes")[0] == "python"
    try:
        import websockets.speedups  # noqa: F401
    except ImportError:
        pytest.skip("websockets' C extension is not installed")
    assert _implementation(None) == ("websockets.speedups", True)
    assert _implementation("")[0] == "websockets.speedups"   # empty or 0: not turned off
    assert _implementation("0")[0] == "websockets.speedups"


def test_mask_path_puts_the_parser_on_its_path(mask_path):
    expected = python_apply_mask if mask_path == "pure" else speedups_apply_mask
    assert frames.apply_mask is expected and parser_module.apply_mask is expected
    assert parser_module._INLINE_MASK_BELOW == (frames._TRANSLATE_FROM if mask_path == "pure"
                                                else 0)
    assert frames.MASK_IMPLEMENTATION == ("python" if mask_path == "pure"
                                          else "websockets.speedups")
    assert (os.environ.get("LOWSERVER_NO_SPEEDUPS") == "1") == (mask_path == "pure")


@pytest.mark.parametrize("size", [5, 125, 126, 1023, 1024, 1025, 70_001])
def test_the_parser_unmasks_alike_on_both_paths(mask_path, size):
    # whole frames (inlined or not) and a streamed one, cut at odd places: the mask's cycle
    # must carry over from piece to piece
    payload = BUFFER[3:3 + size]
    stream = build_frame(payload, 0x2, mask=b"\x37\xfa\x21\x3d") * 3
    for step in (len(stream), 4093, 7):
        if step == 7 and size > 2000:
            step = 1009
        parser = WebSocketParser(max_msg_size=0)
        messages = []
        for start in range(0, len(stream), step):
            messages += parser.feed(stream[start:start + step])
        assert [message.data for message in messages] == [payload] * 3, (size, step)
