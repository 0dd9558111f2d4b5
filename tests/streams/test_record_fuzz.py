"""Fuzzing every JSON topic's decoder, and the aggregator's per-driver state update, with
generated and mutated records (Hypothesis; the profile is in tests/fuzzing.py).

What must hold for every record: the decoder returns a record inside the schema's bounds or
raises SchemaError with a short, printable message, never anything else; the aggregator fed
whatever the decoder accepts never raises (but InputError for a record of another driver),
never hangs, and its state survives the JSON round trip of its changelog. Defects found by
an audit are pinned by the tests after the fuzzers."""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from typing import Any

import pytest
from fuzzing import FUZZ, MUTANTS, NOW_S, RECORDS_PER_TOPIC, mutate_bytes, mutate_json
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.aggregator import DriverAggregator
from streams.errors import InputError
from streams.schemas import (
    MAX_EPOCH_S,
    MAX_ERROR_CHARS,
    Alert,
    AlertReason,
    DeadLetter,
    DeadLetterReason,
    EventClip,
    Observation,
    Record,
    SchemaError,
    Severity,
    WindowMetrics,
    alert_id,
    check_capture_times,
    decode_record,
)
from streams.settings import RecordSettings

log = logging.getLogger(__name__)

LIMITS = RecordSettings()
finite = st.floats(min_value=0, max_value=1, allow_nan=False)
seconds = st.floats(min_value=0, max_value=120, allow_nan=False)


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Any]:
    t = NOW_S + draw(seconds)
    closed = draw(st.booleans())
    event = {"kind": draw(st.sampled_from(["blink", "microsleep", "sleep"])), "start_seq": 1,
             "end_seq": 9, "start_at": t - 1.5, "end_at": t, "duration_s": 1.5,
             "amplitude": draw(finite), "peak_closure": draw(finite),
             "opening_velocity": 2.0, "closed_duration_s": draw(seconds),
             "frequency_per_min": 12.0}
    return Observation(
        driver_id=draw(st.sampled_from(["ann", "bob"])), vehicle_id="van-1",
        seq=draw(st.integers(0, 10_000)), captured_at=t, processed_at=t + 0.05,
        face_present=draw(st.booleans()), faces=1, closure=draw(finite),
        sensing=draw(st.sampled_from([None, "eyes_hidden"])), yaw=draw(finite) * 90,
        gaze_off_road=draw(st.booleans()), perclos=draw(finite),
        closed_for_s=draw(seconds) if closed else 0.0, au={"AU12": draw(finite)},
        events=[event] if draw(st.booleans()) else [],
    ).model_dump(mode="json", by_alias=True)


@st.composite
def window_metrics(draw: st.DrawFn) -> dict[str, Any]:
    start = math.floor((NOW_S + draw(seconds)) / 60) * 60
    return WindowMetrics(
        driver_id="ann", vehicle_id="van-1", window_start=start, window_end=start + 60,
        frames=draw(st.integers(0, 1800)), face_frames=10, perclos=draw(finite),
        blink_count=3, blink_rate_per_min=12.0, blink_duration_mean_s=0.2,
        blink_duration_max_s=0.3, long_closures=0, yawns=0, off_road_s=draw(seconds),
        au_rates={"AU12": 0.1}, kss=draw(st.integers(1, 9)),
    ).model_dump(mode="json", by_alias=True)


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    t = NOW_S + draw(seconds)
    reason = draw(st.sampled_from(list(AlertReason)))
    return Alert(
        alert_id=alert_id("ann", reason, t), driver_id="ann", vehicle_id="van-1",
        reason=reason, severity=draw(st.sampled_from(list(Severity))), started_at=t,
        detected_at=t + 1, message="Driver asleep",
        evidence={"from": t, "to": t + 1, "closed_for_s": draw(seconds)},
    ).model_dump(mode="json", by_alias=True)


@st.composite
def event_clips(draw: st.DrawFn) -> dict[str, Any]:
    t = NOW_S + draw(seconds)
    return EventClip(
        alert_id="a" * 36, driver_id="ann", vehicle_id="van-1", path="/clips/a.webm",
        sha256="0" * 64, size_bytes=draw(st.integers(0, 10**7)), frames=30, fps=15.0,
        started_at=t, ended_at=t + 2, blurred=True, created_at=t + 3,
    ).model_dump(mode="json", by_alias=True)


