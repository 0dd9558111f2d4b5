"""Synthetic variants of real clips, for the robustness table of `vigil eval video --variant`.

Each variant is a pure function of a frame ((H, W, 3) uint8 BGR, as :func:`prepare_frame`
gives it) and of parameters fixed per clip or per frame; noise is seeded by the frame index, so
a rerun draws the same frames. Frame indices and timing are unchanged, so a clip's labels apply
to every variant of it. Output: uint8 BGR of the input's size, except the ``faceN`` variants,
whose canvas is always 640×360.

- ``grayscale``: ITU-R BT.601 luma in all three channels (a monochrome sensor).
- ``dark``: underexposure, then the camera's gain: intensities scaled by 0.35 after a gamma of
  1.6 (mean brightness falls to about a quarter), plus Gaussian sensor noise σ = 6 per channel.
- ``nir``: what an in-cabin 850/940 nm camera with its own illuminator sees, kept simple:
  (1) one channel built mostly from red (0.75 R + 0.2 G + 0.05 B): skin reflects near-infrared
  strongly and melanin barely absorbs it, so skin turns bright, freckles, make-up and the
  lips' colour fade, and brown irises turn lighter grey; (2) skin texture flattened (40 % of an
  edge-preserving bilateral blur mixed in: light scatters deeper under the skin); (3) brightened
  by a gamma of 0.8; (4) no colour at all (saturation 0); (5) vignetting from the on-axis
  illuminator, brightness falling to 55 % in the corners (quadratic in the radius); (6) Gaussian
  sensor noise σ = 4. Pupils stay dark (the usual off-axis "dark pupil" illuminator; a coaxial
  one would make them glow). See e.g. Hammoud (ed.), "Passive Eye Monitoring" (Springer, 2008).
- ``rot35``: rotated 35° counter-clockwise about the frame centre, frame size kept, black
  corners.
- ``face30`` / ``face45`` / ``face60``: the frame scaled so that the face is about 30 / 45 /
  60 px wide and pasted in the centre of a dark (grey 16) 640×360 canvas (centre-cropped if it
  would not fit). The clip's face width is measured once, without labels: the median width of
  the MediaPipe face box on 12 frames spread over the clip (:func:`measure_face_width`).
- ``sunglasses``: a dark lens over each eye and a bridge between them, placed per frame from the
  MediaPipe eye-corner landmarks of the unmodified frame. Lenses are ellipses 2.0 × 1.3 eye
  widths, rotated with the eye line, 88 % near-black and 12 % a blurred copy of what lies
  beneath (a faint see-through), with a soft highlight streak (a reflection). When the
  landmarks miss a frame the last lens positions are kept for up to 5 frames, then the frame
  is left unmodified.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from streams.errors import ConfigurationError, InputError
from streams.settings import load_settings
from workers.face.backends import create_backend
from workers.face.engine import DriverFaceTracker, FaceBackend, FaceDetection
from workers.settings import PerceptionSettings
from workers.video import VideoReader

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = (
    "grayscale", "dark", "nir", "rot35", "face30", "face45", "face60", "sunglasses",
)
FACE_CANVAS = (640, 360)  # width, height of the faceN variants' frame
CANVAS_GREY = 16
FACE_SAMPLES = 12
LENS_HOLD_FRAMES = 5


def _noise(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def grayscale(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR -> (H, W, 3) with three equal channels."""
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def dark(frame: np.ndarray, seed: int) -> np.ndarray:
    """Underexposed with sensor noise (see the module docstring)."""
    x = frame.astype(np.float32) / 255.0
    return _to_uint8(255.0 * 0.35 * x**1.6 + _noise(frame.shape, 6.0, seed))


