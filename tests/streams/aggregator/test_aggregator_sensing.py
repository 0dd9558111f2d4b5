"""Degraded sensing in the per-driver aggregator: frames whose eye state the worker cannot
trust (``Observation.sensing``) raise SENSING_DEGRADED within 10 s and never pass for
measured eyes. Same 30 fps scripts as test_aggregator."""

from __future__ import annotations

import json

import pytest
from test_aggregator import CLOSED, DT, FPS, Script, feed, reasons, run

from streams.aggregator import AggregatorConfig, DriverAggregator
from streams.schemas import (
    AlertReason,
    DriverState,
    Observation,
    SchemaError,
    SensingIssue,
    Severity,
    StateReason,
    decode_record,
)

HIDDEN = SensingIssue.EYES_HIDDEN.value


def test_6_s_of_hidden_eyes_raise_one_notice_within_10_s_with_its_reason() -> None:
    script = Script()
    script.alert(5.0)
    hidden = script.seconds(6.0, closure=None, sensing=HIDDEN)
    script.alert(5.0)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]
    notice = alerts[0]
    onset = script.t(script.specs[hidden[0]].k) - DT
    assert notice.started_at == pytest.approx(onset)
    assert notice.detected_at - onset == pytest.approx(5.0)  # degraded_s, inside Euro NCAP's 10 s
    assert notice.severity is Severity.WARNING
    assert notice.evidence["sensing"] == "eyes_hidden"
    assert notice.evidence["degraded_share"] == 1.0
    assert "eyes hidden (sunglasses" in notice.message


def test_3_s_of_degraded_sensing_then_clear_eyes_raise_nothing() -> None:
    script = Script()
    script.alert(5.0)
    script.seconds(3.0, closure=None, sensing=SensingIssue.FACE_TURNED.value)
    script.alert(10.0)
    assert run(script, flush=False)[0] == []


def test_the_dominant_reason_and_share_of_a_run_bridged_over_short_trusted_stretches() -> None:
    script = Script()
    script.alert(3.0)
    for _ in range(8):  # 8 s: 0.7 s hidden eyes, 0.2 s small face, 0.1 s trusted
        script.seconds(0.7, closure=None, sensing=SensingIssue.EYES_HIDDEN.value)
        script.seconds(0.2, closure=None, sensing=SensingIssue.FACE_SMALL.value)
        script.seconds(0.1)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]
    assert alerts[0].evidence["sensing"] == "eyes_hidden"
    assert alerts[0].evidence["degraded_share"] == pytest.approx(0.9, abs=0.02)
    assert "eyes hidden" in alerts[0].message


def test_a_reason_flickering_on_a_few_frames_of_a_measurable_face_raises_nothing() -> None:
    script = Script()
    for _ in range(60):  # 12 s, one frame in five hidden: a run, but mostly measured
        script.frames(4)
        script.frames(1, closure=None, sensing=SensingIssue.EYES_HIDDEN.value)
    assert run(script, flush=False)[0] == []


def test_degraded_frames_never_raise_eye_alerts_or_pass_for_an_alert_driver() -> None:
    script = Script()
    script.alert(5.0)
    script.seconds(120.0, closure=None, sensing=HIDDEN)
    alerts, windows, _ = run(script)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]  # latched: once for the run
    whole = windows[1]  # T0 + 60 .. T0 + 120: degraded throughout
    assert whole.degraded_s == pytest.approx(60.0, abs=0.1)
    assert whole.sensing == "eyes_hidden"
    assert (whole.perclos, whole.kss, whole.blink_rate_per_min) == (None, None, None)
    first = windows[0]  # 5 s measured, 55 s degraded: too little for a KSS
    assert first.perclos is not None and first.kss is None
    assert first.degraded_s == pytest.approx(55.0, abs=0.1)
    # Neither window may say the driver is awake: each says it cannot monitor, and why.
    for w in (first, whole):
        assert (w.state, w.state_reasons) == (DriverState.CANNOT_MONITOR,
                                              [StateReason.SENSING_DEGRADED])


