"""Child processes that never outlive their parent: the embedded broker, the demo's and the
benchmark's worker, aggregator and dashboard."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Runs in the child before exec: on Linux, the kernel sends SIGTERM to the child when
    the process that started it dies, even by SIGKILL, so nothing outlives a killed test run
    or demo."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
                ) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in its own session (so stopping it stops whatever it starts), output
    appended to ``log_path``, environment ``env`` (default: this process's)."""
    with log_path.open("ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env or os.environ),
                                start_new_session=True, preexec_fn=die_with_parent)


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the child's session, then SIGKILL if it has not gone after ``timeout_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
