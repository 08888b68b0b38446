"""WebSocket echo: lowserver's WebSocketResponse against aiohttp's, end to end on loopback.

Each server runs the same echo handler (binary -> binary, text -> text) under its own
`web.Server`, in a subprocess pinned to one CPU; a load client pinned to the other keeps
`--window` masked binary messages of `--size` bytes in flight on each of `--conns`
connections and counts the echoes. Reported per server: messages per second (wall clock)
and messages per CPU-second of the server process (user + system, read from /proc), which
is what to compare on a machine other programs also use.

    python benchmarks/ws_echo_compare.py                       # 32 B and 64 KiB, all servers
    python benchmarks/ws_echo_compare.py --size 32 --rounds 5 --servers lowserver,aiohttp-pure

Servers: `lowserver` (this checkout), `aiohttp-pure` (AIOHTTP_NO_EXTENSIONS=1: its
pure-Python reader, the baseline) and `aiohttp-c` (its C extensions). Loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MASK = b"\x37\xfa\x21\x3d"
SERVERS = {
    "lowserver": {},
    "aiohttp-pure": {"AIOHTTP_NO_EXTENSIONS": "1"},
    "aiohttp-c": {},
}


# --- the server side (run in a subprocess: `--serve NAME PORT`) ---------------------------

def serve(name: str, port: int, lowserver_path: str) -> None:
    if name == "lowserver":
        sys.path.insert(0, lowserver_path)
        from lowserver import web
    else:
        from aiohttp import web
    binary, text = web.WSMsgType.BINARY, web.WSMsgType.TEXT

    async def handler(request):
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == binary:
                await ws.send_bytes(msg.data)
            elif msg.type == text:
                await ws.send_str(msg.data)
        return ws

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = web.Server(handler)
        await loop.create_server(server, HOST, port, backlog=1024)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the load client ---------------------------------------------------------------------------

def client_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
    key = (MASK * (n // 4 + 1))[:n]
    return head + MASK + (int.from_bytes(payload, "big")
                          ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class EchoClient(asyncio.Protocol):
    """Keeps `window` frames in flight and counts the echoes (frame headers only)."""

    def __init__(self, frame: bytes, window: int, port: int, stats: dict) -> None:
        self.frame, self.window, self.port, self.stats = frame, window, port, stats
        size = len(frame) - 6                   # a small frame: 2 header bytes, 4 of mask
        self.echo = (bytes((0x82, size)) + bytes(97 + i % 26 for i in range(size))
                     if size < 126 else None)
        self.upgraded = False
        self.head = bytearray()
        self.skip = 0
        self.sent = self.got = 0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n" % (HOST.encode(), self.port))

    def top_up(self) -> None:
        if self.stats["sending"]:
            n = self.window - (self.sent - self.got)
            if n > 0:
                self.transport.write(self.frame * n)
                self.sent += n

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(bytes(self.head[:100])))
                return
            data = bytes(self.head[end + 4:])
            self.head = bytearray()
            self.upgraded = True
            self.ready.set_result(None)
            self.top_up()
        echo = self.echo
        if echo is not None and not self.skip and not self.head:
            count, rest = divmod(len(data), len(echo))
            if not rest and data.count(echo) == count:    # whole echoes only: count them
                self.count(count)
                return
        self.count(self.parse(data))

    def parse(self, data: bytes) -> int:
        """Count the whole frames in `data` (headers read, payloads skipped)."""
        got, pos, n, head = 0, 0, len(data), self.head
        while pos < n:
            if self.skip:
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
                if not self.skip:
                    got += 1
                continue
            if len(head) < 2:
                take = min(2 - len(head), n - pos)
                head += data[pos:pos + take]
                pos += take
                if len(head) < 2:
                    break
            length = head[1] & 0x7F
            need = 4 if length == 126 else 10 if length == 127 else 2
            if len(head) < need:
                take = min(need - len(head), n - pos)
                head += data[pos:pos + take]
                pos += take
                if len(head) < need:
                    break
            if need > 2:
                length = int.from_bytes(head[2:need], "big")
            del head[:]
            if length:
                self.skip = length
            else:
                got += 1
        return got

    def count(self, got: int) -> None:
        if got:
            self.got += got
            if self.stats["counting"]:
                self.stats["received"] += got
            self.top_up()


async def load(port: int, size: int, conns: int, window: int, warmup: float,
               duration: float, server_pid: int) -> dict:
    loop = asyncio.get_running_loop()
    stats = {"sending": True, "counting": False, "received": 0}
    frame = client_frame(bytes(97 + i % 26 for i in range(size)))
    clients = []
    for _ in range(conns):
        _, client = await loop.create_connection(
            lambda: EchoClient(frame, window, port, stats), HOST, port)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 5)
    await asyncio.sleep(warmup)
    cpu0 = process_cpu(server_pid)
    start = time.perf_counter()
    stats["counting"] = True
    await asyncio.sleep(duration)
    stats["counting"] = False
    elapsed = time.perf_counter() - start
    cpu = process_cpu(server_pid) - cpu0
    stats["sending"] = False
    for client in clients:
        client.transport.abort()
    return {"msgs_per_s": stats["received"] / elapsed,
            "msgs_per_cpu_s": stats["received"] / cpu if cpu else 0.0,
            "server_cpu": cpu / elapsed}


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the driver ----------------------------------------------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def run_one(name: str, args: argparse.Namespace, size: int) -> dict:
    port = free_port()
    env = {**os.environ, **SERVERS[name]}
    if name != "aiohttp-pure":
        env.pop("AIOHTTP_NO_EXTENSIONS", None)
    pin = ["taskset", "-c", str(args.server_cpu)] if args.pin else []
    server = subprocess.Popen([*pin, sys.executable, __file__, "--serve", name, str(port),
                               "--lowserver-path", args.lowserver_path],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{name} did not start")
        if args.pin:
            os.sched_setaffinity(0, {args.client_cpu})
        return asyncio.run(asyncio.wait_for(
            load(port, size, args.conns if size < 1024 else max(1, args.conns // 2),
                 args.window if size < 1024 else 4, args.warmup, args.duration, server.pid),
            args.warmup + args.duration + 20))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="32,65536")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--lowserver-path", default=str(ROOT),
                        help="the directory holding the lowserver package (this checkout)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.lowserver_path)
        return
    names = args.servers.split(",")
    for size in (int(value) for value in args.sizes.split(",")):
        results: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.rounds):        # interleaved, so that noise hits all alike
            for name in names:
                results[name].append(run_one(name, args, size))
        base = statistics.median(r["msgs_per_cpu_s"] for r in results.get(
            "aiohttp-pure", results[names[0]]))
        print(f"\n{size} B messages, median of {args.rounds} rounds")
        print(f"{'server':14} {'msg/s':>10} {'msg/CPU-s':>10} {'x pure':>7} {'CPU':>5}")
        for name in names:
            rows = results[name]
            wall = statistics.median(r["msgs_per_s"] for r in rows)
            per_cpu = statistics.median(r["msgs_per_cpu_s"] for r in rows)
            cpu = statistics.median(r["server_cpu"] for r in rows)
            print(f"{name:14} {wall:10,.0f} {per_cpu:10,.0f} {per_cpu / base:7.2f} {cpu:5.2f}")
        print("BENCH_JSON " + json.dumps({"size": size, "results": results}))


if __name__ == "__main__":
    main()
