"""The default engine's detector fallback (YuNet) on real faces the face mesh misses: small,
rotated, turned away; and the shipped detector model's hash check."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_helpers import read_video_frame

from streams.errors import ConfigurationError
from training.simulator.faces import load_faces
from training.simulator.render import Pose, PoseWarp
from workers.face.backends import create_backend
from workers.face.engine import FaceDetection, box_iou
from workers.face.yunet import (
    YuNetDetector,
    head_pose_from_landmarks5,
    rotation_from_euler,
    yunet_model_path,
)
from workers.settings import PerceptionSettings
from workers.signals.frame import SignalExtractor, euler_from_rotation, head_pose

CANVAS = (360, 640, 3)


def _frame(video_dir: Path, name: str, index: int) -> np.ndarray:
    return read_video_frame(video_dir / name, index)


def _detect(image: np.ndarray, **settings: object) -> list[FaceDetection]:
    """A fresh default engine (its VIDEO-mode tracker has seen nothing) on one image."""
    backend = create_backend("mediapipe", settings=PerceptionSettings(**settings))
    try:
        return backend.detect(image, 0)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def face_frame(video_dir: Path) -> tuple[np.ndarray, FaceDetection]:
    """single_face.mp4 frame 0 and the mesh's reading of its (150 px wide) face."""
    frame = _frame(video_dir, "single_face.mp4", 0)
    (face,) = _detect(frame, face_detector_fallback=False)
    return frame, face


def _shrunk(frame: np.ndarray, scale: float, at: tuple[int, int]) -> np.ndarray:
    """The frame scaled by ``scale`` and pasted at ``at`` (x, y) into a dark 640×360 frame."""
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full(CANVAS, 16, np.uint8)
    h, w = small.shape[:2]
    canvas[at[1] : at[1] + h, at[0] : at[0] + w] = small
    return canvas


@pytest.mark.parametrize("width", [30, 45, 60])
def test_small_faces_are_found_and_read(face_frame, width: int) -> None:
    frame, truth = face_frame
    scale = width / float(truth.box[2] - truth.box[0])
    offset = np.array([90.0, 200.0])  # off-centre, lower left
    image = _shrunk(frame, scale, (90, 200))
    (face,) = _detect(image)
    true_box = truth.box * scale + np.tile(offset, 2)
    assert box_iou(face.box, true_box) > 0.7, (face.box, true_box)
    # Read by the mesh on an upscaled crop, mapped back: the eyes where they are, the head
    # pose that of the full-size face.
    assert face.landmarks_source == "mesh-crop"
    assert face.ear_points is not None and face.blendshapes is not None
    eye_error = np.linalg.norm(face.eye_centres - (truth.eye_centres * scale + offset), axis=1)
    assert eye_error.max() < 0.05 * width
    pose, true_pose = head_pose(face, image.shape), head_pose(truth, frame.shape)
    assert np.abs(np.subtract(pose, true_pose)).max() < 5.0, (pose, true_pose)


def test_without_the_fallback_a_small_face_is_missed(face_frame) -> None:
    frame, truth = face_frame
    image = _shrunk(frame, 30 / float(truth.box[2] - truth.box[0]), (90, 200))
    assert _detect(image, face_detector_fallback=False) == []


def test_a_face_rotated_35_degrees_is_found(face_frame) -> None:
    frame, truth = face_frame
    h, w = frame.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 35.0, 1.0)  # counter-clockwise
    image = cv2.warpAffine(frame, matrix, (w, h))
    faces = _detect(image)
    assert len(faces) == 1
    true_centre = matrix @ np.append(truth.centre, 1.0)
    width = float(truth.box[2] - truth.box[0])
    assert np.linalg.norm(faces[0].centre - true_centre) < 0.2 * width
    roll = head_pose(faces[0], image.shape)[2]
    assert abs(roll - (head_pose(truth, frame.shape)[2] - 35.0)) < 10.0


@pytest.fixture(scope="module")
def turned_head() -> tuple[list[np.ndarray], np.ndarray]:
    """A real face (single_face) looking ahead in 30 frames, then turned 60° towards the
    image's left by the simulator's depth-aware warp: the mesh no longer finds it."""
    source = next(f for f in load_faces((640, 360)) if f.name == "single_face")
    warp = PoseWarp(source, (640, 360))
    ahead = np.ascontiguousarray(warp.warp(source.image, Pose()))
    turned = np.ascontiguousarray(warp.warp(source.image, Pose(yaw=-60)))
    return [ahead] * 30, turned


