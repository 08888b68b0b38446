"""Stage 08: `web.run_app` with aiohttp's spelling and behaviour (`lowserver.serving`).

The same keywords and defaults as aiohttp 3.14.5's run_app; aiohttp's banner; sites chosen
by aiohttp's rules (host, path, sock); SIGINT or SIGTERM finish an in-flight response and
return; `serve_sockets` serves sockets already bound.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sys
import threading
import time

import aiohttp.web
import pytest

import lowserver
from lowserver import web
from lowserver.runner import GracefulExit
from lowserver.serving import run_app, serve_sockets
from test_08_support import LONG, app_dir, get, started  # noqa: F401 (fixture)


def test_run_app_is_in_web_and_spelt_as_aiohttps():
    assert web.run_app is lowserver.run_app is run_app
    ours = inspect.signature(run_app).parameters
    theirs = inspect.signature(aiohttp.web.run_app).parameters
    assert list(ours) == list(theirs)
    for name, parameter in theirs.items():
        if name in ("access_log_class", "access_log"):      # their classes, our own
            continue
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name


SCRIPT = """
import signal, socket, sys
from lowserver import web
import app
mode = sys.argv[1]
if mode == "host":
    web.run_app(app.handler, host="127.0.0.1", port=0, shutdown_timeout=10)
elif mode == "sock+path":
    sock = socket.create_server(("127.0.0.1", 0))
    web.run_app(app.make_server, sock=sock, path=sys.argv[2], shutdown_timeout=10)
print("run_app returned", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_app_serves_and_finishes_an_in_flight_response(app_dir, signum):
    argv = [sys.executable, "-u", "-c", SCRIPT, "host"]
    with started(argv, app_dir) as process:
        url = process.wait_for(r"^======== Running on (http://127\.0\.0\.1:\d+) ========$").group(1)
        process.wait_for(r"^\(Press CTRL\+C to quit\)$")
        assert get(url + "/pid") == (200, str(process.pid))
        answers: list = []
        slow = threading.Thread(target=lambda: answers.append(get(url + "/slow?s=1", LONG)))
        slow.start()
        time.sleep(0.4)
        process.signal(signum)
        slow.join(LONG)
        assert answers and answers[0][0] == 200 and answers[0][1].startswith("slow done")
        process.wait_for(r"^run_app returned$")
        assert process.wait() == 0


def test_run_app_with_a_socket_and_a_unix_path(app_dir):
    path = str(app_dir / "run_app.sock")
    argv = [sys.executable, "-u", "-c", SCRIPT, "sock+path", path]
    with started(argv, app_dir) as process:
        names = process.wait_for(r"^======== Running on (.*) ========$").group(1).split(", ")
        assert len(names) == 2 and f"http://unix:{path}:" in names
        tcp = next(name for name in names if name.startswith("http://127.0.0.1:"))
        assert get(tcp + "/pid") == (200, str(process.pid))
        with socket.socket(socket.AF_UNIX) as unix:
            unix.settimeout(10)
            unix.connect(path)
            unix.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := unix.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(
            str(process.pid).encode())
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_run_app_in_a_thread_without_signals_and_a_loop_of_ours():
    loop = asyncio.new_event_loop()
    printed: list[str] = []
    sock = socket.create_server(("127.0.0.1", 0))

    async def handler(request):
        return web.Response(text="from a thread")

    thread = threading.Thread(target=run_app, args=(handler,), kwargs=dict(
        sock=sock, handle_signals=False, loop=loop, print=printed.append, shutdown_timeout=5))
    thread.start()
    try:
        deadline = time.monotonic() + LONG
        while not printed and time.monotonic() < deadline:
            time.sleep(0.05)
        port = sock.getsockname()[1]
        assert printed == [f"======== Running on http://127.0.0.1:{port} ========\n"
                           "(Press CTRL+C to quit)"]
        assert get(f"http://127.0.0.1:{port}/") == (200, "from a thread")
    finally:
        def stop() -> None:
            raise GracefulExit()
        loop.call_soon_threadsafe(stop)
        thread.join(LONG)
    assert not thread.is_alive() and loop.is_closed()


async def test_serve_sockets_stops_on_sigterm_after_the_response_in_flight():
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def handler(request):
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        serving = asyncio.ensure_future(serve_sockets(handler, [sock], shutdown_timeout=5))
        await asyncio.sleep(0.1)
        answer = asyncio.ensure_future(asyncio.to_thread(get, url + "/", LONG))
        await asyncio.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)          # caught by serve_sockets' loop handler
        assert await asyncio.wait_for(answer, LONG) == (200, "finished")
        await asyncio.wait_for(serving, LONG)
        assert sock.fileno() == -1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
