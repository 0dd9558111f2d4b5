"""Per-frame driver signals from a face detection.

Eye state comes first from the learnt per-eye estimate on eye crops
(:mod:`workers.signals.eyes`): it needs no open-eye start, so a driver whose eyes are shut from
the first frame reads closed at once. The eye aspect ratio (EAR, Soukupová & Čech 2016) is
reported too, and normalised to the driver's open level only after the network has seen the
eyes confidently open (never by assuming open eyes at the start). Closure is judged from the
eyes that can be seen: the more open of them, so a wink is not a closure. When no eye can be
judged (sunglasses, a hand, a face too small or turned away) the frame says why in ``sensing``
and its closure is unmeasured (None), never "open".

Head pose comes from the backend's face transform when it has one, else from the 5 landmarks
by PnP. The gaze-off-road proxy compares head pose plus iris offset with the driver's own
habitual (road) direction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from streams.schemas import SensingIssue
from workers.face.engine import FaceDetection
from workers.signals.eyes import EyeStateEstimator, eye_centres, eye_scale

# Blendshape -> FACS action unit proxies (Ekman & Friesen). Pairs are averaged over sides.
AU_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU01_inner_brow_raiser": ("browInnerUp",),
    "AU02_outer_brow_raiser": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04_brow_lowerer": ("browDownLeft", "browDownRight"),
    "AU06_cheek_raiser": ("cheekSquintLeft", "cheekSquintRight"),
    "AU07_lid_tightener": ("eyeSquintLeft", "eyeSquintRight"),
    "AU09_nose_wrinkler": ("noseSneerLeft", "noseSneerRight"),
    "AU10_upper_lip_raiser": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "AU12_lip_corner_puller": ("mouthSmileLeft", "mouthSmileRight"),
    "AU14_dimpler": ("mouthDimpleLeft", "mouthDimpleRight"),
    "AU15_lip_corner_depressor": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17_chin_raiser": ("mouthShrugLower",),
    "AU18_lip_pucker": ("mouthPucker",),
    "AU20_lip_stretcher": ("mouthStretchLeft", "mouthStretchRight"),
    "AU24_lip_pressor": ("mouthPressLeft", "mouthPressRight"),
    "AU26_jaw_drop": ("jawOpen",),
    "AU45_blink": ("eyeBlinkLeft", "eyeBlinkRight"),
}

# Generic 3D positions (mm, x right, y up, z towards the camera) of the 5 landmarks, for PnP
# when a backend gives no face transform.
_FACE_MODEL_5 = np.array(
    [[-31.0, 33.0, -25.0], [31.0, 33.0, -25.0], [0.0, 0.0, 0.0], [-24.0, -30.0, -20.0],
     [24.0, -30.0, -20.0]],
    dtype=np.float64,
)


def eye_aspect_ratio(points: np.ndarray) -> float:
    """points: (6, 2) p1..p6 -> (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    p1, p2, p3, p4, p5, p6 = points
    width = float(np.linalg.norm(p1 - p4))
    if width <= 1e-6:
        return 0.0
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * width))


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """points: (4, 2) inner upper lip, inner lower lip, two inner corners."""
    width = float(np.linalg.norm(points[2] - points[3]))
    return float(np.linalg.norm(points[0] - points[1]) / width) if width > 1e-6 else 0.0


def euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """rot: (3, 3) face-to-camera rotation; face axes x right, y up, z out of the face; camera
    axes as OpenGL (and MediaPipe's face transform): x right, y up, z towards the viewer.

    Returns (yaw, pitch, roll) in degrees: yaw > 0 turns towards the image's right, pitch > 0
    looks up, roll > 0 tilts the head clockwise in the image.
    """
    yaw = math.degrees(math.atan2(rot[0, 2], rot[2, 2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, rot[1, 2]))))
    roll = math.degrees(math.atan2(-rot[1, 0], rot[1, 1]))
    return yaw, pitch, roll


