"""Reading frames from video files and checking frames before the face engine sees them.

Everything unusable becomes an :class:`~streams.errors.InputError` with a one-line message:
missing, empty, oversized and non-video files, files with no decodable frame (and, in strict
mode, truncated ones); frames of the wrong type, too small or with a bad channel count.
Oversized frames are downscaled, not refused. A damaged file is decoded as far as it decodes:
the frames lost are counted and located, not a reason to refuse the rest.
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
# Strict mode: a declared frame count this far above what decodes means the file was cut short.
TRUNCATION_TOLERANCE = 0.9
DEFAULT_FPS = 30.0
# Each failed read skips one undecodable packet; this many in a row end the file early even
# when it declares more frames (or declares none).
MAX_FAILED_READS = 1000
# A timestamp gap within this share of a frame interval of a whole number of intervals counts
# that many frames; other gaps (variable frame rate) count as one frame plus the failed reads.
GRID_TOLERANCE = 0.25


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

    Reading goes on past undecodable frames up to the declared frame count. Frame indices and
    timestamps are the container's where it has them, so frames lost at the start or in the
    middle leave gaps rather than shifting what follows; after iteration ``lost_spans`` holds
    the inclusive index ranges that did not decode and ``frames_lost`` how many frames the
    file declares but did not deliver. ``strict`` keeps the old refusal: after iteration, a
    file that decoded far fewer frames than it declares raises InputError. A file with no
    decodable frame raises InputError either way.
    """

    def __init__(
        self, path: str | Path, max_side: int = 1920, max_bytes: int = 8 * 1024**3,
        strict: bool = False,
    ):
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
        self.strict = strict
        self.frames_read = 0
        self.lost_spans: list[tuple[int, int]] = []
        self._next_index = 0

    @property
    def frames_lost(self) -> int:
        """Frames declared but not decoded (those seen missing when nothing is declared)."""
        if self.declared_frames:
            return max(self.declared_frames - self.frames_read, 0)
        return sum(b - a + 1 for a, b in self.lost_spans)

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
        interval_ms = 1000.0 / self.fps
        # Container time of the previous frame; a virtual frame before the first one makes
        # frames lost at the start show as a gap too.
        prev_ms, last_ts = -interval_ms, -1
        while (read := self._read()) is not None:
            image, failed = read
            container_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            steps = None
            if np.isfinite(container_ms) and container_ms > prev_ms:
                steps = frame_steps(container_ms - prev_ms, interval_ms)
                prev_ms = container_ms
            index = self._next_index - 1 + (steps if steps is not None else 1 + failed)
            if index > self._next_index:
                self.lost_spans.append((self._next_index, index - 1))
            ts = round(index * interval_ms)
            if np.isfinite(container_ms) and round(container_ms) > last_ts:
                ts = round(container_ms)
            ts = max(ts, last_ts + 1)
            last_ts = ts
            try:
                prepared, scale = prepare_frame(image, self.max_side)
            except InputError as exc:
                raise InputError(f"{self.path}: frame {index}: {exc}") from None
            yield Frame(index, ts, prepared, scale)
            self.frames_read += 1
            self._next_index = index + 1
        if self.frames_read == 0:
            raise InputError(f"{self.path}: no decodable frames (not a video, or truncated)")
        if self._next_index < self.declared_frames:
            self.lost_spans.append((self._next_index, self.declared_frames - 1))
        if (
            self.strict
            and self.declared_frames
            and self.frames_read < TRUNCATION_TOLERANCE * self.declared_frames
        ):
            raise InputError(
                f"{self.path}: truncated video: decoded {self.frames_read} of "
                f"{self.declared_frames} declared frames"
            )

    def _read(self) -> tuple[np.ndarray, int] | None:
        """The next decodable image and how many reads failed before it; None at the end."""
        failed = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None:
                return image, failed
            failed += 1
            past_declared = (
                self.declared_frames and self._next_index + failed >= self.declared_frames
            )
            if past_declared or failed >= MAX_FAILED_READS:
                return None


def frame_steps(gap_ms: float, interval_ms: float) -> int | None:
    """Frame intervals a container timestamp gap spans (1: the next frame) when it is a whole
    number of them, else None."""
    ratio = gap_ms / interval_ms
    steps = round(ratio)
    return steps if steps >= 1 and abs(ratio - steps) <= GRID_TOLERANCE else None


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
