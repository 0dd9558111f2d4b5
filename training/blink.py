"""`vigil train blink`: the blink network (``blink-eyelid-motion``) trained as in the paper, a
teacher on L_T, then a self-distilled student on L_S (:mod:`models.blink`), on trimmed clips
from disk or from the driver simulator.

Data layout (``--data ROOT``), trimmed clips as HUST-LEBW ships them (one folder of frames per
sample) or as cut from Eyeblink8/other videos around their annotated blinks::

    ROOT/blink/<clip_id>/<frame>.png|jpg|jpeg|bmp      one folder per trimmed clip
    ROOT/non_blink/<clip_id>/<frame>...                 (``no_blink`` is accepted too)
    ROOT/<label>/<clip_id>/eyes.json                    optional, see below

or, with a fixed split (HUST-LEBW's train/test), ``ROOT/train/{blink,non_blink}/...`` and
``ROOT/test/{blink,non_blink}/...`` (``val`` is accepted for ``test``); without one,
``val_fraction`` of each class is held out at random (seeded). Frames are ordered by the
numbers in their names (``2.png`` before ``10.png``). Each clip folder may carry ``eyes.json``::

    {"eye_centers": [[[x, y], [x, y]], ...],   one entry per frame: both eyes, image order,
                                                frame pixels (x = column, y = row)
     "face_boxes": [[x0, y0, x1, y1], ...]}     optional; without it the whole frame is the
                                                face (HUST-LEBW's frames are face crops)

Without ``eyes.json`` the face engine (``workers.face``, default backend ``mediapipe``)
finds the face and both eye centres in every frame (the driver-selection tracker picks one
face when a frame shows several). A clip with a frame that has no face, an unreadable frame or
a malformed ``eyes.json`` is skipped with a warning and counted (``skipped_clips`` in the
result and metrics); it never stops training. A missing, empty or wrongly laid-out ROOT is an
InputError saying which layout was expected.

Samples: each frame is cut like the workers cut it (:func:`workers.face.crops.eye_regions`:
the face box grown to the crop's W:H and resized to ``face_size`` = (H, W), paper 256×192,
zero-padded where it leaves the frame), converted to RGB, scaled to [0, 1], minus
:data:`PIXEL_MEAN` and divided by :data:`PIXEL_STD` (the authors' loader subtracts the CPN
pixel means and does not divide, so std is 1). A sample is faces (T, 3, H, W) float32,
eye_centers (T, 2, 2) float32 (x, y) in face-crop pixels, image order, and the label (0 no
blink, 1 blink). T = ``clip_length`` (default 10, as the authors' loader reads 10 frames of
HUST-LEBW's 13): a longer clip keeps its T middle frames (frame rate unchanged, the trimmed
event stays centred), a shorter one repeats its first and last frames (no motion added) to
reach T (:func:`clip_indices`).

Augmentation (training only, one draw per clip, all frames alike): the authors' CPN-style
loader has random scale, rotation and mirroring; here scale 0.9–1.1, rotation ±10°, shift ±5 %,
mirror with probability 0.5 (the eyes swap to stay in image order), brightness ±0.15 and
contrast 0.8–1.2 (:func:`augment_clip`).

Simulated data (``--simulated``): ``training.simulator.simulate_set`` renders drivers (real
faces, eyelid closure along ground-truth timelines; default 3 drivers × 30 s at 15 fps,
"mixed" profile; at the cameras' 10 fps a blink is one or two frames and a small run learns it
more slowly), the face engine reads the videos, and clips of T frames are cut along the truth:
one per blink event centred on its peak (plus ``blink_jitter`` - 1 shifted windows still
holding the whole event, training drivers only), and as many non-blink windows, spread over the
spans whose closure stays at or below the truth's event level (0.05) with face and eyes
visible. Long closures are neither. The last ``val_fraction`` of the drivers validate (at least
one; with a single driver, the last ``val_fraction`` of its video), so validation clips come
from other videos than training ones (driver k wears source face k; with the default 3
drivers the validation face, ``single_face_video``, is another photo of driver 1's person).
Simulated runs use :data:`SIMULATED_DEFAULTS` (128×96 faces, region 48, the "small" network,
12 epochs a stage, a faster schedule) unless told otherwise: a few CPU minutes in all.

Training (paper §V, :class:`BlinkTrainConfig` defaults): Adam, batch 8, 100 epochs; the
attention generator's learning rate 5e-5, 3e-4 from epoch 6, then ×0.8 every 8 epochs, the rest
of the network 4× that (:func:`models.blink.parameter_groups`); λ = 0.2, 0.0005, 0.5, 0.25,
Δ = 0.1, α = 0.1. Early stopping (the paper has none) watches ``monitor`` with ``patience``.
Outputs in ``out_dir``: ``blink.pt`` (the student, self-rebuilding, with its preprocessing),
``metrics.json``, ``roc.json``, ``roc.png``, per stage ``{teacher,student}-history.json``,
``-loss.png``, ``-best.pt`` and the resumable ``-last.pt``, and ``clips/`` (the prepared
clips, reused by ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import Dataset

from models.blink import (
    ALPHA,
    FACE_SIZE,
    LAMBDAS,
    MARGIN,
    REGION_SIZE,
    BlinkEyelidNet,
    blink_loss,
    parameter_groups,
    student_from,
    teacher_logits,
)
from models.registry import create_model, model_entry
from streams.errors import ConfigurationError, InputError
from training.clip_data import (
    IMAGE_SUFFIXES,
    FaceFinder,
    clip_indices,
    defaults_help,
    natural_key,
    normalise,
    seed_everything,
)
from training.loop import FitResult, write_json
from training.metrics import binary_metrics
from training.recipe import (
    Roc,
    Stage,
    Task,
    TrainConfig,
    TrainResult,
    add_run_arguments,
    add_source_arguments,
    binary_roc,
    config_values,
    report,
    train,
    validation_start,
)
from workers.face.crops import eye_regions
from workers.face.engine import FaceDetection

log = logging.getLogger(__name__)

MODEL_NAME = "blink-eyelid-motion"
LABELS = ("no_blink", "blink")
LABEL_DIRS = {"blink": 1, "non_blink": 0, "no_blink": 0}
SPLIT_DIRS = {"train": False, "test": True, "val": True}  # name -> is validation
EYES_FILE = "eyes.json"
# The CPN pixel means (RGB) the authors' loader subtracts from [0, 1] images; no division.
PIXEL_MEAN = (122.7717 / 255, 115.9465 / 255, 102.9801 / 255)
PIXEL_STD = (1.0, 1.0, 1.0)
CLIP_LENGTH = 10
EVENT_LEVEL = 0.05  # the simulator truth's closure level above which an eye event runs
NETS: dict[str, dict[str, Any]] = {  # network sizes: the paper's, and a small one for CPU runs
    "paper": {},
    "small": {"attention_widths": (8, 16, 32, 64), "decoder_width": 32, "lstm_hidden": 64},
}
MONITORS = {"val_loss": "min", "accuracy": "max", "precision": "max", "recall": "max",
            "f1": "max", "auc": "max"}
LAYOUT = ("expected ROOT/{blink,non_blink}/<clip_id>/<frames>.png|jpg|bmp (or ROOT/{train,test}/"
          "{blink,non_blink}/<clip_id>/...), optionally with <clip_id>/eyes.json")
# Simulated runs: what the CLI uses for --simulated unless told otherwise. A smaller face and
# network and a faster schedule (12 epochs a stage, rates 2-3x the paper's) so that
# both stages finish in a few CPU minutes.
SIMULATED_DEFAULTS: dict[str, Any] = {
    "epochs": 12, "face_size": (128, 96), "region_size": 48, "net": "small", "lr": 1e-4,
    "peak_lr": 1e-3, "warmup_epochs": 2, "decay_every": 3, "patience": 6}


@dataclass
class BlinkTrainConfig(TrainConfig):
    """Everything a blink training run needs (:class:`training.recipe.TrainConfig` and
    these); defaults are the paper's (§V).

    data_dir or simulated: the clips (see the module docstring). epochs: per stage (teacher,
    then student; ``student_epochs`` overrides the student's). lr/peak_lr/warmup_epochs/
    lr_decay/decay_every: the attention generator's schedule (the rest learns 4×). face_size:
    (H, W) of the face crop; region_size: the coarse eye region's side; clip_length: T.
    fps: frame rate of the clips under ``data_dir`` (recorded in the checkpoint; simulated runs
    record ``sim_fps``). net: "paper" or "small" widths; model_overrides: further builder
    arguments. monitor/patience: early stopping. engine: face backend for clips without
    eyes.json. distill: run the student stage (the paper does). blink_jitter: training windows
    per simulated blink."""

    epochs: int = 100
    student_epochs: int | None = None
    batch_size: int = 8
    lr: float = 5e-5
    peak_lr: float = 3e-4
    warmup_epochs: int = 6
    lr_decay: float = 0.8
    decay_every: int = 8
    lambdas: tuple[float, float, float, float] = LAMBDAS
    margin: float = MARGIN
    alpha: float = ALPHA
    temperature: float = 1.0
    distill: bool = True
    patience: int | None = 20
    face_size: tuple[int, int] = FACE_SIZE
    region_size: int = REGION_SIZE
    clip_length: int = CLIP_LENGTH
    net: str = "paper"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    sim_fps: float = 15.0
    sim_profile: str = "mixed"
    blink_jitter: int = 3

    def __post_init__(self) -> None:
        self.face_size = (int(self.face_size[0]), int(self.face_size[1]))
        super().__post_init__()
        if self.net not in NETS:
            raise ConfigurationError(f"unknown net size {self.net!r}; choose one of "
                                     f"{sorted(NETS)}")
        if self.clip_length < 3:
            raise ConfigurationError(f"clip_length must be at least 3 (motion needs it), got "
                                     f"{self.clip_length}")
        if not 5 <= self.region_size <= min(self.face_size):
            raise ConfigurationError(f"region_size {self.region_size} must be at least 5 and "
                                     f"fit the face crop {self.face_size}")
        if self.decay_every < 1:
            raise ConfigurationError("decay_every must be at least 1")
        if self.model_overrides.get("eyes", "both") != "both" or \
                self.model_overrides.get("num_eyes", 2) != 2:
            raise ConfigurationError("the blink trainer trains eyes='both' with 2 eyes (one "
                                     "label per clip); per-eye models are not supported here")

    def monitors(self) -> dict[str, str]:
        return MONITORS

    def model_args(self) -> dict[str, Any]:
        """The builder's full argument set (defaults included, so the checkpoint rebuilds the
        same network even if defaults change)."""
        return {**model_entry(MODEL_NAME).defaults(), "eyes": "both", "num_eyes": 2,
                "region_size": self.region_size, **NETS[self.net], **self.model_overrides}


@dataclass
class ClipSet:
    """Prepared clips. faces (N, T, H, W, 3) uint8 RGB face crops; centers (N, T, 2, 2)
    float32 eye centres (x, y) in face pixels, image order; labels (N,) int64 (1 blink);
    is_val (N,) bool; ids: one name per clip; skipped: {"clip", "reason"} per dropped clip."""

    faces: np.ndarray
    centers: np.ndarray
    labels: np.ndarray
    is_val: np.ndarray
    ids: list[str]
    skipped: list[dict[str, str]]
    fps: float

    def save(self, folder: Path, key: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("faces", "centers", "labels", "is_val"):
            np.save(folder / f"{name}.npy", getattr(self, name))
        write_json(folder / "clips.json", {"key": key, "ids": self.ids, "skipped": self.skipped,
                                           "fps": self.fps})

    @classmethod
    def load(cls, folder: Path, key: dict[str, Any]) -> ClipSet | None:
        """The clips saved in ``folder`` if they were prepared with ``key``, else None; faces
        memory-mapped."""
        try:
            meta = json.loads((folder / "clips.json").read_text())
            if meta["key"] != json.loads(json.dumps(key)):
                return None
            arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r" if n == "faces" else None)
                      for n in ("faces", "centers", "labels", "is_val")}
        except (OSError, ValueError, KeyError):
            return None
        return cls(**arrays, ids=list(meta["ids"]), skipped=list(meta["skipped"]),
                   fps=float(meta["fps"]))

    def counts(self) -> dict[str, int]:
        val = self.is_val.astype(bool)
        blink = self.labels == 1
        return {"train_clips": int((~val).sum()), "train_blink": int((~val & blink).sum()),
                "val_clips": int(val.sum()), "val_blink": int((val & blink).sum()),
                "skipped_clips": len(self.skipped)}


# ---------------------------------------------------------------- pure helpers


def spread(items: Sequence[int], k: int) -> list[int]:
    """``k`` of ``items`` spread evenly (all of them if there are no more than k)."""
    if k >= len(items):
        return list(items)
    if k <= 0:
        return []
    picks = np.round(np.linspace(0, len(items) - 1, k)).astype(int)
    return [items[i] for i in picks]


def blink_windows(start: int, peak: int, end: int, n: int, length: int, count: int) -> list[int]:
    """Start frames of up to ``count`` windows of ``length`` frames for a blink [start, end]
    in a video of ``n`` frames: the first centred on the peak, the rest shifted but still
    holding the whole event (when it fits), all inside the video, distinct."""
    lo, hi = max(end - length + 1, 0), min(start, n - length)
    centred = min(max(peak - length // 2, 0), max(n - length, 0))
    if lo > hi:  # the event does not fit: only the centred window
        return [centred]
    centred = min(max(centred, lo), hi)
    others = [s for s in range(lo, hi + 1) if s != centred]
    return [centred, *spread(others, count - 1)] if count > 1 else [centred]


def quiet_windows(quiet: np.ndarray, length: int, stride: int) -> list[int]:
    """Start frames of windows of ``length`` frames lying wholly where ``quiet`` (n,) holds,
    scanned with ``stride``."""
    ok = np.convolve(quiet.astype(np.int64), np.ones(length, dtype=np.int64), "valid") == length
    return [s for s in range(0, len(ok), max(stride, 1)) if ok[s]]


@dataclass(frozen=True)
class ClipAugment:
    """One clip's augmentation: mirror, rotation (degrees, counter-clockwise on screen),
    scale, shift (fractions of W, H), brightness offset and contrast gain."""

    flip: bool = False
    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 0.0
    contrast: float = 1.0


def sample_augment(generator: torch.Generator | None = None) -> ClipAugment:
    """A random :class:`ClipAugment` from the documented ranges (torch's RNG)."""
    u = torch.rand(7, generator=generator).tolist()
    return ClipAugment(flip=u[0] < 0.5, angle=(u[1] * 2 - 1) * 10.0, scale=0.9 + 0.2 * u[2],
                       shift=((u[3] * 2 - 1) * 0.05, (u[4] * 2 - 1) * 0.05),
                       brightness=(u[5] * 2 - 1) * 0.15, contrast=0.8 + 0.4 * u[6])


def augment_clip(faces: torch.Tensor, centers: torch.Tensor, aug: ClipAugment
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """faces (T, 3, H, W) RGB in [0, 1], centers (T, 2, 2) (x, y) pixels -> the same clip
    mirrored/rotated/scaled/shifted about the crop centre (zeros where it leaves the crop) and
    photometrically changed, with the eye centres moved alike (and swapped when mirrored, so
    they stay in image order)."""
    _, _, h, w = faces.shape
    a = math.radians(aug.angle)
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]],
                       dtype=torch.float64)
    flip = torch.diag(torch.tensor([-1.0 if aug.flip else 1.0, 1.0], dtype=torch.float64))
    lin = aug.scale * rot @ flip  # continuous pixel coordinates about the centre
    tau = torch.tensor([aug.shift[0] * w, aug.shift[1] * h], dtype=torch.float64)
    half = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    d = torch.diag(half)
    inv = torch.linalg.inv(lin)
    theta = torch.cat([torch.linalg.inv(d) @ inv @ d, (-torch.linalg.inv(d) @ inv @ tau)[:, None]],
                      dim=1)  # output -> input, normalised coordinates (align_corners=False)
    grid = F.affine_grid(theta[None].to(faces.dtype).expand(len(faces), 2, 3), list(faces.shape),
                         align_corners=False)
    out = F.grid_sample(faces, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = ((out * aug.contrast) + aug.brightness).clamp(0, 1)
    u = centers.double() + 0.5 - half
    moved = (u @ lin.T + half + tau - 0.5).to(centers.dtype)
    if aug.flip:
        moved = moved.flip(-2)
    return out, moved


# ---------------------------------------------------------------- preparing clips


def crop_frame(frame_bgr: np.ndarray, box: np.ndarray, eye_centres: np.ndarray,
               face_size: tuple[int, int], region_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's face crop (H, W, 3) uint8 RGB and eye centres (2, 2) in crop pixels, cut as
    the workers cut it (:func:`workers.face.crops.eye_regions`). Raises InputError."""
    detection = FaceDetection(box=np.asarray(box, dtype=np.float64), score=1.0,
                              landmarks5=np.zeros((5, 2)), eye_centres=np.asarray(eye_centres))
    regions = eye_regions(frame_bgr, detection, face_size, region_size)
    return cv2.cvtColor(regions.face, cv2.COLOR_BGR2RGB), regions.eye_centres.astype(np.float32)


class FaceCropper(FaceFinder):
    """The face engine for clip preparation (:class:`training.clip_data.FaceFinder`), cutting the
    driver's face as the workers cut it for the blink network."""

    def __init__(self, engine: str, face_size: tuple[int, int], region_size: int) -> None:
        super().__init__(engine)
        self.face_size, self.region_size = face_size, region_size

    def crop(self, frame_bgr: np.ndarray, step_ms: float = 40.0
             ) -> tuple[np.ndarray, np.ndarray] | None:
        """(face RGB, eye centres) of the driver's face in the next frame, None without one."""
        driver = self.driver(frame_bgr, step_ms)
        if driver is None:
            return None
        try:
            return crop_frame(frame_bgr, driver.box, driver.eye_centres, self.face_size,
                              self.region_size)
        except InputError:
            return None


@dataclass(frozen=True)
class ClipSource:
    """A clip folder of a data directory: its frames in order, label, split and id."""

    folder: Path
    frames: tuple[Path, ...]
    label: int
    is_val: bool | None  # None: no fixed split, decided by val_fraction
    clip_id: str


def _label_dirs(folder: Path) -> list[tuple[Path, int]]:
    return [(p, LABEL_DIRS[p.name.lower()]) for p in sorted(folder.iterdir())
            if p.is_dir() and p.name.lower() in LABEL_DIRS]


def find_clips(root: Path) -> list[ClipSource]:
    """Every clip folder under ``root`` (see the module docstring for the layout). Raises
    InputError, naming the expected layout, for a missing, empty or mis-laid directory."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"blink data directory {root} does not exist; {LAYOUT}")
    splits = [(p, SPLIT_DIRS[p.name.lower()]) for p in sorted(root.iterdir())
              if p.is_dir() and p.name.lower() in SPLIT_DIRS]
    groups: list[tuple[Path, int, bool | None]] = []
    if splits:
        for split, split_is_val in splits:
            groups += [(d, label, split_is_val) for d, label in _label_dirs(split)]
    else:
        groups = [(d, label, None) for d, label in _label_dirs(root)]
    if not groups:
        raise InputError(f"{root} has no blink/non_blink folders; {LAYOUT}")
    clips = []
    for label_dir, label, is_val in groups:
        for folder in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            frames = tuple(sorted((f for f in folder.iterdir()
                                   if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()),
                                  key=lambda f: natural_key(f.name)))
            if frames:
                clip_id = str(folder.relative_to(root))
                clips.append(ClipSource(folder, frames, label, is_val, clip_id))
    if not clips:
        raise InputError(f"{root} has blink/non_blink folders but no clip folders of frames; "
                         f"{LAYOUT}")
    if splits and not any(c.is_val for c in clips):
        raise InputError(f"{root} has a train split but no test/val clips; {LAYOUT}")
    return clips


def _eyes_json(path: Path, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, 2, 2) eye centres and (n, 4) boxes or None from a clip's eyes.json."""
    try:
        data = json.loads(path.read_text())
        centres = np.asarray(data["eye_centers"], dtype=np.float64)
        boxes = data.get("face_boxes")
        boxes_arr = None if boxes is None else np.asarray(boxes, dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: unreadable eyes file ({exc})") from None
    if centres.shape != (n, 2, 2) or (boxes_arr is not None and boxes_arr.shape != (n, 4)):
        raise InputError(f"{path}: expected eye_centers ({n}, 2, 2) and face_boxes ({n}, 4), "
                         f"got {centres.shape} and "
                         f"{None if boxes_arr is None else boxes_arr.shape}")
    return centres, boxes_arr


def prepare_clip(source: ClipSource, length: int, cropper: FaceCropper
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One clip folder -> faces (T, H, W, 3) uint8 RGB, centres (T, 2, 2). Raises InputError
    saying why the clip is unusable (unreadable frame, no face, bad eyes.json)."""
    index = clip_indices(len(source.frames), length)
    eyes_path = source.folder / EYES_FILE
    given = _eyes_json(eyes_path, len(source.frames)) if eyes_path.exists() else None
    crops: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in sorted(set(index.tolist())):
        frame = cv2.imread(str(source.frames[k]), cv2.IMREAD_COLOR)
        if frame is None:
            raise InputError(f"unreadable frame {source.frames[k].name}")
        if given is None:
            if not crops:
                cropper.start_clip(frame.shape)
            found = cropper.crop(frame)
            if found is None:
                raise InputError(f"no face in frame {source.frames[k].name}")
        else:
            centres, boxes = given
            h, w = frame.shape[:2]
            box = boxes[k] if boxes is not None else np.array([0.0, 0.0, w, h])
            found = crop_frame(frame, box, centres[k], cropper.face_size, cropper.region_size)
        crops[k] = found
    return (np.stack([crops[k][0] for k in index.tolist()]),
            np.stack([crops[k][1] for k in index.tolist()]))


def _split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified random hold-out: (N,) bool, ``fraction`` of each class (at least one of a
    class with two or more clips)."""
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        k = round(fraction * len(members)) if len(members) > 1 else 0
        k = min(max(k, 1 if len(members) > 1 else 0), len(members) - 1)
        is_val[rng.permutation(members)[:k]] = True
    return is_val


def _collect(faces: list[np.ndarray], centers: list[np.ndarray], labels: list[int],
             is_val: list[bool], ids: list[str], skipped: list[dict[str, str]], fps: float,
             shape: tuple[int, int, int, int]) -> ClipSet:
    return ClipSet(
        np.stack(faces) if faces else np.zeros((0, *shape), np.uint8),
        np.stack(centers).astype(np.float32) if centers else np.zeros((0, shape[0], 2, 2),
                                                                      np.float32),
        np.asarray(labels, dtype=np.int64), np.asarray(is_val, dtype=bool), ids, skipped, fps)


def clips_from_dir(root: Path, config: BlinkTrainConfig, progress: bool = False) -> ClipSet:
    """Every usable clip under ``root`` (module docstring), cropped and resampled to T."""
    from tqdm import tqdm

    sources = find_clips(root)
    cropper = FaceCropper(config.engine, config.face_size, config.region_size)
    faces, centers, labels, fixed, ids = [], [], [], [], []
    skipped: list[dict[str, str]] = []
    try:
        for source in tqdm(sources, desc="preparing clips", disable=not progress,
                           file=sys.stderr, leave=False):
            try:
                f, c = prepare_clip(source, config.clip_length, cropper)
            except InputError as exc:
                log.warning("skipping clip %s: %s", source.clip_id, exc)
                skipped.append({"clip": source.clip_id, "reason": str(exc)})
                continue
            faces.append(f)
            centers.append(c)
            labels.append(source.label)
            fixed.append(source.is_val)
            ids.append(source.clip_id)
    finally:
        cropper.close()
    label_arr = np.asarray(labels, dtype=np.int64)
    if any(v is None for v in fixed):
        is_val = _split(label_arr, config.val_fraction, config.seed).tolist()
    else:
        is_val = [bool(v) for v in fixed]
    h, w = config.face_size
    return _collect(faces, centers, labels, is_val, ids, skipped, config.fps,
                    (config.clip_length, h, w, 3))


def clips_from_truths(truths: Sequence[Path], config: BlinkTrainConfig) -> ClipSet:
    """Blink and non-blink clips cut from simulator videos along their truth JSON files
    (``vigil.sim.truth/1``, the videos beside them); the last ``val_fraction`` of the drivers
    validate (module docstring)."""
    cropper = FaceCropper(config.engine, config.face_size, config.region_size)
    length = config.clip_length
    faces, centers, labels, is_val, ids = [], [], [], [], []
    skipped: list[dict[str, str]] = []
    try:
        for d, truth_path in enumerate(truths):
            truth = json.loads(truth_path.read_text())
            crops = _read_simulated(Path(truth_path).parent / truth["video"], truth, cropper)
            n = len(crops)
            val_from = validation_start(d, len(truths), n, config.val_fraction)
            windows = simulated_windows(truth, n, length, val_from, config.blink_jitter)
            for s, label, clip_id in windows:
                span = crops[s:s + length]
                if len(span) < length or any(c is None for c in span):
                    reason = "no face in a frame" if len(span) == length else "past the video"
                    log.warning("skipping clip %s: %s", clip_id, reason)
                    skipped.append({"clip": clip_id, "reason": reason})
                    continue
                faces.append(np.stack([c[0] for c in span if c is not None]))
                centers.append(np.stack([c[1] for c in span if c is not None]))
                labels.append(label)
                is_val.append(s >= val_from)
                ids.append(clip_id)
    finally:
        cropper.close()
    h, w = config.face_size
    fps = float(json.loads(Path(truths[0]).read_text())["fps"]) if truths else config.sim_fps
    return _collect(faces, centers, labels, is_val, ids, skipped, fps, (length, h, w, 3))


def simulated_windows(truth: dict[str, Any], n: int, length: int, val_from: int, jitter: int
                      ) -> list[tuple[int, int, str]]:
    """(start frame, label, clip id) of the clips a simulator truth yields for a video of ``n``
    frames: per blink event a window centred on its peak, plus ``jitter`` - 1 shifted ones
    before ``val_from`` (training frames); then, separately for the frames before and from
    ``val_from``, as many quiet windows (closure <= 0.05, face and eyes visible; half-overlapping
    candidates spread evenly) as there are blink windows."""
    frames = truth["frames"]
    closure = (np.asarray(frames["closure_left"]) + np.asarray(frames["closure_right"])) / 2
    visible = np.asarray(frames["face_visible"], bool) & np.asarray(frames["eyes_visible"], bool)
    driver = truth["driver_id"]
    windows: list[tuple[int, int, str]] = []
    for k, event in enumerate(truth["blinks"]):
        count = 1 if event["start_frame"] >= val_from else jitter
        starts = blink_windows(event["start_frame"], event["peak_frame"], event["end_frame"], n,
                               length, count)
        windows += [(s, 1, f"{driver}/blink{k:03d}" + (f"-{j}" if j else ""))
                    for j, s in enumerate(starts)]
    quiet = quiet_windows(((closure <= EVENT_LEVEL) & visible)[:n], length, length // 2)
    for held_out in (False, True):
        blinks = sum(1 for s, label, _ in windows if label == 1 and (s >= val_from) == held_out)
        pool = [s for s in quiet if (s >= val_from) == held_out]
        windows += [(s, 0, f"{driver}/quiet{s:05d}") for s in spread(pool, blinks)]
    return windows


def _read_simulated(video: Path, truth: dict[str, Any], cropper: FaceCropper
                    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per frame of a simulated video: the driver's face crop and eye centres, or None."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise InputError(f"cannot read simulated video {video}")
    step = 1000.0 / float(truth["fps"])
    crops: list[tuple[np.ndarray, np.ndarray] | None] = []
    try:
        ok, frame = capture.read()
        if ok:
            cropper.start_clip(frame.shape)
        while ok:
            crops.append(cropper.crop(frame, step))
            ok, frame = capture.read()
    finally:
        capture.release()
    return crops


# ---------------------------------------------------------------- dataset and training


class BlinkClips(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Samples of a :class:`ClipSet`: faces (T, 3, H, W) float32 normalised (module
    docstring), eye_centers (T, 2, 2) float32, label () int64; augmented when asked."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, augment: bool = False) -> None:
        self.clips, self.indices, self.augment = clips, np.asarray(indices), augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = int(self.indices[i])
        faces = torch.from_numpy(np.array(self.clips.faces[k])).permute(0, 3, 1, 2).float() / 255
        centers = torch.from_numpy(np.array(self.clips.centers[k], dtype=np.float32))
        if self.augment:
            faces, centers = augment_clip(faces, centers, sample_augment())
        label = torch.tensor(int(self.clips.labels[k]))
        return normalise(faces, PIXEL_MEAN, PIXEL_STD), centers, label


def lr_factor(epoch: int, config: BlinkTrainConfig) -> float:
    """The attention generator's learning rate at ``epoch`` over ``config.lr`` (§V): 1 before
    ``warmup_epochs``, then peak_lr/lr decayed by ``lr_decay`` every ``decay_every`` epochs."""
    if epoch < config.warmup_epochs:
        return 1.0
    return config.peak_lr / config.lr * config.lr_decay ** (
        (epoch - config.warmup_epochs) // config.decay_every)


@dataclass
class BlinkResult(TrainResult):
    """What :func:`train_blink` produced: the recipe's result with its two stages."""

    @property
    def teacher(self) -> FitResult:
        return self.fits["teacher"]

    @property
    def student(self) -> FitResult | None:
        return self.fits.get("student")


def preprocessing(config: BlinkTrainConfig, fps: float) -> dict[str, Any]:
    """What the checkpoint tells the workers about the inputs."""
    return {"clip_length": config.clip_length, "face_size": list(config.face_size),
            "region_size": config.region_size, "mean": list(PIXEL_MEAN), "std": list(PIXEL_STD),
            "color": "RGB", "scale": 1 / 255, "labels": list(LABELS), "fps": float(fps),
            "eye_order": "image", "crop": "workers.face.crops.eye_regions"}


class BlinkTask(Task[BlinkTrainConfig]):
    """The blink network in the recipe: labelled clips with eye centres, a teacher on L_T,
    then a student self-distilled on L_S (Adam, the paper's two-rate schedule each), binary
    blink metrics."""

    name = "blink"
    model_name = MODEL_NAME
    layout = LAYOUT
    data_fields = ("face_size", "region_size", "clip_length", "engine", "seed", "val_fraction",
                   "fps")
    sim_fields = ("sim_drivers", "sim_seconds", "sim_fps", "sim_profile", "blink_jitter")
    stage_names = ("teacher", "student")
    drop_last = False
    result_type = BlinkResult

    def load_prepared(self, folder: Path, key: dict[str, Any]) -> ClipSet | None:
        return ClipSet.load(folder, key)

    def keep(self, data: Any, folder: Path, key: dict[str, Any]) -> None:
        data.save(folder, key)

    def from_dir(self, root: Path, folder: Path) -> ClipSet:
        return clips_from_dir(root, self.config, self.config.progress)

    def from_truths(self, truths: Sequence[Path], folder: Path) -> ClipSet:
        return clips_from_truths(truths, self.config)

    def counts(self, data: ClipSet) -> dict[str, Any]:
        return data.counts()

    def check(self, data: ClipSet, found: dict[str, Any]) -> None:
        """InputError unless both classes are there to train on and clips to validate on."""
        train = ~data.is_val
        for label, name in enumerate(LABELS):
            if not (data.labels[train] == label).any():
                raise InputError(f"{self.where()}: no usable {name} clips to train on after "
                                 f"skipping {found['skipped_clips']} clip(s) ({found}); "
                                 + self.hint())
        if not data.is_val.any():
            raise InputError(f"no validation clips ({found}); add clips or a test split")

    def dataset(self, data: ClipSet, indices: np.ndarray, augment: bool = False
                ) -> BlinkClips:
        return BlinkClips(data, indices, augment)

    def preprocessing(self, fps: float) -> dict[str, Any]:
        return preprocessing(self.config, fps)

    def stages(self) -> Iterator[Stage]:
        config = self.config
        teacher = create_model(MODEL_NAME, **config.model_args())
        assert isinstance(teacher, BlinkEyelidNet)
        yield self._stage("teacher", teacher, config.epochs, None)
        if config.distill:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            seed_everything(config.seed + 1)
            student = student_from(teacher)
            yield self._stage("student", student, config.student_epochs or config.epochs,
                              teacher)

    def _stage(self, name: str, model: BlinkEyelidNet, epochs: int,
               teacher: nn.Module | None) -> Stage:
        config = self.config
        optimizer = torch.optim.Adam(parameter_groups(model, config.lr))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: lr_factor(epoch, config))
        loss = None if teacher is None else partial(self.loss, teacher=teacher)
        return Stage(name, epochs, model, optimizer, scheduler, loss)

    def loss(self, model: nn.Module, batch: Any, teacher: nn.Module | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, logits (B, 2)) of a batch: L_T without a teacher, L_S with one."""
        faces, centers, labels = batch
        assert isinstance(model, BlinkEyelidNet)
        details = model.forward_with_details(faces, centers)
        soft = None if teacher is None else teacher_logits(teacher, faces, centers)
        config = self.config
        losses = blink_loss(details, labels, centers, soft, lambdas=config.lambdas,
                            margin=config.margin, alpha=config.alpha,
                            temperature=config.temperature)
        return losses.total, details.logits

    def readout(self, outputs: torch.Tensor, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """Labels (B,) and blink probabilities (B,)."""
        return batch[2].cpu().numpy(), torch.softmax(outputs.float(), dim=-1)[:, 1].cpu().numpy()

    def metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return binary_metrics(truth, outputs)

    def roc(self, truth: np.ndarray, outputs: np.ndarray) -> Roc | None:
        return binary_roc(truth, outputs, "blink vs no blink (validation)")

    def headline(self, metrics: dict[str, Any]) -> str:
        return (f"accuracy {metrics['accuracy']:.3f}, precision {metrics['precision']:.3f}, "
                f"recall {metrics['recall']:.3f}, F1 {metrics['f1']:.3f}, AUC "
                f"{metrics['auc']:.3f}")


def train_blink(config: BlinkTrainConfig) -> BlinkResult:
    """Prepares the clips, trains the teacher (L_T), then the student (L_S, distilled from
    the teacher) and writes the outputs listed in the module docstring."""
    result = train(BlinkTask(config))
    assert isinstance(result, BlinkResult)
    return result


# ---------------------------------------------------------------- command line


def _help(name: str) -> str:
    return defaults_help(BlinkTrainConfig, SIMULATED_DEFAULTS, name)


# the flags beyond :data:`training.recipe.COMMON_FLAGS` whose default depends on --simulated
_FLAGS = ("student_epochs", "peak_lr", "warmup_epochs", "decay_every", "face_size",
          "region_size", "net", "blink_jitter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vigil train blink``; unset ones take the paper's values, or
    :data:`SIMULATED_DEFAULTS` with ``--simulated``."""
    add_source_arguments(
        parser, "trimmed clips: DIR/{blink,non_blink}/<clip>/<frames> (or DIR/{train,test}/...),"
        " optional <clip>/eyes.json",
        "train on driver-simulator clips (small CPU configuration)")
    add = parser.add_argument
    add("--epochs", type=int, help="epochs per stage " + _help("epochs"))
    add("--student-epochs", type=int, help="student stage epochs (default: --epochs)")
    add("--no-distill", action="store_true", help="train the teacher only (no student stage)")
    add("--batch-size", type=int, help=_help("batch_size"))
    add("--lr", type=float, help="attention generator's first learning rate, the rest 4x "
        + _help("lr"))
    add("--peak-lr", type=float, help="its rate after the warm-up " + _help("peak_lr"))
    add("--warmup-epochs", type=int, help=_help("warmup_epochs"))
    add("--decay-every", type=int, help="x0.8 every this many epochs after the warm-up "
        + _help("decay_every"))
    add("--patience", type=int, help="early stopping, 0 disables " + _help("patience"))
    add("--monitor", choices=sorted(MONITORS), help="validation metric deciding the best "
        "epoch " + _help("monitor"))
    add("--face-size", type=int, nargs=2, metavar=("H", "W"), help=_help("face_size"))
    add("--region-size", type=int, help="coarse eye region side " + _help("region_size"))
    add("--clip-length", type=int, help="frames per clip " + _help("clip_length"))
    add("--net", choices=sorted(NETS), help="network widths " + _help("net"))
    add("--fps", type=float, help="frame rate of the --data clips, recorded in the checkpoint "
        + _help("fps"))
    add("--val-fraction", type=float, help="held-out share without a test split, of the "
        "drivers with --simulated " + _help("val_fraction"))
    add("--engine", help="face engine for clips without eyes.json " + _help("engine"))
    add("--blink-jitter", type=int, help="training windows per simulated blink "
        + _help("blink_jitter"))
    add_run_arguments(parser, BlinkTrainConfig, SIMULATED_DEFAULTS)


def config_from_args(args: argparse.Namespace) -> BlinkTrainConfig:
    """A :class:`BlinkTrainConfig` from parsed flags (see :func:`add_arguments`)."""
    values = config_values(BlinkTrainConfig, SIMULATED_DEFAULTS, _FLAGS, args)
    values["face_size"] = tuple(values["face_size"])
    return BlinkTrainConfig(distill=not args.no_distill, **values)


def run(args: argparse.Namespace) -> int:
    """``vigil train blink``: trains and reports; VigilErrors propagate to the CLI."""
    return report(train_blink(config_from_args(args)), args)
