"""Helpers the clip trainers share (:mod:`training.blink`, :mod:`training.fatigue`,
:mod:`training.au`): frame ordering and clip resampling, the face engine over a clip's frames,
the fatigue paper's 5-point alignment crop, a disk-backed store of prepared clips that
``--resume`` reuses, seeded group splits and normalisation."""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.resnet import inflate_state_dict
from streams.errors import ConfigurationError, InputError
from training.loop import write_json
from workers.face.backends import create_backend
from workers.face.crops import align_face
from workers.face.engine import DriverFaceTracker, FaceBackend, FaceDetection

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# ImageNet statistics (RGB, [0, 1]): both the fatigue and the AU paper start from backbones
# pretrained on RGB images normalised this way.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROPS = ("align", "none")  # 5-point alignment by the face engine, or frames already face crops


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def clip_indices(n: int, length: int) -> np.ndarray:
    """Frame indices (length,) taking a clip of ``n`` frames to ``length``: the middle
    ``length`` frames of a longer clip; a shorter one repeats its first and last frames
    (the extra ones split between both ends, the end getting the odd one)."""
    if n < 1:
        raise InputError("a clip needs at least one frame")
    if n >= length:
        start = (n - length) // 2
        return np.arange(start, start + length)
    before = (length - n) // 2
    return np.clip(np.arange(length) - before, 0, n - 1)


