"""The OpenCV fallback on real photos/clips, the backend registry, and driver tracking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from video_helpers import read_video_frame

from streams.errors import ConfigurationError, InputError
from workers.face import opencv_backend
from workers.face.backends import backend_names, create_backend
from workers.face.engine import DriverFaceTracker, FaceDetection

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "video"


@pytest.fixture(scope="module")
def single_face() -> np.ndarray:
    img = cv2.imread(str(VIDEO / "single_face.jpg"))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def opencv():
    backend = create_backend("opencv")
    yield backend
    backend.close()


def _frame(name: str, index: int) -> np.ndarray:
    return read_video_frame(VIDEO / name, index)


def test_opencv_finds_the_one_face_with_its_eyes(opencv, single_face):
    faces = opencv.detect(single_face, 0)
    assert len(faces) == 1
    face = faces[0]
    assert face.box.shape == (4,) and face.landmarks5.shape == (5, 2)
    assert 0 < face.score < 1
    assert face.ear_points is None and face.dense_landmarks is None and face.blendshapes is None
    assert face.landmarks_source == "detector"

    reference = create_backend("mediapipe")
    try:
        (mp_face,) = reference.detect(single_face, 0)
    finally:
        reference.close()
    width = float(face.box[2] - face.box[0])
    errors = np.linalg.norm(face.eye_centres - mp_face.eye_centres, axis=1)
    assert errors.max() < 0.15 * width
    # The boxes describe the same face.
    assert np.linalg.norm(face.centre - mp_face.centre) < 0.25 * width
    # Landmarks are in image order: eyes above nose above mouth, left before right.
    five = face.landmarks5
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    assert five[:2, 1].max() < five[2, 1] < five[3:, 1].min()


@pytest.mark.parametrize("index", [0, 50])
def test_opencv_finds_no_face_where_there_is_none(opencv, index):
    assert opencv.detect(_frame("no_face.mp4", index), index * 40) == []


def test_opencv_finds_the_face_in_a_clip(opencv):
    faces = opencv.detect(_frame("single_face.mp4", 30), 1000)
    assert len(faces) == 1


def test_opencv_rejects_bad_frames(opencv):
    with pytest.raises(InputError):
        opencv.detect(np.zeros((20, 20), dtype=np.uint8), 0)
    with pytest.raises(InputError):
        opencv.detect(np.zeros((20, 20, 3), dtype=np.float32), 0)


def test_opencv_without_cascades_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.setattr("cv2.data.haarcascades", str(tmp_path) + "/")
    with pytest.raises(ConfigurationError, match="OpenCV 5"):
        opencv_backend.OpenCVBackend()


def test_registry_lists_the_backends():
    assert {"mediapipe", "opencv", "insightface"} <= set(backend_names())
    with pytest.raises(ConfigurationError) as err:
        create_backend("nope")
    for name in ("insightface", "mediapipe", "opencv"):
        assert name in str(err.value)


# --- driver tracking --------------------------------------------------------------------------

FRAME = (480, 640, 3)


def _face(x0: float, y0: float, size: float) -> FaceDetection:
    box = np.array([x0, y0, x0 + size, y0 + size], dtype=np.float32)
    return FaceDetection(
        box=box,
        score=1.0,
        landmarks5=np.zeros((5, 2), dtype=np.float32),
        eye_centres=np.zeros((2, 2), dtype=np.float32),
    )


def test_tracker_keeps_ids_and_picks_the_large_central_face():
    tracker = DriverFaceTracker()
    driver_ids, passenger_ids, picked = set(), set(), []
    for t in range(20):
        # Driver: large, near the centre, drifting right; passenger: small, top-left, drifting
        # down. Listed in alternating order so the tracker cannot rely on list position.
        driver = _face(220 + 3 * t, 140, 200)
        passenger = _face(20, 20 + 2 * t, 90)
        faces = [driver, passenger] if t % 2 else [passenger, driver]
        tracked = tracker.update(faces, FRAME)
        by_x = sorted(tracked.faces, key=lambda f: float(f.box[0]))
        passenger_ids.add(by_x[0].track_id)
        driver_ids.add(by_x[1].track_id)
        picked.append(None if tracked.driver is None else tracked.driver.track_id)
    assert len(driver_ids) == 1 and len(passenger_ids) == 1
    assert driver_ids != passenger_ids
    # A new track may need a few confirming frames before it can be the driver; from then on
    # the driver is the large central face, never the passenger.
    assert set(picked[5:]) == driver_ids
    assert set(picked) <= driver_ids | {None}


def _settled(tracker: DriverFaceTracker, face: FaceDetection, frames: int = 30) -> int:
    tracked = None
    for _ in range(frames):
        tracked = tracker.update([face], FRAME)
    assert tracked is not None and tracked.driver is not None
    return tracked.driver.track_id


def test_tracker_does_not_hand_over_to_a_one_frame_intruder():
    tracker = DriverFaceTracker()
    driver_id = _settled(tracker, _face(240, 150, 160))
    # A bigger face leans in for one frame…
    tracked = tracker.update([_face(241, 150, 160), _face(400, 60, 230)], FRAME)
    assert tracked.driver is not None and tracked.driver.track_id == driver_id
    intruder = next(f for f in tracked.faces if f.track_id != driver_id)
    assert intruder.area > tracked.driver.area
    # …and is gone again.
    tracked = tracker.update([_face(242, 150, 160)], FRAME)
    assert tracked.driver is not None and tracked.driver.track_id == driver_id


def test_tracker_keeps_the_driver_against_a_lingering_off_centre_face():
    tracker = DriverFaceTracker()
    driver_id = _settled(tracker, _face(240, 150, 160))
    for _ in range(40):  # bigger, but off-centre: never switch_ratio times better
        tracked = tracker.update([_face(240, 150, 160), _face(400, 60, 230)], FRAME)
        assert tracked.driver is not None and tracked.driver.track_id == driver_id


def test_tracker_hands_over_to_a_clearly_better_face():
    tracker = DriverFaceTracker()
    old_id = _settled(tracker, _face(20, 20, 90))  # small, in the corner
    ids = []
    for _ in range(10):
        tracked = tracker.update([_face(20, 20, 90), _face(190, 110, 260)], FRAME)
        assert tracked.driver is not None
        ids.append(tracked.driver.track_id)
    assert ids[0] == old_id
    assert ids[-1] != old_id


def test_tracker_reports_no_driver_without_faces():
    tracker = DriverFaceTracker()
    assert tracker.update([], FRAME).driver is None
