"""dashboard.launch: failures are reported, not waited on forever, and leave no process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard.launch import DashboardError, start_dashboard, streamlit_command, wait_healthy
from streams.processes import free_port


def test_command_is_headless_local_and_quiet() -> None:
    command = " ".join(streamlit_command(8765))
    for flag in (
        "--server.port 8765",
        "--server.address 127.0.0.1",
        "--server.headless true",
        "--browser.gatherUsageStats false",
        "--server.fileWatcherType none",
    ):
        assert flag in command


def test_wait_healthy_gives_up() -> None:
    with pytest.raises(DashboardError, match="not healthy"):
        wait_healthy("http://127.0.0.1:1", timeout_s=0.5)


def test_start_on_a_busy_port_fails_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        log = tmp_path / "streamlit.log"
        with pytest.raises(DashboardError, match="exited") as caught:
            start_dashboard(port, log_path=log, timeout_s=60)
    assert str(log) in str(caught.value)
    assert f"Port {port} is not available" in log.read_text()


def test_vigil_dashboard_stops_on_sigint_even_as_a_background_job(tmp_path: Path) -> None:
    """A script's `vigil dashboard &` starts with SIGINT ignored; `kill -INT` still stops it,
    and Streamlit with it."""
    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE__URL": f"sqlite:///{tmp_path / 'vigil.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil", "dashboard", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout_s=120)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while _serving(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _serving(port)  # Streamlit went with it


def _serving(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
