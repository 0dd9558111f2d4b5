"""Per-driver crop windows for the learnt networks (no torch, no threads here).

Each served network says in its checkpoint's preprocessing what one frame of its input is
(:class:`InputSpec`): the blink network a face crop of the paper's 192:256 shape with the
eye centres in it (:func:`workers.face.crops.eye_regions`), SAT-Net and the fatigue network a
face aligned on its 5 landmarks (:func:`workers.face.crops.align_face`). A driver's
:class:`CropWindow` keeps the last ``frames`` such crops, cut from the frame and detection the
perception has just used, so no frame is decoded or detected twice.

A frame whose crop cannot be trusted (no face, eye state untrusted: a degraded-sensing reason,
a crop that fails) enters the window as a gap with its reason. A window is run only when it
is full of consecutive usable crops; a window that is due but not full is skipped with the
reason of its newest gap, never fed zeros.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from streams.errors import ConfigurationError, InputError
from workers.face.crops import align_face, eye_regions
from workers.face.engine import FaceDetection

EYE_REGIONS = "eye_regions"
ALIGNED_FACE = "aligned_face"
# Readings of a window that was due but not full of usable crops.
NO_FACE = "no_face"
FILLING = "filling"


@dataclass(frozen=True)
class InputSpec:
    """One network's input, as its checkpoint's preprocessing describes it.

    crop: :data:`EYE_REGIONS` or :data:`ALIGNED_FACE`; frames: clip length T; size: (H, W) of
    a crop; mean/std: per RGB channel after scaling to [0, 1]; time_first: the clip is
    (T, 3, H, W) (True) or (3, T, H, W) (False); region_size: the blink network's coarse eye
    region (0 for the others)."""

    crop: str
    frames: int
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    time_first: bool = True
    region_size: int = 0

    @classmethod
    def from_preprocessing(cls, pre: Mapping[str, Any]) -> InputSpec:
        """The spec from a checkpoint's preprocessing dict (training/{blink,au,fatigue}.py)."""
        try:
            crop_fn = str(pre.get("crop", ""))
            frames = int(pre["clip_length"])
            mean = tuple(float(v) for v in pre["mean"])
            std = tuple(float(v) for v in pre["std"])
            if crop_fn.endswith(".eye_regions"):
                h, w = (int(v) for v in pre["face_size"])
                return cls(EYE_REGIONS, frames, (h, w), mean, std,  # type: ignore[arg-type]
                           True, int(pre["region_size"]))
            if crop_fn.endswith(".align_face"):
                h, w = (int(v) for v in pre["size"])
                time_first = str(pre.get("layout", "(B, T, 3, H, W)")) == "(B, T, 3, H, W)"
                return cls(ALIGNED_FACE, frames, (h, w), mean, std,  # type: ignore[arg-type]
                           time_first)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"checkpoint preprocessing lacks what serving needs: "
                                     f"{type(exc).__name__}: {exc}") from None
        raise ConfigurationError(f"checkpoint preprocessing names crop {crop_fn!r}; serving "
                                 f"cuts eye_regions or align_face crops")

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One random window of this shape, as :meth:`CropWindow.clip` returns one (benches
        and the compiled-graph check): normalised pixels, and the eyes where an aligned face
        has them."""
        h, w = self.size
        shape = (self.frames, 3, h, w) if self.time_first else (3, self.frames, h, w)
        clip = rng.normal(size=shape).astype(np.float32)
        if self.crop != EYE_REGIONS:
            return (clip,)
        centres = np.array([[0.32 * w, 0.4 * h], [0.68 * w, 0.4 * h]], np.float32)
        return clip, np.broadcast_to(centres, (self.frames, 2, 2)).copy()


@dataclass(frozen=True)
class Crop:
    """One frame's input to a network: ``image`` (H, W, 3) uint8 RGB; ``eye_centres`` (2, 2)
    (x, y) in ``image`` pixels for the blink network, else None."""

    image: np.ndarray
    eye_centres: np.ndarray | None = None


def cut_crop(spec: InputSpec, frame_bgr: np.ndarray, face: FaceDetection) -> Crop:
    """The crop ``spec`` asks for from the frame the perception used (raises InputError)."""
    if spec.crop == EYE_REGIONS:
        regions = eye_regions(frame_bgr, face, spec.size, spec.region_size)
        return Crop(cv2.cvtColor(regions.face, cv2.COLOR_BGR2RGB),
                    regions.eye_centres.astype(np.float32))
    if spec.size[0] != spec.size[1]:
        raise ConfigurationError(f"aligned faces are square, not {spec.size}")
    aligned = align_face(frame_bgr, np.asarray(face.landmarks5), spec.size[0])
    return Crop(cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB))


@dataclass(frozen=True)
class WindowEntry:
    seq: int
    captured_at: float
    crop: Crop | None
    gap: str | None = None  # why ``crop`` is None


class CropWindow:
    """The last ``spec.frames`` frames of one driver for one network."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self._entries: deque[WindowEntry] = deque(maxlen=spec.frames)
        self.last_run_at: float | None = None

    def add(self, seq: int, captured_at: float, frame_bgr: np.ndarray,
            face: FaceDetection | None, sensing: str | None, stride_s: float = 0.0,
            cut: dict[tuple[Any, ...], Crop | str] | None = None) -> None:
        """Adds the frame: its crop, or a gap saying why there is none.

        stride_s: the network's stride; a frame too early to be in the next due window is
        not cut (a gap, :data:`FILLING`), so a network read every few seconds costs crops for
        its last T frames only. cut: this frame's crops (or why none) by crop kind and size,
        shared by the windows of one frame, so two networks that want the same crop get one.
        """
        if face is None:
            entry = WindowEntry(seq, captured_at, None, NO_FACE)
        elif sensing is not None:
            entry = WindowEntry(seq, captured_at, None, sensing)
        elif not self._needed(captured_at, stride_s):
            entry = WindowEntry(seq, captured_at, None, FILLING)
        else:
            key = (self.spec.crop, self.spec.size, self.spec.region_size)
            crop = cut.get(key) if cut is not None else None
            if crop is None:
                try:
                    crop = cut_crop(self.spec, frame_bgr, face)
                except InputError as exc:
                    crop = f"crop_failed: {exc}"[:64]
                if cut is not None:
                    cut[key] = crop
            entry = (WindowEntry(seq, captured_at, None, crop) if isinstance(crop, str)
                     else WindowEntry(seq, captured_at, crop))
        self._entries.append(entry)

    def _needed(self, now: float, stride_s: float) -> bool:
        """Could a frame at ``now`` be in the next due window? (Two frames of margin on the
        driver's current frame interval.)"""
        if self.last_run_at is None or len(self._entries) < 2:
            return True
        interval = self._entries[-1].captured_at - self._entries[-2].captured_at
        earliest = self.last_run_at + stride_s - (self.spec.frames + 2) * max(interval, 0.0)
        return now >= earliest - 1e-6

    def due(self, now: float, stride_s: float) -> bool:
        """A run is due at ``now`` (capture time) once ``stride_s`` has passed since the last
        one (the first as soon as a frame is in)."""
        return bool(self._entries) and (self.last_run_at is None
                                         or now - self.last_run_at >= stride_s - 1e-6)

    def missing(self) -> str | None:
        """Why the window cannot run now (the newest gap's reason, or :data:`FILLING`), or
        None when it holds ``frames`` usable crops."""
        for entry in reversed(self._entries):
            if entry.crop is None:
                return entry.gap or NO_FACE
        return None if len(self._entries) == self.spec.frames else FILLING

    def clip(self) -> tuple[np.ndarray, ...]:
        """The network's inputs for one driver, without the batch dimension: the normalised
        clip (T, 3, H, W) or (3, T, H, W) float32, plus (T, 2, 2) eye centres for the blink
        network. Only call when :meth:`missing` is None."""
        crops = [e.crop for e in self._entries if e.crop is not None]
        scaled = np.stack([c.image for c in crops]).astype(np.float32) / 255.0  # (T, H, W, 3)
        frames: np.ndarray = ((scaled - np.asarray(self.spec.mean, np.float32))
                              / np.asarray(self.spec.std, np.float32))
        clip = frames.transpose(0, 3, 1, 2) if self.spec.time_first else frames.transpose(
            3, 0, 1, 2)
        clip = np.ascontiguousarray(clip)
        if self.spec.crop == EYE_REGIONS:
            centres = np.stack([c.eye_centres for c in crops if c.eye_centres is not None])
            return clip, centres.astype(np.float32)
        return (clip,)

    @property
    def oldest(self) -> WindowEntry | None:
        return self._entries[0] if self._entries else None
