"""Reading single frames of the real clips for the face-engine tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_video_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video file, (H, W, 3) uint8 BGR; fails the test if unreadable."""
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"{path}: frame {index} does not decode"
    return frame
