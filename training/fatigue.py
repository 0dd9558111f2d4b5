"""`vigil train fatigue`: the fatigue network (``fatigue-nonlocal-r3d18``, :mod:`models.fatigue`)
trained as in the fatigue paper (``fatigue-nonlocal-3d-resnet.md``) on DLFD-style videos with one
fatigue score per video, from disk or from the driver simulator.

Data layout (``--data ROOT``)::

    ROOT/videos/<name>.mp4|avi|mov|mkv|webm|m4v|mpg|mpeg    the videos
    ROOT/labels.csv                                          one row per video

``labels.csv`` has a header with ``video`` (the file name, with or without its suffix) and
either ``score`` (the fatigue score in [0, 1], 0 alert .. 1 fatigued, as the authors' README
normalises it) or ``level`` (DLFD's annotator scale 1 = very alert .. 5 = very fatigued, half
points and annotator means allowed, mapped linearly to score = (level - 1) / 4); an optional
``subject`` column keeps each person's videos on one side of the split. With a fixed split,
``ROOT/train/`` and ``ROOT/test/`` (``val`` is accepted for ``test``) are each laid out as
above; without one, ``val_fraction`` of the subjects (of the videos when there is no subject
column) is held out at random (seeded). A missing, empty or wrongly laid-out ROOT or a
labels.csv without those columns is an InputError naming the expected layout. A label row
that is unusable (score outside [0, 1], level outside [1, 5], not a number, duplicated, or its
video missing), a video that cannot be decoded, and a clip with a frame where the face engine
finds no face are skipped with a warning and counted (``skipped_clips`` in the result and
metrics); they never stop training. Videos without a label row are ignored with a warning.

Clips (§2.5): "every 32 frames were divided from each video": consecutive, non-overlapping
windows of ``clip_length`` frames (32), a tail shorter than that dropped; a video shorter than
one clip gives one clip with its first and last frames repeated. Every clip takes its video's
score. Each frame is cut as the paper's MTCNN step does it: with ``crop="align"`` (default) the
face engine (``workers.face``, default backend ``mediapipe``; the driver-selection tracker
picks one face) finds the face and its 5 landmarks, and a similarity transform aligns them on
the ArcFace template at ``size`` × ``size`` (:func:`workers.face.crops.align_face`); with
``crop="none"`` the whole frame is resized (for videos that already are aligned face crops).
Frames are RGB in [0, 1], normalised with the ImageNet mean/std. A sample is clip (3, T, S, S)
float32 (Conv3d layout) and score () float32.

Augmentation (training only, §2.5/§3.1.1): the paper's six (horizontal flip, brightness up,
brightness down, Gaussian blur, saturation, contrast), each with probability 0.5, drawn once
per clip and applied identically to all its frames (:mod:`training.augment`).

Simulated data (``--simulated``): ``training.simulator.simulate_set`` renders drivers (real
faces with eyelid closure, yawns, head motion, lighting and occlusion along ground-truth
timelines; default 3 drivers × 40 s at 10 fps, "drowsy" profile, so every video holds slow
blinks, microsleeps and yawns between calmer stretches), the face engine reads the videos, and
windows of T frames are cut every ``sim_stride`` frames. A window's score comes from the truth
it was rendered from (:func:`simulated_score`): max(eye, yawn), eye = (PERCLOS + mean closure) /
2 over the window (PERCLOS: share of face-visible frames with mean closure >= 0.8), yawn = mean
mouth opening; so alert blinking scores about 0.05, a window half filled by a microsleep about
0.5 and a yawn up to 1. The last ``val_fraction`` of the drivers validate (at least one; with a
single driver the last part of its video; training windows never reach into it). Simulated runs
use :data:`SIMULATED_DEFAULTS` (48×48 crops, 3 epochs, batch 4, a faster learning rate): a few
CPU minutes. The network has no width overrides, so it keeps its full ResNet-18 widths there
too.

Training (§2.5, the MSE + CE setting, :class:`FatigueTrainConfig` defaults): Adam (default
betas), learning rate 1e-5, weight decay 1e-3, batch 16, 224×224, 32 frames; the rate ×0.2 at
1/3 and 2/3 of the epochs; 500 epochs (the authors' README) with early stopping after 20
epochs without improvement (§2.5); L = α·CE + MSE with α = 0.1 and 10 bins (README). The paper
starts from a 2D ResNet-18 pretrained on MS-Celeb-1M inflated to 3D; none ships here, so the
network starts from scratch unless ``init_2d`` names a torchvision-layout ResNet-18 state dict,
which is inflated (:func:`models.resnet.inflate_state_dict`).

Metrics on the validation clips: ``val_loss``, ``mae`` and ``rmse`` of the expected score,
``bin_accuracy`` (the arg-max bin against the score's bin), and for "fatigued" (score >= 0.5)
against not: ``accuracy``, ``precision``, ``recall``, ``f1`` at predicted score >= 0.5 and
``auc`` (ROC-AUC of the predicted score). Outputs in ``out_dir``: ``fatigue.pt`` (the best
model, self-rebuilding, with its preprocessing), ``metrics.json``, ``roc.json`` and ``roc.png``
(fatigued vs not), ``fatigue-history.json``, ``fatigue-loss.png``, ``fatigue-best.pt``, the
resumable ``fatigue-last.pt``, and ``clips/`` (the prepared clips, reused by ``--resume``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from models.fatigue import FatigueNet, expectation, fatigue_loss, score_bins
from models.registry import create_model, model_entry
from streams.errors import ConfigurationError, InputError
from training.augment import SIX, apply_photo_augment, sample_photo_augment
from training.clip_data import (
    CROPS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIDEO_SUFFIXES,
    ClipData,
    ClipWriter,
    FrameCropper,
    clip_indices,
    crop_frames,
    defaults_help,
    init_trunk,
    normalise,
    split_groups,
    video_fps,
    video_frames,
)
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
    training_windows,
    validation_start,
)

log = logging.getLogger(__name__)

MODEL_NAME = "fatigue-nonlocal-r3d18"
STAGE = "fatigue"
SPLIT_DIRS = {"train": False, "test": True, "val": True}  # name -> is validation
LABELS_FILE = "labels.csv"
FATIGUED = 0.5  # scores at or above this count as "fatigued" for accuracy, F1 and ROC
CLOSED_LEVEL = 0.8  # the simulator truth's PERCLOS level
MONITORS = {"val_loss": "min", "mae": "min", "rmse": "min", "bin_accuracy": "max",
            "accuracy": "max", "f1": "max", "auc": "max"}
LAYOUT = ("expected ROOT/videos/<name>.mp4|avi|mov|... and ROOT/labels.csv with columns video "
          "and score (0-1) or level (1-5), optional subject (or ROOT/{train,test}/ each laid "
          "out so)")
# Simulated runs: what the CLI uses for --simulated unless told otherwise: 48x48 crops, a
# batch of 4 and a rate 100x the paper's (which needs hundreds of epochs) without decay, so
# that a run finishes in a few CPU minutes.
SIMULATED_DEFAULTS: dict[str, Any] = {
    "epochs": 3, "size": 48, "batch_size": 4, "lr": 1e-3, "lr_decay": 1.0, "patience": None,
    "weight_decay": 0.0}


@dataclass
class FatigueTrainConfig(TrainConfig):
    """Everything a fatigue training run needs (:class:`training.recipe.TrainConfig` and
    these); defaults are the paper's (§2.5).

    data_dir or simulated: the videos (see the module docstring). lr/weight_decay: Adam's;
    lr_decay: the factor at 1/3 and 2/3 of ``epochs``. alpha/bins/hidden/dropout: the loss and
    head (:mod:`models.fatigue`). size: S of the S×S crops; clip_length: T. crop: "align" or
    "none"; engine: the face backend for "align". fps: frame rate assumed for videos that do
    not say. init_2d: a 2D ResNet-18 state dict to inflate into the trunk. monitor/patience:
    early stopping (patience None: never). sim_stride: frames between simulated windows."""

    epochs: int = 500
    batch_size: int = 16
    lr: float = 1e-5
    weight_decay: float = 1e-3
    lr_decay: float = 0.2
    alpha: float = 0.1
    bins: int = 10
    hidden: int = 256
    dropout: float = 0.5
    patience: int | None = 20
    size: int = 224
    clip_length: int = 32
    crop: str = "align"
    init_2d: Path | None = None
    sim_seconds: float = 40.0
    sim_stride: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        self.init_2d = None if self.init_2d is None else Path(self.init_2d)
        if self.crop not in CROPS:
            raise ConfigurationError(f"unknown crop {self.crop!r}; choose one of {CROPS}")
        # The trunk halves time three times and space five times.
        if self.clip_length < 8 or self.size < 32:
            raise ConfigurationError(f"clip_length must be at least 8 and size at least 32, "
                                     f"got {self.clip_length} and {self.size}")
        if self.bins < 2 or self.sim_stride < 1:
            raise ConfigurationError("bins must be at least 2, sim_stride at least 1")

    def monitors(self) -> dict[str, str]:
        return MONITORS

    def model_args(self) -> dict[str, Any]:
        """The builder's full argument set (defaults included)."""
        return {**model_entry(MODEL_NAME).defaults(), "bins": self.bins, "hidden": self.hidden,
                "dropout": self.dropout}


