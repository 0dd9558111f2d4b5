"""YuNet face detector (OpenCV's ``cv2.FaceDetectorYN``, Apache-2.0): boxes, scores and 5
landmarks for the faces a face mesh misses (small, turned to profile, partly hidden).

The model ships with the repository in ``models/yunet/`` (with its licence and README) and is
refused unless its sha256 matches. Its 5 landmarks are eye, eye, nose tip, mouth corner, mouth
corner, the subject's right side first: image order for an unmirrored camera.

Head pose from those 5 points (:func:`head_pose_from_landmarks5`). PnP against a generic
5-point face is poor here (yaw correlates 0.43 with the mesh's on the shared clips, pitch 0.06,
and it flips sign on turned faces), so the angles come from the face's own geometry in the
image, measured along the face's axes (eye midpoint to mouth midpoint is "down"):

- roll: the tilt of that down axis;
- yaw: the nose tip's sideways offset from the face's centre line against the eye distance,
  ``atan2(k · offset, eye distance)``: the nose stands out of the face, so its offset grows with
  sin(yaw) while the eye distance shrinks with cos(yaw); a profile (eyes on top of each other)
  reads ±90° whatever k is;
- pitch: where the nose tip sits between the eye line and the mouth line (lower: looking down).

The constants were fitted against the MediaPipe face transform on the faces both see: every
third frame of the 13 shared real clips (single_face.mp4 and liveportrait/), upright and
rotated 35° (2992 faces). Yaw: k = 1.6 reads the mesh's yaw at scale 1.01 (correlation 0.63 over
its ±18° range; error over 15° in 1.7 % of faces). Pitch is weak from 5 points (correlation
0.48): its gain is set so that an error over 20° stays rare (0.1 % of faces), at the price of
reading pitch at about 0.6 of its size. Roll: correlation 0.95, 3° apart on average. On six
real faces turned 0–50° (insightface's group photo, read by the mesh on crops) the 5-point yaw
is within 5° of the mesh's. No real profile footage was at hand: on the simulator's warps of a
real face turned 55–65° towards the image's left it reads -47° to -49°; warps turned 55–75° to
the right read 4–47° or score below 0.6 (the warp squeezes the near side of the face, nose and
all, so these are weak evidence either way).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from streams.errors import ConfigurationError
from workers.face.engine import FaceDetection

YUNET_FILE = "yunet_s_640_640.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
NMS_IOU = 0.3
TOP_K = 50

# Fitted against the MediaPipe face transform on the shared clips (see the module docstring).
YAW_GAIN = 1.6
PITCH_GAIN = 2.0
NEUTRAL_NOSE_HEIGHT = 0.556  # nose tip between eye line (0) and mouth line (1), looking ahead


def yunet_model_path() -> Path:
    """The shipped model file, found beside the installed ``models`` package (located, not
    imported: importing it loads PyTorch)."""
    spec = importlib.util.find_spec("models")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    if not roots:
        raise ConfigurationError("the 'models' package is not installed: cannot find YuNet")
    return Path(roots[0]) / "yunet" / YUNET_FILE


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class YuNetDetector:
    """Faces in a BGR frame, as detector-only :class:`FaceDetection` objects.

    min_score: YuNet's face score a detection needs, in [0, 1].
    max_side: frames are shrunk so that their longer side is at most this before detection
        (its cost grows with the area: about 13 ms at 640×360 on one core, a quarter at 320).
    """

    def __init__(
        self, path: Path | None = None, min_score: float = 0.6, max_side: int = 640
    ) -> None:
        path = path or yunet_model_path()
        if not path.is_file():
            raise ConfigurationError(f"YuNet face detector model not found: {path}")
        actual = _sha256(path)
        if actual != YUNET_SHA256:
            raise ConfigurationError(
                f"{path} has sha256 {actual[:12]}…, expected {YUNET_SHA256[:12]}… "
                f"({YUNET_FILE}); refusing an unknown face detector model"
            )
        self._max_side = int(max_side)
        self._input_size: tuple[int, int] = (320, 320)
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", self._input_size, float(min_score), NMS_IOU, TOP_K
        )

    def detect(self, frame_bgr: np.ndarray) -> list[FaceDetection]:
        """frame_bgr: (H, W, 3) uint8. Every face found, highest score first, in its pixels."""
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self._max_side / max(h, w))
        image = frame_bgr
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
        size = (image.shape[1], image.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(image)
        if rows is None:
            return []
        rows = rows[np.argsort(-rows[:, 14])]
        return [detection_from_row(row[:14] / scale, float(row[14])) for row in rows]


def detection_from_row(row: np.ndarray, score: float) -> FaceDetection:
    """row: (14,) YuNet's x, y, w, h, then 5 landmarks (x, y), in frame pixels."""
    x, y, w, h = (float(v) for v in row[:4])
    five = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
    yaw, pitch, roll = head_pose_from_landmarks5(five)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3] = rotation_from_euler(yaw, pitch, roll)
    return FaceDetection(
        box=np.array([x, y, x + w, y + h], dtype=np.float32),
        score=score,
        landmarks5=five,
        eye_centres=five[:2].copy(),
        pose_matrix=pose,
        landmarks_source="detector",
    )


def head_pose_from_landmarks5(five: np.ndarray) -> tuple[float, float, float]:
    """five: (5, 2) eye, eye, nose tip, mouth corner, mouth corner (image order) -> (yaw,
    pitch, roll) in degrees, with the signs of :func:`workers.signals.frame.euler_from_rotation`
    (yaw > 0 turns towards the image's right, pitch > 0 looks up, roll > 0 tilts clockwise)."""
    pts = np.asarray(five, dtype=np.float64)
    eyes, nose, mouth = (pts[0] + pts[1]) / 2, pts[2], (pts[3] + pts[4]) / 2
    down = mouth - eyes
    length = float(np.hypot(*down))
    if length <= 1e-6:
        return 0.0, 0.0, 0.0
    down /= length
    right = np.array([down[1], -down[0]])  # image x for an upright face
    roll = math.degrees(math.atan2(-down[0], down[1]))
    offset = float(np.dot(nose - (eyes + mouth) / 2, right))
    eye_distance = float(np.dot(pts[1] - pts[0], right))
    yaw = math.degrees(math.atan2(YAW_GAIN * offset, eye_distance))
    height = float(np.dot(nose - eyes, down)) / length
    pitch = math.degrees(math.atan(PITCH_GAIN * (NEUTRAL_NOSE_HEIGHT - height)))
    return yaw, pitch, roll


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) face-to-camera rotation whose :func:`euler_from_rotation` gives back (yaw,
    pitch, roll): R = Ry(yaw) · Rx(-pitch) · Rz(-roll), OpenGL camera axes."""
    a, b, c = math.radians(yaw), math.radians(-pitch), math.radians(-roll)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz
