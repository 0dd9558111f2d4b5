"""The local stack behind `vigil demo` and `vigil bench pipeline`: nothing it started
outlives it, even when the operator presses Ctrl-C again while it is stopping."""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from vigil.local import LocalStack

STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")


def test_second_interrupt_while_stopping_kills_what_is_left(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    proc = stack.spawn("stubborn", [sys.executable, "-c", STUBBORN])  # ignores SIGTERM
    deadline = time.monotonic() + 30
    while "ready" not in (tmp_path / "stubborn.log").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    # The second Ctrl-C arrives while stop() is still waiting for the child to go. (Python
    # delivers Ctrl-C only through its own handler, which a shell's background job lacks.)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(1.0, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            stack.stop()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.wait(timeout=10) == -9  # killed, not left running
