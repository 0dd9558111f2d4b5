"""The small state machines the alert rules are built from: runs of a per-frame condition,
per-reason latches (hysteresis + cooldown), the pending UNRESPONSIVE escalation and the frame
tally of a degraded-sensing run.

All of them are plain dataclasses of JSON-safe fields, so a snapshot is ``asdict`` and a
restore is ``Cls(**data)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Float tolerance for duration thresholds: 90 frames at 30 fps must reach 3.0 s.
EPS = 1e-6


@dataclass
class Track:
    """Runs of a per-frame condition seen as True (present), False (contrary) or None (unknown).

    A frame covers the interval since the previous frame, so a run of frames starts at the
    first frame's time minus its interval (``onset``) and lasts ``t - onset``: n frames at
    30 fps last n/30 s. Unknown frames neither extend nor break a run, unless nothing but
    unknown frames (or no frames) has been seen for more than ``max_gap_s``; a contrary frame
    ends it. The contrary stretch, which the hysteresis needs, is tracked the same way.
    Times: capture-time epoch seconds.
    """

    onset: float | None = None
    last: float | None = None
    contrary_onset: float | None = None
    contrary_last: float | None = None

    def update(self, t: float, dt: float, value: bool | None, max_gap_s: float) -> None:
        if value is True:
            if self.onset is None or self.last is None or t - self.last > max_gap_s:
                self.onset = t - dt
            self.last = t
            self.contrary_onset = self.contrary_last = None
        elif value is False:
            if (
                self.contrary_onset is None
                or self.contrary_last is None
                or t - self.contrary_last > max_gap_s
            ):
                self.contrary_onset = t - dt
            self.contrary_last = t
            self.onset = self.last = None
        else:
            if self.last is not None and t - self.last > max_gap_s:
                self.onset = self.last = None
            if self.contrary_last is not None and t - self.contrary_last > max_gap_s:
                self.contrary_onset = self.contrary_last = None

    @property
    def active(self) -> bool:
        return self.onset is not None

    def duration(self, t: float) -> float:
        """Seconds the current run has lasted at t (0 without one)."""
        return 0.0 if self.onset is None else t - self.onset

    def contrary_for(self, t: float) -> float:
        """Seconds the condition has been seen clear at t (0 unless clear now)."""
        return 0.0 if self.contrary_onset is None else t - self.contrary_onset


@dataclass
class Latch:
    """Hysteresis and cooldown of one alert reason.

    ``latched``: fired and not yet seen clear for ``clear_s``; no new alert of the reason until
    it clears. ``last_fired_at``: detection time of the last alert, for the cooldown.
    ``last_onset``: its onset (what a duplicate would repeat).
    """

    latched: bool = False
    last_fired_at: float | None = None
    last_onset: float | None = None

    def can_fire(self, at: float, cooldown_s: float) -> bool:
        if self.latched:
            return False
        return self.last_fired_at is None or at - self.last_fired_at >= cooldown_s - EPS

    def fire(self, at: float, onset: float, latch: bool = True) -> None:
        self.latched = latch
        self.last_fired_at = at
        self.last_onset = onset


@dataclass
class Escalation:
    """A warning (DISTRACTION, MICROSLEEP or SLEEP) waiting for the driver's return.

    source: the warning's reason value; onset: its onset; warned_at: its detection time;
    deadline: warned_at + response_s. Cleared by an attentive frame in (warned_at, deadline].
    """

    source: str
    onset: float
    warned_at: float
    deadline: float


@dataclass
class SensingTally:
    """The frames of one degraded-sensing run (from ``onset``): all of them, and the degraded
    ones by reason code."""

    onset: float
    frames: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str | None) -> None:
        self.frames += 1
        if reason is not None:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    @property
    def share(self) -> float:
        """Share of the run's frames that were degraded."""
        return sum(self.reasons.values()) / self.frames if self.frames else 0.0