def near_infrared(frame: np.ndarray, seed: int) -> np.ndarray:
    """Near-infrared-like monochrome (see the module docstring)."""
    b, g, r = (frame[:, :, k].astype(np.float32) for k in range(3))
    nir = 0.75 * r + 0.2 * g + 0.05 * b
    smooth = cv2.bilateralFilter(nir, d=7, sigmaColor=20.0, sigmaSpace=5.0)
    nir = 0.6 * nir + 0.4 * smooth
    nir = 255.0 * (nir / 255.0) ** 0.8
    h, w = nir.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    nir = nir * (1.0 - 0.45 * radius2 / 2.0)  # corners (radius² = 2) at 55 %
    grey = _to_uint8(nir + _noise(nir.shape, 4.0, seed))
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def rotate(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated counter-clockwise about the centre; same size, black where nothing maps."""
    h, w = frame.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def small_face(frame: np.ndarray, face_width: float, target_width: float,
               canvas: tuple[int, int] = FACE_CANVAS) -> np.ndarray:
    """The frame scaled by target_width / face_width, centred on a dark canvas (W, H)."""
    scale = target_width / face_width
    h, w = frame.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    scaled = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else
                        cv2.INTER_LINEAR)
    cw, ch = canvas
    out = np.full((ch, cw, 3), CANVAS_GREY, np.uint8)
    sw, sh = size
    # Source and destination windows, centred; a scaled frame larger than the canvas is cropped.
    x0, y0 = max(0, (sw - cw) // 2), max(0, (sh - ch) // 2)
    dx, dy = max(0, (cw - sw) // 2), max(0, (ch - sh) // 2)
    pw, ph = min(sw, cw), min(sh, ch)
    out[dy:dy + ph, dx:dx + pw] = scaled[y0:y0 + ph, x0:x0 + pw]
    return out


def sunglasses(frame: np.ndarray, eye_corners: np.ndarray) -> np.ndarray:
    """eye_corners: (2, 2, 2) per eye its two corners (x, y), image order. Dark lenses over both
    eyes and a bridge (see the module docstring)."""
    h, w = frame.shape[:2]
    centres = eye_corners.mean(axis=1)
    widths = np.linalg.norm(eye_corners[:, 1] - eye_corners[:, 0], axis=1)
    eye_w = float(widths.mean())
    if eye_w < 1.0:
        return frame.copy()
    dx, dy = centres[1] - centres[0]
    angle = float(np.degrees(np.arctan2(dy, dx)))
    mask = np.zeros((h, w), np.uint8)
    axes = (round(1.0 * eye_w), round(0.65 * eye_w))
    for cx, cy in centres:
        centre = (round(float(cx)), round(float(cy - 0.1 * eye_w)))
        cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, thickness=-1, lineType=cv2.LINE_AA)
    a, b = (tuple(round(float(v)) for v in c) for c in centres)
    cv2.line(mask, a, b, 255, thickness=max(1, round(0.15 * eye_w)), lineType=cv2.LINE_AA)
    x, y, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return frame.copy()
    # Work on the lenses' bounding box only.
    roi = frame[y:y + bh, x:x + bw].astype(np.float32)
    alpha = mask[y:y + bh, x:x + bw].astype(np.float32)[:, :, None] / 255.0
    beneath = cv2.GaussianBlur(roi, (0, 0), sigmaX=max(1.0, eye_w / 4))
    lens = 0.88 * np.array([14.0, 12.0, 12.0], np.float32) + 0.12 * beneath
    # A soft highlight streak over each lens, slanted against the eye line.
    yy, xx = np.mgrid[y:y + bh, x:x + bw].astype(np.float32)
    mid = centres.mean(axis=0)
    theta = np.radians(angle + 60.0)
    along = (xx - mid[0]) * np.cos(theta) + (yy - mid[1]) * np.sin(theta)
    offset = 0.9 * eye_w
    streak = np.exp(-(((along - offset) / (0.25 * eye_w)) ** 2)) + np.exp(
        -(((along + offset) / (0.25 * eye_w)) ** 2))
    lens += 45.0 * streak[:, :, None]
    out = frame.copy()
    out[y:y + bh, x:x + bw] = _to_uint8(roi * (1 - alpha) + lens * alpha)
    return out


def eye_corners_of(face: FaceDetection) -> np.ndarray | None:
    """(2, 2, 2) eye corners (p1 and p4 of the EAR points), or None without eyelid landmarks."""
    if face.ear_points is None:
        return None
    return np.asarray(face.ear_points, np.float32)[:, [0, 3], :]


def measure_face_width(video: Path, settings: PerceptionSettings,
                       samples: int = FACE_SAMPLES) -> float:
    """Median width (px of the prepared frames) of the largest MediaPipe face box on
    ``samples`` frames spread over the clip. Raises InputError when no sample shows a face."""
    backend = create_backend("mediapipe", settings=settings)
    widths: list[float] = []
    try:
        with VideoReader(video, settings.max_frame_side, settings.max_file_bytes) as reader:
            total = reader.declared_frames or samples
            wanted = set(np.linspace(0, max(total - 1, 0), samples).round().astype(int).tolist())
            for frame in reader:
                if frame.index in wanted:
                    faces = backend.detect(frame.image, frame.timestamp_ms)
                    if faces:
                        box = max(faces, key=lambda f: f.area).box
                        widths.append(float(box[2] - box[0]))
    finally:
        backend.close()
    if not widths:
        raise InputError(f"{video}: no face found in {samples} sampled frames to size the "
                         "face variants by")
    return float(np.median(widths))


class ClipVariant:
    """A variant bound to one clip: per-clip parameters measured when it is built, then
    :meth:`apply` per frame (in order: ``sunglasses`` tracks the face). Close it after use."""

    def __init__(self, name: str, video: Path, settings: PerceptionSettings | None = None):
        if name not in VARIANTS:
            raise ConfigurationError(
                f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}")
        self.name = name
        self.params: dict[str, float] = {}
        self._backend: FaceBackend | None = None
        self._tracker = DriverFaceTracker()
        self._corners: np.ndarray | None = None
        self._missed = 0
        settings = settings or load_settings(PerceptionSettings)
        if name.startswith("face"):
            self.params = {"face_width": round(measure_face_width(video, settings), 1),
                           "target_width": float(name[len("face"):])}
        elif name == "sunglasses":
            self._backend = create_backend("mediapipe", settings=settings)

    def apply(self, image: np.ndarray, index: int, timestamp_ms: int) -> np.ndarray:
        """image: (H, W, 3) uint8 BGR, the clip's frame ``index`` -> the variant's frame."""
        name = self.name
        if name == "grayscale":
            return grayscale(image)
        if name == "dark":
            return dark(image, index)
        if name == "nir":
            return near_infrared(image, index)
        if name == "rot35":
            return rotate(image, 35.0)
        if name.startswith("face"):
            return small_face(image, self.params["face_width"], self.params["target_width"])
        corners = self._lens_positions(image, timestamp_ms)
        return image.copy() if corners is None else sunglasses(image, corners)

    def _lens_positions(self, image: np.ndarray, timestamp_ms: int) -> np.ndarray | None:
        assert self._backend is not None
        tracked = self._tracker.update(self._backend.detect(image, timestamp_ms), image.shape)
        corners = None if tracked.driver is None else eye_corners_of(tracked.driver)
        if corners is not None:
            self._corners, self._missed = corners, 0
        elif self._corners is not None:
            self._missed += 1
            if self._missed > LENS_HOLD_FRAMES:
                self._corners = None
        return self._corners

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
