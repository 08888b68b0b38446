"""WebSocket unmasking (RFC 6455 §5.3) in pure Python: the candidates, side by side.

In-process, no sockets. Each method unmasks the same payload with the same 4-byte key and
must give the same bytes; the table shows microseconds per call (best of --repeat runs):

    naive        a generator over the bytes (only up to 1 KiB: it is ~50 ns a byte)
    int-big      int.from_bytes XOR, big-endian, the key repeated and cut to length
    int-little   the same, little-endian (what lowserver uses under 1 KiB)
    aiohttp      aiohttp's _websocket_mask_python: four strided bytes.translate calls on a
                 bytearray (the bytearray(payload) copy its reader makes is included)
    translate    the same strided translate on the whole payload at once, no blocks
    lowserver    lowserver.websocket_frames.apply_mask: int XOR under 1 KiB, strided
                 translate up to 64 KiB, then translate 64 KiB block by block

    python benchmarks/ws_mask.py                  # ~30 s; prints a Markdown table
    python benchmarks/ws_mask.py --sizes 32,65536 --repeat 3
    python benchmarks/ws_mask.py --parser         # also: frame parser vs aiohttp's reader

`--parser` feeds the same masked frames to lowserver's WebSocketParser and to aiohttp's
pure-Python WebSocketReader (reader_py, its queue emptied after every feed) and prints
messages per second. A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import timeit
from itertools import cycle
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# aiohttp's pure-Python code paths only (its reader would otherwise unmask with C)
os.environ["AIOHTTP_NO_EXTENSIONS"] = "1"

from lowserver.websocket_frames import _XOR_TABLES, apply_mask, build_frame  # noqa: E402
from lowserver.websocket_parser import WebSocketParser  # noqa: E402

MASK = b"\x37\xfa\x21\x3d"
DEFAULT_SIZES = [32, 125, 1024, 16384, 65536, 1 << 20, 16 << 20]


def naive(mask: bytes, data: bytes) -> bytes:
    return bytes(b ^ m for b, m in zip(data, cycle(mask)))


def int_big(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def int_little(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


try:
    from aiohttp._websocket.helpers import _websocket_mask_python
except ImportError:  # aiohttp not installed: the same algorithm, reproduced
    def _websocket_mask_python(mask: bytes, data: bytearray) -> None:
        a, b, c, d = (_XOR_TABLES[n] for n in mask)
        data[::4] = data[::4].translate(a)
        data[1::4] = data[1::4].translate(b)
        data[2::4] = data[2::4].translate(c)
        data[3::4] = data[3::4].translate(d)


def aiohttp_translate(mask: bytes, data: bytes) -> bytearray:
    buf = bytearray(data)
    _websocket_mask_python(mask, buf)
    return buf


def translate_whole(mask: bytes, data: bytes) -> bytes:
    buf = bytearray(data)
    for lane in range(4):
        buf[lane::4] = buf[lane::4].translate(_XOR_TABLES[mask[lane]])
    return bytes(buf)


METHODS = {
    "naive": naive,
    "int-big": int_big,
    "int-little": int_little,
    "aiohttp": aiohttp_translate,
    "translate": translate_whole,
    "lowserver": apply_mask,
}


def measure(function, data: bytes, repeat: int) -> float:
    """Best time per call, in seconds, over `repeat` runs of about 0.1 s each."""
    number = max(1, int(0.1 / max(len(data) * 1e-9, 2e-7)))
    timer = timeit.Timer(lambda: function(MASK, data))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def human(size: int) -> str:
    if size >= 1 << 20 and not size % (1 << 20):
        return f"{size >> 20} MiB"
    if size >= 1024 and not size % 1024:
        return f"{size >> 10} KiB"
    return f"{size} B"


def mask_table(sizes: list[int], repeat: int) -> None:
    names = list(METHODS)
    print("| payload | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for size in sizes:
        data = os.urandom(size)
        expected = int_big(MASK, data)
        cells = []
        for name in names:
            function = METHODS[name]
            if name == "naive" and size > 1024:
                cells.append("—")
                continue
            assert bytes(function(MASK, data)) == expected, name
            gc.collect()
            cells.append(f"{measure(function, data, repeat) * 1e6:,.2f}")
        print(f"| {human(size)} | " + " | ".join(cells) + " |", flush=True)
    print("\nµs per call, best of", repeat, "runs")


# --- frame parser -------------------------------------------------------------------------

class _Protocol:          # what aiohttp's WebSocketDataQueue needs of a protocol
    _reading_paused = False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def parser_table(repeat: int) -> None:
    try:
        from aiohttp._websocket.reader_py import WebSocketDataQueue, WebSocketReader
    except ImportError:
        print("aiohttp is not installed: no parser comparison")
        return
    shapes = [  # (name, payload size, frames per read, read size or None for whole batches)
        ("32 B, 16 per read", 32, 16, None),
        ("32 B, 1 per read", 32, 1, None),
        ("1 KiB, 16 per read", 1024, 16, None),
        ("64 KiB, 256 KiB reads", 65536, 64, 262144),
        ("1 MiB, 256 KiB reads", 1 << 20, 8, 262144),
        ("16 MiB, 256 KiB reads", 16 << 20, 2, 262144),
    ]
    loop = asyncio.new_event_loop()
    print("| frames | lowserver msg/s | aiohttp-py msg/s | ratio |")
    print("|---|---:|---:|---:|")
    for name, size, count, read in shapes:
        stream = build_frame(os.urandom(size), 0x2, mask=MASK) * count
        reads = [stream] if read is None else [stream[i:i + read]
                                                for i in range(0, len(stream), read)]
        rounds = max(1, 300_000 // (count * max(size, 64)))
        best = {"lowserver": float("inf"), "aiohttp": float("inf")}
        for _ in range(repeat):
            gc.collect()
            parser = WebSocketParser(max_msg_size=0)
            got = 0
            start = time.perf_counter()
            for _ in range(rounds):
                for chunk in reads:
                    got += len(parser.feed(chunk))
            best["lowserver"] = min(best["lowserver"], time.perf_counter() - start)
            assert got == rounds * count
            gc.collect()
            queue = WebSocketDataQueue(_Protocol(), 2**40, loop=loop)
            reader = WebSocketReader(queue, 0, False, True)
            got = 0
            start = time.perf_counter()
            for _ in range(rounds):
                for chunk in reads:
                    reader.feed_data(chunk)
                    got += len(queue._buffer)
                    queue._buffer.clear()
                    queue._size = 0
            best["aiohttp"] = min(best["aiohttp"], time.perf_counter() - start)
            assert got == rounds * count
        ours = rounds * count / best["lowserver"]
        theirs = rounds * count / best["aiohttp"]
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | ×{ours / theirs:.2f} |", flush=True)
    loop.close()


def blocks_in_the_parser(repeat: int) -> None:
    """The parser unmasking multi-MiB messages with apply_mask, then without its blocks."""
    import lowserver.websocket_frames as frames
    import lowserver.websocket_parser as protocol   # the parser calls its own apply_mask

    def unblocked(mask: bytes, data: bytes) -> bytes:
        if len(data) < frames._TRANSLATE_FROM:
            return int_little(mask, data)
        return bytes(frames._translate_mask(mask, data))

    size, read = 16 << 20, 262144
    stream = b"".join(build_frame(os.urandom(size), 0x2, mask=MASK) for _ in range(3))
    reads = [stream[i:i + read] for i in range(0, len(stream), read)]
    print("| 16 MiB messages in 256 KiB reads | ms per message |")
    print("|---|---:|")
    for name, function in (("apply_mask (64 KiB blocks)", apply_mask),
                           ("one translate per piece, no blocks", unblocked)):
        protocol.apply_mask = function
        try:
            best = float("inf")
            for _ in range(repeat):
                gc.collect()
                parser = WebSocketParser(max_msg_size=0)
                start = time.perf_counter()
                got = sum(len(parser.feed(chunk)) for chunk in reads)
                best = min(best, (time.perf_counter() - start) / got)
        finally:
            protocol.apply_mask = apply_mask
        print(f"| {name} | {best * 1e3:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="payload sizes in bytes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell (best is kept)")
    parser.add_argument("--parser", action="store_true",
                        help="also compare the frame parser with aiohttp's reader")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}\n")
    mask_table([int(s) for s in args.sizes.split(",")], args.repeat)
    if args.parser:
        print()
        parser_table(max(1, args.repeat // 2 + 1))
        print()
        blocks_in_the_parser(max(1, args.repeat // 2 + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
