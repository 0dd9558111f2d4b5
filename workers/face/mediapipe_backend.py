"""MediaPipe Tasks FaceLandmarker backend: 478 landmarks with irises, 52 blendshapes, pose."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.settings import load_settings
from workers.face.crops import crop_box
from workers.face.engine import FaceDetection, LandmarkSource
from workers.face.provision import face_landmarker_bundle
from workers.face.yunet import YuNetDetector
from workers.settings import PerceptionSettings

log = logging.getLogger(__name__)

# Canonical-mesh indices, image order (subject's right eye first for an unmirrored camera).
IRIS_CENTRES = (468, 473)
NOSE_TIP = 1
MOUTH_CORNERS = (61, 291)
# p1..p6 of the eye aspect ratio (Soukupová & Čech 2016) per eye.
EAR_INDICES = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
# Inner upper lip, inner lower lip, inner mouth corners.
MOUTH_INDICES = (13, 14, 78, 308)
# The detector fallback upscales a face it meshes again to about this height (the mesh reads
# its own 256 px input), on a square crop this many face sides wide (context for the mesh's
# own face detector, which needs the face to be a good part of the image).
CROP_FACE_PX = 192
CROP_MARGIN = 2.0
# Mesh faces less tall than this (pixels) are read again on an upscaled crop too.
SMALL_FACE_PX = 96


class MediaPipeBackend:
    """FaceLandmarker in VIDEO mode: it tracks between frames, so feed one stream in order.

    With ``settings.face_detector_fallback`` (the default) a frame where the mesh finds no face
    goes to YuNet (:mod:`workers.face.yunet`). Each face YuNet finds is meshed again on a crop
    around it, upscaled so that the face is about ``CROP_FACE_PX`` tall, by a second landmarker
    in IMAGE mode (crops jump around the frame; the VIDEO-mode tracker must not see them), and
    mapped back to frame pixels ("mesh-crop"). Where the mesh fails on the crop too (profile,
    hidden), the face is the detector's box, score and 5 points ("detector"). Mesh faces less
    than ``SMALL_FACE_PX`` tall are read again on such a crop. A frame where the mesh finds a
    face of ordinary size costs nothing more.
    """

    name = "mediapipe"

    def __init__(self, settings: PerceptionSettings | None = None, **_: Any) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        settings = settings or load_settings(PerceptionSettings)
        bundle = face_landmarker_bundle(settings.cache_dir, settings.face_landmarker_path)
        model = Path(bundle).read_bytes()

        def options(mode: Any, faces: int) -> Any:
            return vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=model),
                running_mode=mode,
                num_faces=faces,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )

        self._max_faces = settings.max_faces
        self._detector: YuNetDetector | None = None
        self._crop_landmarker: Any = None
        if settings.face_detector_fallback:
            self._detector = YuNetDetector(
                min_score=settings.face_detector_min_score, max_side=settings.face_detector_side
            )
        self._crop_options = options(vision.RunningMode.IMAGE, 1)
        with _native_stderr_silenced():
            self._landmarker: Any = vision.FaceLandmarker.create_from_options(
                options(vision.RunningMode.VIDEO, settings.max_faces)
            )
        self._last_ts = -1

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        import mediapipe as mp

        # VIDEO mode needs strictly increasing timestamps; repeated stamps happen with
        # low-resolution clocks, so nudge rather than fail.
        ts = max(int(timestamp_ms), self._last_ts + 1)
        self._last_ts = ts
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        result = self._landmarker.detect_for_video(
            mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts
        )
        faces = [_to_detection(*face) for face in _faces_of(result, rgb.shape)]
        if self._detector is None:
            return faces
        if not faces:
            found = self._detector.detect(frame_bgr)[: self._max_faces]
            return [self._mesh_on_crop(rgb, face) for face in found]
        # The mesh's landmarks on a small face are coarse (eye centres off by ~5 % of the face
        # at 60 px wide, ~1 % when read again upscaled): read those again on a crop.
        return [
            self._mesh_on_crop(rgb, face) if face.box[3] - face.box[1] < SMALL_FACE_PX else face
            for face in faces
        ]

    def _mesh_on_crop(self, rgb: np.ndarray, found: FaceDetection) -> FaceDetection:
        """``found`` (a detector's face, or a small mesh face) read by the mesh on an upscaled
        crop around it, in frame pixels; ``found`` itself where the mesh finds no face there."""
        import mediapipe as mp

        x0, y0, x1, y1 = (float(v) for v in found.box)
        side = CROP_MARGIN * max(x1 - x0, y1 - y0, 1.0)
        size = max(1, round(side * max(1.0, CROP_FACE_PX / max(y1 - y0, 1.0))))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        crop, warp = crop_box(rgb, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
                              size, size)
        scale, origin = float(warp[0, 0]), -warp[:, 2] / warp[0, 0]
        if self._crop_landmarker is None:  # at its first use: most streams never need it,
            # and it holds about 30 MiB (a worker has one backend a driver)
            from mediapipe.tasks.python import vision

            with _native_stderr_silenced():
                self._crop_landmarker = vision.FaceLandmarker.create_from_options(
                    self._crop_options)
        result = self._crop_landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        for pts, blend, matrix in _faces_of(result, crop.shape):
            pts[:, :2] = pts[:, :2] / scale + origin
            pts[:, 2] /= scale
            face = _to_detection(pts, blend, matrix, found.score, "mesh-crop")
            fx, fy = face.centre
            if x0 <= fx <= x1 and y0 <= fy <= y1:  # the detector's face, not a neighbour's
                return face
        return found

    def close(self) -> None:
        for landmarker in (self._landmarker, self._crop_landmarker):
            if landmarker is not None:
                landmarker.close()
        self._landmarker = self._crop_landmarker = None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ graph setup writes a dozen informational lines straight to file
    descriptor 2, past Python logging; hide them while the graph starts. Failures still raise."""
    fd = 2  # the native code writes to the descriptor, whatever sys.stderr is now
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _faces_of(
    result: Any, shape: tuple[int, ...]
) -> list[tuple[np.ndarray, dict[str, float] | None, np.ndarray | None]]:
    """Per face of a FaceLandmarker result: (478, 3) pixel landmarks of an image of ``shape``,
    blendshape scores and the face transform."""
    h, w = shape[:2]
    faces = []
    for k, landmarks in enumerate(result.face_landmarks):
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in landmarks], dtype=np.float32)
        blend = None
        if result.face_blendshapes:
            blend = {c.category_name: float(c.score) for c in result.face_blendshapes[k]}
        matrix = None
        if result.facial_transformation_matrixes:
            matrix = np.asarray(result.facial_transformation_matrixes[k], dtype=np.float32)
        faces.append((pts, blend, matrix))
    return faces


def _to_detection(
    pts: np.ndarray,
    blend: dict[str, float] | None,
    matrix: np.ndarray | None,
    score: float = 1.0,
    source: LandmarkSource = "mesh",
) -> FaceDetection:
    """pts: (478, 3) pixel landmarks."""
    xy = pts[:, :2]
    box = np.array([*xy.min(axis=0), *xy.max(axis=0)], dtype=np.float32)
    eyes = xy[list(IRIS_CENTRES)]
    five = np.stack([eyes[0], eyes[1], xy[NOSE_TIP], xy[MOUTH_CORNERS[0]], xy[MOUTH_CORNERS[1]]])
    return FaceDetection(
        box=box,
        score=score,
        landmarks5=five,
        eye_centres=eyes,
        ear_points=xy[np.array(EAR_INDICES)],
        mouth_points=xy[list(MOUTH_INDICES)],
        dense_landmarks=pts,
        blendshapes=blend,
        pose_matrix=matrix,
        landmarks_source=source,
    )
