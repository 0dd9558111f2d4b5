"""The per-driver aggregator on synthetic 30 fps perception output.

Streams are scripted per frame (face, closure, gaze, mouth, AUs) and passed through the real
streaming blink and yawn detectors (workers.signals), so ``closed_for_s``, the eye events and
the yawns mean exactly what the perception workers will send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.aggregator import (
    KSS_LEVELS,
    AggregatorConfig,
    CaptureClock,
    DriverAggregator,
    decide_window,
    fatigue_score,
    kss_from_score,
    window_state,
)
from streams.errors import ConfigurationError, InputError
from streams.schemas import (
    Alert,
    AlertReason,
    DriverState,
    EyeEventRecord,
    NetworkReading,
    NetworkRole,
    Observation,
    Severity,
    StateReason,
    WindowMetrics,
    YawnRecord,
    alert_id,
)
from workers.signals import BlinkDetector
from workers.signals.yawns import YawnDetector

FPS = 30.0
DT = 1.0 / FPS
T0 = 1_700_000_040.0  # a multiple of 60: window boundaries fall on whole minutes of the script
OPEN = 0.05
CLOSED = 0.95


@dataclass
class Spec:
    """What the camera shows in one frame at script slot k (t = T0 + k / FPS)."""

    k: int
    face: bool = True
    closure: float | None = OPEN
    off_road: bool | None = False
    jaw: float | None = 0.05
    mouth: float | None = None
    au: dict[str, float] = field(default_factory=dict)
    sensing: str | None = None  # why the eyes cannot be judged (then closure is None)


class Script:
    """A driver's frames, built segment by segment at 30 fps."""

    def __init__(self, t0: float = T0) -> None:
        self.t0 = t0
        self.k = 0
        self.specs: list[Spec] = []

    def t(self, k: int) -> float:
        return self.t0 + k / FPS

    @property
    def next_t(self) -> float:
        return self.t(self.k)

    def profile(self, closures: Iterable[float | None], **kw: Any) -> list[int]:
        """One frame per closure value; returns the frame indices."""
        first = len(self.specs)
        for c in closures:
            self.specs.append(Spec(self.k, closure=c, **kw))
            self.k += 1
        return list(range(first, len(self.specs)))

    def frames(self, n: int, **kw: Any) -> list[int]:
        closure = kw.pop("closure", OPEN)
        return self.profile([closure] * n, **kw)

    def seconds(self, s: float, **kw: Any) -> list[int]:
        return self.frames(round(s * FPS), **kw)

    def gap(self, s: float) -> None:
        """No frames at all for s seconds."""
        self.k += round(s * FPS)

    def blink(self, closed_frames: int = 2, **kw: Any) -> list[int]:
        """Lids close over 2 frames, stay >= 0.8 for closed_frames, reopen over 2 frames."""
        return self.profile([0.3, 0.7, *[CLOSED] * closed_frames, 0.5, 0.1], **kw)

    def closure(self, closed_s: float, **kw: Any) -> list[int]:
        return self.blink(round(closed_s * FPS), **kw)

    def alert(self, s: float, blink_every: float = 4.0, **kw: Any) -> None:
        """Eyes open on the road, a normal (~0.23 s) blink every blink_every seconds."""
        end = self.k + round(s * FPS)
        period = round(blink_every * FPS)
        while self.k < end:
            open_frames = min(period - 6, end - self.k)
            self.frames(open_frames, **kw)
            if end - self.k >= 6:
                self.blink(**kw)

    def observations(self, driver_id: str = "d1", vehicle_id: str = "v1") -> list[Observation]:
        detector = BlinkDetector()
        yawning = YawnDetector()
        out = []
        for i, spec in enumerate(self.specs):
            t = self.t(spec.k)
            closure = spec.closure if spec.face else None
            events = detector.update(i, t, closure)
            yawns = yawning.update(i, t, *((spec.jaw, spec.mouth) if spec.face else (None, None)))
            out.append(
                Observation(
                    driver_id=driver_id,
                    vehicle_id=vehicle_id,
                    seq=i,
                    captured_at=t,
                    processed_at=t + 0.05,
                    face_present=spec.face,
                    faces=int(spec.face),
                    closure=closure,
                    sensing=spec.sensing if spec.face else None,
                    mouth_open=spec.mouth if spec.face else None,
                    jaw_open=spec.jaw if spec.face else None,
                    gaze_off_road=spec.off_road if spec.face else None,
                    perclos=detector.perclos,
                    closed_for_s=detector.closed_for(t),
                    au=spec.au if spec.face else {},
                    events=[
                        EyeEventRecord(
                            kind=e.kind,
                            start_seq=e.start_frame,
                            end_seq=e.end_frame,
                            start_at=e.start_t,
                            end_at=e.end_t,
                            duration_s=e.duration_s,
                            amplitude=e.amplitude,
                            peak_closure=e.peak_closure,
                            opening_velocity=e.opening_velocity,
                            closed_duration_s=e.closed_duration_s,
                            frequency_per_min=e.frequency_per_min,
                        )
                        for e in events
                    ],
                    yawns=[
                        YawnRecord(
                            start_seq=y.start_frame,
                            end_seq=y.end_frame,
                            start_at=y.start_t,
                            end_at=y.end_t,
                            duration_s=y.duration_s,
                            peak_jaw_open=y.peak_jaw_open,
                            peak_mouth_open=y.peak_mouth_open,
                        )
                        for y in yawns
                    ],
                )
            )
        return out