def test_closure_values_on_degraded_frames_are_ignored() -> None:
    """A worker that still sends closed eyes with a sensing reason must not raise SLEEP,
    MICROSLEEP or UNRESPONSIVE on them."""
    script = Script()
    script.alert(5.0)
    degraded = script.seconds(8.0, closure=None, sensing=HIDDEN)
    script.alert(5.0)
    obs = script.observations()
    for i in degraded:
        closed_for = (i - degraded[0] + 1) / FPS
        obs[i] = obs[i].model_copy(update={"closure": CLOSED, "closed_for_s": closed_for})
    agg = DriverAggregator("d1", "v1")
    alerts, _ = feed(agg, obs)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]


def test_the_notice_clears_like_the_others_and_repeats_after_its_cooldown() -> None:
    script = Script()
    script.seconds(6.0, closure=None, sensing=HIDDEN)
    script.alert(2.0)  # clear for longer than clear_s
    script.seconds(6.0, closure=None, sensing=HIDDEN)  # within the 30 s cooldown
    script.alert(25.0)
    script.seconds(6.0, closure=None, sensing=HIDDEN)
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED] * 2
    assert alerts[1].detected_at - alerts[0].detected_at > AggregatorConfig().cooldown_s


def test_a_restart_in_the_middle_of_a_degraded_run_changes_nothing() -> None:
    script = Script()
    script.alert(5.0)
    hidden = script.seconds(4.0, closure=None, sensing=HIDDEN)
    script.seconds(3.0, closure=None, sensing=SensingIssue.FACE_SMALL.value)
    script.alert(5.0)
    obs = script.observations()
    reference = DriverAggregator("d1", "v1")
    ref_alerts, ref_windows = feed(reference, obs)
    assert reasons(ref_alerts) == [AlertReason.SENSING_DEGRADED]
    k = hidden[0] + 3 * 30  # 3 s into the run
    first = DriverAggregator("d1", "v1")
    alerts, windows = feed(first, obs[:k])
    restored = DriverAggregator.from_state(json.loads(json.dumps(first.to_state())))
    more_alerts, more_windows = feed(restored, obs[k:], start=k)
    assert (alerts + more_alerts, windows + more_windows) == (ref_alerts, ref_windows)


def test_a_snapshot_from_before_degraded_sensing_still_restores() -> None:
    script = Script()
    script.alert(5.0)
    script.seconds(6.0, closure=None, sensing=HIDDEN)
    obs = script.observations()
    agg = DriverAggregator("d1", "v1")
    feed(agg, obs[:100])
    state = agg.to_state()
    del state["sensing_tally"], state["tracks"]["degraded"], state["tracks"]["degraded_run"]
    for window in state["windows"]:
        del window["degraded_s"], window["sensing_frames"]
    restored = DriverAggregator.from_state(json.loads(json.dumps(state)))
    alerts, _ = feed(restored, obs[100:], start=100)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]


def _observation(**over: object) -> bytes:
    fields = {"schema": "vigil.observation.v1", "driver_id": "d1", "vehicle_id": "v1",
              "seq": 0, "captured_at": 1.0, "processed_at": 1.1, "face_present": True, **over}
    return json.dumps(fields).encode()


def test_an_unknown_reason_is_accepted_and_still_degrades_but_garbage_is_rejected() -> None:
    """Open codes: a newer worker's reason must not dead-letter the frame (its face and gaze
    included); the aggregator counts any code as degraded and the words fall back to it."""
    obs = decode_record(Observation, _observation(sensing="rain_on_lens"))
    assert obs.sensing == "rain_on_lens"
    script = Script()
    script.seconds(6.0, closure=None, sensing="rain_on_lens")
    alerts, _, _ = run(script, flush=False)
    assert reasons(alerts) == [AlertReason.SENSING_DEGRADED]
    assert "rain on lens" in alerts[0].message
    for bad in ("", "Eyes Hidden", "x" * 40, 3):
        with pytest.raises(SchemaError, match="sensing"):
            decode_record(Observation, _observation(sensing=bad))
