"""Bounded WebSocket echo load client, for benchmarks/server.py (scenarios ws32 and ws64k).

    python benchmarks/ws_echo.py --port PORT [--size 32] [--conns 8] [--window 16]
                                 [--warmup 1] [--duration 3] [--client raw|aiohttp]

Opens --conns WebSocket connections to ws://127.0.0.1:PORT/ws, keeps --window masked binary
messages of --size bytes in flight on each (a new one is sent for every echo received), and
counts the echoes that arrive during the measured --duration, after --warmup. Prints one line,
`BENCH_JSON {...}`, with msgs_per_s and mib_per_s (or an error). It stops by itself: at most
warmup + duration + 15 s. Loopback only: the host is fixed to 127.0.0.1.

Two clients:
  raw      (default) an asyncio.Protocol that sends pre-built masked frames (built once,
           fixed mask key) and counts echoed frames by their headers without copying payloads.
           It costs far less per message than any server, so the server sets the pace.
  aiohttp  aiohttp's own client (ClientSession.ws_connect, send_bytes, receive), each echo
           compared with what was sent. A fuller client, but dearer per message than a fast
           server: with it, ws32 measures the client (see benchmarks/README.md).

The raw client is adapted from the pre-project harness (/work/shared/bench/ws_client.py);
this copy is self-contained in the repository.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import time

HOST = "127.0.0.1"
MASK = b"\x37\xfa\x21\x3d"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3 sample key
# RFC 6455 §4.2.2: the accept value is base64(SHA-1(key + GUID))
ACCEPT = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def payload_of(size: int) -> bytes:
    return bytes(97 + i % 26 for i in range(size))


def client_frame(payload: bytes) -> bytes:
    """A final binary frame, masked as RFC 6455 §5.3 requires of a client."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = (MASK * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + MASK + masked


class Stats:
    def __init__(self):
        self.counting = False
        self.received = 0
        self.sending = True
        self.errors = 0


class RawEchoClient(asyncio.Protocol):
    """Counts echoed frames without copying payloads: a fast path for reads made only of
    whole expected echo frames (small messages), and a header-then-skip parser otherwise."""

    def __init__(self, frame, size, window, stats, port):
        self.frame, self.size, self.window, self.stats, self.port = frame, size, window, stats, port
        # the unmasked frame a server sends back for a small payload
        self.echo = bytes((0x82, size)) + payload_of(size) if size < 126 else None
        self.head = bytearray()  # the handshake response, then partial frame headers
        self.skip = 0            # payload bytes of the current frame still to pass over
        self.skip_data = False   # is that frame a data frame (counted when passed)?
        self.upgraded = False
        self.sent = 0
        self.got = 0
        self.transport = None
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.closed = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n" % (HOST.encode(), self.port, KEY))

    def top_up(self):
        if self.stats.sending:
            n = self.window - (self.sent - self.got)
            if n > 0:
                self.transport.write(self.frame * n)
                self.sent += n

    def data_received(self, data):
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end])
            if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
                self.ready.set_exception(RuntimeError(
                    "handshake failed: " + head[:200].decode("latin-1")))
                self.transport.close()
                return
            data = bytes(self.head[end + 4:])
            self.head = bytearray()
            self.upgraded = True
            self.ready.set_result(None)
            self.top_up()
        echo = self.echo
        if echo is not None and not self.skip and not self.head:
            k, r = divmod(len(data), len(echo))
            if not r and data.count(echo) == k:  # k whole, correct echoes tile the read
                self.count(k)
                return
        self.count(self.parse(data))

    def parse(self, data):
        got, pos, n, head = 0, 0, len(data), self.head
        while pos < n:
            if self.skip:
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
                if not self.skip and self.skip_data:
                    got += 1
                continue
            head.append(data[pos])  # frame header bytes: at most 10, one at a time is fine
            pos += 1
            if len(head) < 2:
                continue
            ln = head[1] & 0x7F
            need = 2 + (2 if ln == 126 else 8 if ln == 127 else 0)
            if len(head) < need:
                continue
            if need > 2:
                ln = int.from_bytes(head[2:need], "big")
            op = head[0] & 0x0F
            if head[1] & 0x80:  # RFC 6455 §5.1: a server must not mask
                self.stats.errors += 1
            del head[:]
            if op == 8:  # close from the server
                self.transport.close()
                return got
            data_frame = op in (1, 2)
            if data_frame and (op != 2 or ln != self.size):
                self.stats.errors += 1
            if ln:
                self.skip, self.skip_data = ln, data_frame
            elif data_frame:
                got += 1
        return got

    def count(self, got):
        if got:
            self.got += got
            if self.stats.counting:
                self.stats.received += got
            self.top_up()

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