def feed(
    agg: DriverAggregator, observations: list[Observation], tick_every: int = 15, start: int = 0
) -> tuple[list[Alert], list[WindowMetrics]]:
    """Observations in order, a tick at the capture time of every tick_every-th one."""
    alerts: list[Alert] = []
    windows: list[WindowMetrics] = []
    for i, obs in enumerate(observations, start):
        alerts += agg.observe(obs)
        if i % tick_every == 0:
            w, a = agg.tick(obs.captured_at)
            windows += w
            alerts += a
    return alerts, windows


def run(
    script: Script, config: AggregatorConfig | None = None, flush: bool = True
) -> tuple[list[Alert], list[WindowMetrics], DriverAggregator]:
    """Feeds the script; ``flush`` ticks past the end to close the last window (the silence
    after the recording ends raises CAMERA_BLOCKED, which is left out)."""
    agg = DriverAggregator("d1", "v1", config)
    obs = script.observations()
    alerts, windows = feed(agg, obs)
    if flush:
        w, a = agg.tick(obs[-1].captured_at + 62.0)
        windows += w
        alerts += [x for x in a if x.reason is not AlertReason.CAMERA_BLOCKED]
    return alerts, windows, agg


def reasons(alerts: list[Alert]) -> list[AlertReason]:
    return [a.reason for a in alerts]


# --- the estimator ----------------------------------------------------------------------------


def test_fatigue_score_is_monotone_and_maps_to_kss() -> None:
    base = {"perclos": 0.03, "blink_duration_mean_s": 0.2, "long_closures": 0, "yawns": 0}
    grid: dict[str, list[Any]] = {
        "perclos": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5],
        "blink_duration_mean_s": [None, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0],
        "long_closures": [0, 1, 2, 3, 5],
        "yawns": [0, 1, 2, 4, 8],
    }
    for name, values in grid.items():
        scores = [fatigue_score(**{**base, name: v}) for v in values]
        assert scores == sorted(scores), name
        assert all(0.0 <= s <= 1.0 for s in scores)
    assert kss_from_score(fatigue_score(0.02, 0.2, 0, 0)) <= 3  # alert
    assert kss_from_score(fatigue_score(0.15, None, 0, 0)) == 7  # Wierwille/Dinges criterion
    assert kss_from_score(fatigue_score(0.15, 0.4, 0, 0)) == 8
    assert kss_from_score(fatigue_score(0.03, 0.2, 1, 0)) >= 8  # any microsleep must warn
    assert kss_from_score(fatigue_score(0.3, 0.2, 0, 0)) == 9
    assert [kss_from_score(s) for s in (0.0, 0.19, 0.5, 0.79, 0.8, 1.0)] == [3, 3, 7, 8, 9, 9]
    assert [lo for lo, _ in KSS_LEVELS] == sorted(lo for lo, _ in KSS_LEVELS)


def test_bad_settings_and_bad_input_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        AggregatorConfig(window_s=0)
    with pytest.raises(ConfigurationError):
        AggregatorConfig(kss_info=9, kss_warning=8)
    agg = DriverAggregator("d1", "v1")
    script = Script()
    script.frames(1)
    with pytest.raises(InputError):
        agg.observe(script.observations(driver_id="someone-else")[0])
    with pytest.raises(InputError):
        DriverAggregator.from_state({**agg.to_state(), "version": 99})
    with pytest.raises(InputError):
        DriverAggregator.from_state({k: v for k, v in agg.to_state().items() if k != "tracks"})


# --- windows ----------------------------------------------------------------------------------


def test_alert_driver_raises_nothing_and_scores_low() -> None:
    script = Script()
    for _ in range(12):  # 3 minutes: blinks every 4 s, a 1 s mirror check every 15 s
        script.alert(14.0)
        script.seconds(1.0, off_road=True)
    alerts, windows, _ = run(script)
    assert alerts == []
    assert [w.window_start for w in windows] == [T0, T0 + 60, T0 + 120]
    for w in windows:
        assert w.frames == w.face_frames == 1800
        assert w.kss is not None and w.kss <= 3
        assert w.fatigue_score is not None and w.fatigue_score < 0.2
        assert w.perclos is not None and w.perclos < 0.03
        assert w.long_closures == 0 and w.yawns == 0
        assert w.blink_count == 12  # three per 15 s cycle
        assert w.blink_rate_per_min == pytest.approx(w.blink_count, abs=0.01)
        assert w.off_road_s == pytest.approx(4.0)


