"""`vigil eval video`: label checks, event matching and scoring, the whole command on a simulated
clip, and the synthetic variants of the robustness table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pytest

from streams.errors import InputError
from streams.schemas import Alert, AlertReason, Severity
from training.eval_video import (
    EPOCH,
    LABELS_SCHEMA,
    ClipRun,
    face_presence,
    labels_from_truth,
    load_labels,
    look_away_runs,
    parse_labels,
    score_clip,
    score_events,
    totals,
    video_path,
)
from training.variants import (
    ClipVariant,
    dark,
    grayscale,
    near_infrared,
    rotate,
    small_face,
    sunglasses,
)
from workers.signals import EyeEvent

FPS = 30.0


def _labels(**spans: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"schema": LABELS_SCHEMA, "video": "clip.mp4", "frames": 300,
                            "fps": FPS, "attentive": True, "face_present": [[0, 299]]}
    data.update(spans)
    return data


def _event(kind: Literal["blink", "microsleep", "sleep"], start: int, end: int) -> EyeEvent:
    closed = (start, end) if kind != "blink" else (None, None)
    return EyeEvent(kind, start, (start + end) // 2, end, start / FPS, end / FPS,
                    (end - start + 1) / FPS, 0.9, 0.95, 3.0, closed[0], closed[1],
                    (end - start + 1) / FPS if kind != "blink" else 0.0, 15.0)


def _run(events: list[EyeEvent], alerts: list[Alert] | None = None,
         off_road: list[bool | None] | None = None, frames: int = 300) -> ClipRun:
    indices = np.arange(frames)
    return ClipRun(FPS, frames, indices, indices / FPS, np.ones(frames, dtype=bool),
                   off_road or [False] * frames, events, [], alerts or [])


def _alert(reason: AlertReason, t: float) -> Alert:
    return Alert(alert_id=f"{reason.value}-{t}", driver_id="d", vehicle_id="v", reason=reason,
                 severity=Severity.WARNING, started_at=EPOCH + t - 1, detected_at=EPOCH + t,
                 message=reason.value)


# --- labels ----------------------------------------------------------------------------------


def test_labels_are_checked() -> None:
    labels = parse_labels(_labels(blinks=[[10, 17], [40, 47]]))
    assert labels.spans["blinks"] == [(10, 17), (40, 47)] and labels.spans["winks"] == []
    for bad, message in (
        ({"schema": "other"}, "not a video labels file"),
        (_labels(blinks=[[40, 47], [10, 17]]), "overlaps or precedes"),
        (_labels(blinks=[[10, 17], [15, 20]]), "overlaps or precedes"),
        (_labels(blinks=[[290, 300]]), "outside frames"),
        (_labels(blinks=[[10]]), "not a \\[first, last\\] pair"),
        ({k: v for k, v in _labels().items() if k != "face_present"}, "face_present"),
    ):
        with pytest.raises(InputError, match=message):
            parse_labels(bad)


def test_simulator_truth_converts_to_labels() -> None:
    truth = {
        "schema": "vigil.sim.truth/1", "driver_id": "driver-000", "profile": "drowsy", "seed": 1,
        "fps": 15.0, "frame_count": 10, "video": "driver-000.mp4",
        "frames": {"face_visible": [True] * 3 + [False] * 2 + [True] * 5},
        "blinks": [{"start_frame": 1, "end_frame": 2}],
        "long_closures": [{"start_frame": 5, "end_frame": 9, "closed_start_frame": 6,
                           "closed_end_frame": 8}],
        "yawns": [], "distractions": [{"start_frame": 0, "end_frame": 1, "direction": "left"}],
    }
    labels = parse_labels(labels_from_truth(truth))
    assert labels.spans["face_present"] == [(0, 2), (5, 9)]
    assert labels.spans["blinks"] == [(1, 2)]
    assert labels.spans["long_closures"] == [(6, 8)]  # the closed span, as labellers mark it
    assert labels.spans["looking_away"] == [(0, 1)]
    assert not labels.attentive


# --- matching and scoring --------------------------------------------------------------------


def test_a_missed_blink_lowers_recall_and_an_extra_one_precision() -> None:
    labelled = [(10, 17), (40, 47), (80, 86)]
    missed = score_events(labelled, [(11, 16), (41, 47)])
    assert missed["matched"] == 2 and missed["precision"] == 1.0
    assert missed["recall"] == pytest.approx(2 / 3) and missed["missed"] == [[80, 86]]
    extra = score_events(labelled, [(11, 16), (41, 47), (80, 85), (120, 126)])
    assert extra["recall"] == 1.0 and extra["precision"] == pytest.approx(3 / 4)
    assert extra["false"] == [[120, 126]]


def test_matching_is_one_to_one_and_tolerates_a_couple_of_frames() -> None:
    # Two blinks merged into one detection: one match, one miss.
    merged = score_events([(10, 17), (30, 37)], [(10, 37)])
    assert merged["matched"] == 1 and merged["recall"] == 0.5
    # Edges two frames apart still match; far apart they do not.
    assert score_events([(10, 13)], [(14, 17)])["matched"] == 1
    assert score_events([(10, 13)], [(14, 17)], tolerance=0)["matched"] == 0
    assert score_events([(10, 13)], [(20, 23)])["matched"] == 0


def test_ignore_spans_are_not_scored() -> None:
    s = score_events([(10, 17), (100, 107)], [(101, 106), (150, 155)], ignore=[(95, 160)])
    assert (s["labelled"], s["detected"], s["matched"]) == (1, 0, 0)
    assert s["missed"] == [[10, 17]] and s["false"] == []
    fp = face_presence([(0, 99)], np.arange(200), np.r_[np.ones(100), np.zeros(100)].astype(bool),
                       200, ignore=[(50, 149)])
    assert fp["frames"] == 100 and fp["agreement"] == 1.0


def test_a_detection_on_a_wink_is_false() -> None:
    labels = parse_labels(_labels(blinks=[[10, 17]], winks=[[100, 190]]))
    report = score_clip(labels, _run([_event("blink", 11, 16), _event("sleep", 105, 185)]))
    assert report["blinks"]["f1"] == 1.0
    assert report["long_closures"]["detected"] == 1 and report["long_closures"]["precision"] == 0
    assert report["winks"]["false_events"] == [{"kind": "sleep", "span": [105, 185]}]
    # A wink that ends in a blink: the detection running from one into the other is the blink.
    labels = parse_labels(_labels(blinks=[[47, 52]], winks=[[30, 46]]))
    report = score_clip(labels, _run([_event("blink", 32, 53)]))
    assert report["blinks"]["matched"] == 1 and report["winks"]["false_events"] == []


def test_long_closure_kinds_come_from_the_labelled_span() -> None:
    labels = parse_labels(_labels(long_closures=[[30, 74], [150, 269]]))  # 1.5 s and 4 s
    report = score_clip(labels, _run([_event("microsleep", 31, 75), _event("microsleep", 150,
                                                                            240)]))
    kinds = [(k["labelled_kind"], k["detected_kind"]) for k in report["long_closures"]["kinds"]]
    assert kinds == [("microsleep", "microsleep"), ("sleep", "microsleep")]


def test_looking_away_runs_bridge_short_gaps_only() -> None:
    times = np.arange(100) / 10.0  # 10 fps
    away: list[bool | None] = [False] * 100
    away[10:20] = [True] * 10  # 1 s away ...
    away[20:24] = [None] * 4  # ... 0.4 s without a reading: bridged
    away[24:30] = [True] * 6
    away[40:43] = [True] * 3  # 0.3 s: too short
    away[60:65] = [True] * 5
    away[65:71] = [None] * 6  # 0.6 s unread: longer than max_gap_s, the run ends
    away[71:77] = [True] * 6
    assert look_away_runs(times, away, 10.0, max_gap_s=0.5) == [(10, 29), (60, 64), (71, 76)]


def test_every_alert_on_attentive_footage_is_false_and_counted_per_hour() -> None:
    attentive = score_clip(parse_labels(_labels()), _run([], [_alert(AlertReason.SLEEP, 3.0),
                                                             _alert(AlertReason.NO_FACE, 6.0)]))
    assert attentive["false_alerts"] == 2 and attentive["false_safety_alerts"] == 1
    assert [(a["reason"], a["frame"]) for a in attentive["alerts"]] == [("sleep", 90),
                                                                        ("no_face", 180)]
    drowsy = score_clip(parse_labels(_labels(attentive=False)),
                        _run([], [_alert(AlertReason.SLEEP, 3.0)]))
    assert drowsy["false_alerts"] is None
    t = totals([attentive, drowsy])
    assert t["attentive_hours"] == pytest.approx(10 / 3600, abs=1e-5)
    assert t["false_alerts_per_hour"] == pytest.approx(720, rel=1e-3)
    assert t["false_safety_alerts_per_hour"] == pytest.approx(360, rel=1e-3)


# --- the whole command on a simulated clip ---------------------------------------------------


@pytest.fixture(scope="module")
def sleepy_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s at 15 fps of a drowsy simulated driver whose timeline (seed 246) has blinks, a
    microsleep and a sleep."""
    from training.simulator import simulate_set

    out = tmp_path_factory.mktemp("sim")
    (truth,) = simulate_set(out, drivers=1, seconds=20, seed=246, profile="drowsy", fps=15.0)
    return truth


