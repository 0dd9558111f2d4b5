"""Eye crops and the learnt eye-state estimate (:mod:`models.eyestate`) for one face.

The crop is defined by the two eye centres alone, so that every backend can feed it (the mesh,
or a detector's 5 points when the mesh fails): centred on each eye, levelled on the line
through both eyes, ``CROP_WIDTH_IOD`` inter-eye distances wide at the network's 3:2 aspect,
grey, and the second eye mirrored so both eyes look alike to the network. Training
(``training.eyestate``) cuts its crops with the same function.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.eyestate import (
    CROP_SIZE,
    SHIPPED_CHECKPOINT,
    EyeStateNet,
    for_inference,
    normalise_crops,
)
from models.registry import ModelError
from streams.observability import model_served
from workers.face.crops import warp_crop
from workers.face.engine import FaceDetection

log = logging.getLogger(__name__)

CROP_WIDTH_IOD = 0.85
# A face turned sideways foreshortens the inter-eye distance, not the eye: the crop's scale
# never falls below this share of the face box height.
MIN_IOD_BOX_HEIGHT = 0.3


def eye_centres(face: FaceDetection) -> np.ndarray:
    """(2, 2) eye centres in image order: the midpoint of each eye's corners when the backend
    has lid landmarks (the iris moves with the gaze, the corners do not), else its eye points."""
    if face.ear_points is not None:
        pts = np.asarray(face.ear_points, dtype=np.float64)
        return (pts[:, 0] + pts[:, 3]) / 2
    return np.asarray(face.eye_centres, dtype=np.float64)


def eye_scale(centres: np.ndarray, box_height: float) -> float:
    """Pixels between the eyes as the crops are sized by: the inter-eye distance, but never
    under ``MIN_IOD_BOX_HEIGHT`` of the face box height (a turned face's eyes come closer in the
    image; its eyes do not shrink)."""
    return max(float(np.hypot(*(centres[1] - centres[0]))), MIN_IOD_BOX_HEIGHT * box_height)


def crop_matrices(centres: np.ndarray, box_height: float, jitter: np.ndarray | None = None
                  ) -> np.ndarray:
    """(2, 2, 3) frame -> crop affine matrices for the two eyes.

    centres: (2, 2) eye centres, image order. jitter: (2, 4) per eye (dx, dy in inter-eye
    distances, log-scale, angle in radians), for training only.
    """
    out_h, out_w = CROP_SIZE
    axis = centres[1] - centres[0]
    iod = max(eye_scale(centres, box_height), 1e-3)
    angle = float(np.arctan2(axis[1], axis[0]))
    mats = np.empty((2, 2, 3))
    for k in range(2):
        a, s, c = angle, iod * CROP_WIDTH_IOD / out_w, centres[k].astype(np.float64)
        if jitter is not None:
            dx, dy, log_s, da = jitter[k]
            c = c + iod * np.array([dx, dy])
            s, a = s * float(np.exp(log_s)), a + da
        # Crop pixel (u, v) -> frame point c + s·R(a)·(u - w/2, v - h/2); the second eye is
        # mirrored (u -> w - u).
        cos, sin = np.cos(a) * s, np.sin(a) * s
        mirror = -1.0 if k == 1 else 1.0
        fwd = np.array([[mirror * cos, -sin], [mirror * sin, cos]])
        offset = c - fwd @ np.array([(out_w - 1) / 2, (out_h - 1) / 2])
        inv = np.linalg.inv(fwd)
        mats[k, :, :2] = inv
        mats[k, :, 2] = -inv @ offset
    return mats


def cut_eye_crops(frame_bgr: np.ndarray, centres: np.ndarray, box_height: float,
                  jitter: np.ndarray | None = None) -> np.ndarray:
    """(2, H, W) uint8 grey eye crops (see :func:`crop_matrices`); zero outside the frame.
    Low-passed where the crop shrinks the eye (:func:`workers.face.crops.warp_crop`), so the
    lashes do not alias; grey after the warp (a linear map: the same, on far fewer pixels)."""
    out_h, out_w = CROP_SIZE
    return np.stack([
        cv2.cvtColor(warp_crop(frame_bgr, matrix, out_w, out_h), cv2.COLOR_BGR2GRAY)
        for matrix in crop_matrices(centres, box_height, jitter)
    ])


def face_eye_crops(frame_bgr: np.ndarray, face: FaceDetection) -> np.ndarray:
    """(2, H, W) uint8 grey crops of the face's two eyes, image order."""
    box_height = float(face.box[3] - face.box[1])
    return cut_eye_crops(frame_bgr, eye_centres(face), box_height)


@dataclass(frozen=True, slots=True)
class EyeState:
    """Per eye, image order: closure 0 open .. 1 closed, visible the probability that the crop
    shows an eye whose lids can be judged."""

    closure: tuple[float, float]
    visible: tuple[float, float]


class EyeStateEstimator:
    """The eye-state network on CPU, one face (two crops) per call."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint or SHIPPED_CHECKPOINT
        trained, _ = load_checkpoint(self.checkpoint)
        if not isinstance(trained, EyeStateNet):
            raise ModelError(f"{self.checkpoint} holds a {type(trained).__name__}, not the "
                             "eye-state network")
        self.model = for_inference(trained)

    @classmethod
    def shipped(cls) -> EyeStateEstimator:
        """The shipped weights, loaded once per process and shared by every driver (inference
        only, so threads may share it)."""
        return _loaded(SHIPPED_CHECKPOINT)

    @classmethod
    def load(cls, checkpoint: Path) -> EyeStateEstimator:
        """``checkpoint``'s weights, loaded once per process like :meth:`shipped`."""
        return _loaded(Path(checkpoint).resolve())

    def __call__(self, frame_bgr: np.ndarray, face: FaceDetection) -> EyeState:
        return self.from_crops(face_eye_crops(frame_bgr, face))

    @torch.inference_mode()
    def from_crops(self, crops: np.ndarray) -> EyeState:
        """crops: (2, H, W) uint8 grey."""
        x = normalise_crops(torch.from_numpy(crops).float().unsqueeze(1) / 255.0)
        p = torch.sigmoid(self.model(x.contiguous(memory_format=torch.channels_last))).numpy()
        return EyeState((float(p[0, 0]), float(p[1, 0])), (float(p[0, 1]), float(p[1, 1])))


@functools.cache
def _loaded(checkpoint: Path) -> EyeStateEstimator:
    estimator = EyeStateEstimator(checkpoint)
    model_served("eyestate", "shipped" if checkpoint == SHIPPED_CHECKPOINT
                 else f"file:{checkpoint.name}")
    return estimator