async def run_raw(args, stats):
    loop = asyncio.get_running_loop()
    frame = client_frame(payload_of(args.size))
    clients = []
    try:
        for _ in range(args.conns):
            _, proto = await asyncio.wait_for(loop.create_connection(
                lambda: RawEchoClient(frame, args.size, args.window, stats, args.port),
                HOST, args.port), 5)
            clients.append(proto)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 5)
        elapsed = await measure(args, stats)
        for c in clients:  # a close frame (masked, empty payload), then wait a little
            if not c.transport.is_closing():
                c.transport.write(b"\x88\x80" + MASK)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.closed for c in clients)), 3)
        except asyncio.TimeoutError:
            pass
        return elapsed
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.abort()


async def run_aiohttp(args, stats):
    import aiohttp  # only this client needs it

    payload = payload_of(args.size)

    async def echo_loop(ws):
        for _ in range(args.window):
            await ws.send_bytes(payload)
        in_flight = args.window
        while in_flight:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                break  # closed or error
            in_flight -= 1
            if msg.data != payload:
                stats.errors += 1
            if stats.counting:
                stats.received += 1
            if stats.sending:
                await ws.send_bytes(payload)
                in_flight += 1

    async with aiohttp.ClientSession() as session:
        sockets = []
        try:
            for _ in range(args.conns):
                sockets.append(await asyncio.wait_for(
                    session.ws_connect(f"http://{HOST}:{args.port}/ws", autoping=True), 5))
            tasks = [asyncio.create_task(echo_loop(ws)) for ws in sockets]
            elapsed = await measure(args, stats)
            done, pending = await asyncio.wait(tasks, timeout=5)
            for t in pending:
                t.cancel()
            for t in done:
                if t.exception() is not None:
                    raise t.exception()
            for ws in sockets:
                await asyncio.wait_for(ws.close(), 3)
            return elapsed
        finally:
            for ws in sockets:
                if not ws.closed:
                    ws._response.close()


async def measure(args, stats):
    """Warm up, count for --duration seconds, then stop sending; returns the counted time."""
    await asyncio.sleep(args.warmup)
    stats.counting = True
    t0 = time.perf_counter()
    await asyncio.sleep(args.duration)
    stats.counting = False
    elapsed = time.perf_counter() - t0
    stats.sending = False
    return elapsed


async def run(args):
    stats = Stats()
    elapsed = await (run_raw if args.client == "raw" else run_aiohttp)(args, stats)
    msgs = stats.received / elapsed
    return {"msgs": stats.received, "seconds": round(elapsed, 3), "msgs_per_s": round(msgs, 1),
            "mib_per_s": round(msgs * args.size / 2**20, 2), "size": args.size,
            "conns": args.conns, "window": args.window, "client": args.client,
            "errors": stats.errors}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, default=32, help="message size, bytes")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--window", type=int, default=16, help="messages in flight per connection")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    args = p.parse_args()
    try:
        res = asyncio.run(asyncio.wait_for(run(args), args.warmup + args.duration + 15))
    except Exception as e:  # report, never hang
        res = {"error": f"{type(e).__name__}: {e}"[:300]}
    print("BENCH_JSON " + json.dumps(res), flush=True)
    os._exit(0)  # no lingering executor threads or transports


if __name__ == "__main__":
    main()