def test_eval_video_reports_rendered_blinks_and_the_sleep(sleepy_clip: Path) -> None:
    truth = json.loads(sleepy_clip.read_text())
    sleeps = [c for c in truth["long_closures"] if c["kind"] == "sleep"]
    assert sleeps and len(truth["blinks"]) >= 3, "seed 246 no longer renders a sleep"
    # A truth file works as labels; its video is found beside it.
    assert video_path(sleepy_clip, load_labels(sleepy_clip)) == sleepy_clip.with_suffix(".mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "vigil", "eval", "video", "--labels", str(sleepy_clip),
         "--json"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["blinks"]["f1"] >= 0.85
    assert report["long_closures"]["recall"] == 1.0
    fps = truth["fps"]
    sleep_alerts = [a for a in report["alerts"] if a["reason"] == "sleep"]
    assert len(sleep_alerts) == 1
    start, end = sleeps[0]["closed_start_frame"], sleeps[0]["closed_end_frame"]
    # Raised while the eyes are still shut, once they have been for 3 s.
    assert start + 2.9 * fps <= sleep_alerts[0]["frame"] <= end
    assert report["face_present"]["agreement"] >= 0.95


def test_eval_video_refuses_labels_of_another_clip(video_dir: Path) -> None:
    from training.eval_video import evaluate_clip

    labels = parse_labels(_labels(video="single_face.mp4", frames=80,  # it has 72
                                  face_present=[[0, 79]]))
    with pytest.raises(InputError, match="labels are for 80"):
        evaluate_clip(video_dir / "single_face.mp4", labels)


# --- variants --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_frame(video_dir: Path) -> np.ndarray:
    image = cv2.imread(str(video_dir / "single_face.jpg"))
    assert image is not None
    return image


def _same_size(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8


def test_grayscale_has_equal_channels(face_frame: np.ndarray) -> None:
    out = grayscale(face_frame)
    _same_size(out, face_frame)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])


