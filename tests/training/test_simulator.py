"""The labelled driver simulator: truth schema, determinism, physiology, video, real engine."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from models.errors import VigilError
from streams.errors import ConfigurationError
from training.simulator import PROFILES, SCHEMA, simulate_set
from training.simulator.faces import MAX_CLOSED_EAR_RATIO, closure_response, load_faces
from training.simulator.generate import count_frames, truth_record
from training.simulator.timeline import CALM_START_S, MIN_BLINK_GAP_S, make_timeline

FRAME_KEYS = {
    "closure_left", "closure_right", "mouth_open", "yaw", "pitch", "roll", "face_visible",
    "eyes_visible",
}
TOP_KEYS = {
    "schema", "driver_id", "profile", "seed", "fps", "frame_count", "width", "height", "video",
    "source_face", "frames", "blinks", "long_closures", "yawns", "distractions", "absences",
    "occlusions", "perclos",
}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sim")
    return simulate_set(out, drivers=2, seconds=12.0, seed=11, profile="mixed")


def _load(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _timeline_truth(profile: str, seed: int, seconds: float = 60.0) -> dict[str, Any]:
    """Truth of a timeline alone (no rendering), every frame visible."""
    tl = make_timeline(profile, seconds, 30.0, np.random.default_rng(seed))
    visible = np.ones(tl.n, dtype=bool)
    return truth_record(tl, visible, visible, driver_id="d", profile=profile, seed=seed,
                        size=(640, 360), video="d.mp4", source_face="none")


def test_unknown_profile_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        simulate_set(tmp_path, drivers=1, seconds=2.0, seed=0, profile="sleepy")
    assert isinstance(err.value, VigilError)
    for name in PROFILES:
        assert name in str(err.value)
    assert not list(tmp_path.iterdir())


def test_profiles_are_the_documented_ones() -> None:
    assert set(PROFILES) == {"alert", "drowsy", "distracted", "mixed"}


def test_same_seed_same_truth_and_video(tmp_path: Path) -> None:
    a = simulate_set(tmp_path / "a", drivers=1, seconds=3.0, seed=5, profile="drowsy")
    b = simulate_set(tmp_path / "b", drivers=1, seconds=3.0, seed=5, profile="drowsy")
    c = simulate_set(tmp_path / "c", drivers=1, seconds=3.0, seed=6, profile="drowsy")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()
    video = _load(a[0])["video"]
    assert (a[0].parent / video).read_bytes() == (b[0].parent / video).read_bytes()


def test_timelines_are_deterministic() -> None:
    for profile in PROFILES:
        assert _timeline_truth(profile, 3, 30.0) == _timeline_truth(profile, 3, 30.0)
    assert _timeline_truth("mixed", 3, 30.0) != _timeline_truth("mixed", 4, 30.0)


def test_truth_schema_and_lengths(small_set: list[Path]) -> None:
    assert [p.name for p in small_set] == ["driver-000.json", "driver-001.json"]
    faces = set()
    for k, path in enumerate(small_set):
        record = _load(path)
        assert set(record) == TOP_KEYS
        assert record["schema"] == SCHEMA
        assert record["driver_id"] == f"driver-{k:03d}"
        assert record["video"] == f"driver-{k:03d}.mp4"
        assert (record["profile"], record["seed"], record["fps"]) == ("mixed", 11, 30.0)
        assert (record["width"], record["height"]) == (640, 360)
        n = record["frame_count"]
        assert n == 360
        frames = record["frames"]
        assert set(frames) == FRAME_KEYS
        assert all(len(v) == n for v in frames.values())
        for key in ("closure_left", "closure_right", "mouth_open"):
            values = np.array(frames[key])
            assert values.min() >= 0.0 and values.max() <= 1.0
        assert all(isinstance(v, bool) for v in frames["face_visible"])
        visible = np.array(frames["face_visible"])
        eyes = np.array(frames["eyes_visible"])
        assert not np.any(eyes & ~visible)
        mean = (np.array(frames["closure_left"]) + np.array(frames["closure_right"])) / 2
        perclos = float(np.mean(mean[visible] >= 0.8)) if visible.any() else 0.0
        assert record["perclos"] == pytest.approx(perclos, abs=1e-4)
        for blink in record["blinks"]:
            s, p, e = blink["start_frame"], blink["peak_frame"], blink["end_frame"]
            assert 0 <= s <= p <= e < n
            assert blink["duration_s"] == pytest.approx((e - s + 1) / 30.0, abs=1e-4)
            assert mean[s] > 0.05 and mean[e] > 0.05
            assert mean[s - 1] <= 0.05 and mean[e + 1] <= 0.05
            assert blink["amplitude"] == pytest.approx(mean[p], abs=1e-4)
        for closure in record["long_closures"]:
            cs, ce = closure["closed_start_frame"], closure["closed_end_frame"]
            assert closure["start_frame"] <= cs <= ce <= closure["end_frame"]
            assert closure["closed_duration_s"] == pytest.approx((ce - cs + 1) / 30.0, abs=1e-4)
            assert closure["closed_duration_s"] >= 1.0
            assert np.all(mean[cs : ce + 1] >= 0.8)
            assert closure["kind"] == ("sleep" if closure["closed_duration_s"] >= 3 else
                                       "microsleep")
        for key, label in (("distractions", "direction"), ("absences", "cause"),
                           ("occlusions", "region")):
            for event in record[key]:
                assert 0 <= event["start_frame"] <= event["end_frame"] < n
                assert isinstance(event[label], str)
        for absence in record["absences"]:
            assert not visible[absence["start_frame"] : absence["end_frame"] + 1].any()
        faces.add(record["source_face"])
    assert len(faces) == 2  # each driver its own real face


def test_video_reads_back(small_set: list[Path]) -> None:
    for path in small_set:
        record = _load(path)
        video = path.parent / record["video"]
        assert count_frames(video) == record["frame_count"]
        cap = cv2.VideoCapture(str(video))
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        assert ok and frame.shape == (record["height"], record["width"], 3)


def test_calm_start_and_spacing() -> None:
    for profile in PROFILES:
        for seed in range(3):
            record = _timeline_truth(profile, seed)
            frames = record["frames"]
            calm = int(CALM_START_S * 30)
            assert max(frames["closure_left"][:calm] + frames["closure_right"][:calm]) == 0.0
            assert max(abs(v) for v in frames["yaw"][:calm]) < 2.0
            events = sorted(
                [(b["start_frame"], b["end_frame"]) for b in record["blinks"]]
                + [(c["start_frame"], c["end_frame"]) for c in record["long_closures"]]
            )
            gaps = [b[0] - a[1] for a, b in itertools.pairwise(events)]
            assert all(g / 30.0 >= MIN_BLINK_GAP_S - 0.1 for g in gaps)


def _stats(profile: str, seeds: range) -> tuple[float, float, float, int]:
    """Mean blink duration (s), mean PERCLOS, mean blinks per minute, long closures."""
    durations, perclos, rates, longs = [], [], [], 0
    for seed in seeds:
        record = _timeline_truth(profile, seed)
        durations += [b["duration_s"] for b in record["blinks"]]
        perclos.append(record["perclos"])
        rates.append(len(record["blinks"]) + len(record["long_closures"]))
        longs += len(record["long_closures"])
    return float(np.mean(durations)), float(np.mean(perclos)), float(np.mean(rates)), longs


def test_alert_and_drowsy_physiology_are_ordered() -> None:
    alert_dur, alert_perclos, alert_rate, alert_long = _stats("alert", range(4))
    drowsy_dur, drowsy_perclos, drowsy_rate, drowsy_long = _stats("drowsy", range(4))
    assert 0.1 <= alert_dur <= 0.3
    assert 0.25 <= drowsy_dur <= 0.5
    assert drowsy_dur > alert_dur + 0.05
    assert alert_perclos < 0.05
    assert 0.08 <= drowsy_perclos <= 0.35
    assert 12 <= alert_rate <= 22
    assert drowsy_rate > alert_rate
    assert alert_long == 0 and drowsy_long >= 8
    kinds = {c["kind"] for seed in range(4) for c in _timeline_truth("drowsy", seed)[
        "long_closures"]}
    assert kinds == {"microsleep", "sleep"}
    assert sum(len(_timeline_truth("drowsy", s)["yawns"]) for s in range(4)) >= 4


def test_distracted_glances() -> None:
    glances = [g for seed in range(3) for g in _timeline_truth("distracted", seed)["distractions"]]
    assert len(glances) >= 6
    lengths = [(g["end_frame"] - g["start_frame"] + 1) / 30.0 for g in glances]
    assert min(lengths) >= 0.9 and max(lengths) <= 5.6
    assert any(length >= 3.0 for length in lengths)
    assert {g["direction"] for g in glances} <= {"left", "right", "down"}


def test_mixed_shows_every_state() -> None:
    record = _timeline_truth("mixed", 2)
    assert record["long_closures"]
    assert record["distractions"]
    assert record["blinks"]


def test_engine_reads_rendered_closed_eye_as_closed() -> None:
    astronaut = next(f for f in load_faces(validate=False) if f.name == "astronaut")
    ears = closure_response(astronaut, (0.0, 0.5, 1.0))
    assert None not in ears
    e0, e1, e2 = (float(e) for e in ears if e is not None)
    assert e0 > e1 > e2
    assert e2 / e0 <= MAX_CLOSED_EAR_RATIO