@st.composite
def dead_letters(draw: st.DrawFn) -> dict[str, Any]:
    return DeadLetter(
        reason=draw(st.sampled_from(list(DeadLetterReason))), error="not JSON",
        source_topic="vigil.frames.v1", partition=draw(st.integers(0, 7)),
        offset=draw(st.integers(0, 10**9)), key="ann",
    ).model_dump(mode="json", by_alias=True)


def mutants(base: dict[str, Any], seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [mutate_json(base, rng) if i % 4 else mutate_bytes(json.dumps(base).encode(), rng)
            for i in range(MUTANTS)]


def decode_checked(cls: type[Record], data: bytes, counts: Counter[str]) -> Any:
    """The decoder's verdict on ``data``, with what must hold for either outcome."""
    counts["records"] += 1
    try:
        record = decode_record(cls, data)
    except SchemaError as exc:
        text = str(exc)
        assert len(text) <= MAX_ERROR_CHARS and text.isprintable(), text[:200]
        counts["dead_letters"] += 1
        return None
    # Accepted: in bounds, and unchanged by a round trip through the topic.
    assert decode_record(cls, record.to_bytes()) == record
    counts["accepted"] += 1
    return record


TOPICS = {
    "observations": (Observation, observations()),
    "window-metrics": (WindowMetrics, window_metrics()),
    "alerts": (Alert, alerts()),
    "event-clips": (EventClip, event_clips()),
    "dead-letters": (DeadLetter, dead_letters()),
}


@pytest.mark.parametrize("topic", list(TOPICS))
def test_decoder_fuzz(topic: str) -> None:
    cls, records = TOPICS[topic]
    counts: Counter[str] = Counter()

    @FUZZ
    @given(records, st.integers(0, 2**32))
    def run(base: dict[str, Any], seed: int) -> None:
        for data in mutants(base, seed):
            decode_checked(cls, data, counts)

    run()
    log.warning("fuzz %s: %s", topic, dict(counts))
    assert counts["records"] >= RECORDS_PER_TOPIC
    # The mutations mostly break records; some survive (a value set to one of the same type).
    assert counts["dead_letters"] > counts["records"] // 2 and counts["accepted"] > 0


def test_aggregator_fuzz() -> None:
    """Whatever the observations decoder and the time check let through, fed to per-driver
    aggregators in arrival order with clock ticks: nothing raises, and the state survives
    its changelog's JSON round trip."""
    counts: Counter[str] = Counter()

    @FUZZ
    @given(st.lists(observations(), min_size=1, max_size=4), st.integers(0, 2**32))
    def run(bases: list[dict[str, Any]], seed: int) -> None:
        aggregators: dict[str, DriverAggregator] = {}
        for base in bases:
            for data in mutants(base, seed):
                obs = decode_checked(Observation, data, counts)
                if obs is None:
                    continue
                try:
                    check_capture_times(obs.capture_times, NOW_S, LIMITS.max_ahead_s,
                                        LIMITS.max_behind_s)
                except SchemaError:
                    counts["out_of_tolerance"] += 1
                    continue
                agg = aggregators.setdefault(obs.driver_id,
                                             DriverAggregator(obs.driver_id, obs.vehicle_id))
                counts["alerts"] += len(agg.observe(obs))
        for agg in aggregators.values():
            last = agg.last_observation_at or NOW_S
            windows, _ = agg.tick(last + 300)
            counts["windows"] += len(windows)
            state = json.loads(json.dumps(agg.to_state()))
            assert DriverAggregator.from_state(state).to_state() == state

    run()
    log.warning("fuzz aggregator: %s", dict(counts))
    assert counts["records"] >= RECORDS_PER_TOPIC and counts["windows"] > 0


# --- the audit's defects, each pinned ----------------------------------------------------


def good_observation(**changes: Any) -> dict[str, Any]:
    obs = Observation(driver_id="ann", vehicle_id="van-1", seq=1, captured_at=NOW_S,
                      processed_at=NOW_S, face_present=True, closure=0.1)
    return {**obs.model_dump(mode="json", by_alias=True), **changes}


@pytest.mark.parametrize("value", [
    b'{"schema": "vigil.observation.v1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"schema": "vigil.observation.v1", "au": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
], ids=["recursion", "depth"])
def test_deeply_nested_json_is_a_schema_error(value: bytes) -> None:
    """Was a RecursionError out of the aggregator's agent (only ValueError was caught)."""
    with pytest.raises(SchemaError, match="nest"):
        decode_record(Observation, value)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_timestamps_are_schema_errors(literal: bytes) -> None:
    """Were NaN/inf capture times reaching math.floor in the aggregator."""
    value = json.dumps(good_observation(captured_at="@")).encode().replace(b'"@"', literal)
    with pytest.raises(SchemaError):
        decode_record(Observation, value)


@pytest.mark.parametrize("captured_at", [6e17, -1.0, MAX_EPOCH_S + 1])
def test_timestamps_outside_epoch_seconds_are_refused(captured_at: float) -> None:
    """At 6e17 s, window_start + 60 == window_start: the aggregator's window loop never
    ended. Neither the decoder nor the aggregator itself accepts such a time."""
    with pytest.raises(SchemaError, match="captured_at"):
        decode_record(Observation, json.dumps(good_observation(captured_at=captured_at)))
    agg = DriverAggregator("ann", "van-1")
    with pytest.raises(InputError):
        agg.observe(Observation.model_construct(**{
            **Observation.model_validate(good_observation()).__dict__,
            "captured_at": captured_at}))
    with pytest.raises(InputError):
        agg.tick(captured_at)


def test_capture_times_must_be_near_the_broker_time() -> None:
    obs = Observation.model_validate(good_observation(captured_at=NOW_S + 10 * 365 * 86_400))
    with pytest.raises(SchemaError, match="after the broker's time"):
        check_capture_times(obs.capture_times, NOW_S, 300, 86_400)
    with pytest.raises(SchemaError, match="before the broker's time"):
        check_capture_times([NOW_S - 2 * 86_400], NOW_S, 300, 86_400)
    check_capture_times([NOW_S - 60, NOW_S + 60], NOW_S, 300, 86_400)
    check_capture_times([NOW_S + 10**9], None, 300, 86_400)  # no broker time: no check


@pytest.mark.parametrize("driver", ["d\x00", "a\nb", "\x1b[2J", "\ud800", " ", "x" * 129])
def test_ids_must_be_printable_and_bounded(driver: str) -> None:
    """A NUL in a driver id passed the schema, and PostgreSQL refused it in every sink."""
    value = json.dumps(good_observation(driver_id=driver)).encode()
    with pytest.raises(SchemaError):
        decode_record(Observation, value)
    with pytest.raises(ValidationError, match="driver_id"):  # nor can the worker make one
        Observation.model_validate(good_observation(driver_id=driver))


def test_errors_quote_a_bad_value_briefly() -> None:
    """The schema error quoted a 4 MB value's repr whole: the dead letter grew to 21 MiB."""
    value = b'{"schema": "' + b"\\u0001" * 700_000 + b'"}'
    with pytest.raises(SchemaError) as caught:
        decode_record(Observation, value)
    assert len(str(caught.value)) <= MAX_ERROR_CHARS
    letter = DeadLetter(reason=DeadLetterReason.BAD_SCHEMA, error="\x01" * 10**6,
                        source_topic="t", partition=0, offset=0, key="\x00" * 10**6)
    assert len(letter.to_bytes()) < 4 * MAX_ERROR_CHARS * 6
    assert letter.key is not None and "\x00" not in letter.key and letter.error.isprintable()
    letter, payload = letter.carrying(b"v" * (4 * 1024 * 1024))
    assert payload == b"v" * DeadLetter.MAX_PAYLOAD and letter.payload_truncated
    assert letter.payload_size == 4 * 1024 * 1024 and letter.payload_sha256 is not None
