"""The dashboard served by a real ``streamlit run`` (dashboard.launch) and rendered by headless
Chromium, driven over the DevTools protocol; the fleet page's screenshot is saved under
``test-artifacts/``."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dash_helpers import ARTIFACTS, NAMES, Fleet
from websockets.sync.client import ClientConnection, connect

from dashboard.launch import start_dashboard
from streams.processes import free_port, start_child, stop_child

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--window-size=1600,1000", "--hide-scrollbars",
]  # fmt: skip


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
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def text(self) -> str:
        result = self.send(
            "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
        )
        return str(result["result"].get("value") or "")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile; its DevTools session with the blank page."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "headless Chromium is required (Debian package `chromium`; "
            "scripts/install.sh --test installs it)",
            pytrace=False,
        )
    profile = tmp_path / "chromium-profile"
    proc = start_child([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                       tmp_path / "chromium.log")
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().split()) >= 2):
            assert proc.poll() is None, (
                f"chromium exited: {(tmp_path / 'chromium.log').read_text()}"
            )
            assert time.monotonic() < deadline, "chromium opened no DevTools port in 30 s"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=2**26, open_timeout=10) as ws:
            yield DevTools(ws)
    finally:
        stop_child(proc, timeout_s=10)


@pytest.fixture
def dashboard_url(fleet: Fleet, tmp_path: Path) -> Iterator[str]:
    """A live ``streamlit run`` of the dashboard over the seeded fleet."""
    port = free_port()
    proc = start_dashboard(
        port, {"VIGIL_DATABASE_URL": fleet.url}, log_path=tmp_path / "streamlit.log"
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_child(proc)
        assert proc.poll() is not None


def test_fleet_page_in_a_real_browser(dashboard_url: str, chromium: DevTools) -> None:
    chromium.send("Page.enable")
    chromium.send("Page.navigate", url=dashboard_url + "/")
    wanted = [*NAMES.values(), "Drowsy", "Offline", "Details"]
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = chromium.text()
        if all(w in text for w in wanted):
            break
        time.sleep(0.25)
    missing = [w for w in wanted if w not in text]
    assert not missing, f"not rendered: {missing}\n--- page text ---\n{text[:2000]}"
    # Worst first in the rendered page too.
    positions = [text.index(n) for n in ("Bob Okafor", "Dan Novak", "Carol Diaz", "Alice Martin")]
    assert positions == sorted(positions)
    assert "Traceback" not in text and "Error" not in text

    time.sleep(1.0)  # let fonts and icons settle before the picture
    shot = chromium.send("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-fleet.png").write_bytes(png)
