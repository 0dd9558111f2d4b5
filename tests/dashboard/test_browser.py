"""The dashboard served by a real ``streamlit run`` (dashboard.launch) and rendered by headless
Chromium, driven over the DevTools protocol: the login, what each role may do, and the fleet
page (its screenshot is saved under ``test-artifacts/``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dash_helpers import ARTIFACTS, LOGINS, NAMES, Fleet

from dashboard.browser import DevTools, chromium
from dashboard.launch import start_dashboard
from streams.processes import free_port, stop_child
from streams.schemas import AlertState
from streams.store import OperatorRole


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
        port, {"VIGIL_DATABASE__URL": fleet.url}, log_path=tmp_path / "streamlit.log"
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_child(proc)
        assert proc.poll() is not None


def wait_text(browser: DevTools, *wanted: str, timeout_s: float = 30.0) -> str:
    """The page's text once it shows every one of ``wanted`` (fails with what it shows)."""
    deadline = time.monotonic() + timeout_s
    text = browser.text()
    while not all(w in text for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.25)
        text = browser.text()
    missing = [w for w in wanted if w not in text]
    assert not missing, f"not rendered: {missing}\n--- page text ---\n{text[:2000]}"
    return text


ACK_BUTTONS = ("[...document.querySelectorAll('button')]"
               ".filter(b => b.innerText.trim().endsWith('Acknowledge'))")


def to_alerts(browser: DevTools) -> None:
    """Logged in, the sidebar's link to the alerts page (a new URL would be a new session)."""
    browser.wait_for("!!document.querySelector('a[href$=\"/alerts\"]')")
    browser.evaluate("document.querySelector('a[href$=\"/alerts\"]').click()")


def test_a_visitor_sees_only_the_login_form_and_wrong_passwords_fail(
    dashboard_url: str, browser: DevTools
) -> None:
    for path in ("/", "/alerts", "/health"):
        browser.open(dashboard_url + path)
        text = wait_text(browser, "Log in", "Password")
        time.sleep(1.0)  # whatever else the server would send has arrived by now
        text = browser.text()
        assert not any(name in text for name in [*NAMES.values(), "Drowsy", "Dead letters"])
        assert browser.evaluate("document.querySelectorAll('input').length") == 2
    name, _ = LOGINS[OperatorRole.OPERATOR]
    browser.login(name, "not-my-password")
    text = wait_text(browser, "Wrong name or password")
    assert not any(name in text for name in NAMES.values())
    assert browser.evaluate("document.querySelector('input[type=\"password\"]').value") == ""


def test_a_viewer_cannot_acknowledge_an_operator_can_under_their_name(
    dashboard_url: str, browser: DevTools, fleet: Fleet
) -> None:
    aid = fleet.drowsy_alert
    browser.open(dashboard_url + "/")
    browser.login(*LOGINS[OperatorRole.VIEWER])
    to_alerts(browser)
    wait_text(browser, "Drowsy: KSS 9", "vic")
    # The fleet page shows the same alert text: wait for the alerts page's own buttons.
    browser.wait_for(f"{ACK_BUTTONS}.length > 0")
    disabled = browser.evaluate(f"{ACK_BUTTONS}.map(b => b.disabled)")
    assert disabled and all(disabled)
    browser.click(f".st-key-alert-{aid} button", "Acknowledge")
    time.sleep(1.0)  # a click that did anything would have reached the server by now
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.OPEN and stored.acked_by is None

    browser.open(dashboard_url + "/")  # a new session: logged out again
    name, password = LOGINS[OperatorRole.OPERATOR]
    browser.login(name, password)
    to_alerts(browser)
    wait_text(browser, "Drowsy: KSS 9")
    browser.wait_for(f"{ACK_BUTTONS}.length > 0")
    assert browser.click(f".st-key-alert-{aid} button", "Acknowledge")
    wait_text(browser, f"acknowledged by {name}")
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.ACKED and stored.acked_by == name


def test_fleet_page_in_a_real_browser(dashboard_url: str, browser: DevTools) -> None:
    browser.open(dashboard_url + "/")
    browser.login(*LOGINS[OperatorRole.VIEWER])
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
