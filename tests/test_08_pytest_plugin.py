"""Stage 08: the pytest plugin (`lowserver.pytest_plugin`, registered as a pytest11 entry point).

The `lowserver_server` fixture serves a handler (or a Server, or a factory) on a free port of
127.0.0.1 and returns its base URL, a yarl.URL ending in "/"; sync and async tests use it
alike; every server it started is shut down gracefully after the test. A pytest run in a
fresh directory finds the fixture through the entry point alone.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from importlib.metadata import entry_points

import aiohttp
import pytest
from yarl import URL

from lowserver import web
from lowserver.pytest_plugin import ServedInThread
from test_08_support import LONG, refused


async def hello(request):
    return web.Response(text=f"hello {request.path}")


def test_the_plugin_is_registered_as_an_entry_point():
    found = [e for e in entry_points(group="pytest11") if e.name == "lowserver"]
    assert [e.value for e in found] == ["lowserver.pytest_plugin"]


def test_a_sync_test_gets_a_base_url(lowserver_server):
    url = lowserver_server(hello)
    assert isinstance(url, URL) and url.scheme == "http" and url.host == "127.0.0.1"
    assert url.path == "/" and url.port
    with urllib.request.urlopen(str(url / "there"), timeout=10) as response:
        assert (response.status, response.read()) == (200, b"hello /there")


async def test_an_async_test_with_aiohttps_client(lowserver_server):
    first = lowserver_server(hello)
    second = lowserver_server(web.Server(hello), keepalive_timeout=1)  # a Server keeps its own
    assert first != second
    async with aiohttp.ClientSession() as session:
        for url in (first, second):
            async with session.get(url / "x") as response:
                assert await response.text() == "hello /x"


def test_a_target_that_cannot_be_served_fails_the_call(lowserver_server):
    from lowserver.loading import TargetError
    with pytest.raises(TargetError):
        lowserver_server(lambda: 42)


def test_close_lets_the_response_in_flight_finish():
    async def slow(request):
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    served = ServedInThread(slow)
    answers: list = []
    client = threading.Thread(target=lambda: answers.append(
        urllib.request.urlopen(str(served.url), timeout=LONG).read()))
    client.start()
    time.sleep(0.2)
    served.close()
    client.join(LONG)
    assert answers == [b"finished"]
    assert refused("127.0.0.1", served.url.port)


INNER = textwrap.dedent('''
    import urllib.request

    from lowserver import web

    URLS = []


    async def handler(request):
        return web.Response(text="inner")


    def test_inner(lowserver_server):
        url = lowserver_server(handler)
        URLS.append(url)
        with urllib.request.urlopen(str(url), timeout=10) as response:
            assert response.read() == b"inner"


    def test_after():
        import socket
        try:
            socket.create_connection(("127.0.0.1", URLS[0].port), timeout=2).close()
        except ConnectionRefusedError:
            return
        raise AssertionError("the server outlived its test")
''')


def test_a_fresh_pytest_run_finds_the_fixture_and_closes_the_server(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
