"""Shared by the end-to-end tests: serve a handler on a free loopback port, then close it all;
the raw-socket helpers (a head, everything until the close, masked client frames, a server
frame), and an echo WebSocket handler."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from lowserver import web
from lowserver.websocket_frames import WSMsgType, apply_mask, frame_header

LONG = 10.0  # upper bound for anything that should take milliseconds
MASK = b"\x37\xfa\x21\x3d"   # the masking key of the clients' frames (RFC 6455 §5.3)


@contextlib.asynccontextmanager
async def serve(handler: Any, host: str = "127.0.0.1", *, ssl: Any = None,
                **kwargs: Any) -> AsyncIterator[tuple[web.Server, int]]:
    """Serve `handler` on a free port of `host` (over TLS with an `ssl` context); yield
    (Server, port); close everything after."""
    server = web.Server(handler, **kwargs)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, host, 0, ssl=ssl)
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


# --- raw sockets ------------------------------------------------------------------------

async def read_head(reader: asyncio.StreamReader) -> bytes:
    """A response head, up to and with its empty line."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LONG)


async def read_all(reader: asyncio.StreamReader, bound: float = LONG) -> bytes:
    """Everything the server sends until it closes; fails if it does not close in `bound`."""
    return await asyncio.wait_for(reader.read(), bound)


async def exchange(port: int, data: bytes, *, host: str = "127.0.0.1",
                   half_close: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (bounded), return all it sent."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await read_all(reader)
    finally:
        writer.close()


def client_frame(data: bytes, opcode: int = WSMsgType.BINARY, *, fin: bool = True,
                 rsv1: bool = False) -> bytes:
    """A frame as a client sends it: masked (RFC 6455 §5.3)."""
    return frame_header(len(data), opcode, fin=fin, rsv1=rsv1, mask=MASK) + apply_mask(MASK, data)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame: (first byte, payload). Server frames are never masked."""
    first, second = await asyncio.wait_for(reader.readexactly(2), LONG)
    assert not second & 0x80, "a server frame must not be masked (RFC 6455 §5.1)"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), LONG), "big")
    elif length == 127:
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(8), LONG), "big")
    return first, await asyncio.wait_for(reader.readexactly(length), LONG)
