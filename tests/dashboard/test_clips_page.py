"""The event clip behind an alert on the alerts page (Streamlit AppTest, real PostgreSQL): the
video when the file is there, "clip expired" after retention, "no clip" otherwise, and never
a file outside the clip directory, whatever its row says."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from dash_helpers import APP, LOGINS, Fleet, log_in
from streamlit.testing.v1 import AppTest

from dashboard import queries
from streams.schemas import EventClip
from streams.store import OperatorRole
from workers.clip_recorder import BufferedFrame, encode_clip, sha256_of


def webm(path: Path, frames: int = 12) -> Path:
    jpegs = []
    for i in range(frames):
        image = np.full((96, 128, 3), 20 * i % 255, np.uint8)
        jpegs.append(BufferedFrame(i / 10, cv2.imencode(".jpg", image)[1].tobytes(), 128, 96, ()))
    encode_clip(jpegs, path, 10.0, blur=True, margin=0.35)
    return path


def record(fleet: Fleet, aid: str, path: Path) -> None:
    alert = fleet.store.alerts.get(aid)
    assert alert is not None
    fleet.store.clips.record(EventClip(
        alert_id=aid, driver_id=alert.driver_id, vehicle_id=alert.vehicle_id,
        path=str(path), sha256=sha256_of(path), size_bytes=path.stat().st_size, frames=12,
        fps=10.0, started_at=alert.detected_at - 1.1, ended_at=alert.detected_at,
        blurred=True, created_at=time.time()))


def test_alert_detail_shows_the_clip_or_says_why_not(fleet: Fleet, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CLIPS__DIRECTORY", str(tmp_path))
    drowsy, distracted = fleet.drowsy_alert, fleet.distraction_alert
    record(fleet, drowsy, webm(tmp_path / f"{drowsy}.webm"))
    gone = webm(tmp_path / f"{distracted}.webm")
    record(fleet, distracted, gone)
    gone.unlink()
    fleet.store.clips.purge([distracted])

    views = queries.clips(fleet.store, [drowsy, distracted, "other"], tmp_path)
    assert [views[a].status for a in (drowsy, distracted, "other")] == [
        "available", "expired", "none"]

    at = log_in(AppTest.from_file(str(APP), default_timeout=30).run(), *LOGINS[OperatorRole.VIEWER])
    at.switch_page("views/alerts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    clip_panels = [e for e in at.expander if e.label.startswith("Clip:")]
    assert [e.label for e in clip_panels] == ["Clip: 12 frames, 1.1 s, faces blurred"]
    captions = [str(c.value) for c in at.caption]
    assert any(c.startswith("Clip expired") for c in captions)
    assert "No clip" in captions  # Carol's alert has none
    assert at.get("video") == []  # nothing loaded while the panel is closed

    at.session_state[f"clip-{drowsy}"] = True  # the operator opens the panel
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (video,) = at.get("video")
    assert video.proto.url  # served from the file by Streamlit's media manager


def test_a_forged_clip_row_is_never_served(fleet: Fleet, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A row naming a playable file outside the clip directory (here: another alert's clip
    kept elsewhere; it could be any file) is refused: no video on the page, no bytes served."""
    clips_dir = tmp_path / "clips"
    clips_dir.mkdir()
    monkeypatch.setenv("VIGIL_CLIPS__DIRECTORY", str(clips_dir))
    drowsy = fleet.drowsy_alert
    record(fleet, drowsy, webm(tmp_path / f"{drowsy}.webm"))

    view = queries.clips(fleet.store, [drowsy], clips_dir)[drowsy]
    assert view.status == "refused" and view.path is None

    at = log_in(AppTest.from_file(str(APP), default_timeout=30).run(),
                *LOGINS[OperatorRole.VIEWER])
    at.switch_page("views/alerts.py").run()
    at.session_state[f"clip-{drowsy}"] = True  # as if the operator opened its panel
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("video") == []
    assert "Clip not shown: its file is not in the clip directory" in [
        str(c.value) for c in at.caption]
