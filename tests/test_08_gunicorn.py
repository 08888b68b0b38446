"""Stage 08: gunicorn serving a bare low-level handler (`lowserver.worker.GunicornWorker`).

Two workers serve HTTP from two processes and a WebSocket; SIGHUP (graceful restart)
replaces the workers without dropping a request in flight; --max-requests recycles a
worker; the heartbeat keeps a busy worker alive past --timeout; --graceful-timeout bounds
the shutdown; TLS and the access log from gunicorn's settings; the uvloop worker serves;
SIGTERM stops gunicorn with status 0.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time

import aiohttp
import pytest

from test_08_support import LONG, app_dir, get, tls_files, pids_until, started  # noqa: F401 (fixture)

pytest.importorskip("gunicorn")
# --no-control-socket everywhere: gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) would
# be shared by every gunicorn these tests and notebook 08 start


def gunicorn(app_dir, *args: str, worker: str = "GunicornWorker"):
    return started([sys.executable, "-m", "gunicorn", "app:handler", "-k",
                    f"lowserver.worker.{worker}", "-b", "127.0.0.1:0", "--no-control-socket", *args],
                   app_dir)


def listening(process, workers: int = 1) -> str:
    """The URL gunicorn listens at, once `workers` workers say they are serving."""
    url = process.wait_for(r"Listening at: (http://127\.0\.0\.1:\d+)", stream="stderr").group(1)
    for _ in range(workers):
        process.wait_for(r"lowserver worker serving \(pid: \d+\)", stream="stderr")
    return url


async def test_two_gunicorn_workers_serve_http_and_websocket(app_dir):
    with gunicorn(app_dir, "-w", "2") as process:
        url = listening(process, 2)
        pids = await asyncio.to_thread(pids_until, url, 2, 200)
        assert len(set(pids)) == 2 and process.pid not in pids
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url + "/ws") as ws:
                await ws.send_str("hello")
                echo = await asyncio.wait_for(ws.receive_str(), LONG)
                assert echo.startswith("hello from ") and int(echo.split()[-1]) in pids
        process.signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait) == 0


def test_hup_restarts_the_workers_without_dropping_an_in_flight_request(app_dir):
    with gunicorn(app_dir, "-w", "2", "--graceful-timeout", "20") as process:
        url = listening(process, 2)
        old = set(pids_until(url, 2, 200))
        answers: list = []
        slow = threading.Thread(target=lambda: answers.append(get(url + "/slow?s=2", LONG)))
        slow.start()
        time.sleep(0.5)                                   # answered by an old worker now
        process.signal(signal.SIGHUP)
        slow.join(LONG)
        assert answers, "the in-flight request got no answer"
        status, body = answers[0]
        assert status == 200 and int(body.split()[-1]) in old
        new: set[int] = set()
        deadline = time.monotonic() + LONG
        while time.monotonic() < deadline and not (len(new) == 2 and not new & old):
            new = set(pids_until(url, 2, 50))
        assert len(new) == 2 and not new & old, (old, new)
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_max_requests_recycles_the_worker(app_dir):
    with gunicorn(app_dir, "-w", "1", "--max-requests", "3") as process:
        url = listening(process)
        served = []
        for _ in range(40):                               # the worker checks once a second
            served.append(int(get(url + "/pid")[1]))
            if len(set(served)) > 1:
                break
            time.sleep(0.25)
        assert len(set(served)) > 1 and served.count(served[0]) >= 3
        process.wait_for(r"Max requests, shutting down", stream="stderr")


def test_the_uvloop_worker_serves(app_dir):
    pytest.importorskip("uvloop")
    with gunicorn(app_dir, "-w", "1", worker="GunicornUVLoopWorker") as process:
        url = listening(process)
        status, body = get(url + "/pid")
        assert status == 200 and int(body) != process.pid
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_the_heartbeat_keeps_a_busy_worker_alive(app_dir):
    # --timeout 2: a worker that does not notify() within 2 s is killed as hung; the worker
    # notifies once a second from its event loop, so a 4 s response is not a hang
    with gunicorn(app_dir, "-w", "1", "--timeout", "2") as process:
        url = listening(process)
        pid = int(get(url + "/pid")[1])
        status, body = get(url + "/slow?s=4", LONG)
        assert status == 200 and body == f"slow done by {pid}"
        assert int(get(url + "/pid")[1]) == pid                 # the same worker, never killed
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
        assert "WORKER TIMEOUT" not in process.stderr_text + process.rest_of("stderr")


def test_graceful_timeout_bounds_the_shutdown(app_dir):
    # --graceful-timeout 1: the worker gives in-flight responses 95 % of it, then cancels them
    with gunicorn(app_dir, "-w", "1", "--graceful-timeout", "1") as process:
        url = listening(process)
        answers: list = []

        def slow() -> None:
            try:
                answers.append(get(url + "/slow?s=10", LONG))
            except OSError as error:   # the connection is closed without an answer
                answers.append(error)

        client = threading.Thread(target=slow)
        client.start()
        time.sleep(0.5)
        began = time.monotonic()
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
        assert time.monotonic() - began < 6
        client.join(LONG)
        assert answers and isinstance(answers[0], OSError)


def test_gunicorn_tls_and_its_access_log(app_dir):
    client = tls_files(app_dir)
    with gunicorn(app_dir, "-w", "1", "--certfile", "cert.pem", "--keyfile", "key.pem",
                  "--access-logfile", "-") as process:
        url = process.wait_for(r"Listening at: (https://127\.0\.0\.1:\d+)",
                               stream="stderr").group(1)
        process.wait_for(r"lowserver worker serving", stream="stderr")
        status, body = get(url + "/pid", context=client)
        assert status == 200
        line = process.wait_for(r'"GET /pid HTTP/1\.1" 200', stream="stdout").string
        assert line.startswith("127.0.0.1 ")
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