def head_pose(face: FaceDetection, frame_shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees from the face transform, or PnP on the 5 landmarks."""
    if face.pose_matrix is not None:
        return euler_from_rotation(np.asarray(face.pose_matrix, dtype=np.float64)[:3, :3])
    h, w = frame_shape[:2]
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
    # Image y points down; the model's y points up: flip y on both sides of the mapping.
    image_pts = np.asarray(face.landmarks5, dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(
        _FACE_MODEL_5 * np.array([1.0, -1.0, -1.0]), image_pts, camera, None,
        flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok:
        return 0.0, 0.0, 0.0
    rot, _ = cv2.Rodrigues(rvec)
    # OpenCV camera axes (y down, z forward) -> OpenGL ones, as the face transform uses.
    flip = np.diag([1.0, -1.0, -1.0])
    return euler_from_rotation(flip @ rot @ flip)


def iris_offset(face: FaceDetection) -> tuple[float, float] | None:
    """Mean iris position inside the eye, (horizontal, vertical) in about [-1, 1]: +x towards
    the image's right, +y up. None without iris landmarks."""
    if face.ear_points is None or face.dense_landmarks is None:
        return None
    offsets = []
    for eye, centre in zip(face.ear_points, face.eye_centres, strict=True):
        corner_a, corner_b = eye[0], eye[3]
        mid = (corner_a + corner_b) / 2
        half_width = float(np.linalg.norm(corner_b - corner_a)) / 2
        if half_width <= 1e-6:
            return None
        upper, lower = (eye[1] + eye[2]) / 2, (eye[4] + eye[5]) / 2
        half_height = max(float(np.linalg.norm(lower - upper)) / 2, 1e-6)
        eye_mid_y = (upper[1] + lower[1]) / 2
        offsets.append(
            ((centre[0] - mid[0]) / half_width, -(centre[1] - eye_mid_y) / half_height)
        )
    h, v = np.mean(offsets, axis=0)
    return float(np.clip(h, -1, 1)), float(np.clip(v, -1, 1))


def au_scores(blendshapes: dict[str, float] | None) -> dict[str, float]:
    if not blendshapes:
        return {}
    return {
        au: float(np.mean([blendshapes.get(name, 0.0) for name in names]))
        for au, names in AU_BLENDSHAPES.items()
    }


class RollingQuantile:
    """Quantile of the last ``size`` values, recomputed every ``every`` updates (cheap)."""

    def __init__(self, size: int, q: float, every: int = 5) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._q, self._every, self._n = q, every, 0
        self.value: float | None = None

    def update(self, x: float) -> float:
        self._values.append(x)
        self._n += 1
        if self.value is None or self._n % self._every == 0 or len(self._values) < 30:
            self.value = float(np.quantile(np.fromiter(self._values, float), self._q))
        return self.value

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class SignalConfig:
    """Calibration of the per-frame signals.

    closed_ear_ratio: EAR of a fully closed eye as a share of the driver's open EAR, for the
    landmark model in use (MediaPipe keeps the lid contours ~25 % apart at full closure).
    open_quantile: the open-eye EAR level is this quantile of the EAR of frames the eye network
    calls confidently open (``calibration_closure``, ``calibration_visible``).
    eye_visible: an eye counts as seen when the network's visibility is at least this.
    min_eye_px: fewer pixels between the eyes (as the eye crops are sized,
    :func:`workers.signals.eyes.eye_scale`) leave too little to judge the lids.
    max_yaw_deg: a head turned further than this has its eyes judged unreliable.
    """

    closed_ear_ratio: float = 0.25
    open_quantile: float = 0.5
    calibration_closure: float = 0.15
    calibration_visible: float = 0.8
    baseline_seconds: float = 60.0
    min_baseline_seconds: float = 1.0
    eye_visible: float = 0.5
    min_eye_px: float = 14.0
    max_yaw_deg: float = 50.0
    off_road_yaw_deg: float = 25.0
    off_road_pitch_down_deg: float = 20.0
    off_road_pitch_up_deg: float = 20.0
    # The iris centre moves r·sin(θ) for an eye turned by θ; with an eyeball radius r of ~12 mm
    # and half an eye opening of ~15 mm, an iris offset of 0.8 half-widths is an eye turned 90°.
    iris_travel: float = 0.8
    iris_pitch_gain_deg: float = 20.0


@dataclass
class FrameSignals:
    """Driver signals of one frame. Eye values are in image order (left = image left).

    closure: 0 open .. 1 closed, of the more open of the eyes that can be seen (None without a
    face or when no eye can be judged; ``sensing`` then says why).
    eye_closure_*, eye_visible_*: the eye network's closure and visibility per eye.
    ear_*: raw eye aspect ratios; openness_*: EAR normalised (1 = the driver's open level),
    once the network has seen the eyes open.
    sensing: None when eye state is measurable, else a reason (streams.schemas.SensingIssue).
    mouth_open: inner-lip MAR; yaw/pitch/roll in degrees; gaze_off_road: head + iris direction
    away from the driver's habitual road direction.
    """

    frame: int
    t: float
    face_present: bool
    track_id: int | None = None
    faces: int = 0
    box: list[float] | None = None
    ear_left: float | None = None
    ear_right: float | None = None
    openness_left: float | None = None
    openness_right: float | None = None
    eye_closure_left: float | None = None
    eye_closure_right: float | None = None
    eye_visible_left: float | None = None
    eye_visible_right: float | None = None
    closure: float | None = None
    sensing: str | None = None
    blink_score_left: float | None = None
    blink_score_right: float | None = None
    mouth_open: float | None = None
    jaw_open: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    gaze_off_road: bool | None = None
    au: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: _round(v) for k, v in asdict(self).items()}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


