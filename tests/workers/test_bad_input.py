"""Unusable files and frames: a typed InputError from the library, never a crash or a hang."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from streams.errors import InputError
from workers.face.backends import create_backend
from workers.perception import DriverPerception, VideoAnalysis
from workers.settings import PerceptionSettings
from workers.video import prepare_frame


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture
def perception():
    p = DriverPerception(create_backend("mediapipe"))
    yield p
    p.close()


def consume(path: Path, **settings: int) -> None:
    for _ in VideoAnalysis(path, PerceptionSettings(**settings)):
        pass


def put(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "not a regular file"),
        (lambda d: put(d / "empty.mp4", b""), "empty file"),
        (lambda d: put(d / "a.mp4", b"not a video\n"), "not a readable video"),
        (lambda d: put(d / "r.mov", np.random.default_rng(0).bytes(100_000)),
         "not a readable video"),
    ],
    ids=["missing", "directory", "empty", "text", "random-bytes"],
)
def test_unusable_files_raise_input_error(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        consume(make(tmp_path))


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.mp4"
    with path.open("wb") as fh:  # sparse: costs no disk
        fh.truncate(3 * 1024**3)
    with pytest.raises(InputError, match="file too large"):
        consume(path, max_file_bytes=2 * 1024**3)
    # Under the limit, gigabytes of nothing are simply not a video.
    with pytest.raises(InputError, match="not a readable video"):
        consume(path)


def test_truncated_video_is_analysed_as_far_as_it_decodes(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    full = write_video(tmp_path / "full.avi", [astronaut] * 40)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    analysis = VideoAnalysis(cut)
    results = list(analysis)
    assert 10 <= len(results) <= 30 and results[-1].signals.face_present
    assert analysis.video.frames_lost == 40 - len(results)
    # --strict keeps the refusal.
    with pytest.raises(InputError, match=r"truncated video: decoded \d+ of 40"):
        for _ in VideoAnalysis(cut, strict=True):
            pass


def test_tiny_frames_are_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tiny.avi", [np.full((16, 16, 3), 128, np.uint8)] * 5)
    with pytest.raises(InputError, match="frame too small: 16x16"):
        consume(path)


def test_odd_sized_video_is_processed(tmp_path: Path, astronaut: np.ndarray) -> None:
    frame = cv2.resize(astronaut, (333, 251))
    path = write_video(tmp_path / "odd.avi", [frame] * 8)
    results = list(VideoAnalysis(path))
    assert len(results) == 8
    assert results[-1].signals.face_present


def test_grayscale_and_bgra_frames_are_accepted(perception, astronaut: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    frames = [grey, grey[..., None], bgra] * 2
    results = [perception.process(f, i * 33) for i, f in enumerate(frames)]
    assert results[-1].signals.face_present


def test_huge_frames_are_downscaled_and_reported_in_original_pixels(
    perception, astronaut: np.ndarray
) -> None:
    big = cv2.resize(astronaut, (4096, 4096))
    for i in range(4):
        result = perception.process(big, i * 33)
    box = result.signals.box
    assert box is not None
    # The astronaut's face sits around x 180-270, y 70-180 of the 512 px original.
    x0, y0, x1, y1 = (v * 512 / 4096 for v in box)
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 210


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "empty frame"),
        (np.zeros((64, 64, 3), np.float32), "unsupported frame dtype"),
        (np.zeros((64, 64, 2), np.uint8), "unsupported frame shape"),
        (np.zeros((20, 400, 3), np.uint8), "frame too small"),
    ],
)
def test_bad_frames_raise_input_error(frame: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        prepare_frame(frame)


def test_frame_without_face_keeps_the_stream_going(perception, astronaut: np.ndarray) -> None:
    blank = np.full_like(astronaut, 90)
    results = [perception.process(f, i * 33) for i, f in enumerate([astronaut] * 4 + [blank] * 3
                                                                   + [astronaut] * 4)]
    assert [r.signals.face_present for r in results[4:7]] == [False] * 3
    assert results[-1].signals.face_present
