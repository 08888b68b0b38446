"""Stage 08: the command line (`lowserver.cli`) and naming what to serve (`lowserver.loading`).

`python -m lowserver MODULE:NAME` for the three kinds (and an async factory), the mistakes
that exit with status 2, --help as plain text under both names, TLS from the command line,
a unix socket reached with aiohttp's UnixConnector, --loop uvloop, the access log and the
keep-alive timeout. Each server is a subprocess on a port it picks and prints.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from lowserver.cli import prog_name
from lowserver.loading import TargetError, kind_of, load, make_server, split_spec
from lowserver.server import Server
from test_08_support import LONG, app_dir, get, tls_files, lowserver, serving, started  # noqa: F401


# --- naming what to serve, in-process ------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ("app", "not in 'module:name' syntax"),
    (":handler", "not in 'module:name' syntax"),
    ("app:", "not in 'module:name' syntax"),
    (".app:handler", "relative module names are not supported"),
    ("app:make()", "is not a name"),
])
def test_split_spec_refuses(spec, message):
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_spec(spec)


def test_split_spec_and_load_a_dotted_name():
    assert split_spec("pkg.mod:a.b") == ("pkg.mod", "a.b")
    assert load("lowserver.cli:main.__name__") == "main"


def test_kinds_are_told_apart_by_signature():
    async def handler(request, *, debug=False):
        pass

    def factory(config=None):
        return handler

    async def two(a, b):
        pass

    def keyword(*, request):
        pass

    assert kind_of(handler) == "handler"
    assert kind_of(factory) == "factory"
    assert kind_of(Server(handler)) == "server"
    assert kind_of(lambda request: None) == "handler"
    for bad in (two, keyword, 42):
        with pytest.raises(TargetError):
            kind_of(bad)


async def test_make_server_for_each_kind():
    async def handler(request):
        pass

    async def async_factory():
        return handler

    made = Server(handler)
    assert await make_server(made, keepalive_timeout=1) is made          # keeps its own options
    assert (await make_server(handler)).request_handler is handler
    assert (await make_server(lambda: made)) is made
    assert (await make_server(async_factory)).request_handler is handler
    assert (await make_server(async_factory())).request_handler is handler  # an awaitable
    with pytest.raises(TargetError, match="a factory must return a Server or a handler"):
        await make_server(lambda: 42)


# --- --help ---------------------------------------------------------------------------------

def test_prog_name_is_the_way_it_was_invoked():
    assert prog_name("/somewhere/lowserver/__main__.py") == "python -m lowserver"
    assert prog_name("/venv/bin/lowserver") == "lowserver"


def test_help_is_plain_text_and_names_python_m_lowserver():
    done = subprocess.run(lowserver("--help"), capture_output=True, text=True, timeout=LONG,
                          env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m lowserver ")
    for markup in ("``", ":func:", ":class:", ".. "):
        assert markup not in done.stdout
    for option in ("--host", "--port", "--unix", "--workers", "--loop", "--certfile",
                   "--keyfile", "--access-log", "--shutdown-timeout", "--keepalive-timeout"):
        assert option in done.stdout


def test_the_console_script_names_itself_lowserver():
    script = Path(sys.executable).parent / "lowserver"
    if not script.exists():
        pytest.skip("the console script is installed by `pip install -e .`")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=LONG)
    assert done.returncode == 0 and done.stdout.startswith("usage: lowserver ")


# --- mistakes: exit status 2 and one line ---------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["app"], "'app' is not in 'module:name' syntax"),
    (["app:missing"], "module 'app' has no attribute 'missing'"),
    (["nope:handler"], "unable to import nope: No module named 'nope'"),
    (["app:not_servable"], "42 is not a Server, a handler or a factory"),
    (["app:two"], "two(request, response) is neither a handler"),
    (["app:handler", "--keyfile", "key.pem"], "--keyfile needs --certfile"),
    (["app:handler", "--certfile", "missing.pem"], "cannot load the certificate"),
    (["app:handler", "--workers", "0"], "must be at least 1"),
    (["app:handler", "--port", "70000"], "is not a port"),
])
def test_a_mistake_exits_2_with_a_message(app_dir, args, message):
    done = subprocess.run(lowserver(*args), cwd=app_dir, capture_output=True, text=True,
                          timeout=LONG)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m lowserver: error: ") and message in last, last


def test_a_port_in_use_exits_1(app_dir):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(lowserver("app:handler", "--port", str(port)), cwd=app_dir,
                              capture_output=True, text=True, timeout=LONG)
    assert done.returncode == 1
    assert "cannot listen" in done.stderr


def test_uvloop_missing_is_a_clear_error(app_dir, tmp_path):
    fake = tmp_path / "no_uvloop" / "uvloop"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    done = subprocess.run(lowserver("app:handler", "--loop", "uvloop"), cwd=app_dir, env=env,
                          capture_output=True, text=True, timeout=LONG)
    assert done.returncode == 2
    assert "--loop uvloop needs the uvloop package" in done.stderr
    assert "pip install 'lowserver[uvloop]'" in done.stderr


# --- the three kinds, served ----------------------------------------------------------------

@pytest.mark.parametrize("spec", ["app:handler", "app:make_server", "app:server",
                                  "app:make_async"])
def test_each_kind_is_served_and_stops_on_sigint(app_dir, spec):
    with serving(app_dir, spec, "--port", "0") as (process, url):
        assert get(url + "/pid") == (200, str(process.pid))
        process.signal(signal.SIGINT)
        assert process.wait() == 0


def test_the_demo_is_served_without_a_target(app_dir):
    with serving(app_dir, "--port", "0") as (process, url):
        status, body = get(url + "/anything")
        assert status == 200 and "GET /anything" in body
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_uvloop_serves(app_dir):
    pytest.importorskip("uvloop")
    with serving(app_dir, "app:handler", "--port", "0", "--loop", "uvloop",
                 "--workers", "2") as (process, url):
        assert get(url + "/pid")[0] == 200
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


# --- TLS, unix sockets, options -------------------------------------------------------------

def test_tls_from_the_command_line(app_dir):
    client = tls_files(app_dir)
    with serving(app_dir, "app:handler", "--port", "0", "--certfile", "cert.pem",
                 "--keyfile", "key.pem") as (process, url):
        assert url.startswith("https://127.0.0.1:")
        assert get(url + "/pid", context=client) == (200, str(process.pid))
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 10) as raw:
            with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.selected_alpn_protocol() in (None, "http/1.1")
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_unix_socket_with_aiohttps_unix_connector(app_dir, workers):
    path = str(app_dir / "app.sock")
    with _unix(app_dir, path, workers) as process:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path)) as session:
            async with session.get("http://localhost/pid") as response:
                assert response.status == 200
                assert (int(await response.text()) == process.pid) == (workers == "1")
        process.signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait) == 0
    assert not os.path.exists(path)


@contextlib.contextmanager
def _unix(app_dir, path, workers):
    with started(lowserver("app:handler", "--unix", path, "--workers", workers),
                 app_dir) as process:
        found = process.wait_for(r"on (http://unix:\S+:) ").group(1)
        assert found == f"http://unix:{path}:"
        yield process


def test_access_log_and_keepalive_timeout(app_dir):
    with serving(app_dir, "app:handler", "--port", "0", "--access-log",
                 "--keepalive-timeout", "0.5") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 10) as raw:
            raw.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(10)
            received = b""
            for _ in range(100):       # bounded: a server that closes early ends the loop
                piece = raw.recv(65536)
                received += piece
                if not piece or received.endswith(str(process.pid).encode()):
                    break
            assert received.endswith(str(process.pid).encode()), received
            started_idle = time.monotonic()
            assert raw.recv(65536) == b""                      # closed by the server
            assert time.monotonic() - started_idle < 5
        line = process.wait_for(r'"GET /pid HTTP/1\.1" 200', stream="stderr")
        assert line.string.startswith("127.0.0.1 ")
        process.signal(signal.SIGTERM)
        assert process.wait() == 0


def test_a_server_target_keeps_its_own_options(app_dir):
    with serving(app_dir, "app:server", "--port", "0", "--keepalive-timeout", "3") as (process, url):
        note = process.wait_for(r"note: ", stream="stderr").string
        assert "app:server is a Server: it keeps its own options" in note
        assert "keepalive_timeout not applied" in note
        assert get(url + "/pid")[0] == 200


def test_a_second_sigint_stops_a_single_process_at_once(app_dir):
    with serving(app_dir, "app:handler", "--port", "0") as (process, url):
        client = threading.Thread(target=lambda: _ignore_errors(get, url + "/slow?s=20", LONG))
        client.start()
        time.sleep(0.4)
        began = time.monotonic()
        process.signal(signal.SIGINT)
        time.sleep(0.3)
        process.signal(signal.SIGINT)
        assert process.wait() == 1
        assert time.monotonic() - began < 10
        client.join(LONG)


def _ignore_errors(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def test_ipv6_loopback(app_dir):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with started(lowserver("app:handler", "--host", "::1", "--port", "0"), app_dir) as process:
        url = process.wait_for(r"on (http://\[::1\]:\d+)/ ").group(1)
        assert get(url + "/pid") == (200, str(process.pid))
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