def test_window_metrics_on_a_constructed_minute() -> None:
    script = Script()
    blinks = []
    for _ in range(10):
        script.frames(60)
        blinks.append(script.blink())  # 2 frames >= 0.8, ~0.23 s each
    script.frames(30)
    script.closure(1.5)  # microsleep: a long closure, not a blink
    script.frames(30)
    script.seconds(4.0, off_road=True)
    script.frames(30)
    script.seconds(2.0, jaw=0.7)  # yawn (jawOpen)
    script.frames(30)
    script.seconds(1.0, jaw=0.7)  # talking: too short for a yawn
    script.frames(30)
    script.seconds(2.0, jaw=None, mouth=0.8)  # yawn by the mouth aspect ratio
    script.frames(30)
    script.seconds(10.0, au={"AU12": 0.8, "AU45": 0.2})
    script.seconds(1.0, face=False)
    rest = 1800 - len(script.specs)
    assert rest > 0
    script.frames(rest)
    script.seconds(5.0)  # into the next window
    alerts, windows, agg = run(script)
    first = windows[0]
    face = [s for s in script.specs[:1800] if s.face]
    closed = sum(1 for s in face if s.closure is not None and s.closure >= 0.8)
    assert first.window_start == T0 and first.window_end == T0 + 60
    assert first.frames == 1800 and first.face_frames == 1800 - 30 == len(face)
    assert first.perclos == pytest.approx(closed / len(face), abs=1e-4)
    assert first.blink_count == 10
    assert first.blink_duration_mean_s == pytest.approx(7 / FPS, abs=1e-3)
    assert first.blink_duration_max_s == pytest.approx(7 / FPS, abs=1e-3)
    assert first.blink_rate_per_min == pytest.approx(10 * 60 / (1770 / FPS), abs=0.01)
    assert first.long_closures == 1
    assert first.yawns == 2
    assert first.off_road_s == pytest.approx(4.0)
    assert first.au_rates == {"AU12": pytest.approx(300 / 1770, abs=1e-4), "AU45": 0.0}
    # One microsleep in a minute is drowsiness that must be reported (KSS >= 8).
    assert first.kss is not None and first.kss >= 8
    # ... and the window says so itself: the dashboard shows this decision as stored.
    assert first.state is DriverState.DROWSY
    assert StateReason.KSS_WARNING in first.state_reasons
    assert AlertReason.MICROSLEEP in reasons(alerts)
    assert agg.late_frames == 0


def test_a_yawn_counts_in_the_window_where_it_ends() -> None:
    script = Script()
    script.seconds(59.0)
    script.seconds(2.5, jaw=0.8)  # from 59 s to 61.5 s
    script.seconds(1.0)
    script.seconds(10.0, jaw=0.8, face=False)  # no face: nothing to count
    script.seconds(5.0)
    _, windows, _ = run(script)
    assert [w.yawns for w in windows] == [0, 1]


def test_a_served_fatigue_network_gives_the_window_its_score_and_says_so() -> None:
    """The learnt estimator's readings, when the worker serves one, replace the rule-based
    score; a window without them keeps the rules, its documented fallback, and says which."""
    script = Script()
    script.alert(60.0)
    script.alert(60.0, au={"AU12": 0.9})
    script.seconds(5.0)
    obs = script.observations()

    def reading(role: NetworkRole, at: Observation, outputs: dict[str, float],
                skipped: str | None = None) -> NetworkReading:
        return NetworkReading(role=role, model={NetworkRole.FATIGUE: "fatigue-nonlocal-r3d18",
                                                NetworkRole.AU: "satnet"}[role],
                              version="v2", window_start_seq=max(0, at.seq - 7),
                              window_start_at=at.captured_at - 7 / FPS, window_end_seq=at.seq,
                              window_end_at=at.captured_at, outputs=outputs, skipped=skipped)

    for k, score in ((300, 0.2), (900, 0.6), (1200, 0.9)):
        obs[k] = obs[k].model_copy(update={"networks": [
            reading(NetworkRole.FATIGUE, obs[k], {"fatigue_score": score}),
            reading(NetworkRole.AU, obs[k], {"AU12": 0.7, "AU4": 0.1})]})
    # A window the network could not see adds nothing.
    obs[1500] = obs[1500].model_copy(update={"networks": [
        reading(NetworkRole.FATIGUE, obs[1500], {}, skipped="no_face")]})
    agg = DriverAggregator("d1", "v1")
    _, windows = feed(agg, obs)
    windows += agg.tick(obs[-1].captured_at + 62.0)[0]
    first, second = windows[0], windows[1]
    assert first.fatigue_score == pytest.approx((0.2 + 0.6 + 0.9) / 3, abs=1e-4)
    assert first.kss == kss_from_score((0.2 + 0.6 + 0.9) / 3)
    assert first.fatigue_source == "fatigue-nonlocal-r3d18@v2"
    assert first.au_rates == {"AU12": 1.0, "AU4": 0.0} and first.au_source == "satnet@v2"
    assert second.fatigue_source == "rules"
    assert second.fatigue_score == pytest.approx(
        fatigue_score(second.perclos or 0.0, second.blink_duration_mean_s, 0, 0,
                      AggregatorConfig()), abs=1e-4)
    assert second.au_source == "blendshapes" and second.au_rates["AU12"] == 1.0


