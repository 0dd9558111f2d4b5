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

from workers.face.engine import FaceDetection, register_backend
from workers.face.provision import face_landmarker_bundle
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


@register_backend("mediapipe")
class MediaPipeBackend:
    """FaceLandmarker in VIDEO mode: it tracks between frames, so feed one stream in order."""

    name = "mediapipe"

    def __init__(self, settings: PerceptionSettings | None = None, **_: Any) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        settings = settings or PerceptionSettings()
        bundle = face_landmarker_bundle(settings.cache_dir, settings.face_landmarker_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=Path(bundle).read_bytes()),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=settings.max_faces,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with _native_stderr_silenced():
            self._landmarker: Any = vision.FaceLandmarker.create_from_options(options)
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
        h, w = frame_bgr.shape[:2]
        faces = []
        for k, landmarks in enumerate(result.face_landmarks):
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in landmarks], dtype=np.float32)
            blend = None
            if result.face_blendshapes:
                blend = {c.category_name: float(c.score) for c in result.face_blendshapes[k]}
            matrix = None
            if result.facial_transformation_matrixes:
                matrix = np.asarray(result.facial_transformation_matrixes[k], dtype=np.float32)
            faces.append(_to_detection(pts, blend, matrix))
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


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


def _to_detection(
    pts: np.ndarray, blend: dict[str, float] | None, matrix: np.ndarray | None
) -> FaceDetection:
    """pts: (478, 3) pixel landmarks."""
    xy = pts[:, :2]
    box = np.array([*xy.min(axis=0), *xy.max(axis=0)], dtype=np.float32)
    eyes = xy[list(IRIS_CENTRES)]
    five = np.stack([eyes[0], eyes[1], xy[NOSE_TIP], xy[MOUTH_CORNERS[0]], xy[MOUTH_CORNERS[1]]])
    return FaceDetection(
        box=box,
        score=1.0,
        landmarks5=five,
        eye_centres=eyes,
        ear_points=xy[np.array(EAR_INDICES)],
        mouth_points=xy[list(MOUTH_INDICES)],
        dense_landmarks=pts,
        blendshapes=blend,
        pose_matrix=matrix,
    )
