"""Every threshold of the aggregator in one frozen record (DESIGN §4; Euro NCAP 2023 DSM style).

Times are seconds of the capture clock; closures are the perception layer's 0 (open) ..
1 (closed) units. What a yawn is, the worker decides (workers.signals.yawns); the aggregator
counts its events.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from streams.errors import ConfigurationError
from streams.schemas import PERCLOS_DROWSY


@dataclass(frozen=True)
class AggregatorConfig:
    """Windows, signal thresholds, alert rules and the fatigue estimator's weights."""

    # --- windows ------------------------------------------------------------------------
    window_s: float = 60.0
    """Tumbling window length; windows are aligned to multiples of it (epoch seconds)."""
    grace_s: float = 2.0
    """A window closes once the clock reaches window_end + grace_s (room for late frames)."""
    idle_s: float = 300.0
    """Empty windows (frames=0) are emitted for gaps in a driver's stream, but only for windows
    starting within idle_s of the last frame before the gap; past that the driver is offline
    and nothing is emitted until frames resume."""
    min_measured_s: float = 10.0
    """Seconds of eye measurements a window needs for a blink rate, fatigue score and KSS."""

    # --- frames and signals -----------------------------------------------------------------
    nominal_fps: float = 30.0
    """Frame interval (1/nominal_fps) assumed for a driver's first frame and after a gap."""
    max_gap_s: float = 0.5
    """Unmeasured stretches (no face, no eyes, missing frames) up to this long neither break nor
    extend a run (a glance, a closure); longer ones end it."""
    closed_level: float = 0.8
    """Eyes are closed at closure >= this (the PERCLOS P80 criterion) and open below it."""
    au_active: float = 0.5
    """An action unit is active in a frame when its score is >= this."""

    # --- fatigue score and KSS (see streams.aggregator.fatigue) ---------------------------
    perclos_drowsy: float = PERCLOS_DROWSY
    """Wierwille et al. 1994 / Dinges & Grace 1998: PERCLOS (P80) >= 0.15 is drowsy."""
    blink_duration_alert_s: float = 0.2
    blink_duration_drowsy_s: float = 0.4
    """Mean blink duration of an alert driver (~0.1–0.2 s) and of a drowsy one (> 0.4 s)."""
    weight_perclos: float = 1.0
    weight_blink_duration: float = 0.3
    weight_long_closure: float = 1.0
    weight_yawn: float = 0.15
    max_long_closures: int = 3
    max_yawns: int = 4
    score_centre: float = 0.9
    score_slope: float = 3.0

    # --- alert rules ------------------------------------------------------------------------
    sleep_s: float = 3.0
    """SLEEP fires once the eyes have been closed this long, while they are still closed."""
    sleep_match_s: float = 0.5
    """A finished sleep/microsleep event whose span contains (within this tolerance) the onset
    of a SLEEP already raised is the same closure and raises nothing more."""
    distraction_s: float = 3.0
    """DISTRACTION: one continuous glance off the road this long ..."""
    distraction_cumulative_s: float = 10.0
    distraction_window_s: float = 30.0
    """... or this much off-road time within a sliding window of this length."""
    response_s: float = 3.0
    """UNRESPONSIVE: no return (eyes open and gaze on the road) within this long of a
    DISTRACTION, MICROSLEEP or SLEEP alert ..."""
    unresponsive_s: float = 6.0
    """... or eyes closed / looking away for this long without a break."""
    no_face_s: float = 5.0
    """NO_FACE: frames keep arriving but none shows a face for this long."""
    degraded_s: float = 5.0
    """SENSING_DEGRADED: frames with a face keep saying the eye state cannot be trusted for this
    long (Euro NCAP: a driver monitor says within 10 s that it cannot monitor). Stretches of
    trusted or face-less frames up to max_gap_s neither break nor end such a run ...
    """
    degraded_min_share: float = 0.5
    """... but at least this share of the run's frames must be degraded, so a reason that
    flickers on a few frames of a measurable face raises nothing."""
    degraded_window_share: float = 0.5
    """A window whose eye state was untrusted for at least this share of its length cannot say
    the driver is awake, whatever its few measured seconds say: its state is cannot_monitor."""
    camera_silence_s: float = 10.0
    """CAMERA_BLOCKED: no frames at all for this long."""
    clear_s: float = 1.0
    """Hysteresis: a condition must be seen clear this long before its reason can fire again."""
    cooldown_s: float = 30.0
    """A reason fires at most once per cooldown (detection times) ..."""
    critical_cooldown_s: float = 5.0
    """... except SLEEP and UNRESPONSIVE, which are safety-critical and repeat sooner (the
    hysteresis already stops repeats within one closure or one episode)."""
    kss_info: int = 7
    kss_warning: int = 8
    """EU DDAW: KSS >= 8 must warn (WARNING), KSS 7 may warn (INFO)."""
    drowsiness_repeat_s: float = 300.0
    """While a driver stays drowsy, DROWSINESS is raised again after this long."""
    drowsiness_baseline_blinks: int = 60
    """The learnt estimator z-normalises each driver's blinks against the first this many of
    the shift (about 4 minutes at a usual 15 blinks/min), as UTA-RLDD was normalised."""
    drowsiness_shift_gap_s: float = 3600.0
    """After this long without blinks a new shift (and baseline) begins."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ConfigurationError(f"aggregator setting {f.name} must be >= 0, not {value}")
        for name in ("window_s", "nominal_fps", "min_measured_s", "score_slope"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"aggregator setting {name} must be > 0")
        if not 1 <= self.kss_info <= self.kss_warning <= 9:
            raise ConfigurationError("aggregator needs 1 <= kss_info <= kss_warning <= 9")
        for name in ("degraded_min_share", "degraded_window_share"):
            if getattr(self, name) > 1:
                raise ConfigurationError(f"aggregator {name} must lie in [0, 1]")
        if not 0 < self.closed_level <= 1:
            raise ConfigurationError("aggregator closed_level must lie in (0, 1]")
        if self.blink_duration_drowsy_s <= self.blink_duration_alert_s:
            raise ConfigurationError(
                "aggregator blink_duration_drowsy_s must exceed blink_duration_alert_s"
            )
        if self.perclos_drowsy <= 0:
            raise ConfigurationError("aggregator perclos_drowsy must be > 0")

    @property
    def frame_interval_s(self) -> float:
        return 1.0 / self.nominal_fps
