"""Stage 07, end to end in a real browser: the demo's page, driven in headless Chromium.

When `chromium` or `chromium-headless-shell` is on the PATH (else the test skips, and says
so), the browser is started headless with a fresh profile, a DevTools port of its choosing
(read back from the profile's `DevToolsActivePort` file) and a host resolver that maps every
name but 127.0.0.1 to nothing; the test speaks the DevTools protocol to it over the
`websockets` package. It loads `/` of `lowserver.demo.handler`, types two messages into the
page, presses Enter, and reads the echo back from the DOM; it checks that the handshake
negotiated permessage-deflate (on the page: `ws.extensions`; on the server: the socket's
`compress`), that everything the page loaded came from the server (no script errors, no
Content-Security-Policy violation), and that once the browser is gone no connection is left.
Every wait is bounded; the browser is killed in a `finally`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as websockets_connect

from loopback import LONG, assert_every_connection_watched, serve
from lowserver import demo, web

NAMES = ("chromium", "chromium-headless-shell")
BROWSER = next((path for path in map(shutil.which, NAMES) if path), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser: neither chromium nor chromium-headless-shell "
                            "is on the PATH (apt-get install chromium)")
STEP = 0.05                  # how often a condition in the page is polled
STEPS = int(LONG / STEP)     # ... and for how long, at most


def browser_command(profile: Path) -> list[str]:
    assert BROWSER is not None
    headless = "--headless" if Path(BROWSER).name == "chromium-headless-shell" else "--headless=new"
    command = [BROWSER, headless, "--remote-debugging-port=0", f"--user-data-dir={profile}",
               "--remote-debugging-address=127.0.0.1", "--no-proxy-server",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
               "--disable-component-update", "--disable-default-apps", "--disable-sync",
               "--disable-extensions", "--disable-gpu", "--mute-audio", "about:blank"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")       # Chromium's sandbox refuses to run as root
    return command


@contextlib.asynccontextmanager
async def chromium(profile: Path):
    """Start the browser; yield the URL of its DevTools WebSocket; stop it after (SIGTERM,
    then SIGKILL if it is not gone in 5 s)."""
    log = profile.parent / "chromium.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *browser_command(profile), stdin=subprocess.DEVNULL, stdout=output, stderr=output)
    try:
        active = profile / "DevToolsActivePort"
        for _ in range(int(30 / STEP)):
            lines = active.read_text().split() if active.exists() else []
            if len(lines) == 2 or process.returncode is not None:
                break
            await asyncio.sleep(STEP)
        assert len(lines) == 2, f"no DevTools port; the browser said:\n{log.read_text()[-3000:]}"
        yield f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                process.kill()
        await asyncio.wait_for(process.wait(), LONG)


class DevTools:
    """The DevTools protocol over one WebSocket: commands (and their replies), and the events
    that arrive meanwhile, kept in `events`."""

    def __init__(self, socket: Any):
        self.socket = socket
        self.last_id = 0
        self.events: list[dict] = []

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self.last_id += 1
        command: dict[str, Any] = {"id": self.last_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        await self.socket.send(json.dumps(command))
        for _ in range(100_000):
            message = json.loads(await asyncio.wait_for(self.socket.recv(), LONG))
            if message.get("id") == self.last_id:
                assert "error" not in message, (method, message["error"])
                return message["result"]
            self.events.append(message)
        raise AssertionError(f"no reply to {method}")

    async def evaluate(self, session: str, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", session, expression=expression,
                                returnByValue=True)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    async def wait_for(self, session: str, expression: str) -> Any:
        """Poll `expression` in the page until it is truthy (bounded); return its value."""
        for _ in range(STEPS):
            value = await self.evaluate(session, expression)
            if value:
                return value
            await asyncio.sleep(STEP)
        raise AssertionError(f"never true in the page: {expression}")

    async def press_enter(self, session: str) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", session, type=kind, key="Enter",
                            code="Enter", windowsVirtualKeyCode=13,
                            **({"text": "\r"} if kind == "keyDown" else {}))


async def until(condition: Any, what: str) -> None:
    for _ in range(STEPS):
        if condition():
            return
        await asyncio.sleep(STEP)
    raise AssertionError(what)


MESSAGES = ["hello from Chromium", "héllo ✓ <b>not bold</b> " + "x" * 2000]


async def test_the_page_echoes_what_is_typed_in_a_real_browser(tmp_path):
    sockets: list[web.WebSocketResponse] = []

    async def recording(request: web.BaseRequest) -> web.StreamResponse:
        response = await demo.handler(request)
        if isinstance(response, web.WebSocketResponse):
            sockets.append(response)
        return response

    async with serve(recording) as (server, port):
        origin = f"http://127.0.0.1:{port}"
        async with chromium(tmp_path / "profile") as devtools_url:
            async with websockets_connect(devtools_url, proxy=None, max_size=None,
                                          open_timeout=LONG) as socket:
                tools = DevTools(socket)
                target = (await tools.call("Target.createTarget", url="about:blank"))["targetId"]
                page = (await tools.call("Target.attachToTarget", targetId=target,
                                         flatten=True))["sessionId"]
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await tools.call(f"{domain}.enable", page)
                await tools.call("Page.navigate", page, url=origin + "/")
                # until the page (not about:blank still) has loaded and its socket is settled
                status = "document.getElementById('status')?.textContent"
                await tools.wait_for(page, f"location.href === '{origin}/' && "
                                           f"document.readyState === 'complete' && "
                                           f"!['connecting', undefined].includes({status})")
                assert await tools.evaluate(page, status) == "open"
                assert await tools.evaluate(page, "document.getElementById('url')"
                                                  ".textContent") == f"ws://127.0.0.1:{port}/ws"
                extensions = await tools.evaluate(
                    page, "document.getElementById('extensions').textContent")
                assert extensions.startswith("permessage-deflate"), f"extensions: {extensions!r}"

                for number, message in enumerate(MESSAGES, 1):
                    await tools.evaluate(page, "document.getElementById('message').focus()")
                    await tools.call("Input.insertText", page, text=message)
                    await tools.press_enter(page)
                    await tools.wait_for(page, "document.querySelectorAll('#log .echo')"
                                               f".length === {number}")
                log = await tools.evaluate(page, """[...document.querySelectorAll('#log li')]
                    .map(item => [item.className, item.querySelector('.text').textContent])""")
                assert log == [[kind, message] for message in MESSAGES
                               for kind in ("sent", "echo")]
                assert await tools.evaluate(page, "document.querySelectorAll('#log b')"
                                                  ".length") == 0      # text, never HTML
                assert await tools.evaluate(page, "document.getElementById('message')"
                                                  ".value") == ""

                # the server's side of the same socket
                assert len(sockets) == 0              # its handler is still echoing
                await assert_every_connection_watched(server)

                # leaving the page closes the WebSocket: 1001, going away (RFC 6455 §7.4.1)
                await tools.call("Page.navigate", page, url="about:blank")
                await until(lambda: sockets, "the WebSocket handler never returned")
                assert sockets[0].compress == 15 and sockets[0].close_code == 1001

                loaded = [event["params"]["request"]["url"] for event in tools.events
                          if event.get("method") == "Network.requestWillBeSent"]
                sockets_opened = [event["params"]["url"] for event in tools.events
                                  if event.get("method") == "Network.webSocketCreated"]
                problems = [event["params"] for event in tools.events
                            if event.get("method") == "Runtime.exceptionThrown"
                            or (event.get("method") == "Log.entryAdded"
                                and event["params"]["entry"]["level"] == "error")]
        assert loaded and all(url == origin + "/" or url.startswith("data:")
                              or url == "about:blank" for url in loaded), loaded
        assert sockets_opened == [f"ws://127.0.0.1:{port}/ws"]
        assert problems == []
        # the browser is gone: so is every connection it had
        await until(lambda: not server.connections,
                    f"connections left after the browser: {server.connections}")
