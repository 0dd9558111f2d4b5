"""Model input crops: blink-net face/eye regions and 5-point similarity alignment.

Pure functions over a BGR frame and a :class:`FaceDetection`; nothing here keeps state.

Coordinates follow OpenCV's ``warpAffine`` convention: pixel ``(i, j)`` has its centre at
``x = j, y = i``, so a point ``p`` of the frame lands at ``M @ [p, 1]`` in a crop made with
matrix ``M``. Wherever a crop reaches past the frame it is padded with zeros (black), never
with replicated edges: the models see "no data" rather than smeared skin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from streams.errors import ConfigurationError, InputError
from workers.face.engine import FaceDetection

log = logging.getLogger(__name__)

# Blink paper (eyeblink-intrinsic-motion.md, §III-A): "after resizing the acquired face region
# to 256 × 192, the coarse eye region is loosely set around the eye center with a relatively
# large size of 100 × 100". The authors' code (blink_eyelid, 256.192.model/config.py) has
# ``data_shape = (256, 192)`` as (height, width) and resizes faces with
# ``cv2.resize(img, (192, 256))``: the face crop is 256 rows × 192 columns, a portrait 3:4.
FACE_SIZE = (256, 192)  # (height, width)
EYE_SIZE = 100

# ArcFace 5-point template for 112 × 112 crops (insightface ``face_align.arcface_dst``):
# eye, eye, nose tip, mouth corner, mouth corner in image order, (x, y) pixels.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True, slots=True)
class EyeRegions:
    """The blink network's inputs for one face in one frame.

    face: (H, W, 3) uint8 BGR, the face box expanded to W:H = 192:256 and resized to it
        (256 × 192 by default), zero-padded where the box leaves the frame.
    eyes: (2, S, S, 3) uint8 BGR, the coarse S × S (100 × 100) eye regions cut from ``face``,
        image order.
    eye_centres: (2, 2) float, the detected eye centres in ``face`` pixels (x, y).
    eye_origins: (2, 2) int, top-left corner (x, y) of each eye region in ``face`` pixels.
        A region is centred on its eye unless that would leave the face crop; then it is
        shifted inside (as the authors' loader clamps the centre to [S/2, W - S/2]).
    matrix: (2, 3) float, frame pixels → ``face`` pixels.
    """

    face: np.ndarray
    eyes: np.ndarray
    eye_centres: np.ndarray
    eye_origins: np.ndarray
    matrix: np.ndarray


def eye_regions(
    frame_bgr: np.ndarray,
    face: FaceDetection,
    face_size: tuple[int, int] = FACE_SIZE,
    eye_size: int = EYE_SIZE,
    margin: float = 0.0,
) -> EyeRegions:
    """Face crop and coarse eye regions as in the blink paper.

    face_size: (height, width) of the face crop; the paper's 256 × 192 is (256, 192).
    margin: fraction of the box width/height added on every side before the box is grown
        to the crop's aspect ratio (0: the detector's box as is).

    The box grows (never shrinks) about its centre to the crop's aspect ratio, so the face
    is not distorted. Raises InputError for an unusable frame, a degenerate box, a box
    entirely outside the frame, or non-finite eye centres.
    """
    _check_frame(frame_bgr)
    out_h, out_w = int(face_size[0]), int(face_size[1])
    if out_h <= 0 or out_w <= 0:
        raise ConfigurationError(f"face_size must be positive, got {face_size}")
    if not 0 < eye_size <= min(out_h, out_w):
        raise ConfigurationError(
            f"eye_size {eye_size} must be positive and fit the {out_h}×{out_w} face crop"
        )
    x0, y0, x1, y1 = _checked_box(face.box, frame_bgr.shape)
    eye_centres = np.asarray(face.eye_centres, dtype=np.float64)
    if eye_centres.shape != (2, 2) or not np.all(np.isfinite(eye_centres)):
        raise InputError(f"eye centres must be a finite (2, 2) array, got {face.eye_centres!r}")

    w, h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    aspect = out_w / out_h
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    crop, matrix = crop_box(frame_bgr, box, out_w, out_h)

    centres = _apply(matrix, eye_centres)
    half = eye_size / 2
    origins = np.empty((2, 2), dtype=np.int64)
    eyes = np.empty((2, eye_size, eye_size, 3), dtype=np.uint8)
    for k, (ex, ey) in enumerate(centres):
        ox = round(min(max(ex, half), out_w - half) - half)
        oy = round(min(max(ey, half), out_h - half) - half)
        ox, oy = min(max(ox, 0), out_w - eye_size), min(max(oy, 0), out_h - eye_size)
        origins[k] = ox, oy
        eyes[k] = crop[oy : oy + eye_size, ox : ox + eye_size]
    return EyeRegions(crop, eyes, centres, origins, matrix)


def arcface_template(size: int = 224) -> np.ndarray:
    """(5, 2) ArcFace template scaled from 112 × 112 to ``size`` × ``size``."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def alignment_matrix(landmarks5: np.ndarray, size: int = 224) -> np.ndarray:
    """(2, 3) similarity transform (rotation, uniform scale, translation; no reflection)
    taking the 5 landmarks onto :func:`arcface_template` in the least-squares sense
    (Umeyama 1991, the estimator insightface's ``norm_crop`` uses)."""
    src = np.asarray(landmarks5, dtype=np.float64)
    if src.shape != (5, 2) or not np.all(np.isfinite(src)):
        raise InputError(f"landmarks5 must be a finite (5, 2) array, got shape {src.shape}")
    if size <= 0:
        raise ConfigurationError(f"alignment size must be positive, got {size}")
    dst = arcface_template(size)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum()) / len(src)
    if src_var < 1e-6:
        raise InputError("landmarks5 are degenerate (all at one point)")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum()) / src_var
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def align_face(frame_bgr: np.ndarray, landmarks5: np.ndarray, size: int = 224) -> np.ndarray:
    """Fatigue-paper alignment: the 5 landmarks mapped by a similarity transform onto the
    ArcFace template scaled to ``size`` (224, or 112 for the small model).

    Returns the (size, size, 3) uint8 BGR crop, zero-padded outside the frame. The frame →
    crop matrix is :func:`alignment_matrix` of the same landmarks and size.
    """
    _check_frame(frame_bgr)
    matrix = alignment_matrix(landmarks5, size)
    src = np.asarray(landmarks5, dtype=np.float64)
    h, w = frame_bgr.shape[:2]
    lo, hi = src.min(axis=0), src.max(axis=0)
    if hi[0] < 0 or hi[1] < 0 or lo[0] > w - 1 or lo[1] > h - 1:
        raise InputError("the landmarks lie entirely outside the frame")
    return warp_crop(frame_bgr, matrix, size, size)


