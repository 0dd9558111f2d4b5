"""`vigil demo`, the README's main command, as a user runs it: a real process tree that
alerts on the drowsy driver (store, signed webhook, the dashboard in a real browser) and
leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from streams.processes import free_port
from streams.store import Store


def _marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (the demo's children inherit it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark.encode() in environ:
            pids.append(int(entry.name))
    return pids


def test_demo_alerts_on_the_drowsy_driver_and_ctrl_c_leaves_no_process(
    pg_schema_url: str, tmp_path: Path
) -> None:
    mark = f"VIGIL_TEST_MARK={uuid.uuid4().hex}"
    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE__URL": pg_schema_url,
           mark.split("=")[0]: mark.split("=")[1]}
    out = (tmp_path / "demo.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil", "demo", "--port", str(port), "--watch-dashboard",
         "--log-dir", str(tmp_path / "logs")],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )
    store = Store(pg_schema_url)
    try:
        deadline = time.monotonic() + 240
        alerts = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                alerts = store.alerts.find(driver_id="drv-ben", limit=20)
            except Exception:  # not migrated yet
                alerts = []
            if any(a.reason.value in {"microsleep", "sleep"} for a in alerts):
                break
            time.sleep(2)
        text = (tmp_path / "demo.out").read_text()
        assert proc.poll() is None, text
        assert any(a.reason.value in {"microsleep", "sleep"} for a in alerts), text
        assert f"http://127.0.0.1:{port}" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.read().strip() == b"ok"
        names = {e.driver_id: e.name for e in store.series.fleet_overview()}
        assert names["drv-ben"] == "Ben Okafor" and len(names) == 3
        # The webhook reaches the local receiver, which verified its signature, and the
        # fleet page, read in headless Chromium, shows the alert on Ben's card.
        wanted = ("signature ok", "dashboard shows Ben Okafor's open alert")
        while time.monotonic() < deadline and not all(w in text for w in wanted):
            time.sleep(1)
            text = (tmp_path / "demo.out").read_text()
        assert all(w in text for w in wanted), text
        assert len(_marked_processes(mark)) >= 4  # demo, broker, worker, aggregator, dashboard
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
        store.close()
    text = (tmp_path / "demo.out").read_text()
    assert proc.returncode == 0, text
    summary = json.loads(text.split("summary ", 1)[1].splitlines()[0])
    assert "drv-ben" in summary["first_alert_stored_s"]
    assert "drv-ben" in summary["first_webhook_s"]
    assert "drv-ben" in summary["first_on_dashboard_s"]
    leftovers = []
    for _ in range(20):  # children exit asynchronously after their session's SIGTERM
        leftovers = _marked_processes(mark)
        if not leftovers:
            break
        time.sleep(0.5)
    assert not leftovers, [Path(f"/proc/{p}/cmdline").read_bytes() for p in leftovers]
