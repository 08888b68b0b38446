"""Run the demo server: ``python -m lowserver [--host H] [--port P]``.

Hand-written (not generated). It serves the README's program (aiohttp's low-level example) through lowserver's own
`ServerRunner` and `TCPSite`, with a handler that shows what it received:

- ``/stream?n=N`` streams N lines with chunked encoding (`StreamResponse`);
- ``/ws`` echoes WebSocket messages;
- any other method and path answers with a plain-text description of the request (method,
  target, version, headers, body size). ``--port 0`` picks a free port; the address served is
  printed. Ctrl-C shuts the server down gracefully.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from lowserver import web


async def handler(request: web.BaseRequest) -> web.StreamResponse:
    if request.path == "/stream":
        try:
            lines = min(int(request.query.get("n", "10")), 10_000)
        except ValueError:
            raise web.HTTPBadRequest(text="n must be a whole number") from None
        response = web.StreamResponse()
        response.content_type = "text/plain"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(lines):
            await response.write(f"line {i + 1} of {lines}\n".encode())
        await response.write_eof()
        return response
    if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == web.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws
    body = await request.read()
    lines = [f"{request.method} {request.path_qs} HTTP/{request.version.major}."
             f"{request.version.minor}", ""]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines += ["", f"body: {len(body)} bytes", "", "served by lowserver"]
    return web.Response(text="\n".join(lines) + "\n")


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
