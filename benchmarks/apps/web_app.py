"""The benchmark app: one handler, served by aiohttp's or lowserver's low-level `web.Server`.

    python benchmarks/apps/web_app.py {aiohttp|lowserver} [PORT]

Both servers run this very code; only the import differs (`from aiohttp import web` or
`from lowserver import web`), as the project's contract says. `web.Server(handler)` is built
with its defaults (no keyword arguments) and served by `loop.create_server` on 127.0.0.1
(PORT 0, the default, lets the kernel pick a free one). Once listening, the app prints one
line, `LISTENING <port>`, which the driver (benchmarks/server.py) reads from the log.
Run aiohttp with AIOHTTP_NO_EXTENSIONS=1 for its pure-Python parser and WebSocket reader.

Endpoints:
  GET  /            'Hello, World!' (text/plain)
  POST /echo        reads the whole body, answers its length as text
  GET  /stream?n=N  N chunks of 16 KiB with chunked transfer encoding (N=64: 1 MiB)
  GET  /ws          WebSocket echo (binary -> binary, text -> text)
  anything else     404 (also /stream or /ws when `web` lacks StreamResponse, WebSocketResponse
                    or WSMsgType: the driver then skips those scenarios for that server)

Adapted from the pre-project harness (/work/shared/bench/apps/common_web.py and
aiohttp_app.py / lowserver_app.py); this copy is self-contained in the repository.
"""
import asyncio
import sys

import bench_loop  # BENCH_LOOP: asyncio or uvloop (benchmarks' --loop)

CHUNK = b"x" * 16384
HELLO = "Hello, World!"
HOST = "127.0.0.1"  # loopback only


def build_handler(web):
    """The handler, written against aiohttp.web's names, for whichever `web` is passed."""
    Response = web.Response
    # a server still being built may lack these: its other endpoints are measured all the same
    StreamResponse = getattr(web, "StreamResponse", None)
    WebSocketResponse = getattr(web, "WebSocketResponse", None)
    WSMsgType = getattr(web, "WSMsgType", None)
    TEXT, BINARY = (WSMsgType.TEXT, WSMsgType.BINARY) if WSMsgType else (None, None)

    async def handler(request):
        path = request.path
        if path == "/":
            return Response(text=HELLO)
        if path == "/echo":
            body = await request.read()
            return Response(text=str(len(body)))
        if path == "/stream" and StreamResponse is not None:
            n = int(request.query.get("n", "64"))
            resp = StreamResponse()
            resp.content_type = "application/octet-stream"
            resp.enable_chunked_encoding()
            try:
                await resp.prepare(request)
                for _ in range(n):
                    await resp.write(CHUNK)
                await resp.write_eof()
            except ConnectionResetError:  # wrk hangs up mid-stream when its time is up
                pass
            return resp
        if path == "/ws" and WebSocketResponse is not None and WSMsgType is not None:
            ws = WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type == TEXT:
                    await ws.send_str(msg.data)
            return ws
        return Response(status=404, text="Not Found")

    return handler


def load_web(impl):
    if impl == "aiohttp":
        import aiohttp
        from aiohttp import http_parser, web
        print(f"aiohttp {aiohttp.__version__} parser={http_parser.HttpRequestParser.__module__}",
              flush=True)
    elif impl == "lowserver":
        from lowserver import web
        import lowserver
        print(f"lowserver {getattr(lowserver, '__version__', '?')} from {lowserver.__file__}",
              flush=True)
    else:
        sys.exit(f"unknown implementation {impl!r} (aiohttp or lowserver)")
    missing = [name for name in ("Server", "Response") if not hasattr(web, name)]
    if missing:  # say what is missing rather than fail on the first request
        sys.exit(f"{impl}: web lacks {', '.join(missing)}")
    return web


async def serve(web, port):
    loop = asyncio.get_running_loop()
    server = web.Server(build_handler(web))
    listener = await loop.create_server(server, HOST, port, backlog=2048)
    print(f"LISTENING {listener.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        listener.close()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} aiohttp|lowserver [PORT]")
    web = load_web(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    try:
        bench_loop.run(serve(web, port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