def window_starts(n: int, length: int, stride: int) -> list[int]:
    """Start frames of the windows of ``length`` frames every ``stride`` frames that fit in
    ``n`` frames (a tail shorter than ``length`` is dropped); [0] when n < length (the one
    clip is then padded by :func:`clip_indices`)."""
    if n <= length:
        return [0] if n > 0 else []
    return list(range(0, n - length + 1, max(stride, 1)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def normalise(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> minus mean, over std per channel."""
    m = torch.tensor(mean, dtype=frames.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=frames.dtype).view(3, 1, 1)
    return (frames - m) / s


def split_groups(groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: the samples of a seeded random ``fraction`` of the distinct ``groups``
    (videos, subjects) held out, at least one group each side when there are two or more, so
    no group is on both sides."""
    names = sorted(set(groups))
    k = min(max(round(fraction * len(names)), 1), len(names) - 1) if len(names) > 1 else 0
    held = set(np.random.default_rng(seed).permutation(names)[:k].tolist())
    return np.array([g in held for g in groups], dtype=bool)


class FaceFinder:
    """The face engine over clips: one backend, a fresh driver tracker per clip, and a blank
    frame between clips so the backend's tracking never carries a face across."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self._backend: FaceBackend | None = None
        self._tracker = DriverFaceTracker()
        self._ts = 0

    @property
    def backend(self) -> FaceBackend:
        if self._backend is None:
            self._backend = create_backend(self.engine)
        return self._backend

    def start_clip(self, shape: tuple[int, ...]) -> None:
        self._ts += 1000
        self.backend.detect(np.zeros(shape, dtype=np.uint8), self._ts)
        self._tracker = DriverFaceTracker()

    def driver(self, frame_bgr: np.ndarray, step_ms: float = 40.0) -> FaceDetection | None:
        """The driver's face in the next frame of the clip, None without one."""
        self._ts += max(1, round(step_ms))
        return self._tracker.update(self.backend.detect(frame_bgr, self._ts),
                                    frame_bgr.shape).driver

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class FrameCropper:
    """Frames to the fatigue/AU networks' (S, S, 3) uint8 RGB inputs. ``crop="align"``: the
    driver's face found by the face engine, aligned on its 5 landmarks by a similarity
    transform (:func:`workers.face.crops.align_face`, the fatigue paper's MTCNN alignment);
    ``crop="none"``: the whole frame resized (for frames that already are face crops)."""

    def __init__(self, crop: str, size: int, engine: str) -> None:
        if crop not in CROPS:
            raise ConfigurationError(f"unknown crop {crop!r}; choose one of {CROPS}")
        self.crop, self.size = crop, size
        self.finder = FaceFinder(engine) if crop == "align" else None

    def start_clip(self, shape: tuple[int, ...]) -> None:
        if self.finder is not None:
            self.finder.start_clip(shape)

    def __call__(self, frame_bgr: np.ndarray, step_ms: float = 40.0) -> np.ndarray:
        """One frame -> (S, S, 3) uint8 RGB. Raises InputError when no face is found."""
        if self.finder is None:
            out = cv2.resize(frame_bgr, (self.size, self.size), interpolation=cv2.INTER_AREA)
        else:
            face = self.finder.driver(frame_bgr, step_ms)
            if face is None:
                raise InputError("no face")
            out = align_face(frame_bgr, face.landmarks5, self.size)
        return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self.finder is not None:
            self.finder.close()


def crop_frames(frames: Iterable[np.ndarray], cropper: FrameCropper, step_ms: float
                ) -> Iterator[np.ndarray | None]:
    """Each frame of one clip or video cropped by ``cropper``, None where no face was found."""
    first = True
    for frame in frames:
        if first:
            cropper.start_clip(frame.shape)
            first = False
        try:
            yield cropper(frame, step_ms)
        except InputError:
            yield None


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 BGR frames of a video; InputError if it cannot be opened or holds no
    frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError("cannot open the video")
        ok, frame = capture.read()
        if not ok:
            raise InputError("no decodable frame")
        while ok:
            yield frame
            ok, frame = capture.read()
    finally:
        capture.release()


def video_fps(path: Path, default: float) -> float:
    capture = cv2.VideoCapture(str(path))
    fps = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    capture.release()
    return fps if 1.0 <= fps <= 1000.0 else default


@dataclass
class ClipData:
    """Prepared clips on disk. frames (N, T, S, S, 3) uint8 RGB (memory-mapped); targets
    (N, ...) float32 (a trainer's labels); is_val (N,) bool; ids: one name per clip; groups:
    the split unit of each clip (video, subject); skipped: {"clip", "reason"} per dropped
    sample; fps: the clips' frame rate."""

    frames: np.ndarray
    targets: np.ndarray
    is_val: np.ndarray
    ids: list[str]
    groups: list[str]
    skipped: list[dict[str, str]]
    fps: float

    @staticmethod
    def load(folder: Path, key: dict[str, Any]) -> ClipData | None:
        """The clips saved in ``folder`` if they were prepared with ``key``, else None."""
        try:
            meta = json.loads((folder / "clips.json").read_text())
            if meta["key"] != json.loads(json.dumps(key)):
                return None
            shape = tuple(meta["shape"])
            frames = (np.memmap(folder / "frames.u8", np.uint8, "r", shape=shape) if shape[0]
                      else np.zeros(shape, np.uint8))  # an empty file cannot be mapped
            targets, is_val = np.load(folder / "targets.npy"), np.load(folder / "is_val.npy")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return ClipData(frames, targets, is_val, list(meta["ids"]), list(meta["groups"]),
                        list(meta["skipped"]), float(meta["fps"]))


class ClipWriter:
    """Appends prepared clips (T, S, S, 3) uint8 to ``folder/frames.u8`` as they come, so a
    data set larger than memory can be prepared; :meth:`finish` writes the rest and returns
    the memory-mapped :class:`ClipData`."""

    def __init__(self, folder: Path, length: int, size: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "clips.json").unlink(missing_ok=True)  # half-written clips never count
        self.folder, self.shape = folder, (length, size, size, 3)
        self._file = (folder / "frames.u8").open("wb")
        self.targets: list[np.ndarray] = []
        self.ids: list[str] = []
        self.groups: list[str] = []
        self.fixed: list[bool | None] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, frames: np.ndarray, target: np.ndarray, clip_id: str, group: str,
            is_val: bool | None) -> None:
        if frames.shape != self.shape or frames.dtype != np.uint8:
            raise ValueError(f"clip {clip_id}: frames {frames.shape} {frames.dtype}, expected "
                             f"{self.shape} uint8")
        self._file.write(np.ascontiguousarray(frames).tobytes())
        self.targets.append(np.asarray(target, dtype=np.float32))
        self.ids.append(clip_id)
        self.groups.append(group)
        self.fixed.append(is_val)

    def skip(self, clip_id: str, reason: str) -> None:
        self.skipped.append({"clip": clip_id, "reason": reason})

    def close(self) -> None:
        self._file.close()

    def finish(self, is_val: np.ndarray, fps: float, key: dict[str, Any],
               target_shape: tuple[int, ...]) -> ClipData:
        self.close()
        n = len(self.ids)
        targets = np.stack(self.targets) if n else np.zeros((0, *target_shape), np.float32)
        np.save(self.folder / "targets.npy", targets)
        np.save(self.folder / "is_val.npy", np.asarray(is_val, dtype=bool))
        write_json(self.folder / "clips.json", {
            "key": key, "shape": [n, *self.shape], "ids": self.ids, "groups": self.groups,
            "skipped": self.skipped, "fps": fps})
        data = ClipData.load(self.folder, key)
        assert data is not None
        return data


def init_trunk(backbone: torch.nn.Module, path: Path) -> None:
    """Loads a torchvision-layout 2D ResNet-18 state dict (``conv1``, ``bn1``, ``layerN``...;
    a ``fc`` head and other extra keys are ignored) into ``backbone``, a 2D or 3D
    :class:`models.resnet.ResNet18` (3D: kernels inflated, :func:`inflate_state_dict`).
    Raises InputError for a file that holds no such weights."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        weights = inflate_state_dict(state, backbone)
    except Exception as exc:  # unreadable file, refused globals, shapes that do not fit
        raise InputError(f"{path}: not a 2D ResNet-18 state dict ({exc})") from None
    if not weights:
        raise InputError(f"{path}: no ResNet-18 trunk weights (torchvision names conv1, bn1, "
                         "layerN...) in it")
    backbone.load_state_dict(weights, strict=False)
    log.info("trunk initialised from %s (%d tensors)", path, len(weights))


# ---------------------------------------------------------------- command-line defaults


def flag_default(config_cls: type, simulated_defaults: dict[str, Any], name: str,
                 simulated: bool) -> Any:
    """A config field's default: ``simulated_defaults`` for simulated runs, else the
    paper's (the dataclass default)."""
    if simulated and name in simulated_defaults:
        return simulated_defaults[name]
    return config_cls.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def defaults_help(config_cls: type, simulated_defaults: dict[str, Any], name: str) -> str:
    """"(default X; --simulated Y)" for a flag's help."""
    def show(value: Any) -> str:
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    paper = flag_default(config_cls, simulated_defaults, name, False)
    sim = flag_default(config_cls, simulated_defaults, name, True)
    return f"(default {show(paper)})" if paper == sim else \
        f"(default {show(paper)}; --simulated {show(sim)})"
