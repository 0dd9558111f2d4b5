"""Event clips in the worker, without Kafka: the bounded ring, blurring on real faces, the
clip file, replays, the post-alert wait, and failures that must not stop anything."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from streams.event_clips import ClipSettings
from streams.schemas import Alert, AlertReason, EventClip, Severity, alert_id
from workers import clip_recorder as clips_module
from workers.clip_recorder import (
    BufferedFrame,
    ClipRecorder,
    FrameRing,
    blur_faces,
    buffered_frame,
    count_frames,
    sha256_of,
)
from workers.face.backends import create_backend
from workers.inference import ProcessedFrame

T0 = 1_760_000_000.0
FPS = 10.0


@pytest.fixture(scope="module")
def detector():
    backend = create_backend("opencv")
    yield backend
    backend.close()


def faces(detector, image: np.ndarray) -> list[np.ndarray]:
    return [f.box for f in detector.detect(image, 0)]


def sharpness(image: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian of the grey image."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def video_frames(video_dir: Path, detector) -> list[tuple[np.ndarray, bytes, list]]:
    """single_face.mp4 (640x360): each frame, its JPEG, and the face boxes found on it."""
    cap = cv2.VideoCapture(str(video_dir / "single_face.mp4"))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        _, buf = cv2.imencode(".jpg", frame)
        out.append((frame, buf.tobytes(), [tuple(map(float, b)) for b in faces(detector, frame)]))
    cap.release()
    assert len(out) == 72
    return out


def processed(frame: np.ndarray, jpeg: bytes, boxes: list, t: float,
              driver: str = "d1") -> ProcessedFrame:
    return ProcessedFrame(driver, "v1", FPS, t, frame, memoryview(jpeg), boxes)


def make_alert(detected_at: float, driver: str = "d1") -> Alert:
    started = detected_at - 1.2
    return Alert(alert_id=alert_id(driver, AlertReason.MICROSLEEP, started), driver_id=driver,
                 vehicle_id="v1", reason=AlertReason.MICROSLEEP, severity=Severity.WARNING,
                 started_at=started, detected_at=detected_at, message="eyes closed 1.2 s")


def settings(tmp_path: Path, **over) -> ClipSettings:
    values = {"directory": tmp_path / "clips", "pre_s": 3.0, "post_s": 0.0,
              "alert_latency_s": 1.0, **over}
    return ClipSettings(**values)


# --- the ring ---------------------------------------------------------------------------


def bf(t: float, size: int = 1000) -> BufferedFrame:
    return BufferedFrame(t, b"x" * size, 8, 8, ())


def test_ring_is_bounded_by_seconds_frames_and_bytes() -> None:
    ring = FrameRing(span_s=2.0, max_frames=1000, max_bytes=10**9)
    for i in range(100):  # 10 s at 10 fps
        ring.add(bf(T0 + i / 10))
    assert ring.newest == pytest.approx(T0 + 9.9)
    assert ring.oldest is not None and ring.newest - ring.oldest <= 2.0
    assert len(ring) == 21 and ring.bytes == 21 * 1000

    ring = FrameRing(span_s=60.0, max_frames=15, max_bytes=10**9)
    for i in range(100):
        ring.add(bf(T0 + i / 10))
    assert len(ring) == 15 and ring.oldest == pytest.approx(T0 + 8.5)

    ring = FrameRing(span_s=60.0, max_frames=1000, max_bytes=5500)
    for i in range(100):
        ring.add(bf(T0 + i / 10))
    assert len(ring) == 5 and ring.bytes <= 5500


def test_ring_skips_replayed_frames_and_restarts_when_the_clock_goes_back() -> None:
    ring = FrameRing(span_s=2.0, max_frames=100, max_bytes=10**9)
    for i in range(10):
        ring.add(bf(T0 + i / 10))
    ring.add(bf(T0 + 0.5))  # replayed
    assert len(ring) == 10
    ring.add(bf(T0 - 100))  # the camera's clock jumped back
    assert len(ring) == 1 and ring.newest == T0 - 100


def test_buffered_frames_are_downscaled_jpegs_with_scaled_boxes(video_frames) -> None:
    frame, jpeg, boxes = video_frames[0]
    b = buffered_frame(processed(frame, jpeg, boxes, T0), max_width=480, quality=75)
    assert (b.width, b.height) == (480, 270) and len(b.jpeg) < len(jpeg)
    decoded = cv2.imdecode(np.frombuffer(b.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (270, 480, 3)
    (box,) = b.boxes
    for got, original in zip(box, boxes[0], strict=True):
        assert got == pytest.approx(original * 0.75, abs=1)
    small = buffered_frame(processed(frame, jpeg, boxes, T0), max_width=800, quality=75)
    assert small.jpeg == jpeg  # no wider than the limit: kept as it came


# --- blurring ---------------------------------------------------------------------------


def test_blurring_a_face_box_removes_the_face(astronaut, detector) -> None:
    found = faces(detector, astronaut)
    assert len(found) == 1, "the detector must see the face before blurring"
    box = tuple(int(v) for v in found[0])
    out = blur_faces(astronaut, [box], margin=0.35)
    assert faces(detector, out) == []
    x0, y0, x1, y1 = box
    before, after = astronaut[y0:y1, x0:x1], out[y0:y1, x0:x1]
    assert sharpness(after) < 0.05 * sharpness(before)
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 10
    # Away from the face the picture is untouched.
    assert np.array_equal(out[400:, 300:], astronaut[400:, 300:])


def test_a_frame_without_a_face_box_is_blurred_whole(astronaut, detector) -> None:
    out = blur_faces(astronaut, [], margin=0.35)
    assert faces(detector, out) == []
    assert sharpness(out) < 0.05 * sharpness(astronaut)


# --- the recorder -----------------------------------------------------------------------


def feed(recorder: ClipRecorder, video_frames, n: int | None = None, t0: float = T0,
         driver: str = "d1") -> float:
    """Adds the video's frames at 10 fps; returns the last capture time."""
    t = t0
    for i, (frame, jpeg, boxes) in enumerate(video_frames[:n]):
        t = t0 + i / FPS
        recorder.add_frame(processed(frame, jpeg, boxes, t, driver))
    return t