def test_windows_close_on_the_clock_without_new_observations() -> None:
    script = Script()
    script.alert(59.0)
    agg = DriverAggregator("d1", "v1")
    for obs in script.observations():
        assert agg.observe(obs) == []
    assert agg.tick(T0 + 61.9) == ([], [])
    windows, alerts = agg.tick(T0 + 62.0)
    assert alerts == [] and len(windows) == 1 and windows[0].frames == 1770
    assert agg.tick(T0 + 62.5) == ([], [])
    # A silent camera: one CAMERA_BLOCKED, and empty windows that show the gap for idle_s
    # (300 s) after the last frame, then nothing more.
    windows, alerts = agg.tick(T0 + 60 * 60)
    assert [w.window_start for w in windows] == [T0 + 60 * m for m in range(1, 6)]
    assert all(w.frames == 0 and w.perclos is None and w.kss is None for w in windows)
    assert reasons(alerts) == [AlertReason.CAMERA_BLOCKED]
    assert agg.tick(T0 + 2 * 60 * 60) == ([], [])
    # Frames again: windows from there on.
    later = Script(t0=T0 + 3 * 60 * 60)
    later.alert(20.0)
    for obs in later.observations():
        agg.observe(obs)
    windows, _ = agg.tick(T0 + 3 * 60 * 60 + 62)
    assert [(w.window_start, w.frames) for w in windows] == [(T0 + 3 * 60 * 60, 600)]


def test_frames_for_a_closed_window_are_late_but_still_alert() -> None:
    script = Script()
    script.alert(10.0)
    script.seconds(5.0, off_road=True)
    agg = DriverAggregator("d1", "v1")
    obs = script.observations()
    early = [a for o in obs[:150] for a in agg.observe(o)]
    windows, _ = agg.tick(T0 + 62.0)  # the clock ran ahead of the frames still in flight
    assert early == [] and [w.frames for w in windows] == [150]
    alerts = [a for o in obs[150:] for a in agg.observe(o)]
    assert reasons(alerts) == [AlertReason.DISTRACTION]
    assert agg.late_frames == len(obs) - 150
    assert agg.open_windows == []


def test_drowsy_windows_reach_kss_8_and_raise_drowsiness() -> None:
    script = Script()
    script.alert(20.0)  # the first window is partly alert
    for _ in range(3):
        for _ in range(20):  # slow blinks: 0.4 s closed, ~0.57 s long, 20 a minute
            script.frames(74, closure=0.1)
            script.blink(12)
        script.closure(1.5)
        script.frames(90 - 51, closure=0.1)
    alerts, windows, _ = run(script)
    kss = [w.kss for w in windows]
    assert kss[0] == 7  # 40 s of slow blinks in the first minute
    assert all(k is not None and k >= 8 for k in kss[1:])
    assert all(w.perclos is not None and w.perclos >= 0.15 for w in windows[1:])
    drowsiness = [a for a in alerts if a.reason is AlertReason.DROWSINESS]
    # INFO for KSS 7 (may warn), WARNING once KSS reaches 8 (must warn), then latched.
    assert [a.severity for a in drowsiness] == [Severity.INFO, Severity.WARNING]
    alert = drowsiness[1]
    assert alert.started_at == windows[1].window_start
    assert alert.detected_at == windows[1].window_end
    assert alert.evidence["kss"] == windows[1].kss
    assert alert.alert_id == alert_id("d1", AlertReason.DROWSINESS, windows[1].window_start)


def test_kss_7_is_information_and_8_escalates() -> None:
    cfg = AggregatorConfig()
    agg = DriverAggregator("d1", "v1", cfg)
    seven = WindowMetrics(
        driver_id="d1",
        vehicle_id="v1",
        window_start=T0,
        window_end=T0 + 60,
        frames=1800,
        face_frames=1800,
        perclos=0.15,
        blink_count=10,
        blink_rate_per_min=10,
        blink_duration_mean_s=0.2,
        blink_duration_max_s=0.3,
        long_closures=0,
        yawns=0,
        off_road_s=0,
        fatigue_score=0.57,
        kss=7,
    )
    info = agg._drowsiness(seven)
    assert [a.severity for a in info] == [Severity.INFO]
    assert agg._drowsiness(seven.model_copy(update={"window_start": T0 + 60})) == []
    eight = seven.model_copy(update={"window_start": T0 + 120, "window_end": T0 + 180, "kss": 8})
    assert [a.severity for a in agg._drowsiness(eight)] == [Severity.WARNING]
    # Still drowsy five minutes later: raised again.
    later = eight.model_copy(update={"window_start": T0 + 420, "window_end": T0 + 480})
    assert [a.severity for a in agg._drowsiness(later)] == [Severity.WARNING]


