"""The streaming yawn detector on synthetic mouth-opening series at 30 fps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from streams.schemas import Observation, decode_record
from workers.inference import frame_observation
from workers.perception import FrameResult
from workers.signals import FrameSignals
from workers.signals.yawns import YawnDetector, YawnEvent

FPS = 30.0
SHUT = 0.05


def run(segments: list[tuple[float, float | None, float | None]]) -> list[YawnEvent]:
    """segments: (seconds, jaw_open, mouth_open) at 30 fps; the stream is flushed at the end."""
    detector = YawnDetector()
    found: list[YawnEvent] = []
    frame = 0
    for seconds, jaw, mouth in segments:
        for _ in range(round(seconds * FPS)):
            found += detector.update(frame, frame / FPS, jaw, mouth)
            frame += 1
    return found + detector.flush()


def test_a_two_second_yawn_is_one_event_with_its_span() -> None:
    (yawn,) = run([(3.0, SHUT, None), (2.0, 0.8, None), (3.0, SHUT, None)])
    assert (yawn.start_frame, yawn.end_frame) == (90, 149)
    assert yawn.start_t == pytest.approx(3.0)
    assert yawn.duration_s == pytest.approx(2.0)
    assert yawn.peak_jaw_open == pytest.approx(0.8)
    assert yawn.to_dict()["duration_s"] == 2.0


def test_speech_and_short_openings_are_not_yawns() -> None:
    talking = [(0.8, 0.7, None), (0.3, 0.2, None)] * 20 + [(1.4, 0.9, None)]
    assert run([(1.0, SHUT, None), *talking, (1.0, SHUT, None)]) == []


def test_the_threshold_is_one_and_a_half_seconds() -> None:
    assert len(run([(1.0, SHUT, None), (45 / FPS, 0.6, None), (1.0, SHUT, None)])) == 1
    assert run([(1.0, SHUT, None), (44 / FPS, 0.6, None), (1.0, SHUT, None)]) == []


def test_mouth_aspect_ratio_stands_in_without_blendshapes() -> None:
    (yawn,) = run([(1.0, None, 0.2), (2.0, None, 0.8), (1.0, None, 0.2)])
    assert yawn.peak_jaw_open is None and yawn.peak_mouth_open == pytest.approx(0.8)
    assert run([(1.0, None, 0.2), (2.0, None, 0.5), (1.0, None, 0.2)]) == []


def test_a_short_unmeasured_gap_keeps_one_yawn_a_long_one_splits_it() -> None:
    kept = run([(1.0, SHUT, None), (0.9, 0.8, None), (0.3, None, None), (0.9, 0.8, None),
                (1.0, SHUT, None)])
    assert len(kept) == 1 and kept[0].duration_s == pytest.approx(2.1)
    split = run([(1.0, SHUT, None), (1.6, 0.8, None), (0.8, None, None), (1.6, 0.8, None),
                 (1.0, SHUT, None)])
    assert [(y.start_frame, y.end_frame) for y in split] == [(30, 77), (102, 149)]
    # Halves too short on their own are no yawn.
    assert run([(1.0, SHUT, None), (1.0, 0.8, None), (0.8, None, None), (1.0, 0.8, None)]) == []


def test_a_yawn_still_open_at_the_end_comes_out_of_flush() -> None:
    detector = YawnDetector()
    events = [e for k in range(60) for e in detector.update(k, k / FPS, 0.9, None)]
    assert events == []
    (yawn,) = detector.flush()
    assert (yawn.start_frame, yawn.end_frame) == (0, 59)
    assert detector.flush() == []


def test_observations_carry_the_yawns_and_older_ones_still_decode() -> None:
    yawn = YawnEvent(100, 160, 1000.0, 1002.0, 2.0333, 0.71, None)
    result = FrameResult(FrameSignals(161, 1002.0333, True), yawns=[yawn])
    obs = frame_observation("d1", "v1", 1002.0333, result, 1002.1)
    (record,) = decode_record(Observation, obs.to_bytes()).yawns
    assert (record.start_seq, record.end_seq, record.start_at, record.end_at) == (
        100, 160, 1000.0, 1002.0)
    assert (record.duration_s, record.peak_jaw_open, record.peak_mouth_open) == (
        2.0333, 0.71, None)
    older = json.loads(obs.to_bytes())
    del older["yawns"]
    assert decode_record(Observation, json.dumps(older)).yawns == []


def test_blinks_reports_a_mouth_held_wide_open_and_not_talking(
    video_dir: Path, tmp_path: Path
) -> None:
    """End to end on real frames of a LivePortrait clip (MIT): a face with the mouth shut
    (d3 frame 286) and wide open (frame 314, jawOpen about 0.6), played at 15 fps as shut 1 s,
    open 2 s, shut 1 s, three 0.8 s openings like speech, shut 1 s."""
    cap = cv2.VideoCapture(str(video_dir / "liveportrait" / "d3.mp4"))
    frames = [cap.read()[1] for _ in range(315)]
    cap.release()
    shut, wide = (cv2.resize(frames[k], (360, 360)) for k in (286, 314))
    script = [shut] * 15 + [wide] * 30 + [shut] * 15 + ([wide] * 12 + [shut] * 6) * 3 + [shut] * 15
    path = tmp_path / "yawn.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15.0, (360, 360))
    for image in script:
        writer.write(image)
    writer.release()
    proc = subprocess.run([sys.executable, "-m", "vigil", "blinks", str(path), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["yawn_count"] == 1
    (yawn,) = report["yawns"]
    assert abs(yawn["start_frame"] - 15) <= 2 and abs(yawn["end_frame"] - 44) <= 2
    assert yawn["duration_s"] == pytest.approx(2.0, abs=0.2)
    assert yawn["peak_jaw_open"] >= 0.5
