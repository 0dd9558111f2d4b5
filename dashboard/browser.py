"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol: what the
browser test and ``vigil demo --watch-dashboard`` use to read the dashboard as an operator
sees it. The websocket client is the ``websockets`` package Streamlit already depends on."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from models.errors import VigilError
from streams.processes import start_child, stop_child

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--window-size=1600,1000", "--hide-scrollbars",
]  # fmt: skip


class BrowserError(VigilError):
    """Chromium is missing, did not start, or a DevTools command failed."""


class DevTools:
    """A DevTools protocol session with one page (commands in order; events skipped)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == n:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def open(self, url: str) -> None:
        self.send("Page.enable")
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        """The page's visible text."""
        return str(self.evaluate("document.body.innerText") or "")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Polls a JavaScript expression until it is truthy -> its value."""
        deadline = time.monotonic() + timeout_s
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout_s:g} s: {expression}")
            time.sleep(0.2)
        return value

    def type_into(self, selector: str, text: str) -> None:
        """Types ``text`` into the element ``selector`` names, as a keyboard would."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " if (!e) return false; e.focus(); e.select(); return true; })()")
        if not found:
            raise BrowserError(f"nothing to type into: {selector}")
        self.send("Input.insertText", text=text)

    def click(self, selector: str, label: str) -> bool:
        """Clicks the first element ``selector`` names whose text (after its icon) is
        ``label`` -> whether there was one (a disabled button ignores the click, as it does
        for a person)."""
        return bool(self.evaluate(
            f"(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(b => b.innerText.trim().split('\\n').pop().trim() === {json.dumps(label)});"
            " if (!e) return false; e.click(); return true; })()"))

    def login(self, name: str, password: str, timeout_s: float = 30.0) -> None:
        """Fills in and submits the dashboard's login form (once it shows)."""
        self.wait_for("!!document.querySelector('input[type=\"password\"]')", timeout_s)
        self.type_into('input[aria-label="Name"]', name)
        self.type_into('input[type="password"]', password)
        if not self.click("button", "Log in"):
            raise BrowserError("the login form has no Log in button")

    def screenshot(self) -> bytes:
        """The page as PNG bytes."""
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])


@contextmanager
def chromium(workdir: Path, start_timeout_s: float = 30.0) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile under ``workdir`` (its log there too); yields
    the DevTools session of its blank page and stops the browser on exit."""
    binary = shutil.which("chromium")
    if binary is None:
        raise BrowserError("headless Chromium is required (Debian package `chromium`; "
                           "scripts/install.sh --test installs it)")
    profile, log_path = workdir / "chromium-profile", workdir / "chromium.log"
    proc = start_child([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                       log_path)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + start_timeout_s
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if proc.poll() is not None:
                raise BrowserError(f"chromium exited with {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium opened no DevTools port in {start_timeout_s} s")
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=2**26, open_timeout=10) as ws:
            yield DevTools(ws)
    finally:
        stop_child(proc, timeout_s=10)