def test_each_window_carries_the_state_it_says_and_why() -> None:
    cfg = AggregatorConfig()
    base = WindowMetrics(
        driver_id="d1", vehicle_id="v1", window_start=T0, window_end=T0 + 60, frames=1800,
        face_frames=1800, perclos=0.03, blink_count=15, blink_rate_per_min=15,
        blink_duration_mean_s=0.15, blink_duration_max_s=0.2, long_closures=0, yawns=0,
        off_road_s=0, fatigue_score=0.1, kss=3,
    )

    def said(**over: Any) -> tuple[DriverState, list[StateReason]]:
        return window_state(base.model_copy(update=over), cfg)

    assert said() == (DriverState.AWAKE, [])
    assert said(kss=6, perclos=0.149) == (DriverState.AWAKE, [])
    assert said(kss=7) == (DriverState.DROWSY, [StateReason.KSS_INFO])
    # The larger of the rule-based and the learnt KSS decides the level.
    assert said(drowsiness_kss=8) == (DriverState.DROWSY, [StateReason.KSS_WARNING])
    assert said(kss=None, perclos=0.15) == (DriverState.DROWSY, [StateReason.PERCLOS])
    assert said(face_frames=0, perclos=None, kss=None) == (DriverState.NO_FACE,
                                                           [StateReason.NO_FACE])
    # Eyes untrusted for half the window: its measured seconds cannot say awake.
    assert said(degraded_s=30.0) == (DriverState.CANNOT_MONITOR, [StateReason.SENSING_DEGRADED])
    assert said(degraded_s=29.9) == (DriverState.AWAKE, [])
    # Worst first: drowsy over cannot monitor; every condition found is kept.
    assert said(degraded_s=50.0, kss=9, perclos=0.4) == (
        DriverState.DROWSY,
        [StateReason.KSS_WARNING, StateReason.PERCLOS, StateReason.SENSING_DEGRADED],
    )
    # A gap (no frames) says nothing.
    empty = dict(frames=0, face_frames=0, perclos=None, kss=None, fatigue_score=None)
    assert said(**empty) == (DriverState.AWAKE, [])
    # The thresholds are the aggregator's configuration.
    strict = AggregatorConfig(perclos_drowsy=0.05, degraded_window_share=0.1)
    assert window_state(base, strict) == (DriverState.AWAKE, [])
    assert window_state(base.model_copy(update={"perclos": 0.05}), strict) == (
        DriverState.DROWSY, [StateReason.PERCLOS])
    assert window_state(base.model_copy(update={"degraded_s": 6.0}), strict) == (
        DriverState.CANNOT_MONITOR, [StateReason.SENSING_DEGRADED])
    decided = decide_window(base.model_copy(update={"kss": 8}), cfg)
    assert (decided.state, decided.state_reasons) == (DriverState.DROWSY,
                                                      [StateReason.KSS_WARNING])
    assert decided.model_copy(update={"state": None, "state_reasons": []}) == base.model_copy(
        update={"kss": 8})
    with pytest.raises(ConfigurationError, match="degraded_window_share"):
        AggregatorConfig(degraded_window_share=1.5)


# --- eye closures -----------------------------------------------------------------------------


def test_a_1_5_s_closure_is_one_microsleep_with_its_onset() -> None:
    script = Script()
    script.alert(10.0)
    closure = script.closure(1.5)
    script.alert(10.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.MICROSLEEP]
    alert = alerts[0]
    # The blink detector dates the event from where the lids left their rest level.
    onset = script.t(script.specs[closure[0] - 1].k)
    assert alert.started_at == pytest.approx(onset)
    assert alert.severity is Severity.WARNING
    assert alert.alert_id == alert_id("d1", AlertReason.MICROSLEEP, alert.started_at)
    assert alert.detected_at == pytest.approx(script.t(script.specs[closure[-1]].k))
    assert alert.evidence["closed_duration_s"] == pytest.approx(1.5, abs=0.01)