def test_an_alert_becomes_a_blurred_clip_that_reads_back(tmp_path, video_frames,
                                                         detector) -> None:
    recorder = ClipRecorder(settings(tmp_path))
    last = feed(recorder, video_frames)  # 7.1 s; the ring keeps pre + latency = 4 s of it
    ring = recorder.ring("d1")
    assert ring is not None and len(ring) == 41
    alert = make_alert(detected_at=last - 0.5)
    job = recorder.on_alert(alert)
    assert job is not None and len(job.frames) == 31  # 3 s before detection, at 10 fps
    record = recorder.write(job)
    assert isinstance(record, EventClip) and record.blurred
    path = Path(record.path)
    assert path == (tmp_path / "clips" / f"{alert.alert_id}.webm").resolve()
    assert count_frames(path) == record.frames == 31
    assert record.sha256 == sha256_of(path) and record.size_bytes == path.stat().st_size
    assert record.fps == pytest.approx(FPS)
    assert record.started_at == pytest.approx(last - 3.5)
    assert record.ended_at == pytest.approx(last - 0.5)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["alert_id"] == alert.alert_id and sidecar["sha256"] == record.sha256
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    # No face in the clip, where every original frame had one.
    cap = cv2.VideoCapture(str(path))
    seen = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (270, 480, 3)
        assert faces(detector, frame) == []
        seen += 1
    cap.release()
    assert seen == 31
    assert recorder.stats.written == 1


def test_blurring_off_keeps_the_faces(tmp_path, video_frames, detector) -> None:
    recorder = ClipRecorder(settings(tmp_path, blur_faces=False))
    last = feed(recorder, video_frames, 20)
    record = recorder.write(recorder.on_alert(make_alert(last)))
    assert record is not None and not record.blurred
    cap = cv2.VideoCapture(record.path)
    ok, frame = cap.read()
    cap.release()
    assert ok and faces(detector, frame)


