"""Eye crops and the eye-state network on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.eyestate import CROP_SIZE
from training.simulator.render import EyeRig
from training.simulator.source import SourceFace
from training.variants import eye_corners_of, near_infrared, sunglasses
from workers.face.backends import create_backend
from workers.perception import DriverPerception
from workers.signals.eyes import EyeStateEstimator, cut_eye_crops
from workers.video import VideoReader


def _marked_frame(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A 400x400 grey frame with two 'eyes' 100 px apart, each with a bright dot on its outer
    side, rotated by ``angle_deg`` about the centre; returns (frame, eye centres)."""
    frame = np.full((400, 400, 3), 90, np.uint8)
    centres = np.array([[150.0, 200.0], [250.0, 200.0]])
    for (x, y), side in zip(centres, (-1, 1), strict=True):
        cv2.ellipse(frame, (int(x), int(y)), (20, 9), 0, 0, 360, (20, 20, 20), -1)
        cv2.circle(frame, (int(x + side * 30), int(y)), 4, (255, 255, 255), -1)
    rot = cv2.getRotationMatrix2D((200, 200), angle_deg, 1.0)
    frame = cv2.warpAffine(frame, rot, (400, 400), borderValue=(90, 90, 90))
    return frame, centres @ rot[:, :2].T + rot[:, 2]


def _bright_spot(crop: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(cv2.GaussianBlur(crop, (5, 5), 0))), crop.shape)
    return int(x), int(y)


def test_crops_are_levelled_and_the_second_eye_mirrored() -> None:
    h, w = CROP_SIZE
    for angle in (0.0, 30.0, -35.0):
        frame, centres = _marked_frame(angle)
        crops = cut_eye_crops(frame, centres, box_height=250.0)
        assert crops.shape == (2, h, w) and crops.dtype == np.uint8
        for crop in crops:
            # The eye is in the middle, its outer-side dot on the crop's left, on the midline:
            # whatever the head's roll, both eyes look alike to the network.
            assert crop[h // 2, w // 2] < 60
            x, y = _bright_spot(crop)
            assert x < w // 2 - 5, (angle, x)
            assert abs(y - (h - 1) / 2) <= 3, (angle, y)


def test_a_crop_past_the_frame_edge_is_black_there_not_an_error() -> None:
    frame, centres = _marked_frame(0.0)
    crops = cut_eye_crops(frame, centres - [148.0, 0.0], box_height=250.0)
    assert crops.shape == (2, *CROP_SIZE)
    assert (crops[0][:, :5] == 0).all()


# --- the shipped network on a real face (single_face.mp4 is never a training person) --------

@pytest.fixture(scope="module")
def real_face(video_dir):
    """Frame 0 of single_face.mp4 (eyes open) with its mesh landmarks."""
    with VideoReader(video_dir / "single_face.mp4") as video:
        image = next(iter(video)).image
    backend = create_backend("mediapipe")
    try:
        (face,) = backend.detect(image, 0)
    finally:
        backend.close()
    return image, face


def _closed(image: np.ndarray, face, closures=(1.0, 1.0)) -> np.ndarray:
    source = SourceFace("single_face", image, face.dense_landmarks, {})
    out = image.copy()
    for eye, closure in enumerate(closures):
        EyeRig(source, eye).render(out, closure)
    return out


def _sunglasses(image: np.ndarray, face) -> np.ndarray:
    corners = eye_corners_of(face)
    assert corners is not None
    return sunglasses(image, corners)


def test_open_closed_and_covered_eyes_of_a_real_face(real_face) -> None:
    image, face = real_face
    estimate = EyeStateEstimator.shipped()
    open_ = estimate(image, face)
    closed = estimate(_closed(image, face), face)
    covered = estimate(_sunglasses(image, face), face)
    assert max(open_.closure) < 0.3 and min(open_.visible) > 0.8
    assert min(closed.closure) > 0.8 and min(closed.visible) > 0.5
    assert max(covered.visible) < 0.5
    # Near-infrared look: no colour, different skin contrast; the lids still read right.
    assert max(estimate(near_infrared(image, 0), face).closure) < 0.3
    assert min(estimate(near_infrared(_closed(image, face), 0), face).closure) > 0.8


def _stream(frames: list[np.ndarray], fps: float = 10.0):
    perception = DriverPerception(create_backend("mediapipe"), fps=fps)
    try:
        results = [perception.process(f, round(k * 1000 / fps)) for k, f in enumerate(frames)]
        return results, results[-1].events + perception.finish()
    finally:
        perception.close()


def test_eyes_shut_from_the_first_frame_read_as_sleep_after_three_seconds(real_face) -> None:
    image, face = real_face
    results, trailing = _stream([_closed(image, face)] * 40)
    assert all(r.signals.closure is not None and r.signals.closure > 0.8 for r in results)
    assert results[-1].closed_for_s >= 3.0
    assert [e.kind for e in trailing] == ["sleep"]


def test_a_held_wink_is_not_a_closure(real_face) -> None:
    image, face = real_face
    wink = _closed(image, face, closures=(0.0, 1.0))
    results, trailing = _stream([image] * 5 + [wink] * 30 + [image] * 5)
    assert all(r.signals.closure is not None and r.signals.closure < 0.5 for r in results)
    events = [e for r in results for e in r.events] + trailing
    assert events == []


def test_covered_eyes_say_why_instead_of_reading_open(real_face) -> None:
    image, face = real_face
    results, _ = _stream([_sunglasses(image, face)] * 10)
    assert all(r.signals.closure is None for r in results)
    assert {r.signals.sensing for r in results} == {"eyes_hidden"}