def test_a_4_s_closure_raises_sleep_while_the_eyes_are_still_closed_exactly_once() -> None:
    script = Script()
    script.alert(10.0)
    closure = script.closure(4.0)
    script.alert(10.0)
    agg = DriverAggregator("d1", "v1")
    fired_at = []
    for i, obs in enumerate(script.observations()):
        for alert in agg.observe(obs):
            fired_at.append((i, alert))
    assert [a.reason for _, a in fired_at] == [AlertReason.SLEEP]
    i, alert = fired_at[0]
    first_closed = closure[2]  # after the two closing frames
    last_closed = closure[-3]
    assert i < last_closed  # before the eyes open
    assert i == first_closed + 89  # 3.0 s of closed frames at 30 fps
    assert alert.severity is Severity.CRITICAL
    assert alert.started_at == pytest.approx(script.t(script.specs[first_closed].k) - DT)
    assert alert.evidence["closed_for_s"] == pytest.approx(3.0, abs=1e-3)
    # The sleep event that reports the same closure when the eyes reopen raised nothing.
    assert agg.to_state()["sleep_onsets"] == [alert.started_at]


def test_a_sleep_event_without_a_live_alert_still_raises_sleep() -> None:
    script = Script()
    script.alert(5.0)
    script.closure(4.0)
    script.alert(5.0)
    observations = [o.model_copy(update={"closed_for_s": 0.0}) for o in script.observations()]
    agg = DriverAggregator("d1", "v1")
    alerts = [a for o in observations for a in agg.observe(o)]
    assert reasons(alerts) == [AlertReason.SLEEP]
    assert alerts[0].evidence["source"] == "event"


# --- gaze -------------------------------------------------------------------------------------


def test_looking_away_for_4_s_is_one_distraction() -> None:
    script = Script()
    script.alert(10.0)
    away = script.seconds(4.0, off_road=True)
    script.alert(10.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.DISTRACTION]
    alert = alerts[0]
    onset = script.t(script.specs[away[0]].k) - DT
    assert alert.started_at == pytest.approx(onset)
    assert alert.detected_at == pytest.approx(script.t(script.specs[away[89]].k))
    assert alert.evidence["rule"] == "continuous"
    assert alert.severity is Severity.WARNING


def test_four_glances_of_2_8_s_within_30_s_are_a_distraction() -> None:
    script = Script()
    script.alert(10.0)
    glances = []
    for _ in range(4):
        glances.append(script.seconds(2.8, off_road=True))
        script.seconds(4.2)
    script.alert(30.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.DISTRACTION]
    alert = alerts[0]
    assert alert.evidence["rule"] == "cumulative"
    assert alert.started_at == pytest.approx(script.t(script.specs[glances[0][0]].k) - DT)
    # 3 × 2.8 s = 8.4 s, so 10 s are reached 1.6 s into the fourth glance.
    assert alert.detected_at == pytest.approx(script.t(script.specs[glances[3][47]].k))
    assert alert.evidence["off_road_s"] == pytest.approx(10.0, abs=0.01)


def test_no_return_within_3_s_of_a_distraction_is_unresponsive() -> None:
    script = Script()
    script.alert(10.0)
    away = script.seconds(5.0, off_road=True)
    script.seconds(3.0, face=False)  # turned right round: no face, no return to the road
    script.alert(10.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.DISTRACTION, AlertReason.UNRESPONSIVE]
    distraction, unresponsive = alerts
    assert unresponsive.severity is Severity.CRITICAL
    assert unresponsive.evidence["rule"] == "no_response"
    assert unresponsive.evidence["after"] == "distraction"
    assert unresponsive.started_at == distraction.started_at
    assert unresponsive.detected_at == pytest.approx(distraction.detected_at + 3.0, abs=DT)
    assert unresponsive.started_at == pytest.approx(script.t(script.specs[away[0]].k) - DT)


def test_6_s_of_eyes_closed_or_looking_away_is_unresponsive() -> None:
    script = Script()
    script.alert(10.0)
    away = script.seconds(2.5, off_road=True)
    script.closure(2.5, off_road=None)  # eyes shut: no gaze estimate
    script.seconds(2.5, off_road=True)
    script.alert(10.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.MICROSLEEP, AlertReason.UNRESPONSIVE]
    unresponsive = alerts[1]
    assert unresponsive.evidence["rule"] == "sustained"
    assert unresponsive.started_at == pytest.approx(script.t(script.specs[away[0]].k) - DT)
    assert unresponsive.detected_at - unresponsive.started_at == pytest.approx(6.0, abs=DT)


def test_a_warning_followed_by_silence_escalates_on_the_clock() -> None:
    script = Script()
    script.alert(10.0)
    script.seconds(3.5, off_road=True)
    agg = DriverAggregator("d1", "v1")
    alerts = [a for o in script.observations() for a in agg.observe(o)]
    assert reasons(alerts) == [AlertReason.DISTRACTION]
    deadline = alerts[0].detected_at + 3.0
    assert agg.tick(deadline + 1.9)[1] == []  # frames may still be on their way
    _, late = agg.tick(deadline + 2.0)
    assert reasons(late) == [AlertReason.UNRESPONSIVE]
    assert late[0].evidence["confirmed_by_frames"] is False
    assert late[0].evidence["rule"] == "no_response"


