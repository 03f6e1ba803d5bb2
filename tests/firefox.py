"""Debian's Firefox ESR driven over WebDriver BiDi (its built-in remote protocol: no
geckodriver, no download). Playwright's BiDi channel asks this Firefox for commands it does not
have yet, so the few the page tests need are sent here directly."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from websockets.sync.client import ClientConnection, connect

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"


class Firefox:
    """One headless Firefox with one tab; `errors` collects the page's uncaught errors."""

    def __init__(self, width: int = 1280, height: int = 860) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="firefox-")
        with open(f"{self.profile}/user.js", "w") as prefs:  # play without a gesture
            prefs.write('user_pref("media.autoplay.default", 0);\n')
        self.process = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", self.profile,
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            self._connect(port, width, height)
        except BaseException:  # never leave a browser behind
            self.process.kill()
            self.process.wait(30)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise

    def _connect(self, port: int, width: int, height: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"ws://127.0.0.1:{port}/session"
                self.ws: ClientConnection = connect(url, max_size=None).__enter__()
                break
            except OSError:
                assert time.monotonic() < deadline, "Firefox did not open its remote port"
                time.sleep(0.2)
        self._id = 0
        self.errors: list[str] = []
        self.version = self.send("session.new", capabilities={})["capabilities"]["browserVersion"]
        self.send("session.subscribe", events=["log.entryAdded"])
        self.context = self.send("browsingContext.getTree")["contexts"][0]["context"]
        self.send("browsingContext.setViewport", context=self.context,
                  viewport={"width": width, "height": height})  # fmt: skip

    def send(self, method: str, **params: Any) -> Any:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("method") == "log.entryAdded":
                entry = message["params"]
                if entry.get("level") == "error":
                    self.errors.append(entry.get("text", ""))
            elif message.get("id") == self._id:
                assert message.get("type") != "error", message
                return message["result"]

    def goto(self, url: str) -> None:
        self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        result = self.send(
            "script.evaluate", expression=f"(async () => JSON.stringify(await ({expression})))()",
            target={"context": self.context}, awaitPromise=True,
        )  # fmt: skip
        assert result["type"] == "success", result
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
            time.sleep(0.2)
        return value

    def _element(self, selector: str) -> dict:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})")
        result = self.send(
            "script.evaluate", expression=f"document.querySelector({json.dumps(selector)})",
            target={"context": self.context}, awaitPromise=False,
        )  # fmt: skip
        return {"sharedId": result["result"]["sharedId"]}

    def set_files(self, selector: str, path: str) -> None:
        self.send("input.setFiles", context=self.context, element=self._element(selector),
                  files=[path])  # fmt: skip

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)})?.scrollIntoView({{block: 'center'}})")  # fmt: skip
        origin = {"type": "element", "element": self._element(selector)}
        self.send("input.performActions", context=self.context, actions=[{
            "type": "pointer", "id": "mouse", "actions": [
                {"type": "pointerMove", "x": 0, "y": 0, "origin": origin},
                {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0},
            ],
        }])  # fmt: skip

    def type(self, text: str) -> None:
        """Keys as typed; `\\ue007` is Enter."""
        keys = [a for ch in text for a in ({"type": "keyDown", "value": ch}, {"type": "keyUp", "value": ch})]  # fmt: skip
        self.send("input.performActions", context=self.context,
                  actions=[{"type": "key", "id": "keyboard", "actions": keys}])  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.send("session.end")
        self.ws.close()
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.profile, ignore_errors=True)
