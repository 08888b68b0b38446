"""Run the demo server: ``python -m lowserver [--host H] [--port P]``.

Hand-written (not generated). It serves the README's program (aiohttp's low-level example) through lowserver's own
`ServerRunner` and `TCPSite`, with the demo handler `lowserver.demo.handler` (notebook 07):

- ``/`` is a page for a browser: it opens a WebSocket to ``/ws`` and shows the echo;
- ``/stream?n=N`` streams N lines with chunked encoding (`StreamResponse`);
- ``/ws`` echoes WebSocket messages;
- any other method and path answers with a plain-text description of the request (method,
  target, version, headers, body: the first 64 KiB). ``--port 0`` picks a free port; the
  address served is printed. Ctrl-C shuts the server down gracefully.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from lowserver import web
from lowserver.demo import handler


async def serve(host: str, port: int) -> None:
    runner = web.ServerRunner(web.Server(handler))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    for address in runner.addresses:
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        print(f"lowserver demo serving on http://{shown}:{address[1]}/ (Ctrl-C to stop)",
              flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        print("shutting down gracefully", flush=True)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowserver",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port to bind (default 8080; 0 picks a free one)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