def test_cooldown_holds_a_second_distraction_back() -> None:
    script = Script()
    script.alert(5.0)
    script.seconds(4.0, off_road=True)
    script.alert(10.0)
    script.seconds(4.0, off_road=True)  # 14 s after the first alert: within the 30 s cooldown
    script.alert(25.0)
    third = script.seconds(4.0, off_road=True)  # 43 s after: fires
    script.alert(5.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.DISTRACTION, AlertReason.DISTRACTION]
    assert alerts[1].started_at == pytest.approx(script.t(script.specs[third[0]].k) - DT)
    assert alerts[1].detected_at - alerts[0].detected_at >= 30.0


def test_a_persisting_condition_fires_when_its_cooldown_ends() -> None:
    script = Script()
    script.alert(5.0)
    script.seconds(4.0, off_road=True)
    script.alert(5.0)
    second = script.seconds(40.0, off_road=True)
    alerts, _, _ = run(script, AggregatorConfig(unresponsive_s=600, response_s=600), flush=False)
    assert reasons(alerts) == [AlertReason.DISTRACTION, AlertReason.DISTRACTION]
    assert alerts[1].detected_at - alerts[0].detected_at == pytest.approx(30.0, abs=DT)
    assert alerts[1].started_at == pytest.approx(script.t(script.specs[second[0]].k) - DT)


def test_hysteresis_needs_the_road_for_clear_s_before_a_new_alert() -> None:
    cfg = AggregatorConfig(cooldown_s=0.0)
    script = Script()
    script.alert(5.0)
    script.seconds(4.0, off_road=True)
    script.seconds(0.5)  # a glance back, shorter than clear_s
    script.seconds(4.0, off_road=True)
    assert reasons(run(script, cfg, flush=False)[0]) == [AlertReason.DISTRACTION]
    script.seconds(1.5)  # back on the road long enough to clear
    script.seconds(4.0, off_road=True)
    script.alert(5.0)
    assert reasons(run(script, cfg, flush=False)[0]) == [AlertReason.DISTRACTION] * 2


# --- face and camera --------------------------------------------------------------------------


def test_no_face_for_5_s_while_frames_arrive() -> None:
    script = Script()
    script.alert(5.0)
    gone = script.seconds(6.0, face=False)
    script.alert(5.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.NO_FACE]
    assert alerts[0].started_at == pytest.approx(script.t(script.specs[gone[0]].k) - DT)
    assert alerts[0].detected_at == pytest.approx(script.t(script.specs[gone[149]].k))
    assert alerts[0].severity is Severity.WARNING


def test_camera_silence_is_camera_blocked_once_per_silence() -> None:
    script = Script()
    script.alert(5.0)
    agg = DriverAggregator("d1", "v1")
    obs = script.observations()
    feed(agg, obs)
    last = obs[-1].captured_at
    assert agg.tick(last + 9.9)[1] == []
    _, alerts = agg.tick(last + 10.0)
    assert reasons(alerts) == [AlertReason.CAMERA_BLOCKED]
    assert alerts[0].started_at == last
    assert alerts[0].alert_id == alert_id("d1", AlertReason.CAMERA_BLOCKED, last)
    assert agg.tick(last + 20.0)[1] == []
    # The frames come back: no repeat for the same silence; after clear_s and the cooldown,
    # a new silence is a new alert.
    back = Script(t0=last + 30.0)
    back.alert(3.0)
    more = back.observations()
    assert [a for o in more for a in agg.observe(o)] == []
    _, again = agg.tick(more[-1].captured_at + 10.0)
    assert reasons(again) == [AlertReason.CAMERA_BLOCKED]
    assert again[0].started_at == more[-1].captured_at


def test_a_gap_between_frames_reports_the_same_camera_alert_without_ticks() -> None:
    script = Script()
    script.alert(5.0)
    before = len(script.specs)
    script.gap(12.0)
    script.alert(5.0)
    obs = script.observations()
    agg = DriverAggregator("d1", "v1")
    alerts = [a for o in obs for a in agg.observe(o)]
    assert reasons(alerts) == [AlertReason.CAMERA_BLOCKED]
    assert alerts[0].alert_id == alert_id(
        "d1", AlertReason.CAMERA_BLOCKED, obs[before - 1].captured_at
    )
    # With a tick during the silence the id is the same and nothing is raised twice.
    ticked = DriverAggregator("d1", "v1")
    seen = [a for o in obs[:before] for a in ticked.observe(o)]
    seen += ticked.tick(obs[before - 1].captured_at + 10.0)[1]
    seen += [a for o in obs[before:] for a in ticked.observe(o)]
    assert [a.alert_id for a in seen] == [alerts[0].alert_id]


# --- restarts ---------------------------------------------------------------------------------


