"""Stage 08: pre-fork workers (`python -m lowserver --workers N`, `lowserver.prefork`).

Two workers answer from two processes (never the parent) within 200 connections; SIGTERM
to the parent finishes an in-flight response and ends every process with status 0; a
worker killed with SIGKILL is replaced; a worker that cannot start stops the server with
status 2; workers whose parent was killed stop by themselves.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from lowserver.prefork import Prefork, bind_tcp, exit_status, url_of
from test_08_support import (LONG, app_dir, get, pids_until, refused, serving,  # noqa: F401
                             wait_for_children)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _slow_in_background(url: str, seconds: float) -> tuple[threading.Thread, list]:
    answers: list = []

    def ask() -> None:
        try:
            answers.append(get(f"{url}/slow?s={seconds}", LONG))
        except OSError as error:  # closed without an answer
            answers.append((None, repr(error)))

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, answers


def test_two_workers_answer_from_two_processes_and_stop_cleanly_on_sigterm(app_dir):
    with serving(app_dir, "app:handler", "--port", "0", "--workers", "2") as (process, url):
        wait_for_children(process.pid, 2)
        pids = pids_until(url, 2, limit=200)
        assert len(set(pids)) == 2, f"one process answered all {len(pids)} connections"
        assert process.pid not in pids
        thread, answers = _slow_in_background(url, 1.0)
        time.sleep(0.4)                                  # the slow response is in flight
        process.signal(signal.SIGTERM)
        thread.join(LONG)
        assert answers and answers[0][0] == 200 and answers[0][1].startswith("slow done by ")
        assert process.wait() == 0
        assert refused("127.0.0.1", _port(url))           # every copy of the socket is closed
        log = process.rest_of("stderr")
        assert log.count(" started") == 2 and "was killed" not in log, log


def test_a_killed_worker_is_replaced(app_dir):
    with serving(app_dir, "app:handler", "--port", "0", "--workers", "2") as (process, url):
        wait_for_children(process.pid, 2)
        first = set(pids_until(url, 2, limit=200))
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        process.wait_for(rf"worker {victim} was killed by SIGKILL; starting another",
                         stream="stderr")
        new = int(process.wait_for(r"worker (\d+) started", stream="stderr").group(1))
        seen = set(pids_until(url, 2, limit=200))
        for _ in range(200):
            if new in seen:
                break
            seen.add(int(get(url + "/pid")[1]))
        assert victim not in seen and new in seen and (first - {victim}) <= seen
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_a_worker_that_cannot_start_stops_the_server_with_status_2(app_dir):
    with serving(app_dir, "app:bad_factory", "--port", "0", "--workers", "2") as (process, url):
        assert process.wait() == 2
        log = process.rest_of("stderr")
        assert "a factory must return a Server or a handler" in log
        assert "could not start (exited with status 2): stopping" in log


def test_workers_stop_when_their_parent_is_killed(app_dir):
    with serving(app_dir, "app:handler", "--port", "0", "--workers", "2") as (process, url):
        wait_for_children(process.pid, 2)
        assert len(set(pids_until(url, 2, limit=200))) == 2
        process.signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while not refused("127.0.0.1", _port(url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert refused("127.0.0.1", _port(url)), "the workers still hold the socket"


def test_prefork_in_words():
    with pytest.raises(ValueError):
        Prefork(lambda: 0, 0)
    assert exit_status(3) == "exited with status 3"
    assert exit_status(-signal.SIGKILL) == "was killed by SIGKILL"
    sock = bind_tcp("127.0.0.1", 0)
    try:
        assert url_of(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert url_of(sock, tls=True).startswith("https://")
        assert not sock.getblocking()
    finally:
        sock.close()


def test_ctrl_c_reaches_every_process_and_still_finishes_the_response(app_dir):
    # a terminal's Ctrl-C sends SIGINT to the whole process group: each worker gets SIGINT and
    # then the SIGTERM its parent passes on; the second signal must not cut the first's shutdown
    with serving(app_dir, "app:handler", "--port", "0", "--workers", "2") as (process, url):
        wait_for_children(process.pid, 2)
        thread, answers = _slow_in_background(url, 1.0)
        time.sleep(0.4)
        os.killpg(process.pid, signal.SIGINT)
        thread.join(LONG)
        assert answers and answers[0][0] == 200 and answers[0][1].startswith("slow done by ")
        assert process.wait() == 0


def test_a_second_stop_signal_kills_the_workers_at_once(app_dir):
    with serving(app_dir, "app:handler", "--port", "0", "--workers", "2",
                 "--shutdown-timeout", "60") as (process, url):
        wait_for_children(process.pid, 2)
        thread, answers = _slow_in_background(url, 20.0)
        time.sleep(0.4)
        began = time.monotonic()
        process.signal(signal.SIGTERM)
        time.sleep(0.3)
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
        assert time.monotonic() - began < 10
        assert "killing 1 worker(s) still running" in process.rest_of("stderr")  # the idle one is gone
        thread.join(LONG)
        assert answers and answers[0][0] is None          # cut: that is what a second signal means
