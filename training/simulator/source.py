"""The real face a simulated driver is rendered from: what :mod:`training.simulator.faces`
finds and :mod:`training.simulator.render` deforms (both import it; it imports neither)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe mesh eye corners (outer, inner), image order.
EYE_CORNERS = ((33, 133), (263, 362))


@dataclass(frozen=True, slots=True)
class SourceFace:
    """A real face composed into an output frame.

    image: (H, W, 3) uint8 BGR at the output size.
    landmarks: (478, 3) float32 MediaPipe landmarks of ``image`` (x, y in pixels, z in pixel
        scale, towards the camera negative).
    blendshapes: the backend's blendshape scores on the clean image.
    """

    name: str
    image: np.ndarray
    landmarks: np.ndarray
    blendshapes: dict[str, float]

    @property
    def interocular(self) -> float:
        """Distance between the two eye centres (mean of each eye's corners), pixels."""
        return interocular(self.landmarks)

    @property
    def face_box(self) -> np.ndarray:
        """(4,) x0, y0, x1, y1 of the landmarks."""
        xy = self.landmarks[:, :2]
        return np.array([*xy.min(axis=0), *xy.max(axis=0)], dtype=np.float32)


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye's corners) of (478, >=2)
    MediaPipe landmarks, pixels."""
    centres = [landmarks[list(c), :2].mean(axis=0) for c in EYE_CORNERS]
    return float(np.linalg.norm(centres[0] - centres[1]))