# ---------------------------------------------------------------- the layout


@dataclass(frozen=True)
class VideoSource:
    """A labelled video of a data directory: path, score in [0, 1], split (None: decided by
    val_fraction), id (its path under ROOT) and group (its subject, else its id)."""

    path: Path
    score: float
    is_val: bool | None
    video_id: str
    group: str


def _score(row: dict[str, str], column: str) -> float:
    """A label row's score in [0, 1]; ValueError saying why not."""
    value = float(row[column])
    if column == "level":
        if not 1.0 <= value <= 5.0:
            raise ValueError(f"level {value} outside 1-5")
        return (value - 1.0) / 4.0
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"score {value} outside [0, 1]")
    return value


def _read_split(folder: Path, root: Path, is_val: bool | None
                ) -> tuple[list[VideoSource], list[dict[str, str]]]:
    """The labelled videos of one split folder, and the rows skipped (with why)."""
    labels, videos_dir = folder / LABELS_FILE, folder / "videos"
    if not labels.is_file() or not videos_dir.is_dir():
        raise InputError(f"{folder} has no {LABELS_FILE} and videos/ folder; {LAYOUT}")
    videos = {p.name: p for p in sorted(videos_dir.iterdir())
              if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}
    by_stem = {p.stem: p for p in videos.values()}
    try:
        with labels.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{labels}: unreadable ({exc}); {LAYOUT}") from None
    column = "score" if "score" in header else "level" if "level" in header else None
    if "video" not in header or column is None:
        raise InputError(f"{labels} has columns {header}, not video and score or level; "
                         f"{LAYOUT}")
    sources: list[VideoSource] = []
    skipped: list[dict[str, str]] = []
    seen: set[Path] = set()
    for line, row in enumerate(rows, start=2):
        name = (row.get("video") or "").strip()
        clip_id = str((videos_dir / name).relative_to(root)) if name else f"{labels.name}:{line}"
        path = videos.get(name) or by_stem.get(name)
        try:
            if path is None:
                raise ValueError(f"no video {name!r} in {videos_dir.relative_to(root)}")
            if path in seen:
                raise ValueError(f"a second label row for {path.name}")
            seen.add(path)
            score = _score(row, column)
        except (ValueError, TypeError) as exc:
            log.warning("skipping %s (%s line %d): %s", clip_id, labels.name, line, exc)
            skipped.append({"clip": clip_id, "reason": f"{labels.name} line {line}: {exc}"})
            continue
        video_id = str(path.relative_to(root))
        subject = (row.get("subject") or "").strip()
        sources.append(VideoSource(path, score, is_val, video_id,
                                   f"subject:{subject}" if subject else video_id))
    unlabelled = sorted(set(videos.values()) - seen)
    if unlabelled:
        log.warning("%d video(s) in %s have no row in %s and are ignored: %s", len(unlabelled),
                    videos_dir, labels.name, ", ".join(p.name for p in unlabelled[:5]))
    return sources, skipped