def _check_frame(frame_bgr: np.ndarray) -> None:
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8:
        raise InputError("frame must be a uint8 numpy array")
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or min(frame_bgr.shape[:2]) < 1:
        raise InputError(f"frame must be (H, W, 3) BGR, got shape {frame_bgr.shape}")


def _checked_box(box: np.ndarray, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise InputError(f"face box must be 4 finite numbers, got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in b)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InputError(f"degenerate face box {b.tolist()}")
    h, w = shape[:2]
    if x1 <= 0 or y1 <= 0 or x0 >= w - 1 or y0 >= h - 1:
        raise InputError(f"face box {b.tolist()} lies entirely outside the {w}×{h} frame")
    return x0, y0, x1, y1


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a (2, 3) affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_box(
    frame: np.ndarray, box: tuple[float, float, float, float], out_w: int, out_h: int
) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned ``box`` (x0, y0, x1, y1) of ``frame`` resized to out_w × out_h (see
    :func:`warp_crop`), and the (2, 3) frame → crop matrix."""
    x0, y0, x1, y1 = box
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    matrix = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
    return warp_crop(frame, matrix, out_w, out_h), matrix


def warp_crop(frame: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """(out_h, out_w[, C]) crop of ``frame`` (grey or colour) through the (2, 3) frame → crop
    ``matrix``: warpAffine with zero borders; low-passes first when the map shrinks the image,
    so a large face resized to a small crop does not alias."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.8:
        return cv2.warpAffine(
            frame, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
        )
    # Blur only the part of the frame the crop reads (plus the kernel's reach).
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [out_w, 0], [0, out_h], [out_w, out_h]], dtype=np.float64)
    src = _apply(inv, corners)
    sigma = 0.5 * np.sqrt(1.0 / scale**2 - 1.0)
    reach = int(np.ceil(3 * sigma)) + 2
    h, w = frame.shape[:2]
    lx = max(int(np.floor(src[:, 0].min())) - reach, 0)
    ly = max(int(np.floor(src[:, 1].min())) - reach, 0)
    hx = min(int(np.ceil(src[:, 0].max())) + reach + 1, w)
    hy = min(int(np.ceil(src[:, 1].max())) + reach + 1, h)
    if hx <= lx or hy <= ly:
        return np.zeros((out_h, out_w, *frame.shape[2:]), dtype=frame.dtype)
    region = cv2.GaussianBlur(frame[ly:hy, lx:hx], (0, 0), sigmaX=sigma, sigmaY=sigma)
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([lx, ly], dtype=np.float64)
    return cv2.warpAffine(
        region, shifted, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )
