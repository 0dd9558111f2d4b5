"""Head-pose signs on a real face turned by known angles (the simulator's depth-aware warp),
read back through the face transform and through 5-point PnP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.simulator.faces import load_faces
from training.simulator.render import Pose, PoseWarp
from workers.face.backends import create_backend
from workers.signals.frame import head_pose

SIZE = (640, 360)


@pytest.fixture(scope="module")
def poses() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    face = next(f for f in load_faces(SIZE) if f.name == "single_face")
    warp = PoseWarp(face, SIZE)
    cases = {
        "neutral": Pose(), "up": Pose(pitch=20), "down": Pose(pitch=-20),
        "right": Pose(yaw=25), "left": Pose(yaw=-25), "clockwise": Pose(roll=15),
    }
    out = {}
    for name, pose in cases.items():
        image = np.ascontiguousarray(warp.warp(face.image, pose))
        backend = create_backend("mediapipe")
        try:
            (detection,) = backend.detect(image, 0)
        finally:
            backend.close()
        out[name] = (
            np.array(head_pose(detection, image.shape)),
            np.array(head_pose(replace(detection, pose_matrix=None), image.shape)),
        )
    return out


@pytest.mark.parametrize("method", [0, 1], ids=["face-transform", "pnp"])
@pytest.mark.parametrize(
    ("case", "axis", "sign"),
    [("up", 1, 1), ("down", 1, -1), ("right", 0, 1), ("left", 0, -1), ("clockwise", 2, 1)],
)
def test_pose_signs(poses, method: int, case: str, axis: int, sign: int) -> None:
    delta = poses[case][method] - poses["neutral"][method]
    assert sign * delta[axis] > 5.0, f"{case}: yaw/pitch/roll change {delta.round(1)}"