def find_videos(root: Path) -> tuple[list[VideoSource], list[dict[str, str]]]:
    """Every labelled video under ``root`` (module docstring) and the label rows skipped.
    Raises InputError, naming the expected layout, for a missing or mis-laid directory or one
    with no usable video."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"fatigue data directory {root} does not exist; {LAYOUT}")
    splits: list[tuple[Path, bool | None]] = [
        (p, SPLIT_DIRS[p.name.lower()]) for p in sorted(root.iterdir())
        if p.is_dir() and p.name.lower() in SPLIT_DIRS]
    sources: list[VideoSource] = []
    skipped: list[dict[str, str]] = []
    for folder, is_val in splits or [(root, None)]:
        found, dropped = _read_split(folder, root, is_val)
        sources += found
        skipped += dropped
    if not sources:
        raise InputError(f"{root} has no usable labelled video ({len(skipped)} label row(s) "
                         f"skipped); {LAYOUT}")
    if splits and not any(s.is_val for s in sources):
        raise InputError(f"{root} has a train split but no test/val videos; {LAYOUT}")
    return sources, skipped


# ---------------------------------------------------------------- preparing clips


def simulated_score(frames: dict[str, Any], start: int, length: int) -> float:
    """The fatigue score in [0, 1] of frames [start, start + length) of a simulator truth's
    ``frames``: max(eye, yawn), eye = (PERCLOS + mean closure) / 2 (PERCLOS over the
    face-visible frames, closure = mean of both eyes), yawn = mean mouth opening."""
    span = slice(start, start + length)
    closure = (np.asarray(frames["closure_left"][span], np.float64)
               + np.asarray(frames["closure_right"][span], np.float64)) / 2
    visible = np.asarray(frames["face_visible"][span], bool)
    perclos = float(np.mean(closure[visible] >= CLOSED_LEVEL)) if visible.any() else 0.0
    eye = (perclos + float(closure.mean())) / 2
    yawn = float(np.mean(frames["mouth_open"][span]))
    return float(np.clip(max(eye, yawn), 0.0, 1.0))


def _add_clip(writer: ClipWriter, crops: Sequence[np.ndarray | None], first_frame: int,
              score: float, clip_id: str, group: str, is_val: bool | None) -> None:
    missing = [k for k, c in enumerate(crops) if c is None]
    if missing:
        reason = f"no face in frame {first_frame + missing[0]}"
        log.warning("skipping clip %s: %s", clip_id, reason)
        writer.skip(clip_id, reason)
        return
    writer.add(np.stack([c for c in crops if c is not None]), np.asarray(score, np.float32),
               clip_id, group, is_val)


def prepare_video(source: VideoSource, config: FatigueTrainConfig, cropper: FrameCropper,
                  writer: ClipWriter) -> float:
    """Cuts one video into clips (module docstring) and adds them to ``writer``; returns the
    video's frame rate. Raises InputError for a video that cannot be decoded."""
    fps = video_fps(source.path, config.fps)
    length, buffer, emitted = config.clip_length, [], 0
    for k, crop in enumerate(crop_frames(video_frames(source.path), cropper, 1000.0 / fps)):
        buffer.append(crop)
        if len(buffer) == length:
            _add_clip(writer, buffer, k + 1 - length, source.score,
                      f"{source.video_id}#{emitted}", source.group, source.is_val)
            buffer, emitted = [], emitted + 1
    if not emitted and buffer:  # shorter than one clip: pad by repeating the ends
        padded = [buffer[i] for i in clip_indices(len(buffer), length).tolist()]
        _add_clip(writer, padded, 0, source.score, f"{source.video_id}#0", source.group,
                  source.is_val)
    return fps


