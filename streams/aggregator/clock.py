"""The capture-time clock a timer passes to :meth:`DriverAggregator.tick`.

Capture times come from each vehicle's camera clock, which may be off from the worker's and
from other vehicles' clocks, so the clock is kept per driver: the newest capture time seen plus
the worker's monotonic time elapsed since it was seen. A silent camera lets it run on, so
windows close and CAMERA_BLOCKED fires; while frames flow it stays at the newest frame.
"""

from __future__ import annotations


class CaptureClock:
    """Per-driver anchor (newest capture time, monotonic time it was seen). Not persisted: after
    a restart, anchor it at the restored aggregator's ``last_observation_at``."""

    def __init__(self) -> None:
        self._capture: float | None = None
        self._seen_at = 0.0

    def seen(self, captured_at: float | None, monotonic: float) -> None:
        """An observation captured at ``captured_at`` arrived at ``monotonic`` (seconds)."""
        if captured_at is not None and (self._capture is None or captured_at > self._capture):
            self._capture = captured_at
            self._seen_at = monotonic

    def now(self, monotonic: float) -> float | None:
        """Capture-clock time at ``monotonic``; None before the first observation."""
        if self._capture is None:
            return None
        return self._capture + max(monotonic - self._seen_at, 0.0)
