"""Benchmark: build and serialise responses, lowserver against aiohttp.

    .venv/bin/python benchmarks/response.py [--count 100000] [--rounds 5]

One driver, three worker processes (aiohttp reads AIOHTTP_NO_EXTENSIONS at import, so each
flavour needs its own interpreter): lowserver, aiohttp without its C extensions, aiohttp with
them. Each worker builds `count` responses the way a handler does (a short text body and a
few header fields), prepares each for a request and ends it, through the library's own body
writer into a transport that only counts bytes: what a server does per request between the
handler's return and the socket. Time is the worker's CPU time (`time.process_time`), so
other processes competing for the cores do not count against it; the three workers are run in
turn `--repeat` times, and the best round of each is reported, as responses per second, with
the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Hello, World!"
HEADERS = {"X-Request-Id": "7f3d9a2c", "Cache-Control": "no-cache"}


class CountingTransport(asyncio.Transport):
    """A transport that keeps nothing: it counts bytes and write() calls."""

    def __init__(self) -> None:
        super().__init__({"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080),
                          "sslcontext": None})
        self.bytes = 0
        self.writes = 0

    def write(self, data) -> None:
        self.bytes += len(data)
        self.writes += 1

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def _parse(raw: bytes):
    from lowserver.http_parser import HttpRequestParser
    return HttpRequestParser().feed(raw)[0]


REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: bench\r\n\r\n"


async def run_lowserver(count: int, rounds: int) -> dict:
    from lowserver.request import BaseRequest
    from lowserver.response import Response
    from lowserver.streams import EMPTY_PAYLOAD, StreamWriter
    from lowserver.testing import MockProtocol

    loop = asyncio.get_running_loop()
    transport = CountingTransport()
    protocol = MockProtocol(loop, transport)
    request = BaseRequest(_parse(REQUEST), EMPTY_PAYLOAD, protocol, None, None, loop)
    return await _time(lambda: StreamWriter(protocol, loop), request, Response, transport,
                       count, rounds)


async def run_aiohttp(count: int, rounds: int) -> dict:
    from aiohttp import http_parser as a_parser
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.helpers import NO_EXTENSIONS
    from aiohttp.http_writer import StreamWriter
    from aiohttp.streams import EMPTY_PAYLOAD
    from aiohttp.web_request import BaseRequest
    from aiohttp.web_response import Response

    loop = asyncio.get_running_loop()
    transport = CountingTransport()

    class Protocol(BaseProtocol):
        ssl_context = None
        peername = ("127.0.0.1", 40000)
        sockname = ("127.0.0.1", 8080)

    protocol = Protocol(loop)
    protocol.transport = transport
    parser = a_parser.HttpRequestParser(protocol, loop, 2**16)
    message = parser.feed_data(REQUEST)[0][0][0]
    request = BaseRequest(message, EMPTY_PAYLOAD, protocol, None, None, loop)
    result = await _time(lambda: StreamWriter(protocol, loop), request, Response, transport,
                         count, rounds)
    result["c_extensions"] = not NO_EXTENSIONS
    return result


async def _time(new_writer, request, response_class, transport, count: int,
                rounds: int) -> dict:
    text, headers = TEXT, HEADERS

    async def one_round() -> float:
        start = time.process_time()
        for _ in range(count):
            request._payload_writer = new_writer()      # one writer per response, as a server
            response = response_class(text=text, headers=headers)
            await response.prepare(request)
            await response.write_eof()
        return time.process_time() - start

    await one_round()   # warm-up (also checks that it works)
    transport.bytes = transport.writes = 0
    best = min([await one_round() for _ in range(rounds)])
    return {"rate": count / best, "bytes_per_response": transport.bytes / (count * rounds),
            "writes_per_response": transport.writes / (count * rounds)}


def worker(impl: str, count: int, rounds: int) -> None:
    runner = run_lowserver if impl == "lowserver" else run_aiohttp
    print(json.dumps(asyncio.run(runner(count, rounds))))


def spawn(impl: str, count: int, rounds: int, no_extensions: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("AIOHTTP_NO_EXTENSIONS", None)
    if no_extensions:
        env["AIOHTTP_NO_EXTENSIONS"] = "1"
    done = subprocess.run([sys.executable, __file__, "--worker", impl, "--count", str(count),
                           "--rounds", str(rounds)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3,
                        help="run the three workers in turn this many times")
    parser.add_argument("--worker", choices=["lowserver", "aiohttp"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.count, args.rounds)
        return 0
    print(f"{args.count:,} responses (text body of {len(TEXT)} bytes, {len(HEADERS)} extra "
          f"header fields), best of {args.rounds} rounds x {args.repeat}, CPU time, "
          f"Python {sys.version.split()[0]}")
    flavours = {"lowserver": ("lowserver", False), "aiohttp, pure Python": ("aiohttp", True),
                "aiohttp, C extensions": ("aiohttp", False)}
    best: dict[str, dict] = {}
    for _ in range(args.repeat):          # interleaved, so a busy moment hurts all alike
        for name, (impl, no_extensions) in flavours.items():
            result = spawn(impl, args.count, args.rounds, no_extensions)
            if name not in best or result["rate"] > best[name]["rate"]:
                best[name] = result
    if not best["aiohttp, C extensions"].get("c_extensions"):
        print("  (aiohttp's C extensions are not available here)")
    for name, result in best.items():
        print(f"  {name:24} {result['rate']:>10,.0f} responses/s   "
              f"{result['bytes_per_response']:.0f} bytes, "
              f"{result['writes_per_response']:.1f} write(s) each")
    ours = best["lowserver"]["rate"]
    print(f"  lowserver / aiohttp pure Python: {ours / best['aiohttp, pure Python']['rate']:.2f}x")
    print(f"  lowserver / aiohttp with C:      {ours / best['aiohttp, C extensions']['rate']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