def clips_from_dir(root: Path, config: FatigueTrainConfig, folder: Path) -> ClipData:
    """Every usable clip of the videos under ``root``, prepared into ``folder``."""
    from tqdm import tqdm

    sources, label_skips = find_videos(root)
    if not any(s.is_val is not None for s in sources):
        held = split_groups([s.group for s in sources], config.val_fraction, config.seed)
        sources = [VideoSource(s.path, s.score, bool(v), s.video_id, s.group)
                   for s, v in zip(sources, held, strict=True)]
    writer = ClipWriter(folder, config.clip_length, config.size)
    writer.skipped += label_skips
    cropper = FrameCropper(config.crop, config.size, config.engine)
    rates = []
    try:
        for source in tqdm(sources, desc="preparing clips", disable=not config.progress,
                           file=sys.stderr, leave=False):
            try:
                rates.append(prepare_video(source, config, cropper, writer))
            except InputError as exc:
                log.warning("skipping video %s: %s", source.video_id, exc)
                writer.skip(source.video_id, str(exc))
    finally:
        cropper.close()
        writer.close()
    fps = statistics.median(rates) if rates else config.fps
    return writer.finish(np.asarray(writer.fixed, dtype=bool), fps, _data_key(config), ())


def clips_from_truths(truths: Sequence[Path], config: FatigueTrainConfig, folder: Path
                      ) -> ClipData:
    """Scored windows cut from simulator videos along their truth JSON files
    (``vigil.sim.truth/1``, the videos beside them); the last ``val_fraction`` of the drivers
    validate (module docstring)."""
    length = config.clip_length
    writer = ClipWriter(folder, length, config.size)
    cropper = FrameCropper(config.crop, config.size, config.engine)
    fps = config.sim_fps
    try:
        for d, truth_path in enumerate(truths):
            truth = json.loads(Path(truth_path).read_text())
            fps = float(truth["fps"])
            video = Path(truth_path).parent / truth["video"]
            crops = list(crop_frames(video_frames(video), cropper, 1000.0 / fps))
            n = len(crops)
            val_from = validation_start(d, len(truths), n, config.val_fraction)
            for s, is_val in training_windows(n, length, config.sim_stride, val_from):
                score = simulated_score(truth["frames"], s, length)
                _add_clip(writer, crops[s:s + length], s, score,
                          f"{truth['driver_id']}/{s:05d}", truth["driver_id"], is_val)
    finally:
        cropper.close()
        writer.close()
    return writer.finish(np.asarray(writer.fixed, dtype=bool), fps, _data_key(config), ())