def test_dark_is_darker_and_noisy_the_same_way_for_the_same_frame(face_frame: np.ndarray) -> None:
    out = dark(face_frame, seed=3)
    _same_size(out, face_frame)
    assert out.mean() < 0.4 * face_frame.mean()
    assert np.array_equal(out, dark(face_frame, seed=3))
    assert not np.array_equal(out, dark(face_frame, seed=4))


def test_nir_is_monochrome_brightens_skin_and_vignettes() -> None:
    frame = np.zeros((200, 400, 3), np.uint8)
    frame[:, :200] = (90, 120, 190)  # skin-like (BGR)
    frame[:, 200:] = (190, 120, 90)  # blue-ish cloth of the same luma order
    out = near_infrared(frame, seed=0)
    _same_size(out, frame)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    assert out[90:110, 90:110].mean() > out[90:110, 290:310].mean() + 50
    grey = near_infrared(np.full((200, 400, 3), 200, np.uint8), seed=0)[:, :, 0].astype(float)
    assert grey[:10, :10].mean() < 0.7 * grey[95:105, 195:205].mean()


def test_rot35_turns_the_frame_about_its_centre() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    cv2.circle(frame, (320 + 100, 180), 4, (255, 255, 255), -1)
    out = rotate(frame, 35.0)
    _same_size(out, frame)
    ys, xs = np.nonzero(out[:, :, 0] > 128)
    angle = np.radians(35.0)
    assert xs.mean() == pytest.approx(320 + 100 * np.cos(angle), abs=1.5)
    assert ys.mean() == pytest.approx(180 - 100 * np.sin(angle), abs=1.5)  # counter-clockwise


def test_small_face_scales_the_face_to_the_width_asked() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[200:400, 500:700] = 255  # a 200 px "face"
    for width in (30, 45, 60):
        out = small_face(frame, face_width=200.0, target_width=width)
        assert out.shape == (360, 640, 3) and out.dtype == np.uint8
        columns = np.nonzero((out[:, :, 0] > 128).any(axis=0))[0]
        assert abs(len(columns) - width) <= 1


