"""FileResponse benchmark: a 64 MiB file downloaded from lowserver and from aiohttp, in MiB/s.

    .venv/bin/python benchmarks/file_response.py                      # ~1 min
    .venv/bin/python benchmarks/file_response.py --rounds 7 --downloads 5 --modes sendfile
    .venv/bin/python benchmarks/file_response.py --size-mib 256 --markdown /tmp/files.md

Servers, each a fresh process on 127.0.0.1 (pinned to --server-cpu when `taskset` exists),
each a low-level server whose handler returns the file for any request:
  lowserver  `lowserver.web.Server` + `lowserver.web.FileResponse` (this checkout)
  aiohttp    `aiohttp.web.Server` + `aiohttp.web.FileResponse` (aiohttp 3.14.5, C extensions)

Modes:
  sendfile   plain TCP: both send with `loop.sendfile()` (os.sendfile, the kernel copies)
  chunks     plain TCP with AIOHTTP_NOSENDFILE=1 (both honour it): the chunked fallback,
             256 KiB reads in an executor, written through the body writer
  tls        TLS (a throwaway trustme CA): no sendfile over TLS; lowserver takes its chunked
             fallback, aiohttp asyncio's own sendfile fallback

The client (this process, pinned to --client-cpu) keeps one connection per server and mode,
downloads the file --downloads times per round with a blocking socket (`recv_into` a 1 MiB
buffer; TLS: `ssl` on the same socket) and checks every length; the figure is the median
over all downloads of all rounds, with min and max, and the server's CPU time per download
from /proc/PID/stat. Servers run in a rotated order each round; they are stopped by PID.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
MIB = 1024 * 1024
SERVERS = ("lowserver", "aiohttp")
MODES = ("sendfile", "chunks", "tls")


# --- the server side (run as a child process) ---------------------------------------------

def serve(impl: str, path: str, certfile: str | None, keyfile: str | None) -> None:
    import asyncio
    if impl == "lowserver":
        sys.path.insert(0, ROOT)
        from lowserver import web
    else:
        from aiohttp import web

    async def handler(request):
        return web.FileResponse(path)

    async def main() -> None:
        context = None
        if certfile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certfile, keyfile)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(web.Server(handler), HOST, 0, ssl=context)
        print(server.sockets[0].getsockname()[1], flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()
    asyncio.run(main())


# --- the client side --------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu and shutil.which("taskset") else []


def start(impl: str, mode: str, path: str, tls_files: tuple[str, str], cpu: str | None):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("AIOHTTP_NOSENDFILE", None)
    if mode == "chunks":
        env["AIOHTTP_NOSENDFILE"] = "1"
    args = [sys.executable, __file__, "--serve", impl, "--path", path]
    if mode == "tls":
        args += ["--certfile", tls_files[0], "--keyfile", tls_files[1]]
    proc = subprocess.Popen(taskset(cpu) + args, stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"{impl} did not start")
    return proc, int(line)


def download(sock, size: int, buffer: bytearray) -> float:
    """One GET on the open connection; returns the seconds from request to last byte."""
    started = time.perf_counter()
    sock.sendall(b"GET /file HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: identity\r\n\r\n")
    view = memoryview(buffer)
    head = b""
    while b"\r\n\r\n" not in head:
        n = sock.recv_into(view)
        if not n:
            raise ConnectionError("closed before the head")
        head += bytes(view[:n])
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    if length != size:
        raise AssertionError(f"Content-Length {length}, not {size}")
    got = len(body)
    while got < length:
        n = sock.recv_into(view)
        if not n:
            raise ConnectionError(f"closed after {got} of {length} bytes")
        got += n
    if got != length:
        raise AssertionError(f"{got} bytes for a Content-Length of {length}")
    return time.perf_counter() - started


def connect(port: int, mode: str, client_context):
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "tls":
        sock = client_context.wrap_socket(sock, server_hostname=HOST)
    return sock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--downloads", type=int, default=3, help="per round, server and mode")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.path, args.certfile, args.keyfile)
        return 0
    if args.client_cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(args.client_cpu)})
    modes, servers = args.modes.split(","), args.servers.split(",")
    size = args.size_mib * MIB
    workdir = tempfile.mkdtemp(prefix="bench-files-")
    procs: list[subprocess.Popen] = []
    try:
        path = os.path.join(workdir, "file.bin")
        with open(path, "wb") as f:
            f.write(random.Random(64).randbytes(size))
        import trustme
        ca = trustme.CA()
        cert = ca.issue_cert(HOST)
        tls_files = (os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem"))
        cert.cert_chain_pems[0].write_to_path(tls_files[0])
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(tls_files[0], append=True)
        cert.private_key_pem.write_to_path(tls_files[1])
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        buffer = bytearray(MIB)
        rates: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for round_no in range(args.rounds):
            order = servers[round_no % len(servers):] + servers[:round_no % len(servers)]
            for mode in modes:
                for impl in order:
                    proc, port = start(impl, mode, path, tls_files, args.server_cpu)
                    procs.append(proc)
                    sock = connect(port, mode, client_context)
                    download(sock, size, buffer)                   # warm-up
                    for _ in range(args.downloads):
                        before = cpu_seconds(proc.pid)
                        seconds = download(sock, size, buffer)
                        cpu.setdefault((impl, mode), []).append(cpu_seconds(proc.pid) - before)
                        rates.setdefault((impl, mode), []).append(size / MIB / seconds)
                    sock.close()
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(10)
                    procs.remove(proc)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        lines = [f"FileResponse, a {args.size_mib} MiB file, {args.rounds} rounds x "
                 f"{args.downloads} downloads (median, min-max MiB/s; server CPU s per download)",
                 "", "| mode | server | MiB/s | min-max | server CPU s | vs aiohttp |",
                 "|---|---|---:|---:|---:|---:|"]
        for mode in modes:
            base = statistics.median(rates[("aiohttp", mode)]) if ("aiohttp", mode) in rates \
                else None
            for impl in servers:
                r = rates[(impl, mode)]
                median = statistics.median(r)
                ratio = f"{median / base:.2f}" if base else "-"
                lines.append(f"| {mode} | {impl} | {median:,.0f} | {min(r):,.0f}-{max(r):,.0f} |"
                             f" {statistics.median(cpu[(impl, mode)]):.3f} | {ratio} |")
        text = "\n".join(lines)
        print(text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text + "\n")
        return 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
