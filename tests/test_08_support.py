"""Helpers of the stage-08 end-to-end tests (this file holds no test).

An application module written into a temporary directory; processes started in a session
of their own, read with deadlines, and always killed (the whole session) when a test ends;
plain HTTP requests over fresh connections. Everything listens on 127.0.0.1 (or a unix
socket) on ports the kernel picks, read back from what the process prints.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

LONG = 30.0  # the most any single wait in these tests takes

APP = textwrap.dedent('''\
    """The stage-08 test application: every process says who it is."""
    import asyncio
    import os

    from lowserver import web


    async def handler(request):
        if request.path == "/slow":
            await asyncio.sleep(float(request.query.get("s", "1")))
            return web.Response(text=f"slow done by {os.getpid()}")
        if request.path == "/ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                await ws.send_str(f"{message.data} from {os.getpid()}")
            return ws
        return web.Response(text=str(os.getpid()))


    def make_server():
        return web.Server(handler)


    async def make_async():
        return handler


    def bad_factory():
        return 42


    def two(request, response):
        pass


    server = web.Server(handler)
    not_servable = 42
''')


def tls_files(directory: Path) -> ssl.SSLContext:
    """A throwaway CA's certificate for 127.0.0.1 as cert.pem and key.pem in `directory`;
    the client context that trusts it."""
    import trustme
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return client


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding app.py (the application above)."""
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


class Process:
    """A child process in its own session; its stdout and stderr read line by line with a deadline."""

    def __init__(self, argv: list[str], cwd: Path, env: dict | None = None) -> None:
        self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.popen.pid
        self._buffers = {self.popen.stdout.fileno(): b"", self.popen.stderr.fileno(): b""}
        self.stderr_text = ""

    def _line(self, fd: int, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffers[fd]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffers[fd] += chunk
        line, _, self._buffers[fd] = self._buffers[fd].partition(b"\n")
        return line.decode()

    def wait_for(self, pattern: str, *, stream: str = "stdout", timeout: float = LONG) -> re.Match:
        """The first line of `stream` matching `pattern` (read within `timeout`), else fail."""
        fd = getattr(self.popen, stream).fileno()
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            line = self._line(fd, deadline - time.monotonic())
            if line is None:
                break
            seen.append(line)
            if stream == "stderr":
                self.stderr_text += line + "\n"
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} on {stream}; seen: {seen}")

    def rest_of(self, stream: str = "stderr", timeout: float = 5.0) -> str:
        """What is left on `stream` once the process has ended."""
        fd = getattr(self.popen, stream).fileno()
        lines = []
        while (line := self._line(fd, timeout)) is not None:
            lines.append(line)
        text = "\n".join(lines) + self._buffers[fd].decode()
        return text

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = LONG) -> int:
        return self.popen.wait(timeout)

    def kill_session(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        for stream in (self.popen.stdout, self.popen.stderr):
            stream.close()


@contextlib.contextmanager
def started(argv: list[str], cwd: Path, env: dict | None = None):
    process = Process(argv, cwd, env)
    try:
        yield process
    finally:
        process.kill_session()


def lowserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "lowserver", *args]


BANNER = r"lowserver serving .* on (https?://(?:127\.0\.0\.1|\[::1\]):\d+)/"


@contextlib.contextmanager
def serving(cwd: Path, *args: str, env: dict | None = None):
    """`python -m lowserver ARGS` started, its banner read: yields (process, base URL)."""
    with started(lowserver(*args), cwd, env) as process:
        url = process.wait_for(BANNER).group(1)
        yield process, url


def get(url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET over a new connection (urllib opens one per request): (status, body)."""
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        return response.status, response.read().decode()


def wait_for_children(pid: int, count: int, timeout: float = LONG) -> list[int]:
    """The children of `pid` once it has `count` of them (from /proc), and a moment to start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) >= count:
            time.sleep(0.5)          # from fork() to serving: a loop, a Server, a site
            return [int(child) for child in children]
        time.sleep(0.05)
    raise AssertionError(f"{pid} did not get {count} children within {timeout} s")


def pids_until(url: str, wanted: int, limit: int = 200) -> list[int]:
    """Ask /pid over new connections until `wanted` distinct processes answered (at most `limit`)."""
    pids: list[int] = []
    for _ in range(limit):
        pids.append(int(get(url + "/pid")[1]))
        if len(set(pids)) >= wanted:
            break
    return pids


def refused(host: str, port: int) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
