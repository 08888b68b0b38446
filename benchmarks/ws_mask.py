"""WebSocket unmasking (RFC 6455 §5.3) in pure Python, and with C accelerators: side by side.

In-process, no sockets. Each method unmasks the same payload with the same 4-byte key and
must give the same bytes; the table shows microseconds per call (best of --repeat runs):

    naive        a generator over the bytes (only up to 1 KiB: it is ~50 ns a byte)
    int-big      int.from_bytes XOR, big-endian, the key repeated and cut to length
    int-little   the same, little-endian (what lowserver uses under 1 KiB)
    aiohttp      aiohttp's _websocket_mask_python: four strided bytes.translate calls on a
                 bytearray (the bytearray(payload) copy its reader makes is included)
    translate    the same strided translate on the whole payload at once, no blocks
    lowserver    lowserver.websocket_frames.python_apply_mask: int XOR under 1 KiB, strided
                 translate up to 64 KiB, then translate 64 KiB block by block

Then the accelerators, the candidates for `pip install lowserver[speedups]` (each column
only if its package is installed; all return the unmasked bytes, a copy: the input is kept):

    python       lowserver's pure-Python path (python_apply_mask), for reference
    websockets   websockets.speedups.apply_mask(data, mask): C, 16 bytes at a time (SSE2)
    aiohttp-C    aiohttp's _websocket_mask_cython(mask, bytearray): in place, so the
                 bytearray(payload) copy is included, as in its reader
    numpy        a vectorised XOR: the payload copied into a bytearray, XORed in place as
                 uint32 words with the key as one word, the last 1-3 bytes in Python
    wsaccel      wsaccel.xormask.XorMaskerSimple(mask).process(data) (Cython)
    chosen       lowserver.websocket_frames.apply_mask: what the parser calls today
                 (MASK_IMPLEMENTATION says which; LOWSERVER_NO_SPEEDUPS=1 turns C off)

followed by each package's version and installed size.

    python benchmarks/ws_mask.py                  # ~40 s; prints Markdown tables
    python benchmarks/ws_mask.py --sizes 32,65536 --repeat 3
    python benchmarks/ws_mask.py --tables accelerators --sizes 32,1024,65536,1048576
    python benchmarks/ws_mask.py --parser         # also: frame parser vs aiohttp's reader

`--parser` feeds the same masked frames to lowserver's WebSocketParser (on the pure-Python
path, then on the accelerated one when it is installed) and to aiohttp's pure-Python
WebSocketReader (reader_py, its queue emptied after every feed) and prints messages per
second. A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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

import lowserver.websocket_frames as frames  # noqa: E402
import lowserver.websocket_parser as protocol  # noqa: E402  (the parser's own apply_mask)
from lowserver.websocket_frames import _XOR_TABLES, build_frame  # noqa: E402
from lowserver.websocket_parser import WebSocketParser  # noqa: E402

# the pure-Python path (named apply_mask before the accelerator came)
python_apply_mask = getattr(frames, "python_apply_mask", frames.apply_mask)

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
    "lowserver": python_apply_mask,
}


# --- the accelerators ---------------------------------------------------------------------

def _accelerators() -> dict:
    """name -> (function(mask, data), distribution name or None), for what is installed."""
    found = {"python": (python_apply_mask, None)}
    try:
        from websockets.speedups import apply_mask as ws_apply_mask
    except ImportError:
        pass
    else:
        found["websockets"] = (lambda mask, data: ws_apply_mask(data, mask), "websockets")
    try:
        from aiohttp._websocket.mask import _websocket_mask_cython
    except ImportError:
        pass
    else:
        def aiohttp_c(mask: bytes, data: bytes) -> bytearray:
            buf = bytearray(data)
            _websocket_mask_cython(mask, buf)
            return buf
        found["aiohttp-C"] = (aiohttp_c, "aiohttp")
    try:
        import numpy
    except ImportError:
        pass
    else:
        def numpy_xor(mask: bytes, data: bytes) -> bytearray:
            buf = bytearray(data)
            words = len(buf) >> 2
            if words:
                view = numpy.frombuffer(buf, dtype=numpy.uint32, count=words)
                numpy.bitwise_xor(view, numpy.frombuffer(mask, dtype=numpy.uint32)[0], out=view)
            for i in range(words << 2, len(buf)):
                buf[i] ^= mask[i & 3]
            return buf
        found["numpy"] = (numpy_xor, "numpy")
    try:
        from wsaccel.xormask import XorMaskerSimple
    except ImportError:
        pass
    else:
        found["wsaccel"] = (lambda mask, data: XorMaskerSimple(mask).process(data), "wsaccel")
    found[f"chosen ({getattr(frames, 'MASK_IMPLEMENTATION', 'python')})"] = (
        frames.apply_mask, None)
    return found


def _installed_size(distribution: str) -> tuple[str, float]:
    """(version, MiB on disk) of an installed distribution, from its RECORD."""
    from importlib import metadata
    dist = metadata.distribution(distribution)
    total = 0
    for file in dist.files or ():
        try:
            total += file.locate().stat().st_size
        except OSError:
            pass
    return dist.version, total / (1 << 20)


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


def mask_table(sizes: list[int], repeat: int, methods: dict | None = None) -> None:
    methods = METHODS if methods is None else methods
    names = list(methods)
    print("| payload | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for size in sizes:
        data = os.urandom(size)
        expected = int_big(MASK, data)
        cells = []
        for name in names:
            function = methods[name]
            if name == "naive" and size > 1024:
                cells.append("—")
                continue
            assert bytes(function(MASK, data)) == expected, name
            gc.collect()
            cells.append(f"{measure(function, data, repeat) * 1e6:,.2f}")
        print(f"| {human(size)} | " + " | ".join(cells) + " |", flush=True)
    print("\nµs per call, best of", repeat, "runs")


def accelerator_table(sizes: list[int], repeat: int) -> None:
    found = _accelerators()
    mask_table(sizes, repeat, {name: function for name, (function, _) in found.items()})
    print("\n| package | version | installed size |")
    print("|---|---|---:|")
    for name, (_, distribution) in found.items():
        if distribution is not None:
            version, mib = _installed_size(distribution)
            print(f"| {distribution} | {version} | {mib:.1f} MiB |")


# --- frame parser -------------------------------------------------------------------------

class _Protocol:          # what aiohttp's WebSocketDataQueue needs of a protocol
    _reading_paused = False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@contextlib.contextmanager
def mask_path(path: str):
    """Put the parser (and apply_mask's callers) on one masking path, as tests/conftest.py
    does: "python", or "accelerated" (websockets' C apply_mask, when installed)."""
    saved = (frames.apply_mask, protocol.apply_mask, getattr(protocol, "_INLINE_MASK_BELOW", None))
    accelerated = getattr(frames, "speedups_apply_mask", None)
    if path == "python" or accelerated is None:
        function, inline_below = python_apply_mask, frames._TRANSLATE_FROM
    else:
        function, inline_below = accelerated, 0
    frames.apply_mask = protocol.apply_mask = function
    if saved[2] is not None:
        protocol._INLINE_MASK_BELOW = inline_below
    try:
        yield
    finally:
        frames.apply_mask, protocol.apply_mask = saved[:2]
        if saved[2] is not None:
            protocol._INLINE_MASK_BELOW = saved[2]


def parser_table(repeat: int) -> None:
    paths = ["python"]
    if getattr(frames, "speedups_apply_mask", None) is not None:
        paths.append("accelerated")
    for path in paths:
        with mask_path(path):
            print(f"parser on the {path} masking path\n")
            _parser_table(repeat)
            print()


def _parser_table(repeat: int) -> None:
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
    """The parser unmasking multi-MiB messages with python_apply_mask, then without its
    blocks."""
    def unblocked(mask: bytes, data: bytes) -> bytes:
        if len(data) < frames._TRANSLATE_FROM:
            return int_little(mask, data)
        return bytes(frames._translate_mask(mask, data))

    size, read = 16 << 20, 262144
    stream = b"".join(build_frame(os.urandom(size), 0x2, mask=MASK) for _ in range(3))
    reads = [stream[i:i + read] for i in range(0, len(stream), read)]
    print("| 16 MiB messages in 256 KiB reads | ms per message |")
    print("|---|---:|")
    for name, function in (("python_apply_mask (64 KiB blocks)", python_apply_mask),
                           ("one translate per piece, no blocks", unblocked)):
        with mask_path("python"):
            protocol.apply_mask = function
            best = float("inf")
            for _ in range(repeat):
                gc.collect()
                parser = WebSocketParser(max_msg_size=0)
                start = time.perf_counter()
                got = sum(len(parser.feed(chunk)) for chunk in reads)
                best = min(best, (time.perf_counter() - start) / got)
        print(f"| {name} | {best * 1e3:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="payload sizes in bytes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell (best is kept)")
    parser.add_argument("--tables", default="pure,accelerators",
                        help="which mask tables: pure (the pure-Python methods), accelerators")
    parser.add_argument("--parser", action="store_true",
                        help="also compare the frame parser with aiohttp's reader")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}\n")
    sizes = [int(s) for s in args.sizes.split(",")]
    tables = args.tables.split(",")
    if "pure" in tables:
        mask_table(sizes, args.repeat)
    if "accelerators" in tables:
        print("\nAccelerators:\n")
        accelerator_table(sizes, args.repeat)
    if args.parser:
        print()
        parser_table(max(1, args.repeat // 2 + 1))
        print()
        blocks_in_the_parser(max(1, args.repeat // 2 + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
