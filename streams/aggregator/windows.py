"""Accumulators of one tumbling window: running sums only, so snapshots stay small.

Conventions (DESIGN §4):
- a frame covers the interval since the previous frame (dt, see DriverAggregator), so durations
  (off_road_s, measured seconds) are sums of frame intervals;
- eye events (blinks, long closures) and yawns count in the window of the observation that
  reports them, i.e. where they end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streams.aggregator.config import AggregatorConfig
from streams.aggregator.fatigue import fatigue_score, kss_from_score
from streams.schemas import NetworkReading, NetworkRole, WindowMetrics

_DIGITS = 4


@dataclass
class WindowAccumulator:
    """Running sums of one window [start, end) of one driver; every field is JSON-safe."""

    start: float
    end: float
    frames: int = 0
    face_frames: int = 0
    measured_frames: int = 0
    closed_frames: int = 0
    measured_s: float = 0.0
    blink_count: int = 0
    blink_duration_sum_s: float = 0.0
    blink_duration_max_s: float | None = None
    long_closures: int = 0
    yawns: int = 0
    off_road_s: float = 0.0
    au_active: dict[str, int] = field(default_factory=dict)
    degraded_s: float = 0.0
    sensing_frames: dict[str, int] = field(default_factory=dict)
    first_t: float | None = None
    last_t: float | None = None
    # The learnt networks' readings reported in the window (workers.serving): fatigue scores
    # summed, AU readings with each AU active, and the MODEL@VERSION that made the newest.
    fatigue_readings: int = 0
    fatigue_score_sum: float = 0.0
    fatigue_model: str | None = None
    au_readings: int = 0
    au_network_active: dict[str, int] = field(default_factory=dict)
    au_model: str | None = None

    def add_frame(
        self,
        t: float,
        dt: float,
        face: bool,
        closure: float | None,
        off_road: bool | None,
        au: dict[str, float],
        config: AggregatorConfig,
        sensing: str | None = None,
    ) -> None:
        """One frame at capture time t covering dt seconds; ``sensing``: why its eye state
        cannot be trusted (the caller then passes closure None), None when it can."""
        self.frames += 1
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        if face:
            self.face_frames += 1
            for name, score in au.items():
                self.au_active[name] = self.au_active.get(name, 0) + (score >= config.au_active)
            if sensing is not None:
                self.degraded_s += dt
                self.sensing_frames[sensing] = self.sensing_frames.get(sensing, 0) + 1
        if closure is not None:
            self.measured_frames += 1
            self.measured_s += dt
            if closure >= config.closed_level:
                self.closed_frames += 1
        if off_road:
            self.off_road_s += dt

    def add_reading(self, reading: NetworkReading, config: AggregatorConfig) -> None:
        """A learnt network's reading (a skipped one adds nothing)."""
        if reading.skipped is not None:
            return
        source = f"{reading.model}@{reading.version}"
        if reading.role is NetworkRole.FATIGUE and "fatigue_score" in reading.outputs:
            self.fatigue_readings += 1
            self.fatigue_score_sum += reading.outputs["fatigue_score"]
            self.fatigue_model = source
        elif reading.role is NetworkRole.AU:
            self.au_readings += 1
            for name, p in reading.outputs.items():
                self.au_network_active[name] = (self.au_network_active.get(name, 0)
                                                + (p >= config.au_active))
            self.au_model = source

    def add_blink(self, duration_s: float) -> None:
        self.blink_count += 1
        self.blink_duration_sum_s += duration_s
        if self.blink_duration_max_s is None or duration_s > self.blink_duration_max_s:
            self.blink_duration_max_s = duration_s

    def metrics(self, driver_id: str, vehicle_id: str, config: AggregatorConfig) -> WindowMetrics:
        """The closed window's statistics. perclos: None without eye measurements; blink rate,
        fatigue score and KSS: None with less than ``min_measured_s`` of them; blink durations:
        None without blinks; au_rates: share of face frames with each AU active, for every AU
        any face frame reported; sensing: the most frequent reason of the degraded seconds."""
        perclos = self.closed_frames / self.measured_frames if self.measured_frames else None
        enough = self.measured_s >= config.min_measured_s
        rate = self.blink_count * 60.0 / self.measured_s if enough else None
        mean = self.blink_duration_sum_s / self.blink_count if self.blink_count else None
        score = kss = fatigue_source = au_source = None
        if self.fatigue_readings:  # the learnt estimator, when the worker serves one
            score = round(min(1.0, max(0.0, self.fatigue_score_sum / self.fatigue_readings)),
                          _DIGITS)
            fatigue_source = self.fatigue_model
        elif enough and perclos is not None:  # the documented fallback
            score = round(
                fatigue_score(perclos, mean, self.long_closures, self.yawns, config), _DIGITS
            )
            fatigue_source = "rules"
        if score is not None:
            kss = kss_from_score(score)
        au_rates: dict[str, float] = {}
        if self.au_readings:
            au_rates = {name: round(n / self.au_readings, _DIGITS)
                        for name, n in sorted(self.au_network_active.items())}
            au_source = self.au_model
        elif self.face_frames and self.au_active:
            au_rates = {name: round(n / self.face_frames, _DIGITS)
                        for name, n in sorted(self.au_active.items())}
            au_source = "blendshapes"
        return WindowMetrics(
            driver_id=driver_id,
            vehicle_id=vehicle_id,
            window_start=self.start,
            window_end=self.end,
            frames=self.frames,
            face_frames=self.face_frames,
            perclos=_r(perclos),
            blink_count=self.blink_count,
            blink_rate_per_min=_r(rate),
            blink_duration_mean_s=_r(mean),
            blink_duration_max_s=_r(self.blink_duration_max_s),
            long_closures=self.long_closures,
            yawns=self.yawns,
            off_road_s=round(self.off_road_s, _DIGITS),
            au_rates=au_rates,
            fatigue_score=score,
            kss=kss,
            fatigue_source=fatigue_source,
            au_source=au_source,
            degraded_s=round(self.degraded_s, _DIGITS),
            sensing=dominant(self.sensing_frames),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowAccumulator:
        # Snapshots from before degraded sensing lack its fields: the defaults apply.
        return cls(**{**data, "au_active": dict(data.get("au_active", {})),
                      "sensing_frames": dict(data.get("sensing_frames", {}))})


def dominant(counts: dict[str, int]) -> str | None:
    """The most frequent key (ties: the first in alphabetical order), None when empty."""
    return min(counts, key=lambda k: (-counts[k], k), default=None)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, _DIGITS)
