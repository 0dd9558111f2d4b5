"""Reading frames from video files and checking frames before the face engine sees them.

Everything unusable becomes an :class:`~streams.errors.InputError` with a one-line message:
missing, empty, oversized, non-video and truncated files; frames of the wrong type, too small
or with a bad channel count. Oversized frames are downscaled, not refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from streams.errors import InputError

log = logging.getLogger(__name__)

MIN_FRAME_SIDE = 32
# A declared frame count this far above what decodes means the file was cut short.
TRUNCATION_TOLERANCE = 0.9
DEFAULT_FPS = 30.0


def prepare_frame(frame: np.ndarray, max_side: int = 1920) -> tuple[np.ndarray, float]:
    """Any decodable image array -> ((H, W, 3) uint8 BGR, scale applied).

    Accepts grey (H, W) / (H, W, 1), BGR and BGRA, uint8 or uint16. Frames with a side above
    ``max_side`` are downscaled (scale < 1); coordinates found on the result divide by scale.
    """
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise InputError("empty frame")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise InputError(f"unsupported frame dtype {frame.dtype}; expected uint8 or uint16")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"unsupported frame shape {frame.shape}; expected HxW, HxWx1, 3 or 4")
    h, w = frame.shape[:2]
    if min(h, w) < MIN_FRAME_SIDE:
        raise InputError(f"frame too small: {w}x{h}, need at least {MIN_FRAME_SIDE} px a side")
    scale = 1.0
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (round(w * scale), round(h * scale))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame), scale


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame. image: (H, W, 3) uint8 BGR after :func:`prepare_frame`."""

    index: int
    timestamp_ms: int
    image: np.ndarray
    scale: float


class VideoReader:
    """Iterates the frames of a video file; use as a context manager.

    Timestamps come from the container when it has them, else from the frame rate. After
    iteration, a file that decoded far fewer frames than it declares raises InputError.
    """

    def __init__(self, path: str | Path, max_side: int = 1920, max_bytes: int = 8 * 1024**3):
        self.path = Path(path)
        _check_file(self.path, max_bytes)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"{self.path}: not a readable video")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if np.isfinite(fps) and 1.0 <= fps <= 1000.0 else DEFAULT_FPS
        declared = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared_frames = int(declared) if np.isfinite(declared) and declared > 0 else 0
        self.max_side = max_side
        self.frames_read = 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._cap.release()

    def __iter__(self) -> Iterator[Frame]:
        last_ts = -1
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                break
            ts = round(self.frames_read * 1000.0 / self.fps)
            container_ts = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            if np.isfinite(container_ts) and container_ts > last_ts and self.frames_read > 0:
                ts = round(container_ts)
            ts = max(ts, last_ts + 1)
            last_ts = ts
            try:
                prepared, scale = prepare_frame(image, self.max_side)
            except InputError as exc:
                raise InputError(f"{self.path}: frame {self.frames_read}: {exc}") from None
            yield Frame(self.frames_read, ts, prepared, scale)
            self.frames_read += 1
        if self.frames_read == 0:
            raise InputError(f"{self.path}: no decodable frames (not a video, or truncated)")
        if self.declared_frames and self.frames_read < TRUNCATION_TOLERANCE * self.declared_frames:
            raise InputError(
                f"{self.path}: truncated video: decoded {self.frames_read} of "
                f"{self.declared_frames} declared frames"
            )


def _check_file(path: Path, max_bytes: int) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file")
    if size > max_bytes:
        raise InputError(
            f"{path}: file too large ({size / 1024**3:.1f} GiB > {max_bytes / 1024**3:.1f} GiB "
            "limit, VIGIL_PERCEPTION__MAX_FILE_BYTES)"
        )
