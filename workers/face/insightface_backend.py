"""InsightFace backend: SCRFD detector + 2d106 landmarks from an operator's model pack.

The pack (e.g. ``buffalo_l``) lives at ``<insightface_root>/models/<insightface_pack>`` and
must hold an SCRFD detector (``det_10g.onnx`` in buffalo_l) and ``2d106det.onnx``. Those
weights are licensed for non-commercial research only, so Vigil never downloads them: the
pack is checked on disk before anything from insightface is imported, and the two ONNX files
are loaded by path through ``insightface.model_zoo.get_model`` (which only downloads when
asked with ``download=True``; we never ask). ``FaceAnalysis`` is not used because it fetches
missing packs.

2d106 eye groups (points 33–42 and 87–96, each with its pupil centre at 38 / 88) are from the
public 2d106 mark-up (insightface ``alignment/coordinate_reg``; the same indices are used by
the common 106 → 5 point conversions ``[38, 88, 86, 52, 61]``). The insightface package
itself does not name them. Because the within-group order is not documented, eyelid points
are chosen geometrically by :func:`ear_points_from_contour`, which ignores point order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import ConfigurationError, InputError
from streams.settings import load_settings
from workers.face.engine import FaceDetection
from workers.settings import PerceptionSettings

log = logging.getLogger(__name__)

LANDMARK_106_FILE = "2d106det.onnx"
# SCRFD detector file names in the public packs: buffalo_l/m/s, antelopev2.
DETECTOR_PATTERNS = ("det_*.onnx", "scrfd*.onnx")

# 2d106 eye contours (pupil centre excluded) and pupil centres, one group per eye; which is
# the image-left eye is decided per face from the points, not assumed.
EYE_CONTOURS_106 = (
    (33, 34, 35, 36, 37, 39, 40, 41, 42),
    (87, 89, 90, 91, 92, 93, 94, 95, 96),
)
PUPILS_106 = (38, 88)
# 106 -> 5 points (eye, eye, nose tip, mouth corner, mouth corner), used only when the
# detector gives no keypoints.
FIVE_FROM_106 = (38, 88, 86, 52, 61)

ENV_HINT = "VIGIL_PERCEPTION__INSIGHTFACE_ROOT / VIGIL_PERCEPTION__INSIGHTFACE_PACK"


@dataclass(frozen=True, slots=True)
class PackFiles:
    directory: Path
    detector: Path
    landmarks_106: Path


def locate_pack(root: Path, pack: str) -> PackFiles:
    """The pack's detector and 2d106 files, or a ConfigurationError saying exactly what is
    missing where. Touches nothing but the local filesystem."""
    directory = Path(root).expanduser() / "models" / pack
    expected = f"an SCRFD detector ({' or '.join(DETECTOR_PATTERNS)}, e.g. det_10g.onnx) "
    expected += f"and {LANDMARK_106_FILE}"
    advice = (
        f"The 'insightface' face engine needs a model pack the operator provides at {directory} "
        f"holding {expected}. Vigil never downloads these non-commercial weights. Point "
        f"{ENV_HINT} at an existing pack, or use the 'mediapipe' engine."
    )
    if not directory.is_dir():
        raise ConfigurationError(f"InsightFace model pack not found: {directory}. {advice}")
    detectors = sorted(
        p for pattern in DETECTOR_PATTERNS for p in directory.glob(pattern) if p.is_file()
    )
    landmarks = directory / LANDMARK_106_FILE
    missing = []
    if not detectors:
        missing.append(f"SCRFD detector ({' or '.join(DETECTOR_PATTERNS)})")
    if not landmarks.is_file():
        missing.append(LANDMARK_106_FILE)
    if missing:
        raise ConfigurationError(
            f"InsightFace model pack {directory} lacks {' and '.join(missing)}. {advice}"
        )
    return PackFiles(directory, detectors[0], landmarks)


def ear_points_from_contour(points: np.ndarray) -> np.ndarray:
    """(K, 2) eye-contour points in any order → (6, 2) EAR points p1..p6.

    p1, p4: the two points farthest apart (the corners), p1 the one on the image's left.
    The other points are split by the corner line into upper lid (towards the image's top)
    and lower lid; p2, p3 are the upper points nearest 1/3 and 2/3 of the way from p1 to p4
    (measured along the corner axis), p6, p5 the lower points nearest 1/3 and 2/3. If one
    lid has no points (a shut eye whose lids coincide) it borrows from all non-corner
    points, which gives a near-zero eye aspect ratio.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 4 or not np.all(np.isfinite(pts)):
        raise InputError(f"an eye contour needs at least 4 finite (x, y) points, got {pts.shape}")
    dist = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    if dist[i, j] <= 0:
        raise InputError("eye contour points all coincide")
    if (pts[j, 0], pts[j, 1]) < (pts[i, 0], pts[i, 1]):
        i, j = j, i
    p1, p4 = pts[i], pts[j]
    axis = (p4 - p1) / dist[i, j]
    up = np.array([axis[1], -axis[0]])  # the corner line's normal pointing to image top
    rest = np.delete(pts, [i, j], axis=0)
    along = (rest - p1) @ axis / dist[i, j]
    side = (rest - p1) @ up
    upper, lower = side > 0, side <= 0
    if not upper.any():
        upper = np.ones_like(upper)
    if not lower.any():
        lower = np.ones_like(lower)

    def nearest(mask: np.ndarray, t: float) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return rest[idx[int(np.argmin(np.abs(along[idx] - t)))]]

    return np.stack(
        [
            p1,
            nearest(upper, 1 / 3),
            nearest(upper, 2 / 3),
            p4,
            nearest(lower, 2 / 3),
            nearest(lower, 1 / 3),
        ]
    )


def eye_aspect_ratio(ear_points: np.ndarray) -> float:
    """Soukupová & Čech: (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) for (6, 2) points."""
    p = np.asarray(ear_points, dtype=np.float64)
    width = float(np.linalg.norm(p[0] - p[3]))
    if width <= 0:
        return 0.0
    return float(np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * width)


def detection_from_outputs(
    box: np.ndarray, score: float, kps: np.ndarray | None, lmk106: np.ndarray
) -> FaceDetection:
    """Map one SCRFD box (4,) / score / kps (5, 2) or None and the 2d106 points (106, 2) to
    a FaceDetection, in image order."""
    lmk = np.asarray(lmk106, dtype=np.float32).reshape(106, 2)
    five = np.asarray(kps if kps is not None else lmk[list(FIVE_FROM_106)], dtype=np.float32)
    five = five.reshape(5, 2).copy()
    # Image order by definition: the eye / mouth corner on the image's left first.
    if five[0, 0] > five[1, 0]:
        five[[0, 1]] = five[[1, 0]]
    if five[3, 0] > five[4, 0]:
        five[[3, 4]] = five[[4, 3]]
    ears = [ear_points_from_contour(lmk[list(group)]) for group in EYE_CONTOURS_106]
    ears.sort(key=lambda e: float(e[:, 0].mean()))
    dense = np.zeros((106, 3), dtype=np.float32)
    dense[:, :2] = lmk
    return FaceDetection(
        box=np.asarray(box, dtype=np.float32).reshape(4),
        score=float(score),
        landmarks5=five,
        eye_centres=five[:2].copy(),
        ear_points=np.stack(ears).astype(np.float32),
        dense_landmarks=dense,
    )


class InsightFaceBackend:
    """SCRFD + 2d106 on onnxruntime's CPU provider. Stateless across frames.

    det_size: SCRFD input side (square); det_thresh: its score threshold.
    """

    name = "insightface"

    def __init__(
        self,
        settings: PerceptionSettings | None = None,
        *,
        det_size: int = 640,
        det_thresh: float = 0.5,
        **_: Any,
    ) -> None:
        settings = settings or load_settings(PerceptionSettings)
        self._max_faces = settings.max_faces
        files = locate_pack(settings.insightface_root, settings.insightface_pack)
        try:
            from insightface.app.common import Face
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise ConfigurationError(
                f"the 'insightface' face engine cannot import insightface ({exc}); install "
                "insightface with its runtime dependencies (requests, tqdm, scipy, "
                "scikit-image, onnx, onnxruntime), keeping opencv-python-headless as the "
                "only OpenCV"
            ) from exc
        self._face_cls: Any = Face
        providers = ["CPUExecutionProvider"]
        self._det: Any = _load(get_model, files.detector, "detection", providers)
        self._lmk: Any = _load(get_model, files.landmarks_106, "landmark_2d_106", providers)
        self._det.prepare(ctx_id=-1, input_size=(det_size, det_size), det_thresh=det_thresh)
        self._lmk.prepare(ctx_id=-1)
        log.info("insightface engine: %s + %s", files.detector.name, files.landmarks_106.name)

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        if self._det is None:
            raise InputError("the insightface face backend is closed")
        if (
            not isinstance(frame_bgr, np.ndarray)
            or frame_bgr.dtype != np.uint8
            or frame_bgr.ndim != 3
            or frame_bgr.shape[2] != 3
        ):
            shape = getattr(frame_bgr, "shape", None)
            raise InputError(f"frame must be (H, W, 3) uint8 BGR, got {shape}")
        dets, kpss = self._det.detect(frame_bgr, max_num=self._max_faces, metric="default")
        faces = []
        for k in range(dets.shape[0]):
            kps = None if kpss is None else kpss[k]
            face = self._face_cls(bbox=dets[k, :4], kps=kps, det_score=float(dets[k, 4]))
            lmk = self._lmk.get(frame_bgr, face)
            faces.append(detection_from_outputs(dets[k, :4], float(dets[k, 4]), kps, lmk))
        return faces

    def close(self) -> None:
        self._det = None
        self._lmk = None


def _load(get_model: Any, path: Path, task: str, providers: list[str]) -> Any:
    try:
        model = get_model(str(path), providers=providers, download=False)
    except Exception as exc:
        raise ConfigurationError(f"could not load {path} as an InsightFace model: {exc}") from exc
    if model is None or getattr(model, "taskname", None) != task:
        found = getattr(model, "taskname", None)
        raise ConfigurationError(f"{path} is not an InsightFace {task} model (found {found})")
    return model
