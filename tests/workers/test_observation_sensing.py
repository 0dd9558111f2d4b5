"""The worker's observation says when the eyes cannot be judged, and why (issue 12)."""

from __future__ import annotations

from workers.inference import frame_observation
from workers.perception import FrameResult
from workers.signals import FrameSignals


def test_the_sensing_reason_travels_to_the_observation() -> None:
    hidden = FrameSignals(frame=7, t=1.0, face_present=True, faces=1, sensing="eyes_hidden")
    obs = frame_observation("d1", "v1", 100.0, FrameResult(hidden), 100.1)
    assert (obs.sensing, obs.closure, obs.face_present) == ("eyes_hidden", None, True)
    seen = FrameSignals(frame=8, t=1.1, face_present=True, faces=1, closure=0.1)
    assert frame_observation("d1", "v1", 100.1, FrameResult(seen), 100.2).sensing is None