def test_face30_variant_gives_a_face_box_about_30_px(video_dir: Path) -> None:
    from workers.face.backends import create_backend
    from workers.video import VideoReader

    video = video_dir / "single_face.mp4"
    variant = ClipVariant("face30", video)
    backend = create_backend("mediapipe")
    widths = []
    try:
        with VideoReader(video) as reader:
            for frame in reader:
                out = variant.apply(frame.image, frame.index, frame.timestamp_ms)
                assert out.shape == (360, 640, 3)
                # The centre of the canvas, enlarged 4x, so the mesh reads the face whatever
                # its small-face abilities: its box / 4 is the width in the variant.
                centre = cv2.resize(out[135:225, 240:400], (640, 360),
                                    interpolation=cv2.INTER_CUBIC)
                faces = backend.detect(centre, frame.timestamp_ms)
                widths += [float(f.box[2] - f.box[0]) / 4 for f in faces]
    finally:
        backend.close()
        variant.close()
    assert len(widths) >= 36 and abs(float(np.median(widths)) - 30.0) <= 4.0


def test_sunglasses_cover_both_eyes_and_nothing_else(video_dir: Path) -> None:
    from workers.face.backends import create_backend
    from workers.video import VideoReader

    video = video_dir / "single_face.mp4"
    with VideoReader(video) as reader:
        first = next(iter(reader))
    backend = create_backend("mediapipe")
    try:
        (face,) = backend.detect(first.image, first.timestamp_ms)
    finally:
        backend.close()
    variant = ClipVariant("sunglasses", video)
    try:
        out = variant.apply(first.image, first.index, first.timestamp_ms)
    finally:
        variant.close()
    _same_size(out, first.image)
    assert face.ear_points is not None
    for eye in face.ear_points:
        (x0, y0), (x1, y1) = eye.min(axis=0).astype(int), eye.max(axis=0).astype(int) + 1
        assert out[y0:y1, x0:x1].mean() < 0.5 * first.image[y0:y1, x0:x1].mean()
    mouth = face.mouth_points
    assert mouth is not None
    mx, my = mouth.mean(axis=0).astype(int)
    assert np.array_equal(out[my - 5:my + 5, mx - 10:mx + 10],
                          first.image[my - 5:my + 5, mx - 10:mx + 10])
    # Placed from the landmarks the caller gives: no eyes, no change.
    assert np.array_equal(sunglasses(first.image, np.zeros((2, 2, 2), np.float32)), first.image)


def test_served_networks_are_scored_beside_the_landmark_path() -> None:
    """The blink network's windows that say blink are events (overlapping ones merged) scored
    against the labelled blinks; fatigue readings that say fatigued on an attentive clip are
    counted, all false; skipped windows are counted, not scored."""
    from streams.schemas import NetworkReading, NetworkRole

    def reading(role: NetworkRole, first: int, last: int, skipped: str | None = None,
                **outputs: float) -> NetworkReading:
        return NetworkReading(role=role, model="m", version="v1", window_start_seq=first,
                              window_start_at=EPOCH + first / FPS, window_end_seq=last,
                              window_end_at=EPOCH + last / FPS, outputs=outputs,
                              skipped=skipped)

    readings = [
        reading(NetworkRole.BLINK, 0, 29, blink=0.0, blink_probability=0.1),
        reading(NetworkRole.BLINK, 15, 44, blink=1.0, blink_probability=0.9),  # one event ...
        reading(NetworkRole.BLINK, 30, 59, blink=1.0, blink_probability=0.8),  # ... 15-59
        reading(NetworkRole.BLINK, 120, 149, blink=1.0, blink_probability=0.7),  # false
        reading(NetworkRole.BLINK, 200, 229, skipped="no_face"),
        reading(NetworkRole.FATIGUE, 0, 79, fatigue_score=0.7, fatigued=1.0, fatigue_bin=7.0),
        reading(NetworkRole.FATIGUE, 80, 159, fatigue_score=0.2, fatigued=0.0, fatigue_bin=2.0),
    ]
    run = _run([_event("blink", 40, 47), _event("blink", 250, 257)])
    run.readings = readings
    scored = score_clip(parse_labels(_labels(blinks=[[40, 47], [250, 257]])), run)
    net = scored["networks"]
    assert net["blink"]["blinks"]["matched"] == 1 and net["blink"]["blinks"]["detected"] == 2
    assert net["blink"]["blinks"]["missed"] == [[250, 257]]
    assert net["blink"]["readings"] == 4 and net["blink"]["skipped"] == 1
    assert net["fatigue"]["fatigued"] == 1 and net["fatigue"]["mean_score"] == 0.45
    assert scored["blinks"]["f1"] == 1.0  # the landmark path's own, unchanged
    t = totals([{**scored, "seconds": 10.0}])
    assert t["networks"]["fatigue_on_attentive"] == {"readings": 2, "fatigued": 1}
    assert t["networks"]["blink"]["matched"] == 1
