"""One driver's aggregator: observations in, window metrics and alerts out (DESIGN §4).

Pure and deterministic: no I/O, no wall clock. The Faust agent feeds :meth:`observe` with the
driver's observations in capture order and calls :meth:`tick` from a timer, so windows close
and silences are noticed on time even when no observation arrives; it stores :meth:`to_state`
in a table so a restarted worker resumes with :meth:`from_state`.

Clock: capture-time epoch seconds (``Observation.captured_at``); ``tick(now)`` uses the same
clock. A frame covers the interval since the previous frame (``dt``: the actual gap when it is
at most ``max_gap_s``, else the last such gap, first 1/nominal_fps), so n frames at 30 fps last
n/30 s and a run of them starts at its first frame's time minus that frame's interval.

Frame-driven rules (decided on observations, at their capture time):
- MICROSLEEP (WARNING): a ``microsleep`` eye event; onset = event ``start_at``.
- SLEEP (CRITICAL): ``closed_for_s >= sleep_s`` while the eyes are still closed; onset =
  ``captured_at - closed_for_s``. The ``sleep`` (or ``microsleep``) event that later reports the
  same closure raises nothing more (its span contains that onset, within ``sleep_match_s``); a
  sleep event no live SLEEP covered raises SLEEP with onset = event ``start_at``.
- DISTRACTION (WARNING): gaze off the road for ``distraction_s`` without a break, or
  ``distraction_cumulative_s`` off road within the last ``distraction_window_s`` (time before
  the previous DISTRACTION is not counted again); onset = start of the glance, or of the first
  off-road time inside the sliding window.
- UNRESPONSIVE (CRITICAL): no attentive frame (eyes open and gaze on the road) within
  ``response_s`` of a DISTRACTION, MICROSLEEP or SLEEP alert, or eyes closed / looking away for
  ``unresponsive_s`` without a break; onset = start of the current closed-or-away run when
  there is one, else the onset of the warning left unanswered.
- NO_FACE (WARNING): frames arrive but none has a face for ``no_face_s``; onset = first
  face-less frame. A black or covered lens that still delivers frames shows up here.
- SENSING_DEGRADED (WARNING): frames with a face keep saying their eye state cannot be trusted
  (``Observation.sensing``) for ``degraded_s``, at least ``degraded_min_share`` of the run's
  frames degraded; trusted or face-less stretches up to ``max_gap_s`` are bridged. Evidence and
  message carry the dominant reason and the share; onset = the first degraded frame. Degraded
  frames are unmeasured for every eye rule and window statistic (their closure, and
  ``closed_for_s``, are ignored), so nothing eye-based fires on values the worker distrusts.

Time-driven rules (:meth:`tick`):
- CAMERA_BLOCKED (WARNING): no observation at all for ``camera_silence_s``; onset = the last
  frame. Observations only tell silence apart from a covered lens by the absence of frames, so
  that is the whole rule. A gap that long between two frames is also reported by
  :meth:`observe` (same id, so a tick that saw it first makes it a duplicate the state drops).
- UNRESPONSIVE: when the frames stop after a warning, no return is seen either; once the clock
  passes the deadline by ``grace_s`` (room for frames still on their way) it fires with
  ``confirmed_by_frames: false`` in its evidence.
- DROWSINESS: each closed window with KSS >= ``kss_warning`` (WARNING) or == ``kss_info``
  (INFO), the KSS being the larger of the rule-based one and the learnt estimator's on the
  driver's latest blinks (:mod:`streams.aggregator.drowsiness`; then the evidence carries the
  blink window and what the network said); onset = window start, detected at window end.
  Raised when the level rises, again after ``drowsiness_repeat_s`` while it persists, and
  after a window below ``kss_info``.

Hysteresis and cooldown: after firing, a reason stays latched until its condition is seen clear
for ``clear_s`` (eyes open, gaze on the road, attentive, face in view, frames arriving); and it
fires at most once per ``cooldown_s`` (``critical_cooldown_s`` for SLEEP and UNRESPONSIVE).
MICROSLEEP events are discrete and only rate-limited. A condition that persists past its
cooldown fires then, with its own onset.

``detected_at`` is the aggregator's clock when the rule fired: the frame's ``captured_at`` for
frame rules, ``now`` for tick rules, the window end for DROWSINESS. ``alert_id`` depends only on
driver, reason and onset, so replaying the same observations yields the same ids.

Windows: tumbling, ``window_s`` long, aligned to multiples of it; closed by :meth:`tick` once
``now >= window_end + grace_s``, each with the driver state it says and why
(:mod:`streams.aggregator.state`; the dashboard shows that decision as stored). Frames arriving
for a closed window are counted in ``late_frames`` and left out of its metrics (they still
drive the alert rules). Windows without frames inside a driver's stream are emitted with
``frames=0`` and None statistics, so the dashboard shows the gap, for up to ``idle_s`` after the
last frame; then nothing until frames resume. Observations not later than the last one seen
(redelivery after a restart, reordering) are ignored and counted in ``duplicates``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any

from streams.aggregator.config import AggregatorConfig
from streams.aggregator.drowsiness import BlinkBaseline, DrowsinessEstimate, DrowsinessEstimator
from streams.aggregator.rules import EPS, Escalation, Latch, SensingTally, Track
from streams.aggregator.state import decide_window
from streams.aggregator.windows import WindowAccumulator, dominant
from streams.errors import InputError
from streams.schemas import (
    MAX_EPOCH_S,
    Alert,
    AlertReason,
    EyeEventRecord,
    Observation,
    Severity,
    WindowMetrics,
    alert_id,
    sensing_words,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1

# degraded: eye state untrusted (True) / trusted (False) on face frames, for the hysteresis;
# degraded_run: the same run with trusted stretches up to max_gap_s bridged, for the rule.
_TRACKS = ("eyes_closed", "off_road", "inattentive", "no_face", "degraded", "degraded_run")
_ESCALATING = (AlertReason.DISTRACTION, AlertReason.MICROSLEEP, AlertReason.SLEEP)
_MAX_SLEEP_ONSETS = 8
_DIGITS = 3


class DriverAggregator:
    """All per-driver state. Feed observations in capture order; call tick(now) from a timer."""

    def __init__(
        self, driver_id: str, vehicle_id: str, config: AggregatorConfig | None = None,
        estimator: DrowsinessEstimator | None = None,
    ) -> None:
        """estimator: the learnt drowsiness estimate on blink windows; None leaves it out."""
        self.driver_id = driver_id
        self.vehicle_id = vehicle_id
        self.config = cfg = config or AggregatorConfig()
        self._prev_t: float | None = None
        self._frame_dt = cfg.frame_interval_s
        self._stream_since: float | None = None
        self._tracks = {name: Track() for name in _TRACKS}
        self._latches = {reason.value: Latch() for reason in AlertReason}
        self._escalation: Escalation | None = None
        # [start, end] of recent off-road runs, for the cumulative distraction rule.
        self._off_road_runs: list[list[float]] = []
        self._cumulative_from: float | None = None
        self._sleep_onsets: list[float] = []
        self._sensing_tally: SensingTally | None = None
        self._windows: dict[float, WindowAccumulator] = {}
        self._next_window: float | None = None
        self._last_closed_t: float | None = None
        self._drowsy_level = 0
        self._blinks = BlinkBaseline()
        self.estimator = estimator
        self.late_frames = 0
        self.duplicates = 0

    # --- public API --------------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[Alert]:
        """One observation (in capture order) -> the alerts that fire on it."""
        if obs.driver_id != self.driver_id:
            raise InputError(
                f"observation of driver {obs.driver_id!r} fed to the aggregator of "
                f"{self.driver_id!r}"
            )
        t = obs.captured_at
        _check_time(t)
        prev = self._prev_t
        if prev is not None and t <= prev:
            self.duplicates += 1
            log.debug(
                "driver %s: observation at %.3f not after %.3f, ignored", self.driver_id, t, prev
            )
            return []
        cfg = self.config
        self.vehicle_id = obs.vehicle_id
        gap = None if prev is None else t - prev
        if gap is not None and gap <= cfg.max_gap_s:
            self._frame_dt = gap
        dt = self._frame_dt
        self._prev_t = t
        alerts: list[Alert] = []

        # Frames again after a silence.
        if gap is None or gap > cfg.max_gap_s:
            self._stream_since = t - dt
        if prev is not None and gap is not None and gap >= cfg.camera_silence_s - EPS:
            alerts += self._camera_blocked(prev, t, at=t, confirmed_until=t)

        window = self._window_for(t)
        face = obs.face_present
        sensing = obs.sensing if face else None
        closure = obs.closure if face and sensing is None else None  # untrusted: unmeasured
        off_road = obs.gaze_off_road if face else None
        if window is not None:
            window.add_frame(t, dt, face, closure, off_road, obs.au if face else {}, cfg,
                             sensing)

        eyes = self._update_tracks(obs, t, dt, closure, off_road)
        self._clear_latches(t)
        if window is not None:
            # Yawns are the worker's events (workers.signals.yawns), counted where they end;
            # network readings count where they are reported, as events do.
            window.yawns += len(obs.yawns)
            for reading in obs.networks:
                window.add_reading(reading, cfg)

        for event in obs.events:
            self._blinks.add(event, cfg)
            if event.kind == "blink":
                if window is not None:
                    window.add_blink(event.duration_s)
                continue
            if window is not None:
                window.long_closures += 1
            alerts += self._closure_event(event, t)

        alerts += self._sleep(obs, t, eyes)
        alerts += self._distraction(obs, t)
        alerts += self._unresponsive(t)
        alerts += self._no_face(t)
        alerts += self._sensing_degraded(t)
        return alerts

    def tick(self, now: float) -> tuple[list[WindowMetrics], list[Alert]]:
        """Clock at ``now`` (capture-time seconds) -> windows due and time-driven alerts."""
        _check_time(now)
        windows: list[WindowMetrics] = []
        alerts: list[Alert] = []
        for acc in self._close_windows(now):
            metrics = acc.metrics(self.driver_id, self.vehicle_id, self.config)
            blink_window = self._blinks.window()
            if blink_window is not None and self.estimator is not None:
                metrics = self._with_estimate(metrics, blink_window)
            metrics = decide_window(metrics, self.config)
            windows.append(metrics)
            alerts += self._drowsiness(metrics, blink_window)
        alerts += self._tick_escalation(now)
        prev = self._prev_t
        if prev is not None and now - prev >= self.config.camera_silence_s - EPS:
            alerts += self._camera_blocked(prev, now, at=now, confirmed_until=None)
        return windows, alerts

    @property
    def last_observation_at(self) -> float | None:
        """Capture time of the newest observation accepted (the agent's clock anchor)."""
        return self._prev_t

    @property
    def open_windows(self) -> list[float]:
        """Start times of the windows still accumulating."""
        return sorted(self._windows)

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot of all state (alert-critical and window accumulators)."""
        return {
            "version": STATE_VERSION,
            "driver_id": self.driver_id,
            "vehicle_id": self.vehicle_id,
            "window_s": self.config.window_s,
            "prev_t": self._prev_t,
            "frame_dt": self._frame_dt,
            "stream_since": self._stream_since,
            "tracks": {name: asdict(track) for name, track in self._tracks.items()},
            "latches": {reason: asdict(latch) for reason, latch in self._latches.items()},
            "escalation": None if self._escalation is None else asdict(self._escalation),
            "off_road_runs": [list(run) for run in self._off_road_runs],
            "cumulative_from": self._cumulative_from,
            "sleep_onsets": list(self._sleep_onsets),
            "sensing_tally": None if self._sensing_tally is None else asdict(self._sensing_tally),
            "windows": [self._windows[start].to_dict() for start in sorted(self._windows)],
            "next_window": self._next_window,
            "last_closed_t": self._last_closed_t,
            "drowsy_level": self._drowsy_level,
            "blinks": self._blinks.to_dict(),
            "late_frames": self.late_frames,
            "duplicates": self.duplicates,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], config: AggregatorConfig | None = None,
        estimator: DrowsinessEstimator | None = None,
    ) -> DriverAggregator:
        """Rebuilds an aggregator from :meth:`to_state` (after a JSON round trip too).

        Raises InputError for a snapshot of another version or a malformed one."""
        version = state.get("version") if isinstance(state, dict) else None
        if version != STATE_VERSION:
            raise InputError(f"aggregator state version {version!r}, expected {STATE_VERSION}")
        try:
            agg = cls(str(state["driver_id"]), str(state["vehicle_id"]), config, estimator)
            if float(state["window_s"]) != agg.config.window_s:
                log.warning(
                    "driver %s: restoring windows of %.0f s with window_s=%.0f; the open "
                    "windows keep their own bounds",
                    agg.driver_id,
                    state["window_s"],
                    agg.config.window_s,
                )
            agg._prev_t = _opt_float(state["prev_t"])
            agg._frame_dt = float(state["frame_dt"])
            agg._stream_since = _opt_float(state["stream_since"])
            # A track added after the snapshot was taken starts empty; older snapshots' yawn
            # state (a mouth_wide track, yawn_onset) is left out: yawns now come as events.
            agg._tracks = {name: Track(**state["tracks"].get(name, {})) for name in _TRACKS}
            # A reason added after the snapshot was taken starts unlatched.
            agg._latches = {
                reason.value: Latch(**state["latches"].get(reason.value, {}))
                for reason in AlertReason
            }
            esc = state["escalation"]
            agg._escalation = None if esc is None else Escalation(**esc)
            agg._off_road_runs = [[float(a), float(b)] for a, b in state["off_road_runs"]]
            agg._cumulative_from = _opt_float(state["cumulative_from"])
            agg._sleep_onsets = [float(x) for x in state["sleep_onsets"]]
            tally = state.get("sensing_tally")
            agg._sensing_tally = None if tally is None else SensingTally(**tally)
            accs = [WindowAccumulator.from_dict(w) for w in state["windows"]]
            agg._windows = {acc.start: acc for acc in accs}
            agg._next_window = _opt_float(state["next_window"])
            agg._last_closed_t = _opt_float(state["last_closed_t"])
            agg._drowsy_level = int(state["drowsy_level"])
            # Snapshots from before the learnt estimator start a new baseline.
            agg._blinks = BlinkBaseline.from_dict(state.get("blinks") or {})
            agg.late_frames = int(state["late_frames"])
            agg.duplicates = int(state["duplicates"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed aggregator state: {type(exc).__name__}: {exc}") from None
        return agg

    # --- signals -----------------------------------------------------------------------------

    def _update_tracks(
        self, obs: Observation, t: float, dt: float, closure: float | None, off_road: bool | None
    ) -> bool | None:
        """Updates the per-frame condition tracks; returns the eyes-closed state of the frame."""
        cfg = self.config
        degraded = None if not obs.face_present else obs.sensing is not None
        eyes: bool | None = None
        if degraded:
            pass  # eyes the worker distrusts are unmeasured, its closed_for_s included
        elif obs.closed_for_s > 0 or (closure is not None and closure >= cfg.closed_level):
            eyes = True
        elif closure is not None:
            eyes = False
        inattentive: bool | None = None
        if eyes is True or off_road is True:
            inattentive = True
        elif eyes is False and off_road is False:
            inattentive = False
        tracks = self._tracks
        tracks["eyes_closed"].update(t, dt, eyes, cfg.max_gap_s)
        tracks["off_road"].update(t, dt, off_road, cfg.max_gap_s)
        tracks["inattentive"].update(t, dt, inattentive, cfg.max_gap_s)
        tracks["no_face"].update(t, dt, not obs.face_present, cfg.max_gap_s)
        tracks["degraded"].update(t, dt, degraded, cfg.max_gap_s)
        run = tracks["degraded_run"]
        run.update(t, dt, True if degraded else None, cfg.max_gap_s)
        if run.onset is None:
            self._sensing_tally = None
        else:
            if self._sensing_tally is None or self._sensing_tally.onset != run.onset:
                self._sensing_tally = SensingTally(run.onset)
            self._sensing_tally.add(obs.sensing if degraded else None)
        if off_road is True:
            onset = tracks["off_road"].onset
            assert onset is not None
            if self._off_road_runs and self._off_road_runs[-1][0] == onset:
                self._off_road_runs[-1][1] = t
            else:
                self._off_road_runs.append([onset, t])
        horizon = t - cfg.distraction_window_s
        self._off_road_runs = [run for run in self._off_road_runs if run[1] > horizon]
        return eyes

    def _clear_latches(self, t: float) -> None:
        cfg, tracks, latches = self.config, self._tracks, self._latches
        clears = {
            AlertReason.SLEEP: tracks["eyes_closed"].contrary_for(t),
            AlertReason.DISTRACTION: tracks["off_road"].contrary_for(t),
            AlertReason.UNRESPONSIVE: tracks["inattentive"].contrary_for(t),
            AlertReason.NO_FACE: tracks["no_face"].contrary_for(t),
            AlertReason.SENSING_DEGRADED: tracks["degraded"].contrary_for(t),
            AlertReason.CAMERA_BLOCKED: (
                0.0 if self._stream_since is None else t - self._stream_since
            ),
        }
        for reason, clear_for in clears.items():
            latch = latches[reason.value]
            if latch.latched and clear_for >= cfg.clear_s - EPS:
                latch.latched = False
                log.debug("driver %s: %s cleared at %.3f", self.driver_id, reason.value, t)

    # --- windows -----------------------------------------------------------------------------

    def _window_for(self, t: float) -> WindowAccumulator | None:
        size = self.config.window_s
        start = math.floor(t / size) * size
        if self._next_window is None:
            self._next_window = start
        elif start < self._next_window:
            self.late_frames += 1
            log.debug("driver %s: frame at %.3f after its window closed", self.driver_id, t)
            return None
        acc = self._windows.get(start)
        if acc is None:
            acc = self._windows[start] = WindowAccumulator(start, start + size)
        return acc

    def _close_windows(self, now: float) -> list[WindowAccumulator]:
        cfg = self.config
        closed: list[WindowAccumulator] = []
        while self._next_window is not None:
            start = self._next_window
            end = start + cfg.window_s
            if now < end + cfg.grace_s:
                break
            acc = self._windows.pop(start, None)
            if acc is not None:
                closed.append(acc)
                self._last_closed_t = acc.last_t
                self._next_window = end
            elif self._last_closed_t is not None and start < self._last_closed_t + cfg.idle_s:
                closed.append(WindowAccumulator(start, end))
                self._next_window = end
            elif self._windows:
                self._next_window = min(self._windows)
            else:
                # Offline: skip to the first window the clock has not closed yet.
                self._next_window = max(
                    end, math.floor((now - cfg.grace_s) / cfg.window_s) * cfg.window_s
                )
        return closed

    # --- rules -------------------------------------------------------------------------------

    def _closure_event(self, event: EyeEventRecord, t: float) -> list[Alert]:
        """A finished microsleep or sleep event."""
        cfg = self.config
        tol = cfg.sleep_match_s
        if any(event.start_at - tol <= o <= event.end_at + tol for o in self._sleep_onsets):
            log.debug(
                "driver %s: %s event at %.3f already alerted as sleep",
                self.driver_id,
                event.kind,
                event.start_at,
            )
            return []
        reason = AlertReason.SLEEP if event.kind == "sleep" else AlertReason.MICROSLEEP
        latch = self._latches[reason.value]
        cooldown = cfg.critical_cooldown_s if reason is AlertReason.SLEEP else cfg.cooldown_s
        if not latch.can_fire(t, cooldown):
            log.debug(
                "driver %s: %s at %.3f within cooldown",
                self.driver_id,
                reason.value,
                event.start_at,
            )
            return []
        evidence = {
            "from": event.start_at,
            "to": event.end_at,
            "duration_s": event.duration_s,
            "closed_duration_s": event.closed_duration_s,
            "peak_closure": event.peak_closure,
            "start_seq": event.start_seq,
            "end_seq": event.end_seq,
            "source": "event",
        }
        if reason is AlertReason.SLEEP:
            self._remember_sleep(event.start_at)
            message = f"Driver fell asleep: eyes closed {event.closed_duration_s:.1f} s"
            return [self._fire(reason, Severity.CRITICAL, event.start_at, t, message, evidence)]
        message = f"Microsleep: eyes closed {event.closed_duration_s:.1f} s"
        return [
            self._fire(reason, Severity.WARNING, event.start_at, t, message, evidence, latch=False)
        ]

    def _sleep(self, obs: Observation, t: float, eyes: bool | None) -> list[Alert]:
        cfg = self.config
        if eyes is not True or obs.closed_for_s < cfg.sleep_s - EPS:
            return []
        onset = t - obs.closed_for_s
        if any(abs(onset - o) <= cfg.sleep_match_s for o in self._sleep_onsets):
            return []
        if not self._latches[AlertReason.SLEEP.value].can_fire(t, cfg.critical_cooldown_s):
            return []
        self._remember_sleep(onset)
        evidence = {
            "from": onset,
            "to": t,
            "closed_for_s": obs.closed_for_s,
            "closure": obs.closure,
            "perclos": obs.perclos,
            "seq": obs.seq,
            "source": "closed_for",
        }
        message = f"Driver asleep: eyes closed for {obs.closed_for_s:.1f} s"
        return [self._fire(AlertReason.SLEEP, Severity.CRITICAL, onset, t, message, evidence)]

    def _remember_sleep(self, onset: float) -> None:
        self._sleep_onsets = [*self._sleep_onsets, onset][-_MAX_SLEEP_ONSETS:]

    def _distraction(self, obs: Observation, t: float) -> list[Alert]:
        cfg = self.config
        track = self._tracks["off_road"]
        if track.last != t or track.onset is None:
            return []
        latch = self._latches[AlertReason.DISTRACTION.value]
        if not latch.can_fire(t, cfg.cooldown_s):
            return []
        glance = track.duration(t)
        evidence: dict[str, Any]
        if glance >= cfg.distraction_s - EPS:
            onset = track.onset
            evidence = {"rule": "continuous", "from": onset, "to": t, "off_road_s": glance}
            message = f"Eyes off the road for {glance:.1f} s"
        else:
            low = t - cfg.distraction_window_s
            if self._cumulative_from is not None:
                low = max(low, self._cumulative_from)
            spans = [(max(a, low), b) for a, b in self._off_road_runs if b > low]
            total = sum(b - a for a, b in spans)
            if not spans or total < cfg.distraction_cumulative_s - EPS:
                return []
            onset = spans[0][0]
            evidence = {
                "rule": "cumulative",
                "from": onset,
                "to": t,
                "off_road_s": total,
                "window_s": cfg.distraction_window_s,
                "glances": len(spans),
            }
            message = f"Eyes off the road {total:.1f} s within {cfg.distraction_window_s:.0f} s"
        evidence.update(yaw=obs.yaw, pitch=obs.pitch, seq=obs.seq)
        self._cumulative_from = t
        return [self._fire(AlertReason.DISTRACTION, Severity.WARNING, onset, t, message, evidence)]

    def _unresponsive(self, t: float) -> list[Alert]:
        cfg = self.config
        track = self._tracks["inattentive"]
        latch = self._latches[AlertReason.UNRESPONSIVE.value]
        esc = self._escalation
        if esc is not None and t > esc.warned_at:
            attentive = track.contrary_last == t
            if attentive and t <= esc.deadline + EPS:
                self._escalation = None  # the driver answered the warning
            elif t >= esc.deadline - EPS:
                if latch.can_fire(t, cfg.critical_cooldown_s):
                    return [self._no_response(esc, t, confirmed=True)]
                if latch.latched or attentive:
                    # Already unresponsive, or back (late) while the cooldown held it back.
                    self._escalation = None
        if track.last != t or track.onset is None:
            return []
        away = track.duration(t)
        if away < cfg.unresponsive_s - EPS or not latch.can_fire(t, cfg.critical_cooldown_s):
            return []
        self._escalation = None
        evidence = {
            "rule": "sustained",
            "from": track.onset,
            "to": t,
            "inattentive_s": away,
            "confirmed_by_frames": True,
        }
        message = f"Driver unresponsive: eyes closed or looking away for {away:.1f} s"
        return [
            self._fire(
                AlertReason.UNRESPONSIVE, Severity.CRITICAL, track.onset, t, message, evidence
            )
        ]

    def _no_response(self, esc: Escalation, at: float, confirmed: bool) -> Alert:
        self._escalation = None
        track = self._tracks["inattentive"]
        onset = track.onset if track.onset is not None else esc.onset
        evidence = {
            "rule": "no_response",
            "after": esc.source,
            "warning_onset": esc.onset,
            "warned_at": esc.warned_at,
            "deadline": esc.deadline,
            "from": onset,
            "to": at,
            "last_observation_at": self._prev_t,
            "confirmed_by_frames": confirmed,
        }
        message = (
            f"Driver unresponsive: no return {self.config.response_s:.0f} s after the "
            f"{esc.source} warning"
        )
        return self._fire(AlertReason.UNRESPONSIVE, Severity.CRITICAL, onset, at, message, evidence)

    def _tick_escalation(self, now: float) -> list[Alert]:
        esc, cfg = self._escalation, self.config
        if esc is None or now < esc.deadline + cfg.grace_s:
            return []
        if self._prev_t is not None and self._prev_t >= esc.deadline - EPS:
            return []  # frames past the deadline arrived: observe() decides
        latch = self._latches[AlertReason.UNRESPONSIVE.value]
        if latch.latched:
            self._escalation = None
            return []
        if not latch.can_fire(now, cfg.critical_cooldown_s):
            return []
        return [self._no_response(esc, now, confirmed=False)]

    def _no_face(self, t: float) -> list[Alert]:
        cfg = self.config
        track = self._tracks["no_face"]
        if track.last != t or track.onset is None:
            return []
        missing = track.duration(t)
        latch = self._latches[AlertReason.NO_FACE.value]
        if missing < cfg.no_face_s - EPS or not latch.can_fire(t, cfg.cooldown_s):
            return []
        evidence = {"from": track.onset, "to": t, "no_face_s": missing}
        message = f"No face in view for {missing:.1f} s"
        return [
            self._fire(AlertReason.NO_FACE, Severity.WARNING, track.onset, t, message, evidence)
        ]

    def _sensing_degraded(self, t: float) -> list[Alert]:
        cfg = self.config
        track, tally = self._tracks["degraded_run"], self._sensing_tally
        if track.last != t or track.onset is None or tally is None:
            return []
        degraded = track.duration(t)
        latch = self._latches[AlertReason.SENSING_DEGRADED.value]
        if (
            degraded < cfg.degraded_s - EPS
            or tally.share < cfg.degraded_min_share - EPS
            or not latch.can_fire(t, cfg.cooldown_s)
        ):
            return []
        reason = dominant(tally.reasons)
        assert reason is not None  # the run's last frame was degraded
        evidence = {
            "from": track.onset,
            "to": t,
            "degraded_s": degraded,
            "sensing": reason,
            "degraded_share": tally.share,
            "reasons": dict(tally.reasons),
        }
        message = (
            f"Cannot monitor the eyes for {degraded:.1f} s: {sensing_words(reason)} "
            f"({tally.share:.0%} of frames)"
        )
        return [
            self._fire(
                AlertReason.SENSING_DEGRADED, Severity.WARNING, track.onset, t, message, evidence
            )
        ]

    def _camera_blocked(
        self, last: float, until: float, at: float, confirmed_until: float | None
    ) -> list[Alert]:
        latch = self._latches[AlertReason.CAMERA_BLOCKED.value]
        if latch.last_onset == last or not latch.can_fire(at, self.config.cooldown_s):
            return []
        silence = until - last
        evidence = {
            "from": last,
            "to": until,
            "silence_s": silence,
            "last_observation_at": last,
            "frames_resumed_at": confirmed_until,
        }
        message = f"No frames from the camera for {silence:.1f} s"
        return [
            self._fire(AlertReason.CAMERA_BLOCKED, Severity.WARNING, last, at, message, evidence)
        ]

    def _with_estimate(self, metrics: WindowMetrics, blink_window: Any) -> WindowMetrics:
        assert self.estimator is not None
        try:
            est: DrowsinessEstimate = self.estimator.estimate(blink_window)
        except Exception:  # a model fault must not cost the window or the rule-based alerts
            log.exception("driver %s: drowsiness estimate failed, window published without it",
                          self.driver_id)
            return metrics
        return metrics.model_copy(update={
            "drowsiness_state": est.state, "drowsiness_score": est.score,
            "drowsiness_kss": est.kss, "drowsiness_probabilities": est.probabilities,
            "drowsiness_model": est.model})

    def _drowsiness(self, metrics: WindowMetrics, blink_window: Any = None) -> list[Alert]:
        """DROWSINESS on the window's KSS: the larger of the rule-based and the learnt one."""
        cfg = self.config
        levels = [k for k in (metrics.kss, metrics.drowsiness_kss) if k is not None]
        if not levels:
            return []
        kss = max(levels)
        latch = self._latches[AlertReason.DROWSINESS.value]
        if kss < cfg.kss_info:
            self._drowsy_level = 0
            return []
        level = cfg.kss_warning if kss >= cfg.kss_warning else cfg.kss_info
        at = metrics.window_end
        repeat = (
            latch.last_fired_at is not None
            and at - latch.last_fired_at >= cfg.drowsiness_repeat_s - EPS
        )
        if not (level > self._drowsy_level or repeat) or not latch.can_fire(at, cfg.cooldown_s):
            return []
        self._drowsy_level = level
        severity = Severity.WARNING if level >= cfg.kss_warning else Severity.INFO
        evidence: dict[str, Any] = {
            "from": metrics.window_start,
            "to": metrics.window_end,
            "kss": kss,
            "rule_kss": metrics.kss,
            "fatigue_score": metrics.fatigue_score,
            "perclos": metrics.perclos,
            "blink_duration_mean_s": metrics.blink_duration_mean_s,
            "blink_rate_per_min": metrics.blink_rate_per_min,
            "long_closures": metrics.long_closures,
            "yawns": metrics.yawns,
        }
        parts = []
        if metrics.fatigue_score is not None:
            parts.append(f"fatigue score {metrics.fatigue_score:.2f}")
        if metrics.drowsiness_state is not None:
            # What the network saw and said: the operator's flag on this alert turns it into a
            # labelled training window for `vigil retrain`.
            evidence["drowsiness"] = {
                "state": metrics.drowsiness_state, "score": metrics.drowsiness_score,
                "kss": metrics.drowsiness_kss, "model": metrics.drowsiness_model,
                "probabilities": metrics.drowsiness_probabilities,
            }
            evidence["blink_window"] = blink_window.tolist()
            parts.append(f"blinks look {metrics.drowsiness_state.replace('_', ' ')}")
        message = f"Drowsy: KSS {kss} ({', '.join(parts)})" if parts else f"Drowsy: KSS {kss}"
        return [
            self._fire(
                AlertReason.DROWSINESS,
                severity,
                metrics.window_start,
                at,
                message,
                evidence,
                latch=False,
            )
        ]

    def _fire(
        self,
        reason: AlertReason,
        severity: Severity,
        onset: float,
        at: float,
        message: str,
        evidence: dict[str, Any],
        latch: bool = True,
    ) -> Alert:
        self._latches[reason.value].fire(at, onset, latch=latch)
        if reason in _ESCALATING and self._escalation is None:
            self._escalation = Escalation(reason.value, onset, at, at + self.config.response_s)
        alert = Alert(
            alert_id=alert_id(self.driver_id, reason, onset),
            driver_id=self.driver_id,
            vehicle_id=self.vehicle_id,
            reason=reason,
            severity=severity,
            started_at=onset,
            detected_at=at,
            message=message,
            evidence={k: _round(v) for k, v in evidence.items()},
        )
        log.info(
            "driver %s: %s %s from %.3f (%s)",
            self.driver_id,
            severity.value,
            reason.value,
            onset,
            alert.alert_id,
        )
        return alert


def _check_time(t: float) -> None:
    """Window arithmetic needs finite epoch seconds where adding a window still moves on
    (past ~5.8e17 s, start + 60 == start and windows never close)."""
    if not 0 <= t <= MAX_EPOCH_S:  # NaN fails too
        raise InputError(f"time {t!r} is not epoch seconds between 1970 and 2100")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _round(value: Any) -> Any:
    return round(value, _DIGITS) if isinstance(value, float) else value
