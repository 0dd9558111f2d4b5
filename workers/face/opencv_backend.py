"""OpenCV Haar-cascade fallback: face boxes and eye centres, nothing finer.

For machines without the MediaPipe bundle or an InsightFace pack. It finds frontal faces
only, gives no eyelid, dense or blendshape output (those fields are None), and its 5 points
are approximate:

- eye centres come from the eye cascade, searched in the upper half of each face box; an eye
  it does not find is put at its template position in the box;
- nose tip and mouth corners are never measured: they are template positions in the box,
  carried along with the measured eyes by the 2-point similarity transform that takes the
  template eyes onto them (so they follow head roll and eye spacing, not the real mouth).

Template positions (fractions of the Haar face box, measured against MediaPipe on the photos
in ``data/video`` and ``skimage.data.astronaut``): eyes (0.31, 0.39), (0.69, 0.39); nose tip
(0.50, 0.66); mouth corners (0.33, 0.78), (0.67, 0.78).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.errors import ConfigurationError, InputError
from streams.settings import load_settings
from workers.face.engine import FaceDetection
from workers.settings import PerceptionSettings

log = logging.getLogger(__name__)

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"

# (x, y) as fractions of the face box: eye, eye, nose tip, mouth corner, mouth corner.
TEMPLATE_5 = np.array(
    [[0.31, 0.39], [0.69, 0.39], [0.50, 0.66], [0.33, 0.78], [0.67, 0.78]], dtype=np.float64
)
# Typical eye-cascade box width as a fraction of the face width (for picking candidates).
_EYE_WIDTH = 0.22
# Eye candidates farther than this (in face widths) from their template spot are rejected.
_EYE_MAX_OFFSET = 0.2
# Face ROIs wider than this are shrunk before the eye search (speed).
_EYE_ROI_WIDTH = 160


def cascade_path(name: str) -> Path:
    """Path of a Haar cascade shipped with opencv-python(-headless) 4.x."""
    root = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(root) / name if root else None
    if path is None or not path.is_file():
        raise ConfigurationError(
            f"OpenCV Haar cascade {name} not found (cv2 {cv2.__version__}; "
            f"cv2.data.haarcascades={root!r}). The 'opencv' face engine needs "
            "opencv-python-headless 4.x, which ships the cascades; OpenCV 5 does not."
        )
    return path


def _load(name: str) -> cv2.CascadeClassifier:
    path = cascade_path(name)
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise ConfigurationError(f"OpenCV could not load the Haar cascade {path}")
    return classifier


def level_weight_score(weight: float) -> float:
    """Map the cascade's final-stage sum (``levelWeights``, typically 3–12 for real faces)
    monotonically onto [0, 1). Not a calibrated probability."""
    return float(1.0 - np.exp(-max(weight, 0.0) / 4.0))


class OpenCVBackend:
    """Haar face + eye cascades. Stateless across frames (no tracking).

    detect_side: frames are shrunk so their longer side is at most this before face search.
    min_face: smallest face side searched, in pixels of that shrunk image.
    min_neighbors: the face cascade's grouping threshold.
    min_level_weight: detections whose final-stage sum is below this are dropped (the
        sporadic false positives seen on the test clips sit below 2, real faces above 3).
    """

    name = "opencv"

    def __init__(
        self,
        settings: PerceptionSettings | None = None,
        *,
        detect_side: int = 320,
        min_face: int = 24,
        min_neighbors: int = 5,
        min_level_weight: float = 2.0,
        **_: Any,
    ) -> None:
        settings = settings or load_settings(PerceptionSettings)
        self._max_faces = settings.max_faces
        self._detect_side = int(detect_side)
        self._min_face = int(min_face)
        self._min_neighbors = int(min_neighbors)
        self._min_level_weight = float(min_level_weight)
        self._face: cv2.CascadeClassifier | None = _load(FACE_CASCADE)
        self._eye: cv2.CascadeClassifier | None = _load(EYE_CASCADE)

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        if self._face is None or self._eye is None:
            raise InputError("the opencv face backend is closed")
        if (
            not isinstance(frame_bgr, np.ndarray)
            or frame_bgr.dtype != np.uint8
            or frame_bgr.ndim != 3
            or frame_bgr.shape[2] != 3
            or min(frame_bgr.shape[:2]) < 1
        ):
            shape = getattr(frame_bgr, "shape", None)
            raise InputError(f"frame must be (H, W, 3) uint8 BGR, got {shape}")
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        scale = min(1.0, self._detect_side / max(h, w))
        small = grey
        if scale < 1.0:
            small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        boxes, _levels, weights = self._face.detectMultiScale3(
            small,
            scaleFactor=1.1,
            minNeighbors=self._min_neighbors,
            minSize=(self._min_face, self._min_face),
            outputRejectLevels=True,
        )
        found = []
        for (bx, by, bw, bh), weight in zip(
            np.reshape(boxes, (-1, 4)), np.ravel(weights), strict=True
        ):
            if weight < self._min_level_weight:
                continue
            box = np.array([bx, by, bx + bw, by + bh], dtype=np.float64) / scale
            box[2:] = np.minimum(box[2:], [w, h])
            found.append((box, level_weight_score(float(weight))))
        found.sort(key=lambda item: -(item[0][2] - item[0][0]) * (item[0][3] - item[0][1]))
        eye = self._eye
        return [_face_from_box(eye, grey, box, score) for box, score in found[: self._max_faces]]

    def close(self) -> None:
        self._face = None
        self._eye = None


def _face_from_box(
    eye: cv2.CascadeClassifier, grey: np.ndarray, box: np.ndarray, score: float
) -> FaceDetection:
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    template = np.array([x0, y0]) + TEMPLATE_5 * np.array([fw, fh])
    eyes = template[:2].copy()
    for k, centre in enumerate(_find_eyes(eye, grey, box)):
        if centre is not None:
            eyes[k] = centre
    # Carry nose and mouth along with the eyes: the similarity z -> a z + b (complex
    # numbers) taking the template eyes onto the eyes used.
    t0, t1 = complex(*template[0]), complex(*template[1])
    e0, e1 = complex(*eyes[0]), complex(*eyes[1])
    a = (e1 - e0) / (t1 - t0)
    b = e0 - a * t0
    rest = [a * complex(*p) + b for p in template[2:]]
    five = np.vstack([eyes, [[z.real, z.imag] for z in rest]]).astype(np.float32)
    return FaceDetection(
        box=box.astype(np.float32),
        score=score,
        landmarks5=five,
        eye_centres=five[:2].copy(),
        landmarks_source="detector",
    )


def _find_eyes(
    eye: cv2.CascadeClassifier, grey: np.ndarray, box: np.ndarray
) -> list[np.ndarray | None]:
    """Per side of the face (image order) the eye-cascade centre nearest its template
    spot, or None."""
    h, w = grey.shape
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, y0, x1 = max(x0, 0), max(y0, 0), min(x1, w)
    fw = x1 - x0
    y1 = min(y0 + (y1 - y0) * 6 // 10, h)  # upper half plus a little: brows to lids
    if fw < 8 or y1 - y0 < 8:
        return [None, None]
    roi = grey[y0:y1, x0:x1]
    k = min(1.0, _EYE_ROI_WIDTH / fw)
    if k < 1.0:
        roi = cv2.resize(roi, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    roi = cv2.equalizeHist(roi)
    rw = roi.shape[1]
    lo, hi = max(int(rw * 0.12), 6), max(int(rw * 0.45), 7)
    cands = np.reshape(
        eye.detectMultiScale(roi, 1.1, 3, minSize=(lo, lo), maxSize=(hi, hi)), (-1, 4)
    )
    full_w = box[2] - box[0]
    full_h = box[3] - box[1]
    out: list[np.ndarray | None] = [None, None]
    best = [np.inf, np.inf]
    for ex, ey, ew, eh in cands:
        centre = np.array([x0 + (ex + ew / 2) / k, y0 + (ey + eh / 2) / k])
        rel = (centre - box[:2]) / np.array([full_w, full_h])
        side = 0 if rel[0] < 0.5 else 1
        offset = float(np.hypot(*(rel - TEMPLATE_5[side])))
        if offset > _EYE_MAX_OFFSET:
            continue
        cost = offset + 0.5 * abs(ew / k / full_w - _EYE_WIDTH)
        if cost < best[side]:
            best[side], out[side] = cost, centre
    return out
