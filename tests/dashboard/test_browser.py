"""The dashboard served by a real ``streamlit run`` (dashboard.launch) and rendered by headless
Chromium, driven over the DevTools protocol; the fleet page's screenshot is saved under
``test-artifacts/``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dash_helpers import ARTIFACTS, NAMES, Fleet

from dashboard.browser import DevTools, chromium
from dashboard.launch import start_dashboard
from streams.processes import free_port, stop_child


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile."""
    if shutil.which("chromium") is None:
        pytest.fail("headless Chromium is required (Debian package `chromium`; "
                    "scripts/install.sh --test installs it)", pytrace=False)
    with chromium(tmp_path) as devtools:
        yield devtools


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


def test_fleet_page_in_a_real_browser(dashboard_url: str, browser: DevTools) -> None:
    browser.open(dashboard_url + "/")
    wanted = [*NAMES.values(), "Drowsy", "Offline", "Details"]
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = browser.text()
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
    png = browser.screenshot()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-fleet.png").write_bytes(png)
