"""Hold N idle keep-alive connections to 127.0.0.1:PORT, for benchmarks/server.py (idle_mem).

    python benchmarks/idle_memory.py --port PORT [--conns 1000] [--max-hold 30]

Each connection sends one `GET /` (HTTP/1.1, so keep-alive) and reads its whole 200 response,
then stays open and idle. When all are held it prints `HOLDING n`, then waits for a line on
stdin (the driver reads the server's VmRSS meanwhile) or --max-hold seconds, whichever comes
first, closes everything and prints `BENCH_JSON {...}`. Bounded: opening all connections may
take at most 60 s, every step of one connection 5 s. Loopback only.

Adapted from the pre-project harness (/work/shared/bench/idle_conns.py); this copy is
self-contained in the repository.
"""
import argparse
import asyncio
import json
import os
import sys
import time

HOST = "127.0.0.1"


async def hold_one(port, sem, writers, failures):
    async with sem:  # at most 64 connections being opened at once
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
            length = None
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("no Content-Length in the response to GET /")
            await asyncio.wait_for(reader.readexactly(length), 5)
            writers.append((reader, writer))
        except Exception as e:
            failures.append(repr(e)[:100])


async def main(args):
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(64)
    writers, failures = [], []
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(hold_one(args.port, sem, writers, failures)
                                            for _ in range(args.conns))), 60)
    opened = time.perf_counter() - t0
    print(f"HOLDING {len(writers)}", flush=True)
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.max_hold)
    except asyncio.TimeoutError:
        pass
    # were they still open when the driver read the RSS? (a server may time idle ones out)
    still_open = sum(1 for r, w in writers if not w.transport.is_closing() and not r.at_eof())
    for _, w in writers:
        w.transport.abort()
    return {"held": len(writers), "still_open": still_open, "failed": len(failures),
            "open_s": round(opened, 2), "first_failures": failures[:3]}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--max-hold", type=float, default=30.0)
    a = p.parse_args()
    try:
        res = asyncio.run(main(a))
    except Exception as e:  # report, never hang
        res = {"error": f"{type(e).__name__}: {e}"[:300]}
    print("BENCH_JSON " + json.dumps(res), flush=True)
    os._exit(0)
