"""Streaming yawn detection over the mouth opening, frame by frame.

Vigil's one definition of a yawn (the aggregator counts these events, it does not recompute
them): the mouth wide open, i.e. the MediaPipe ``jawOpen`` blendshape >= ``jaw_open`` or, for a
backend without blendshapes, the inner-lip aspect ratio (MAR) >= ``mouth_open``, for at least
``min_s``. Speech and short openings stay under that. A closed-mouth frame ends a yawn; frames
where the mouth is not measured (no face) neither end nor extend it unless they last longer
than ``max_gap_s``, which ends it at its last wide-open frame.

As in the aggregator's runs, a frame covers the interval since the previous frame (the last
gap up to ``max_gap_s``, else 1/30 s at first), so wide-open frames a..b last t_b - t_a + dt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Float tolerance for the duration threshold: 45 frames at 30 fps must reach 1.5 s.
_EPS = 1e-6


@dataclass(frozen=True)
class YawnConfig:
    jaw_open: float = 0.5
    mouth_open: float = 0.6
    min_s: float = 1.5
    max_gap_s: float = 0.5


@dataclass(frozen=True)
class YawnEvent:
    """A yawn: the span the mouth was wide open. Frames inclusive; times in seconds of the
    stream. peak_jaw_open / peak_mouth_open: the largest jawOpen / MAR in the span (None when
    the backend did not measure it)."""

    start_frame: int
    end_frame: int
    start_t: float
    end_t: float
    duration_s: float
    peak_jaw_open: float | None
    peak_mouth_open: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def mouth_wide(
    jaw_open: float | None, mouth_open: float | None, config: YawnConfig
) -> bool | None:
    """Whether the mouth is wide open in a frame; None when it was not measured."""
    if jaw_open is not None:
        return jaw_open >= config.jaw_open
    if mouth_open is not None:
        return mouth_open >= config.mouth_open
    return None


@dataclass
class _Run:
    start_frame: int
    start_t: float
    dt: float
    end_frame: int
    end_t: float
    peak_jaw: float | None = None
    peak_mouth: float | None = None

    def add(self, frame: int, t: float, jaw: float | None, mouth: float | None) -> None:
        self.end_frame, self.end_t = frame, t
        if jaw is not None:
            self.peak_jaw = jaw if self.peak_jaw is None else max(self.peak_jaw, jaw)
        if mouth is not None:
            self.peak_mouth = mouth if self.peak_mouth is None else max(self.peak_mouth, mouth)


class YawnDetector:
    """Feed :meth:`update` every frame in order; it returns yawns as they finish."""

    def __init__(self, config: YawnConfig | None = None) -> None:
        self.config = config or YawnConfig()
        self._dt = 1.0 / 30.0
        self._prev_t: float | None = None
        self._run: _Run | None = None

    def update(
        self, frame: int, t: float, jaw_open: float | None, mouth_open: float | None
    ) -> list[YawnEvent]:
        cfg = self.config
        if self._prev_t is not None and 0 < t - self._prev_t <= cfg.max_gap_s:
            self._dt = t - self._prev_t
        self._prev_t = t
        finished: list[YawnEvent] = []
        if self._run is not None and t - self._run.end_t > cfg.max_gap_s:
            finished += self.flush()
        wide = mouth_wide(jaw_open, mouth_open, cfg)
        if wide:
            if self._run is None:
                self._run = _Run(frame, t, self._dt, frame, t)
            self._run.add(frame, t, jaw_open, mouth_open)
        elif wide is False:
            finished += self.flush()
        return finished

    def flush(self) -> list[YawnEvent]:
        """Ends the wide-open run in progress (end of stream): the yawn, if it was one."""
        run, self._run = self._run, None
        if run is None:
            return []
        duration = run.end_t - run.start_t + run.dt
        if duration < self.config.min_s - _EPS:
            return []
        return [YawnEvent(run.start_frame, run.end_frame, run.start_t, run.end_t, duration,
                          run.peak_jaw, run.peak_mouth)]
