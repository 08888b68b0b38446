"""The event loop every bench server runs on: asyncio's, or uvloop's with BENCH_LOOP=uvloop.

benchmarks/server.py and benchmarks/icount.py set BENCH_LOOP from their `--loop` option, so
that one run compares the servers on the same loop. (`python -m lowserver --loop uvloop`
is the user's way to the same choice.)
"""
import asyncio
import os
import sys

LOOP = os.environ.get("BENCH_LOOP", "asyncio")


def run(main):
    """Run the coroutine `main` to its end on the chosen loop."""
    print(f"event loop: {LOOP}", file=sys.stderr, flush=True)
    if LOOP == "uvloop":
        import uvloop
        return uvloop.run(main)
    if LOOP != "asyncio":
        sys.exit(f"BENCH_LOOP={LOOP!r}: asyncio or uvloop")
    return asyncio.run(main)
