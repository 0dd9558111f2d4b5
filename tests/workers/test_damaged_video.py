"""Damaged video files: what decodes is analysed, what does not is counted and located.

The damage is made here: a 6 s MJPG clip at 10 fps whose JPEG frames are overwritten at chosen
indices (the container stays intact, as when a recorder's first frames do not decode), or cut
short. The frame numbers and times that come out must be the container's, so events keep their
place and durations stay right.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import pytest
from skimage import data

from streams.errors import InputError
from workers.video import VideoReader

FPS = 10.0
FRAMES = 60


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    face = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256))
    path = tmp_path_factory.mktemp("damaged") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (256, 256))
    for _ in range(FRAMES):
        writer.write(face)
    writer.release()
    return path


def damaged(clip: Path, out: Path, frames: Iterable[int]) -> Path:
    """A copy of ``clip`` whose JPEG frames ``frames`` no longer decode."""
    content = bytearray(clip.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", content)]
    assert len(starts) == FRAMES
    for k in frames:
        content[starts[k] : starts[k] + 400] = bytes(400)
    out.write_bytes(bytes(content))
    return out


def cut(clip: Path, out: Path, share: float) -> Path:
    content = clip.read_bytes()
    out.write_bytes(content[: int(len(content) * share)])
    return out


def read(path: Path, strict: bool = False) -> tuple[VideoReader, list[tuple[int, int]]]:
    with VideoReader(path, strict=strict) as video:
        frames = [(f.index, f.timestamp_ms) for f in video]
    return video, frames


def vigil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil", *args],
                          capture_output=True, text=True, timeout=300)


def test_intact_file_loses_nothing(clip: Path) -> None:
    video, frames = read(clip)
    assert frames == [(k, k * 100) for k in range(FRAMES)]
    assert video.frames_lost == 0 and video.lost_spans == []


def test_frames_lost_at_the_start_keep_their_place(clip: Path, tmp_path: Path) -> None:
    video, frames = read(damaged(clip, tmp_path / "start.avi", range(10)))
    assert frames == [(k, k * 100) for k in range(10, FRAMES)]
    assert video.frames_lost == 10 and video.lost_spans == [(0, 9)]


def test_frames_lost_in_the_middle_leave_a_gap(clip: Path, tmp_path: Path) -> None:
    video, frames = read(damaged(clip, tmp_path / "middle.avi", [*range(20, 30), 45]))
    assert frames == [(k, k * 100) for k in range(FRAMES) if not 20 <= k < 30 and k != 45]
    assert video.frames_lost == 11 and video.lost_spans == [(20, 29), (45, 45)]


def test_a_file_cut_short_reports_the_missing_end(clip: Path, tmp_path: Path) -> None:
    video, frames = read(cut(clip, tmp_path / "cut.avi", 0.5))
    assert 20 <= len(frames) <= 40
    assert frames == [(k, k * 100) for k in range(len(frames))]
    assert video.frames_lost == FRAMES - len(frames)
    assert video.lost_spans == [(len(frames), FRAMES - 1)]


def test_strict_refuses_a_damaged_file(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"truncated video: decoded 50 of 60 declared frames"):
        read(damaged(clip, tmp_path / "middle.avi", range(20, 30)), strict=True)
    # Within the old tolerance (90 % decoded) strict reads on, as before.
    video, frames = read(damaged(clip, tmp_path / "few.avi", [5, 50]), strict=True)
    assert len(frames) == 58 and video.lost_spans == [(5, 5), (50, 50)]
    with pytest.raises(InputError, match=r"truncated video: decoded \d+ of 60"):
        read(cut(clip, tmp_path / "cut.avi", 0.5), strict=True)


@pytest.mark.parametrize("strict", [False, True])
def test_a_file_with_no_decodable_frame_is_an_error(
    clip: Path, tmp_path: Path, strict: bool
) -> None:
    with pytest.raises(InputError, match="no decodable frames"):
        read(damaged(clip, tmp_path / "dead.avi", range(FRAMES)), strict=strict)


def test_blinks_analyses_what_decodes_and_reports_the_rest(clip: Path, tmp_path: Path) -> None:
    path = damaged(clip, tmp_path / "start.avi", range(10))
    proc = vigil("blinks", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 50 and report["frames_with_face"] == 50
    assert (report["frames_declared"], report["frames_lost"]) == (60, 10)
    assert report["lost_spans"] == [[0, 9]]
    assert f"WARNING vigil: {path}: 10 of 60 declared frames did not decode" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = vigil("blinks", str(path), "--json", "--strict")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == (
        f"vigil: error: {path}: truncated video: decoded 50 of 60 declared frames"
    )


def test_analyze_numbers_frames_as_the_container_does(clip: Path, tmp_path: Path) -> None:
    path = damaged(clip, tmp_path / "middle.avi", range(20, 30))
    proc = vigil("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == [*range(20), *range(30, FRAMES)]
    assert [r["t"] for r in rows[19:21]] == [1.9, 3.0]
    assert all(r["face_present"] for r in rows)
    assert f"{path}: 10 of 60 declared frames did not decode" in proc.stderr

    proc = vigil("analyze", str(damaged(clip, tmp_path / "dead.avi", range(FRAMES))), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "no decodable frames" in line