def test_a_turned_away_face_is_present_and_looking_away(turned_head) -> None:
    ahead, turned = turned_head
    assert _detect(turned, face_detector_fallback=False) == []
    backend = create_backend("mediapipe")
    extractor = SignalExtractor(fps=30.0)
    try:
        for i, image in enumerate(ahead):
            faces = backend.detect(image, i * 33)
            signals = extractor.update(i, i / 30, faces[0], image)
            assert signals.gaze_off_road is False
        faces = backend.detect(turned, 30 * 33)
    finally:
        backend.close()
    assert len(faces) == 1
    face = faces[0]
    # Only the detector saw it: present, no eyelids to read, head pose from its 5 points.
    assert face.landmarks_source == "detector" and face.ear_points is None
    signals = extractor.update(30, 1.0, face, turned)
    assert signals.face_present
    assert signals.yaw is not None and signals.yaw < -30.0
    assert signals.gaze_off_road is True


def test_yaw_from_five_points_agrees_with_the_mesh_on_real_turned_faces() -> None:
    """insightface's group photo: six real faces, turned 0–50°, that the mesh finds only on
    crops. The detector's 5-point yaw must tell the same story."""
    dist = importlib.metadata.distribution("insightface")
    image = cv2.imread(str(dist.locate_file("insightface/data/images/t1.jpg")))
    assert image is not None
    meshed = _detect(image, max_faces=8, face_detector_side=1280)
    assert len(meshed) == 6 and {f.landmarks_source for f in meshed} == {"mesh-crop"}
    detected = YuNetDetector(max_side=1280).detect(image)
    yaws = []
    for face in meshed:
        twin = max(detected, key=lambda d: box_iou(d.box, face.box))
        assert box_iou(twin.box, face.box) > 0.5
        yaws.append((head_pose(face, image.shape)[0], head_pose(twin, image.shape)[0]))
    mesh_yaw, detector_yaw = np.array(yaws).T
    assert np.abs(detector_yaw - mesh_yaw).max() < 10.0, yaws
    assert mesh_yaw.min() < -40.0  # the man at the top right looks well away


def test_frames_without_a_face_have_none(video_dir: Path) -> None:
    assert _detect(np.full(CANVAS, 16, np.uint8)) == []
    for index in (0, 50):
        assert _detect(_frame(video_dir, "no_face.mp4", index)) == []


def test_the_shipped_detector_is_verified(tmp_path: Path) -> None:
    path = yunet_model_path()
    assert path.is_file() and (path.parent / "LICENSE").is_file()
    YuNetDetector()  # the shipped file passes its hash check
    tampered = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ConfigurationError, match="sha256"):
        YuNetDetector(tampered)
    with pytest.raises(ConfigurationError, match="not found"):
        YuNetDetector(tmp_path / "missing.onnx")


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(0, 0, 0), (40, -15, 10), (-70, 20, -25)])
def test_rotation_from_euler_round_trips(yaw: float, pitch: float, roll: float) -> None:
    assert euler_from_rotation(rotation_from_euler(yaw, pitch, roll)) == pytest.approx(
        (yaw, pitch, roll), abs=1e-6
    )


def test_five_point_pose_signs() -> None:
    # eye, eye, nose tip, mouth corner, mouth corner; image y down.
    ahead = np.array([[-30, 0], [30, 0], [0, 35], [-24, 63], [24, 63]], dtype=np.float64)
    yaw, pitch, roll = head_pose_from_landmarks5(ahead)
    assert abs(yaw) < 1 and abs(pitch) < 5 and abs(roll) < 1
    nose_right, nose_up = ahead.copy(), ahead.copy()
    nose_right[2, 0] += 15
    nose_up[2, 1] -= 15
    # Nose towards the image's right: turned right; eyes on top of each other: profile.
    assert head_pose_from_landmarks5(nose_right)[0] > 20
    profile = np.array([[-20, 0], [-18, 0], [-45, 35], [-22, 63], [-20, 63]], dtype=np.float64)
    assert head_pose_from_landmarks5(profile)[0] < -80
    # Nose near the eyes: looking up; the face tilted clockwise in the image: roll > 0.
    assert head_pose_from_landmarks5(nose_up)[1] > 10
    angle = np.radians(20)
    clockwise = ahead @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    assert head_pose_from_landmarks5(clockwise)[2] == pytest.approx(20, abs=1)