def eventful_script() -> Script:
    """Three minutes with something of everything."""
    script = Script()
    script.alert(12.0)
    script.closure(1.5)
    script.alert(8.0)
    script.seconds(4.0, off_road=True)
    script.alert(6.0)
    script.seconds(2.0, jaw=0.8)
    script.alert(10.0)
    script.closure(7.0)
    script.alert(8.0)
    script.seconds(6.0, face=False)
    script.alert(20.0)
    for _ in range(4):
        script.seconds(2.8, off_road=True)
        script.seconds(4.2)
    script.seconds(5.0, off_road=True)
    script.seconds(3.0, face=False)
    script.alert(10.0)
    for _ in range(15):
        script.frames(74, closure=0.1)
        script.blink(12)
    script.closure(2.0)
    script.alert(15.0)
    script.gap(12.0)
    script.alert(10.0)
    return script


def test_a_restart_from_a_snapshot_changes_nothing() -> None:
    obs = eventful_script().observations()
    reference = DriverAggregator("d1", "v1")
    ref_alerts, ref_windows = feed(reference, obs)
    end = obs[-1].captured_at + 62.0
    w, a = reference.tick(end)
    ref_alerts, ref_windows = ref_alerts + a, ref_windows + w
    assert {a.reason for a in ref_alerts} >= {
        AlertReason.MICROSLEEP,
        AlertReason.SLEEP,
        AlertReason.DISTRACTION,
        AlertReason.UNRESPONSIVE,
        AlertReason.NO_FACE,
        AlertReason.CAMERA_BLOCKED,
        AlertReason.DROWSINESS,
    }
    assert len({a.alert_id for a in ref_alerts}) == len(ref_alerts)
    assert len(ref_windows) >= 3
    # Restart anywhere, and in particular right after each alert (mid-closure, mid-glance).
    fired = {a.detected_at for a in ref_alerts}
    after_alerts = [i + 1 for i, o in enumerate(obs) if o.captured_at in fired]
    assert len(after_alerts) >= 6
    for k in sorted({1, *range(211, len(obs), 389), *after_alerts, len(obs) - 1}):
        first = DriverAggregator("d1", "v1")
        alerts, windows = feed(first, obs[:k])
        snapshot = json.dumps(first.to_state())
        for _ in range(2):  # restoring the same snapshot twice replays identically
            restored = DriverAggregator.from_state(json.loads(snapshot))
            more_alerts, more_windows = feed(restored, obs[k:], start=k)
            w, a = restored.tick(end)
            assert alerts + more_alerts + a == ref_alerts, k
            assert windows + more_windows + w == ref_windows, k


def test_a_snapshot_from_before_yawn_events_still_restores() -> None:
    obs = eventful_script().observations()
    reference = DriverAggregator("d1", "v1")
    ref_alerts, ref_windows = feed(reference, obs)
    k = len(obs) // 3
    first = DriverAggregator("d1", "v1")
    alerts, windows = feed(first, obs[:k])
    state = first.to_state()
    # What the aggregator that tracked the mouth itself also saved.
    state["yawn_onset"] = obs[k - 1].captured_at - 2.0
    state["tracks"]["mouth_wide"] = {"onset": None, "last": None, "contrary_onset": 1.0,
                                     "contrary_last": 2.0}
    restored = DriverAggregator.from_state(json.loads(json.dumps(state)))
    more_alerts, more_windows = feed(restored, obs[k:], start=k)
    assert (alerts + more_alerts, windows + more_windows) == (ref_alerts, ref_windows)
    assert sum(w.yawns for w in ref_windows) == 1


def test_redelivered_observations_are_ignored() -> None:
    obs = eventful_script().observations()
    agg = DriverAggregator("d1", "v1")
    k = len(obs) // 2
    feed(agg, obs[:k])
    state = agg.to_state()
    # At-least-once delivery: a restored worker sees some observations again.
    assert feed(agg, obs[k - 300 : k])[0] == []
    assert agg.duplicates == 300
    assert {**agg.to_state(), "duplicates": 0} == {**state, "duplicates": 0}


def test_the_snapshot_is_small_json() -> None:
    obs = eventful_script().observations()
    agg = DriverAggregator("d1", "v1")
    feed(agg, obs[: len(obs) // 2])
    assert len(json.dumps(agg.to_state())) < 8000


def test_the_capture_clock_runs_on_while_the_camera_is_silent() -> None:
    clock = CaptureClock()
    assert clock.now(5.0) is None
    clock.seen(T0, monotonic=100.0)
    clock.seen(T0 + 1.0, monotonic=100.5)  # frames delivered in a batch: capture time leads
    clock.seen(T0 + 0.5, monotonic=100.6)  # older: no effect
    assert clock.now(100.5) == T0 + 1.0
    assert clock.now(112.5) == pytest.approx(T0 + 13.0)
    assert clock.now(90.0) == T0 + 1.0
