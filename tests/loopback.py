"""Shared by the end-to-end tests: serve a handler on a free loopback port, then close it all."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from lowserver import web
from lowserver.websocket_frames import WSMsgType

LONG = 10.0  # upper bound for anything that should take milliseconds


@contextlib.asynccontextmanager
async def serve(handler: Any, host: str = "127.0.0.1",
                **kwargs: Any) -> AsyncIterator[tuple[web.Server, int]]:
    """Serve `handler` on a free port of `host`; yield (Server, port); close everything after."""
    server = web.Server(handler, **kwargs)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, host, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, port
        await assert_every_connection_watched(server)
    finally:
        listener.close()
        server.pre_shutdown()
        await asyncio.wait_for(server.shutdown(1.0), LONG)
        await asyncio.wait_for(listener.wait_closed(), LONG)


async def assert_every_connection_watched(server: web.Server) -> None:
    """The safety net (issue 10): after a scenario, no live connection is left with neither
    a running handler task nor a timer (unless that timeout was disabled): such a
    connection would hang forever. A few loop turns first, for callbacks already due."""
    for _ in range(5):
        await asyncio.sleep(0)
    unwatched = [handler for handler in server.connections if not handler._watched()]
    assert not unwatched, f"connections that can hang forever: {unwatched}"


def echo_handler(results: list | None = None, **options: Any) -> Any:
    """A handler that echoes WebSocket messages (`WebSocketResponse(**options)`); when the
    socket ends, (types seen, close_code, exception(), compress) goes to `results`."""
    async def handler(request: web.BaseRequest) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        seen = []
        async for msg in ws:
            seen.append(msg.type)
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        if results is not None:
            results.append((seen, ws.close_code, ws.exception(), ws.compress))
        return ws
    return handler