def _data_key(config: FatigueTrainConfig) -> dict[str, Any]:
    return FatigueTask(config).data_key()


def counts(data: ClipData) -> dict[str, Any]:
    val = data.is_val.astype(bool)
    fatigued = data.targets >= FATIGUED
    return {"train_clips": int((~val).sum()), "train_fatigued": int((~val & fatigued).sum()),
            "val_clips": int(val.sum()), "val_fatigued": int((val & fatigued).sum()),
            "train_mean_score": float(data.targets[~val].mean()) if (~val).any() else None,
            "skipped_clips": len(data.skipped)}


# ---------------------------------------------------------------- dataset and training


class FatigueClips(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Samples of a :class:`ClipData`: clip (3, T, S, S) float32 normalised (module
    docstring), score () float32; the six augmentations, one draw a clip, when asked."""

    def __init__(self, data: ClipData, indices: np.ndarray, augment: bool = False) -> None:
        self.data, self.indices, self.augment = data, np.asarray(indices), augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(self.indices[i])
        frames = torch.from_numpy(np.array(self.data.frames[k])).permute(0, 3, 1, 2).float()
        frames = frames / 255  # (T, 3, S, S)
        if self.augment:
            frames = apply_photo_augment(frames, sample_photo_augment(SIX))
        clip = normalise(frames, IMAGENET_MEAN, IMAGENET_STD).permute(1, 0, 2, 3)
        return clip.contiguous(), torch.tensor(float(self.data.targets[k]))


def fatigue_metrics(scores: np.ndarray, predicted: np.ndarray, bin_probabilities: np.ndarray
                    ) -> dict[str, float]:
    """scores (N,) true, predicted (N,) expected scores, bin_probabilities (N, k) -> mae,
    rmse, bin_accuracy, and accuracy/precision/recall/f1/auc of fatigued (>= 0.5) vs not."""
    if not len(scores):
        return {"mae": math.nan, "rmse": math.nan, "bin_accuracy": math.nan,
                **binary_metrics(np.zeros(0), np.zeros(0))}
    error = predicted - scores
    bins = score_bins(torch.from_numpy(scores), bin_probabilities.shape[1]).numpy()
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())),
            "bin_accuracy": float((bin_probabilities.argmax(1) == bins).mean()),
            **binary_metrics(scores >= FATIGUED, predicted, threshold=FATIGUED)}


def expected_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) logits -> predicted scores (N,) (the expectation transform) and bin
    probabilities (N, k)."""
    if not len(logits):
        return np.zeros(0), np.zeros((0, 2))
    tensor = torch.from_numpy(logits)
    return expectation(tensor).numpy(), torch.softmax(tensor, -1).numpy()


def preprocessing(config: FatigueTrainConfig, fps: float) -> dict[str, Any]:
    """What the checkpoint tells the workers about the inputs."""
    return {"clip_length": config.clip_length, "size": [config.size, config.size],
            "layout": "(B, 3, T, H, W)", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "color": "RGB", "scale": 1 / 255, "fps": float(fps), "bins": config.bins,
            "labels": [f"{i / config.bins:g}-{(i + 1) / config.bins:g}"
                       for i in range(config.bins)],
            "score": "0 alert .. 1 fatigued", "fatigued_threshold": FATIGUED,
            "crop": "workers.face.crops.align_face" if config.crop == "align" else "none"}


def initial_model(config: FatigueTrainConfig) -> FatigueNet:
    """The network to train: fresh, or its trunk inflated from ``config.init_2d``."""
    model = create_model(MODEL_NAME, **config.model_args())
    assert isinstance(model, FatigueNet)
    if config.init_2d is not None:
        init_trunk(model.backbone, config.init_2d)
    return model


class FatigueTask(Task[FatigueTrainConfig]):
    """The fatigue network in the recipe: scored clips, Adam with the rate ×lr_decay at 1/3
    and 2/3 of the epochs, α·CE + MSE, regression and fatigued-vs-not metrics."""

    name = STAGE
    model_name = MODEL_NAME
    layout = LAYOUT
    data_fields = ("size", "clip_length", "crop", "engine", "seed", "val_fraction", "fps")
    sim_fields = ("sim_drivers", "sim_seconds", "sim_fps", "sim_profile", "sim_stride")
    stage_names = (STAGE,)
    threshold = FATIGUED

    def from_dir(self, root: Path, folder: Path) -> ClipData:
        return clips_from_dir(root, self.config, folder)

    def from_truths(self, truths: Sequence[Path], folder: Path) -> ClipData:
        return clips_from_truths(truths, self.config, folder)

    def counts(self, data: ClipData) -> dict[str, Any]:
        return counts(data)

    def dataset(self, data: ClipData, indices: np.ndarray, augment: bool = False
                ) -> FatigueClips:
        return FatigueClips(data, indices, augment)

    def preprocessing(self, fps: float) -> dict[str, Any]:
        return preprocessing(self.config, fps)

    def stages(self) -> Iterator[Stage]:
        config = self.config
        model = initial_model(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
        milestones = sorted({max(1, round(config.epochs / 3)),
                             max(1, round(2 * config.epochs / 3))})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, config.lr_decay)
        yield Stage(STAGE, config.epochs, model, optimizer, scheduler)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """clips (B, 3, T, S, S), scores (B,) -> (α·CE + MSE, logits (B, k))."""
        clips, scores = batch
        logits = model(clips).float()
        return fatigue_loss(logits, scores, self.config.alpha), logits

    def readout(self, outputs: torch.Tensor, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        return batch[1].cpu().numpy(), outputs.cpu().numpy()

    def metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return fatigue_metrics(truth, *expected_scores(outputs))

    def roc(self, truth: np.ndarray, outputs: np.ndarray) -> Roc | None:
        return binary_roc(truth >= FATIGUED, expected_scores(outputs)[0],
                          "fatigued (score >= 0.5) vs not (validation)")

    def headline(self, metrics: dict[str, Any]) -> str:
        return (f"MAE {metrics['mae']:.3f}, RMSE {metrics['rmse']:.3f}, bin accuracy "
                f"{metrics['bin_accuracy']:.3f}, fatigued accuracy {metrics['accuracy']:.3f}, "
                f"F1 {metrics['f1']:.3f}, AUC {metrics['auc']:.3f}")


def train_fatigue(config: FatigueTrainConfig) -> TrainResult:
    """Prepares the clips, trains, and writes the outputs listed in the module docstring."""
    return train(FatigueTask(config))


# ---------------------------------------------------------------- command line


def _help(name: str) -> str:
    return defaults_help(FatigueTrainConfig, SIMULATED_DEFAULTS, name)


# the flags beyond :data:`training.recipe.COMMON_FLAGS` whose default depends on --simulated
_FLAGS = ("weight_decay", "lr_decay", "alpha", "bins", "size", "crop", "sim_stride")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vigil train fatigue``; unset ones take the paper's values, or
    :data:`SIMULATED_DEFAULTS` with ``--simulated``."""
    add_source_arguments(
        parser, "DIR/videos/<name>.mp4|avi|... and DIR/labels.csv (video, score 0-1 or level "
        "1-5, optional subject), or DIR/{train,test}/ each so",
        "train on scored driver-simulator clips (small CPU configuration)")
    add = parser.add_argument
    add("--epochs", type=int, help=_help("epochs"))
    add("--batch-size", type=int, help=_help("batch_size"))
    add("--lr", type=float, help="Adam learning rate " + _help("lr"))
    add("--weight-decay", type=float, help=_help("weight_decay"))
    add("--lr-decay", type=float, help="rate factor at 1/3 and 2/3 of the epochs "
        + _help("lr_decay"))
    add("--alpha", type=float, help="weight of the cross-entropy term " + _help("alpha"))
    add("--bins", type=int, help="fatigue bins of the softmax " + _help("bins"))
    add("--patience", type=int, help="early stopping, 0 disables " + _help("patience"))
    add("--monitor", choices=sorted(MONITORS), help="validation metric deciding the best "
        "epoch " + _help("monitor"))
    add("--size", type=int, help="side of the square face crop " + _help("size"))
    add("--clip-length", type=int, help="frames per clip " + _help("clip_length"))
    add("--crop", choices=CROPS, help="align: the face engine's 5-point alignment; none: the "
        "videos are face crops already " + _help("crop"))
    add("--engine", help="face engine for --crop align " + _help("engine"))
    add("--fps", type=float, help="frame rate of videos that do not say " + _help("fps"))
    add("--val-fraction", type=float, help="held-out share of subjects/videos without a test "
        "split, of the drivers with --simulated " + _help("val_fraction"))
    add("--init-2d", type=Path, metavar="PT", help="torchvision-layout 2D ResNet-18 state dict "
        "to inflate into the trunk (the paper's transfer learning; none ships)")
    add("--sim-stride", type=int, help="frames between training windows "
        + _help("sim_stride"))
    add_run_arguments(parser, FatigueTrainConfig, SIMULATED_DEFAULTS)


def config_from_args(args: argparse.Namespace) -> FatigueTrainConfig:
    """A :class:`FatigueTrainConfig` from parsed flags (see :func:`add_arguments`)."""
    return FatigueTrainConfig(init_2d=args.init_2d, **config_values(
        FatigueTrainConfig, SIMULATED_DEFAULTS, _FLAGS, args))


def run(args: argparse.Namespace) -> int:
    """``vigil train fatigue``: trains and reports; VigilErrors propagate to the CLI."""
    return report(train_fatigue(config_from_args(args)), args)
