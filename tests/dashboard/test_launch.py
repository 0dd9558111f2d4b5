"""dashboard.launch: failures are reported, not waited on forever, and leave no process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dashboard.launch import DashboardError, start_dashboard, streamlit_command, wait_healthy


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
