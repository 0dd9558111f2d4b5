"""The `vigil` command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def vigil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_analyze_emits_one_json_object_per_frame(video_dir: Path) -> None:
    proc = vigil("analyze", str(video_dir / "single_face.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(72))
    last = rows[-1]
    for key in ("face_present", "closure", "ear_left", "openness_right", "blink_score_left",
                "mouth_open", "yaw", "pitch", "roll", "gaze_off_road", "au", "perclos", "events",
                "yawns"):
        assert key in last
    assert last["face_present"] and last["closure"] is not None


def test_blinks_emits_one_summary_object(video_dir: Path) -> None:
    proc = vigil("blinks", str(video_dir / "single_face.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["fps"] == 30.0 and report["frames"] == 72
    assert {"blinks", "long_closures", "perclos", "blink_count", "yawns", "yawn_count"} <= (
        report.keys())
    assert (report["frames_declared"], report["frames_lost"], report["lost_spans"]) == (72, 0, [])
    assert "did not decode" not in proc.stderr


@pytest.mark.parametrize("command", ["analyze", "blinks"])
def test_bad_files_give_one_line_and_nonzero_exit(tmp_path: Path, command: str) -> None:
    for path, message in [
        (tmp_path / "missing.mp4", "no such file"),
        ((tmp_path / "e.mp4"), "empty file"),
        ((tmp_path / "t.mp4"), "not a readable video"),
    ]:
        if path.name == "e.mp4":
            path.write_bytes(b"")
        elif path.name == "t.mp4":
            path.write_text("hello")
        proc = vigil(command, str(path), "--json")
        assert proc.returncode == 2
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("vigil: error:") and message in lines[0]
        assert "Traceback" not in proc.stderr


def test_unknown_engine_is_a_clear_error(video_dir: Path) -> None:
    proc = vigil("blinks", str(video_dir / "single_face.mp4"), "--engine", "nope")
    assert proc.returncode == 2
    assert "unknown face engine 'nope'" in proc.stderr and "mediapipe" in proc.stderr
