"""Where a hello request's instructions go, step by step: the budget table of notebook 06.

`icount.py` counts a whole request over a real socket. This counts the steps of the same
request inside one process, each run on its own N and 2N times under valgrind's callgrind
(the difference divided by N: start-up and imports cancel), with a transport that keeps
nothing, so each figure is what that step costs and nothing else:

  parse      `HttpRequestParser.feed()` of `GET / HTTP/1.1` + Host: the head, its events
             (a head seen before: looked up, notebook 01)
  parse-new  the same with a head never seen: the table of heads parsed keeps nothing
             (its stand-in's own Python call, some 1 k, included)
  request    the request factory: a `StreamWriter` and a `BaseRequest` over the message
  response   the handler's `Response(text="Hello, World!")`
  send       `Response._send_at_once()`: framing, fields, head and body in one write
             (a head sent before: looked up, notebook 02)
  send-new   the same with a head never sent: its inputs are a first every time, as a
             field that changes in every answer makes them (stand-ins' calls included)
  answer     `_answer_one()`: the four above but the parse, the handler call, the bookkeeping
  connection `data_received()` through the task to the idle watch: the whole protocol side,
             the asyncio loop turn included (a loop turn with nothing to do is subtracted)

What is left between "connection" and icount's figure over a socket is asyncio's own
transport work (the read, the write, the selector), which the floor servers measure.

  python benchmarks/hello_budget.py                 # every step, ~3 min
  python benchmarks/hello_budget.py --steps parse,send --n 2000
  python benchmarks/hello_budget.py --run send 1000  # (what runs under valgrind)

Only counts (no clocks): a step's figure repeats to a few instructions.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = ("parse", "parse-new", "request", "response", "send", "send-new", "answer",
         "connection")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HELLO = "Hello, World!"


class NullTransport(asyncio.Transport):
    """A transport that takes every write and keeps nothing (counts the bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False
        self.last = b""

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.last = data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def handler(request):  # the bench's hello handler (apps/common_web.py), its one path
    if request.path == "/":
        return Response(text=HELLO)
    return Response(status=404, text="Not Found")


class KeepsNothing(dict):
    """A table of heads that never keeps one: every head is worked out, as a new one is."""

    def __setitem__(self, key: object, value: object) -> None:
        pass


class SeesNothing(set):
    """A table of heads seen once that never sees one: every head is a first."""

    def __contains__(self, item: object) -> bool:
        return False

    def add(self, item: object) -> None:
        pass


Response = None   # lowserver's, once imported by workload() (the path is set by then)


def workload(step: str, n: int) -> None:
    """Run `step` n times (after a warm-up of 200)."""
    from lowserver import web
    from lowserver.body_writer import StreamWriter
    from lowserver.http_parser import HttpRequestParser
    from lowserver.streams import EMPTY_PAYLOAD

    global Response
    Response = web.Response
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = web.Server(handler, access_log=None, loop=loop)
    protocol = server()
    transport = NullTransport()
    protocol.connection_made(transport)
    message = HttpRequestParser(chunk_ends=True).feed(REQUEST)[0]
    factory = server.request_factory
    if step.endswith("-new"):   # the same request and response, never found in the tables
        from lowserver import response as response_module
        response_module._HEADS_SENT = KeepsNothing()
        response_module._HEADS_SEEN = SeesNothing()

    def run(count: int) -> None:
        if step == "parse":
            parser = HttpRequestParser(chunk_ends=True)
            for _ in range(count):
                parser.feed(REQUEST)
        elif step == "parse-new":   # a path of its own each time: never seen before
            parser = HttpRequestParser(chunk_ends=True)
            parser._heads_parsed = KeepsNothing()
            for _ in range(count):
                parser.feed(REQUEST)
        elif step == "request":
            for _ in range(count):
                factory(message, EMPTY_PAYLOAD, protocol, StreamWriter(protocol, loop), None)
        elif step == "response":
            for _ in range(count):
                web.Response(text=HELLO)
        elif step == "send":
            request = factory(message, EMPTY_PAYLOAD, protocol, None, None)
            for _ in range(count):
                request._payload_writer = StreamWriter(protocol, loop)
                web.Response(text=HELLO)._send_at_once(request)
            # (the Response is built in the loop: subtract the "response" step)
        elif step == "send-new":    # a body length of its own each time: never sent before
            request = factory(message, EMPTY_PAYLOAD, protocol, None, None)
            for _ in range(count):
                request._payload_writer = StreamWriter(protocol, loop)
                web.Response(text=HELLO)._send_at_once(request)
        elif step == "answer":
            for _ in range(count):
                coro = protocol._answer_one(message, EMPTY_PAYLOAD)
                try:
                    coro.send(None)
                except StopIteration:
                    pass
                else:  # pragma: no cover - the hello path never waits
                    raise AssertionError("the hello path awaited something")
        elif step in ("connection", "loop"):
            async def drive() -> None:
                for _ in range(count):
                    if step == "connection":
                        protocol.data_received(REQUEST)
                    await asyncio.sleep(0)   # one loop turn: the request's task runs in it
            loop.run_until_complete(drive())
        else:
            raise SystemExit(f"unknown step {step!r}")

    run(200)
    run(n)
    if step in ("connection", "answer", "send") and not (
            transport.last.startswith(b"HTTP/1.1 200 OK\r\n")
            and transport.last.endswith(HELLO.encode())):
        raise AssertionError(f"{step}: the last write is not the hello response: "
                             f"{transport.last[:60]!r}")


def callgrind(step: str, n: int, workdir: str) -> int:
    out = os.path.join(workdir, f"{step}.{n}.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
           os.path.abspath(__file__), "--run", step, str(n)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(cmd, check=True, capture_output=True, timeout=900, env=env)
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def per_iteration(step: str, n: int, workdir: str) -> float:
    return (callgrind(step, 2 * n, workdir) - callgrind(step, n, workdir)) / n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--run", nargs=2, metavar=("STEP", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        sys.path.insert(0, os.path.dirname(HERE))
        workload(args.run[0], int(args.run[1]))
        return 0
    steps = [s for s in args.steps.split(",") if s]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hello-budget-") as workdir:
        for step in steps + (["loop"] if "connection" in steps else []) + (
                ["response"] if {"send", "send-new"} & set(steps) and "response" not in steps
                else []):
            figures[step] = per_iteration(step, args.n, workdir)
            print(f"[budget] {step:10} {figures[step]:>10,.0f} Ir", file=sys.stderr, flush=True)
    for send in ("send", "send-new"):
        if send in figures:
            figures[send] -= figures["response"]
    if "connection" in figures:
        figures["connection"] -= figures.pop("loop")
    print("| step | Ir per request |\n|---|---:|")
    for step in steps:
        print(f"| {step} | {figures[step]:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