def test_a_replayed_alert_writes_no_second_clip(tmp_path, video_frames) -> None:
    recorder = ClipRecorder(settings(tmp_path))
    last = feed(recorder, video_frames, 30)
    alert = make_alert(last)
    first = recorder.write(recorder.on_alert(alert))
    assert first is not None
    mtime = Path(first.path).stat().st_mtime_ns
    assert recorder.on_alert(alert) is None and recorder.stats.replayed == 1
    # A restarted worker (its memory gone) replays the alert with the frames buffered again:
    # the existing clip's record is published again, nothing is written.
    restarted = ClipRecorder(settings(tmp_path))
    feed(restarted, video_frames, 30)
    job = restarted.on_alert(alert)
    assert job is not None and job.existing == first
    assert restarted.write(job) == first
    assert restarted.stats.republished == 1 and restarted.stats.written == 0
    assert Path(first.path).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        f"{alert.alert_id}.json", f"{alert.alert_id}.webm"]


def test_an_alert_without_buffered_frames_gets_no_clip(tmp_path, video_frames, caplog) -> None:
    recorder = ClipRecorder(settings(tmp_path))
    caplog.set_level(logging.DEBUG, logger="workers.clip_recorder")
    assert recorder.on_alert(make_alert(T0, driver="elsewhere")) is None
    last = feed(recorder, video_frames, 30)
    assert recorder.on_alert(make_alert(last - 3600)) is None  # an old alert, replayed
    assert recorder.stats.no_frames == 2
    assert "no frames" in caplog.text
    assert not (tmp_path / "clips").exists()


def test_post_alert_frames_are_waited_for(tmp_path, video_frames) -> None:
    now = [100.0]
    recorder = ClipRecorder(settings(tmp_path, post_s=1.0, post_grace_s=2.0),
                            clock=lambda: now[0])
    feed(recorder, video_frames, 40)  # up to T0 + 3.9
    alert = make_alert(T0 + 3.5)  # its clip ends at T0 + 4.5
    assert recorder.on_alert(alert) is None and recorder.pending == 1
    assert recorder.due() == []
    feed(recorder, video_frames[40:46], t0=T0 + 4.0)  # up to T0 + 4.5
    (job,) = recorder.due()
    assert job.frames[0].captured_at == pytest.approx(T0 + 0.5)
    assert job.frames[-1].captured_at == pytest.approx(T0 + 4.5)
    # A camera that stops: the clip is written with what there is once the wait is over.
    second = make_alert(T0 + 4.4)
    assert recorder.on_alert(second) is None
    now[0] += 2.9
    assert recorder.due() == []
    now[0] += 0.2
    (job,) = recorder.due()
    assert job.alert == second and job.frames[-1].captured_at == pytest.approx(T0 + 4.5)


def test_quiet_drivers_rings_are_let_go(tmp_path, video_frames) -> None:
    now = [0.0]
    recorder = ClipRecorder(settings(tmp_path), clock=lambda: now[0])
    feed(recorder, video_frames, 5)
    now[0] += 60
    recorder.due()
    assert recorder.ring("d1") is None


def test_an_unwritable_directory_is_logged_counted_and_survived(tmp_path, video_frames,
                                                               caplog) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the clip directory should be")
    recorder = ClipRecorder(settings(tmp_path, directory=blocker / "clips"))
    last = feed(recorder, video_frames, 20)
    alert = make_alert(last)
    assert recorder.write(recorder.on_alert(alert)) is None
    assert recorder.stats.failed == 1
    assert alert.alert_id in caplog.text and "clip not written" in caplog.text
    # The recorder goes on: the next alert (another driver) is written elsewhere fine.
    recorder.settings = settings(tmp_path)
    feed(recorder, video_frames, 20, driver="d2")
    assert recorder.write(recorder.on_alert(make_alert(last, driver="d2"))) is not None


def test_an_encoder_failure_leaves_no_file(tmp_path, video_frames, caplog,
                                           monkeypatch) -> None:
    monkeypatch.setattr(clips_module, "FOURCC", "ZZZZ")
    recorder = ClipRecorder(settings(tmp_path))
    last = feed(recorder, video_frames, 20)
    alert = make_alert(last)
    assert recorder.write(recorder.on_alert(alert)) is None
    assert recorder.stats.failed == 1 and alert.alert_id in caplog.text
    assert list((tmp_path / "clips").iterdir()) == []
