"""Streaming blink detection over an eyelid-closure series, frame by frame.

Input per frame: a timestamp and the closure (0 open .. 1 closed) or None when the eyes could
not be measured. An event opens when closure rises past ``onset``, is backdated to where the
lid started moving, and ends when closure falls back under ``release``, or, when the lids
reopen past ``split`` and close again, at the lowest point between the two closures: two
blinks in quick succession stay two blinks even if the lids never get back to rest. Events
whose eyes stay
>= ``closed`` (80 %, the PERCLOS criterion) for ``microsleep_s`` or longer are long closures
(microsleep below ``sleep_s``, sleep from it, per DESIGN §4 / Euro NCAP); the rest are blinks
with the four UTA-RLDD features (Ghoddoosian et al. 2019): frequency, amplitude, duration and
eye-opening velocity.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

_MAX_RISE_SAMPLES = 60


@dataclass(frozen=True)
class BlinkConfig:
    onset: float = 0.5
    release: float = 0.3
    closed: float = 0.8
    # Where the lid is considered at rest, for backdating the start and dating the end.
    rest: float = 0.15
    # Reopening below this after a closure, then closing again, starts a new event.
    split: float = 0.4
    microsleep_s: float = 1.0
    sleep_s: float = 3.0
    # Longer gaps in measurement (face lost, eyes occluded) abandon an event in progress.
    max_gap_s: float = 0.5
    perclos_window_s: float = 60.0
    rate_window_s: float = 60.0


@dataclass(frozen=True)
class EyeEvent:
    """A blink or a long closure. Frames are inclusive; times in seconds of the stream.

    amplitude: peak closure above the mean of the start and end levels (closure units).
    opening_velocity: amplitude / reopening time (closure units per second).
    closed_duration_s: time at or above the closed level (0 for blinks that never got there).
    frequency_per_min: blinks in the preceding rate window, per minute, at this event.
    """

    kind: Literal["blink", "microsleep", "sleep"]
    start_frame: int
    peak_frame: int
    end_frame: int
    start_t: float
    end_t: float
    duration_s: float
    amplitude: float
    peak_closure: float
    opening_velocity: float
    closed_start_frame: int | None
    closed_end_frame: int | None
    closed_duration_s: float
    frequency_per_min: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class _Sample:
    frame: int
    t: float
    closure: float


class BlinkDetector:
    """Feed :meth:`update` every frame in order; it returns events as they finish."""

    def __init__(self, config: BlinkConfig | None = None) -> None:
        self.config = config or BlinkConfig()
        self._event: list[_Sample] | None = None
        # Index in the event of the lowest sample since it last reopened past ``split``.
        self._dip: int | None = None
        # Samples since the lid was last at rest: the rising edge an event is backdated to.
        self._pre: list[_Sample] = []
        self._last: _Sample | None = None
        self._dt = deque[float](maxlen=30)
        self._perclos = deque[tuple[float, bool]]()
        self._perclos_closed = 0
        self._blink_times = deque[float]()

    @property
    def frame_interval(self) -> float:
        return float(np.median(self._dt)) if self._dt else 1.0 / 30.0

    @property
    def perclos(self) -> float | None:
        """Share of measured frames with eyes >= 80 % closed in the trailing window."""
        return self._perclos_closed / len(self._perclos) if self._perclos else None

    def blink_rate(self, now: float) -> float:
        """Blinks per minute in the trailing rate window ending at ``now``."""
        window = self.config.rate_window_s
        while self._blink_times and self._blink_times[0] < now - window:
            self._blink_times.popleft()
        span = min(window, max(now, 1e-6))
        return len(self._blink_times) * 60.0 / span

    def closed_for(self, now: float) -> float:
        """Seconds the eyes have been continuously closed up to ``now`` (0 if open): lets a
        caller raise a sleep alert while the eyes are still shut."""
        if self._event is None:
            return 0.0
        closed = [s for s in self._event if s.closure >= self.config.closed]
        if not closed or self._event[-1].closure < self.config.closed:
            return 0.0
        return now - closed[0].t + self.frame_interval

    def update(self, frame: int, t: float, closure: float | None) -> list[EyeEvent]:
        cfg = self.config
        finished: list[EyeEvent] = []
        gap = t - self._last.t if self._last is not None else 0.0
        if gap > cfg.max_gap_s + self.frame_interval:
            # Too long unmeasured to tell what the lids did: drop the event in progress.
            self._event, self._pre, self._dip = None, [], None
        if closure is None:
            return finished
        if 0 < gap <= cfg.max_gap_s:
            self._dt.append(gap)
        sample = _Sample(frame, t, float(closure))
        self._update_perclos(t, sample.closure >= cfg.closed)
        if self._event is None:
            if sample.closure >= cfg.onset:
                self._event = [*self._pre, sample]
            elif sample.closure <= cfg.rest or not self._pre or (
                sample.closure < self._pre[-1].closure
            ):
                self._pre = [sample]
            else:
                self._pre = [*self._pre[-_MAX_RISE_SAMPLES:], sample]
        else:
            self._event.append(sample)
            if sample.closure <= cfg.release:
                finished.append(self._finish(self._event))
                self._event, self._pre, self._dip = None, [sample], None
            else:
                finished.extend(self._split_on_reclosure(sample))
        self._last = sample
        return finished

    def _split_on_reclosure(self, sample: _Sample) -> list[EyeEvent]:
        """Tracks the reopening dip of the event in progress; a new closure after it ends the
        first event at the dip and starts the next there."""
        cfg, event = self.config, self._event
        assert event is not None
        last = len(event) - 1
        if self._dip is None:
            closed_before = any(s.closure >= cfg.closed for s in event[:-1])
            if closed_before and sample.closure < cfg.split:
                self._dip = last
            return []
        if sample.closure < event[self._dip].closure:
            self._dip = last
        if sample.closure < cfg.closed:
            return []
        first, self._event = event[: self._dip + 1], event[self._dip :]
        self._dip = None
        return [self._finish(first)]

    def flush(self) -> list[EyeEvent]:
        """End of stream: an event still open is closed at the last sample."""
        if self._event is None:
            return []
        event = self._finish(self._event)
        self._event, self._dip = None, None
        return [event]

    def _update_perclos(self, t: float, closed: bool) -> None:
        self._perclos.append((t, closed))
        self._perclos_closed += closed
        while self._perclos and self._perclos[0][0] < t - self.config.perclos_window_s:
            _, was_closed = self._perclos.popleft()
            self._perclos_closed -= was_closed

    def _finish(self, samples: list[_Sample]) -> EyeEvent:
        cfg = self.config
        closures = np.array([s.closure for s in samples])
        peak = int(np.argmax(closures))
        dt = self.frame_interval
        s0, sp, s1 = samples[0], samples[peak], samples[-1]
        amplitude = float(closures[peak] - (closures[0] + closures[-1]) / 2)
        reopen_s = max(s1.t - sp.t, dt)
        closed_idx = np.flatnonzero(closures >= cfg.closed)
        closed_start = closed_end = None
        closed_duration = 0.0
        if closed_idx.size:
            cs, ce = samples[int(closed_idx[0])], samples[int(closed_idx[-1])]
            closed_start, closed_end = cs.frame, ce.frame
            closed_duration = ce.t - cs.t + dt
        kind: Literal["blink", "microsleep", "sleep"] = "blink"
        if closed_duration >= cfg.sleep_s:
            kind = "sleep"
        elif closed_duration >= cfg.microsleep_s:
            kind = "microsleep"
        if kind == "blink":
            self._blink_times.append(sp.t)
        return EyeEvent(
            kind=kind,
            start_frame=s0.frame,
            peak_frame=sp.frame,
            end_frame=s1.frame,
            start_t=s0.t,
            end_t=s1.t,
            duration_s=s1.t - s0.t + dt,
            amplitude=amplitude,
            peak_closure=float(closures[peak]),
            opening_velocity=amplitude / reopen_s,
            closed_start_frame=closed_start,
            closed_end_frame=closed_end,
            closed_duration_s=closed_duration,
            frequency_per_min=self.blink_rate(sp.t),
        )