class SignalExtractor:
    """Per-driver signal state: the eye network, the open-eye EAR level (learnt only from
    frames the network calls open) and the habitual head direction."""

    def __init__(self, fps: float = 30.0, config: SignalConfig | None = None,
                 eye_state: EyeStateEstimator | None = None) -> None:
        self.config = cfg = config or SignalConfig()
        self.eye_state = eye_state or EyeStateEstimator.shipped()
        size = max(30, int(cfg.baseline_seconds * fps))
        self._min_samples = max(1, int(cfg.min_baseline_seconds * fps))
        self._open_ear = RollingQuantile(size, cfg.open_quantile)
        self._road_yaw = RollingQuantile(size, 0.5, every=15)
        self._road_pitch = RollingQuantile(size, 0.5, every=15)

    def update(
        self,
        frame: int,
        t: float,
        face: FaceDetection | None,
        image: np.ndarray,
        faces: int = 1,
        scale: float = 1.0,
    ) -> FrameSignals:
        """face: the driver's detection (None: no face) in ``image`` (H, W, 3) uint8 BGR.
        scale: how much the frame was shrunk before detection, to report the box in the
        original pixels."""
        if face is None:
            return FrameSignals(frame, t, False, faces=faces)
        cfg = self.config
        out = FrameSignals(
            frame, t, True, track_id=face.track_id, faces=faces,
            box=[float(v) / scale for v in face.box],
        )
        yaw, pitch, roll = head_pose(face, image.shape)
        out.yaw, out.pitch, out.roll = yaw, pitch, roll
        self._eyes(out, image, face)
        if face.blendshapes:
            out.blink_score_left = face.blendshapes.get("eyeBlinkLeft")
            out.blink_score_right = face.blendshapes.get("eyeBlinkRight")
            out.jaw_open = face.blendshapes.get("jawOpen")
            out.au = au_scores(face.blendshapes)
        if face.mouth_points is not None:
            out.mouth_open = mouth_aspect_ratio(face.mouth_points)
        road_yaw, road_pitch = self._road_yaw.update(yaw), self._road_pitch.update(pitch)
        gaze_yaw, gaze_pitch = yaw, pitch
        iris = iris_offset(face)
        if iris is not None:
            gaze_yaw += math.degrees(math.asin(max(-1.0, min(1.0, iris[0] / cfg.iris_travel))))
            gaze_pitch += cfg.iris_pitch_gain_deg * iris[1]
        d_yaw, d_pitch = gaze_yaw - road_yaw, gaze_pitch - road_pitch
        out.gaze_off_road = bool(
            abs(d_yaw) > cfg.off_road_yaw_deg
            or d_pitch < -cfg.off_road_pitch_down_deg
            or d_pitch > cfg.off_road_pitch_up_deg
        )
        return out

    def _eyes(self, out: FrameSignals, image: np.ndarray, face: FaceDetection) -> None:
        """Fills the eye fields of ``out``: the network per eye, closure from the seen eyes,
        the EAR and, once calibrated on confidently open eyes, the EAR openness."""
        cfg = self.config
        eye_px = eye_scale(eye_centres(face), float(face.box[3] - face.box[1]))
        state = self.eye_state(image, face)
        out.eye_closure_left, out.eye_closure_right = state.closure
        out.eye_visible_left, out.eye_visible_right = state.visible
        seen = [c for c, v in zip(state.closure, state.visible, strict=True)
                if v >= cfg.eye_visible]
        if out.yaw is not None and abs(out.yaw) > cfg.max_yaw_deg:
            out.sensing = SensingIssue.FACE_TURNED
        elif eye_px < cfg.min_eye_px:
            out.sensing = SensingIssue.FACE_SMALL
        elif not seen:
            out.sensing = SensingIssue.EYES_HIDDEN
        else:
            out.closure = float(min(seen))
        if face.ear_points is None:
            return
        ears = [eye_aspect_ratio(p) for p in face.ear_points]
        out.ear_left, out.ear_right = ears
        confidently_open = (out.closure is not None
                            and max(state.closure) <= cfg.calibration_closure
                            and min(state.visible) >= cfg.calibration_visible)
        if confidently_open:
            self._open_ear.update(float(np.mean(ears)))
        open_level = self._open_ear.value
        if len(self._open_ear) >= self._min_samples and open_level and open_level > 1e-6:
            openness = [
                float(np.clip((e / open_level - cfg.closed_ear_ratio)
                              / (1.0 - cfg.closed_ear_ratio), 0.0, 1.5))
                for e in ears
            ]
            out.openness_left, out.openness_right = openness
