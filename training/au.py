"""`vigil train au`: the facial action unit network (``satnet``, :mod:`models.au`: ResNet-18 +
ConvLSTM after stage 2 + per-AU self-attention) trained as in the SAT-Net paper
(``satnet-au-detection.md``) on BP4D/DISFA-style frames with per-frame AU labels, from disk or
from the driver simulator.

Data layout (``--data ROOT``)::

    ROOT/<subject>/<sequence>/<frame>.jpg|jpeg|png|bmp   one folder of frames per sequence
    ROOT/<subject>/<sequence>.csv                         its per-frame AU labels

or, with a fixed split, ``ROOT/train/<subject>/...`` and ``ROOT/test/<subject>/...`` (``val``
is accepted for ``test``); without one, ``val_fraction`` (1/3: one fold of the paper's
subject-exclusive 3-fold protocol) of the subjects is held out at random (seeded), so no
subject is on both sides. Frames are ordered by the numbers in their names. Each CSV has a
header with ``frame`` (the frame's number: the last number in its file name, so ``0012.jpg``,
``frame12.png`` and ``12`` match) and one column per AU, ``AU1`` or ``AU01`` (any case).
Values are occurrences 0/1 (BP4D); anything else (BP4D's 9, empty) is unknown. With
``intensity=True`` (DISFA) they are intensities 0-5 and an AU occurs at >= 2, as the paper and
the works it compares with define it; values outside 0-5 are unknown. Unknown labels, frames
without a CSV row and AUs without a column in a sequence's CSV are masked: they count in
neither the loss nor the metrics.

A missing or mis-laid ROOT, or one with no labelled sequence, is an InputError naming the
expected layout. A sequence without a readable CSV (or with none of the chosen AUs), and a
window with an unreadable frame or a frame where the face engine finds no face, are skipped
with a warning and counted (``skipped_clips`` in the result and metrics); they never stop
training.

Samples: windows of ``clip_length`` (16, §IV-C: "16 frames can cover the least median frames
(18) that an AU will occur") consecutive frames every ``stride`` frames (default 16: each
frame once), a tail shorter than a window dropped; a sequence shorter than one gives one
window with its first and last frames repeated. Each frame is cut as in
:mod:`training.fatigue`: ``crop="align"`` (default) aligns the face engine's 5 landmarks
(:func:`workers.face.crops.align_face`; the paper "uses face detection tools to locate and
crop the face"), ``crop="none"`` resizes frames that already are face crops; ``size`` × ``size``
(224), RGB in [0, 1], ImageNet mean/std. A sample is frames (T, 3, S, S) float32 and labels
(T, K) float32 in {1, 0, -1 unknown}; training flips a whole window horizontally with
probability 0.5 (the paper's only augmentation; AU labels are bilateral, so they hold).

Simulated data (``--simulated``): ``training.simulator.simulate_set`` renders drivers (default 3
× 30 s at 10 fps, "drowsy" profile), the face engine reads the videos and windows are cut every
``sim_stride`` frames; the last ``val_fraction`` of the drivers validate (at least one; with a
single driver the last part of its video). The renderer moves eyelids and opens the jaw; it does
not animate brows, cheeks, lip corners or the chin, so none of BP4D's 12 AUs is rendered and
simulated runs detect :data:`SIM_AUS` instead, labelled per frame from the truth: AU26 (jaw
drop) where the mouth opening is >= 0.3, AU43 (eyes closed) inside a long closure's closed span
(mean closure >= 0.8 held >= 1 s), AU45 (blink) inside a blink event where mean closure >= 0.5;
AU43 and AU45 are unknown where the eyes are not visible. Simulated runs use
:data:`SIMULATED_DEFAULTS` (64×64 crops, batch 4, 6 epochs, no decay): a few CPU minutes. The
network has no width overrides, so it keeps its full ResNet-18 widths there too.

Training (§IV-A, :class:`AUTrainConfig` defaults): SGD with Nesterov momentum 0.9, weight decay
2e-4, batch 20, learning rate 0.01 ×0.1 every 8 epochs "until convergence": 24 epochs (three
decays) with early stopping after 8 epochs without a better mean F1; 224×224, T = 16; the
weighted BCE of eq. 4 (:func:`models.au.weighted_bce`) with w_c from each AU's occurrence rate
over the training frames whose label is known (:func:`models.au.occurrence_weights`; rates
clamped to >= 1 % so an AU that never occurs in training cannot take all the weight; the paper
keeps AUs above 5 %, and AUs below that are logged). The paper starts from an ImageNet-
pretrained ResNet-18; none ships here, so the trunk starts from scratch unless ``init_2d``
names a torchvision-layout ResNet-18 state dict.

Metrics on the validation frames (each window's every frame, unknown labels left out): per AU
``f1_AU<n>`` (threshold 0.5) and ``auc_AU<n>`` (ROC-AUC); ``mean_f1`` and ``mean_auc`` over the
AUs that occur in validation; ``val_loss``. Outputs in ``out_dir``: ``au.pt`` (the best model,
self-rebuilding, with its preprocessing and AU names), ``metrics.json``, ``roc.json`` (per-AU
and pooled curves) and ``roc.png`` (all AUs' frames pooled), ``au-history.json``,
``au-loss.png``, ``au-best.pt``, the resumable ``au-last.pt``, and ``clips/`` (the prepared
windows, reused by ``--resume``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from models.au import BP4D_AUS, VARIANTS, SATNet, occurrence_weights, weighted_bce
from models.registry import create_model, model_entry
from streams.errors import ConfigurationError, InputError
from training.augment import apply_photo_augment, sample_photo_augment
from training.clip_data import (
    CROPS,
    IMAGE_SUFFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipData,
    ClipWriter,
    FrameCropper,
    clip_indices,
    crop_frames,
    defaults_help,
    init_trunk,
    natural_key,
    normalise,
    split_groups,
    video_frames,
    window_starts,
)
from training.metrics import binary_metrics, roc_curve
from training.recipe import (
    Roc,
    Stage,
    Task,
    TrainConfig,
    TrainResult,
    add_run_arguments,
    add_source_arguments,
    config_values,
    report,
    train,
    training_windows,
    validation_start,
)

log = logging.getLogger(__name__)

MODEL_NAME = "satnet"
STAGE = "au"
SPLIT_DIRS = {"train": False, "test": True, "val": True}  # name -> is validation
SIM_AUS = (26, 43, 45)  # what the simulator renders: jaw drop, eyes closed, blink
UNKNOWN = -1.0
MIN_RATE = 0.01  # occurrence rates are clamped to this before the inverse weighting
LAYOUT = ("expected ROOT/<subject>/<sequence>/<frames>.jpg|png|bmp with ROOT/<subject>/"
          "<sequence>.csv (columns frame, AU1, AU2, ...) (or ROOT/{train,test}/<subject>/...)")
# Simulated runs: what the CLI uses for --simulated unless told otherwise.
SIMULATED_DEFAULTS: dict[str, Any] = {
    "epochs": 6, "size": 64, "batch_size": 4, "lr_decay": 1.0, "patience": None,
    "aus": SIM_AUS}


@dataclass
class AUTrainConfig(TrainConfig):
    """Everything an AU training run needs (:class:`training.recipe.TrainConfig` and these);
    defaults are the paper's (§IV-A).

    data_dir or simulated: the frames (see the module docstring). aus: the AU numbers to
    detect (BP4D's 12; DISFA's are 1 2 4 6 9 12 25 26). intensity: labels are 0-5 intensities
    (DISFA), occurring at >= ``intensity_threshold``. lr/momentum/weight_decay: SGD's
    (Nesterov); the rate ×``lr_decay`` every ``decay_every`` epochs. variant: SAT-Net or an
    ablation (:data:`models.au.VARIANTS`). size: S; clip_length: T; stride: frames between
    windows. crop/engine: as in :mod:`training.fatigue`. fps: the frames' rate (BP4D 25).
    init_2d: a 2D ResNet-18 state dict for the trunk. monitor/patience: early stopping.
    sim_stride: frames between simulated windows."""

    aus: tuple[int, ...] = BP4D_AUS
    intensity: bool = False
    intensity_threshold: float = 2.0
    epochs: int = 24
    batch_size: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    lr_decay: float = 0.1
    decay_every: int = 8
    variant: str = "sat-net"
    monitor: str = "mean_f1"
    patience: int | None = 8
    size: int = 224
    stride: int = 16
    crop: str = "align"
    fps: float = 25.0
    val_fraction: float = 1 / 3
    init_2d: Path | None = None
    sim_stride: int = 8

    def __post_init__(self) -> None:
        self.aus = tuple(int(a) for a in self.aus)
        super().__post_init__()
        self.init_2d = None if self.init_2d is None else Path(self.init_2d)
        if not self.aus or len(set(self.aus)) != len(self.aus):
            raise ConfigurationError(f"aus must be distinct AU numbers, got {self.aus}")
        if self.simulated and not set(self.aus) <= set(SIM_AUS):
            raise ConfigurationError(f"the simulator renders AUs {SIM_AUS} only, not "
                                     f"{sorted(set(self.aus) - set(SIM_AUS))}")
        if self.variant not in VARIANTS:
            raise ConfigurationError(f"unknown variant {self.variant!r}; choose one of "
                                     f"{VARIANTS}")
        if self.crop not in CROPS:
            raise ConfigurationError(f"unknown crop {self.crop!r}; choose one of {CROPS}")
        if self.size < 32 or self.clip_length < 1:
            raise ConfigurationError(f"size must be at least 32 and clip_length at least 1, "
                                     f"got {self.size} and {self.clip_length}")
        if min(self.decay_every, self.stride, self.sim_stride) < 1:
            raise ConfigurationError("decay_every and the strides must be at least 1")

    @property
    def names(self) -> list[str]:
        return [f"AU{a}" for a in self.aus]

    def monitors(self) -> dict[str, str]:
        """Metric -> "min"/"max": the loss, the means and each AU's F1 and AUC."""
        per_au = {f"{m}_AU{a}": "max" for a in self.aus for m in ("f1", "auc")}
        return {"val_loss": "min", "mean_f1": "max", "mean_auc": "max", **per_au}

    def model_args(self) -> dict[str, Any]:
        """The builder's full argument set (defaults included)."""
        return {**model_entry(MODEL_NAME).defaults(), "variant": self.variant,
                "aus": len(self.aus)}


# ---------------------------------------------------------------- the layout


@dataclass(frozen=True)
class SequenceSource:
    """A sequence folder of a data directory: its frames in order, its labels CSV, split
    (None: decided by val_fraction), id (its path under ROOT) and subject."""

    folder: Path
    frames: tuple[Path, ...]
    labels: Path
    is_val: bool | None
    sequence_id: str
    subject: str


def frame_number(name: str) -> int | None:
    """The last number in a frame's file name or CSV cell (``frame0012.jpg`` -> 12)."""
    found = re.findall(r"\d+", Path(name).stem if "." in name else name)
    return int(found[-1]) if found else None


def _subjects(root: Path, split_dir: Path, is_val: bool | None) -> list[SequenceSource]:
    found = []
    for subject in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for folder in sorted((p for p in subject.iterdir() if p.is_dir()),
                             key=lambda p: natural_key(p.name)):
            frames = tuple(sorted((f for f in folder.iterdir()
                                   if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                                  key=lambda f: natural_key(f.name)))
            if frames:
                found.append(SequenceSource(folder, frames, folder.with_suffix(".csv"), is_val,
                                            str(folder.relative_to(root)), subject.name))
    return found


def find_sequences(root: Path) -> list[SequenceSource]:
    """Every sequence folder under ``root`` (module docstring). Raises InputError, naming the
    expected layout, for a missing or mis-laid directory or one where no sequence has a
    labels CSV."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"AU data directory {root} does not exist; {LAYOUT}")
    splits: list[tuple[Path, bool | None]] = [
        (p, SPLIT_DIRS[p.name.lower()]) for p in sorted(root.iterdir())
        if p.is_dir() and p.name.lower() in SPLIT_DIRS]
    sequences = [s for split, is_val in splits or [(root, None)]
                 for s in _subjects(root, split, is_val)]
    if not sequences:
        raise InputError(f"{root} has no <subject>/<sequence>/ folders of frames; {LAYOUT}")
    if not any(s.labels.is_file() for s in sequences):
        raise InputError(f"{root}: none of its {len(sequences)} sequence folders has a "
                         f"<sequence>.csv of AU labels beside it; {LAYOUT}")
    if splits and not any(s.is_val for s in sequences):
        raise InputError(f"{root} has a train split but no test/val sequences; {LAYOUT}")
    return sequences


def read_labels(path: Path, aus: Sequence[int], intensity: bool = False,
                threshold: float = 2.0) -> tuple[dict[int, np.ndarray], list[int]]:
    """A sequence CSV -> ({frame number: (K,) float32 in {1, 0, -1 unknown}}, the AUs of
    ``aus`` it has no column for). Raises InputError for an unreadable file, one without a
    frame column, or one with none of ``aus``."""
    if not path.is_file():
        raise InputError(f"no labels file {path.name}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader)]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise InputError(f"unreadable labels file {path.name} ({exc or 'empty'})") from None
    lower = [h.lower() for h in header]
    if "frame" not in lower:
        raise InputError(f"{path.name} has no frame column")
    columns = {frame_number(h): k for k, h in enumerate(lower)
               if re.fullmatch(r"au\d+", h)}
    missing = [a for a in aus if a not in columns]
    if len(missing) == len(aus):
        raise InputError(f"{path.name} has none of the AU columns "
                         f"{', '.join(f'AU{a}' for a in aus)}")
    frame_col = lower.index("frame")
    labels: dict[int, np.ndarray] = {}
    for row in rows:
        number = frame_number(row[frame_col].strip()) if len(row) > frame_col else None
        if number is None:
            continue
        values = np.full(len(aus), UNKNOWN, np.float32)
        for i, au in enumerate(aus):
            k = columns.get(au)
            try:
                v = float(row[k]) if k is not None and k < len(row) else math.nan
            except ValueError:
                continue
            if intensity and 0 <= v <= 5:
                values[i] = float(v >= threshold)
            elif not intensity and v in (0.0, 1.0):
                values[i] = v
        labels[number] = values
    return labels, missing


# ---------------------------------------------------------------- preparing windows


def _window_targets(labels: dict[int, np.ndarray], numbers: Sequence[int | None], k: int
                    ) -> np.ndarray:
    unknown = np.full(k, UNKNOWN, np.float32)
    return np.stack([labels.get(n, unknown) if n is not None else unknown for n in numbers])


def prepare_sequence(source: SequenceSource, config: AUTrainConfig, cropper: FrameCropper,
                     writer: ClipWriter) -> None:
    """Cuts one sequence into windows (module docstring) and adds them to ``writer``.
    Raises InputError for a sequence whose labels cannot be used."""
    labels, missing = read_labels(source.labels, config.aus, config.intensity,
                                  config.intensity_threshold)
    if missing:
        log.warning("%s: no column for %s; masked", source.labels.name,
                    ", ".join(f"AU{a}" for a in missing))
    length, n = config.clip_length, len(source.frames)
    windows = [(s, clip_indices(min(n - s, length), length) + s)
               for s in window_starts(n, length, config.stride)]
    crops: dict[int, np.ndarray | str] = {}  # frame index -> crop, or why there is none
    for k in sorted({int(i) for _, index in windows for i in index}):
        frame = cv2.imread(str(source.frames[k]), cv2.IMREAD_COLOR)
        if frame is None:
            crops[k] = f"unreadable frame {source.frames[k].name}"
            continue
        if not crops:
            cropper.start_clip(frame.shape)
        try:
            crops[k] = cropper(frame, 1000.0 / config.fps)
        except InputError as exc:
            crops[k] = f"{exc} in frame {source.frames[k].name}"
    numbers = [frame_number(f.name) for f in source.frames]
    for s, index in windows:
        clip_id = f"{source.sequence_id}#{s}"
        problem = next((c for i in index if isinstance(c := crops[int(i)], str)), None)
        if problem is not None:
            log.warning("skipping window %s: %s", clip_id, problem)
            writer.skip(clip_id, problem)
            continue
        frames = np.stack([crops[int(i)] for i in index])
        writer.add(frames, _window_targets(labels, [numbers[int(i)] for i in index],
                                           len(config.aus)),
                   clip_id, source.subject, source.is_val)


def windows_from_dir(root: Path, config: AUTrainConfig, folder: Path) -> ClipData:
    """Every usable window of the sequences under ``root``, prepared into ``folder``."""
    from tqdm import tqdm

    sources = find_sequences(root)
    if not any(s.is_val is not None for s in sources):
        held = split_groups([s.subject for s in sources], config.val_fraction, config.seed)
        sources = [SequenceSource(s.folder, s.frames, s.labels, bool(v), s.sequence_id,
                                  s.subject) for s, v in zip(sources, held, strict=True)]
    writer = ClipWriter(folder, config.clip_length, config.size)
    cropper = FrameCropper(config.crop, config.size, config.engine)
    try:
        for source in tqdm(sources, desc="preparing windows", disable=not config.progress,
                           file=sys.stderr, leave=False):
            try:
                prepare_sequence(source, config, cropper, writer)
            except InputError as exc:
                log.warning("skipping sequence %s: %s", source.sequence_id, exc)
                writer.skip(source.sequence_id, str(exc))
    finally:
        cropper.close()
        writer.close()
    return writer.finish(np.asarray(writer.fixed, dtype=bool), config.fps, _data_key(config),
                         (config.clip_length, len(config.aus)))


def simulated_labels(truth: dict[str, Any], aus: Sequence[int]) -> np.ndarray:
    """(n, K) per-frame labels of :data:`SIM_AUS` members ``aus`` from a simulator truth
    (module docstring): 1, 0, or -1 where the eyes (AU43/45) or the face are not visible."""
    frames = truth["frames"]
    n = int(truth["frame_count"])
    closure = (np.asarray(frames["closure_left"]) + np.asarray(frames["closure_right"])) / 2
    face = np.asarray(frames["face_visible"], bool)
    eyes = face & np.asarray(frames["eyes_visible"], bool)
    spans = {43: np.zeros(n, bool), 45: np.zeros(n, bool)}
    for event in truth["long_closures"]:
        spans[43][event["closed_start_frame"]:event["closed_end_frame"] + 1] = True
    for event in truth["blinks"]:
        spans[45][event["start_frame"]:event["end_frame"] + 1] = True
    found = {26: np.asarray(frames["mouth_open"]) >= 0.3, 43: spans[43] & (closure >= 0.8),
             45: spans[45] & (closure >= 0.5)}
    out = np.stack([found[a].astype(np.float32) for a in aus], axis=1)
    out[~face] = UNKNOWN
    for i, a in enumerate(aus):
        if a in (43, 45):
            out[~eyes, i] = UNKNOWN
    return out


def windows_from_truths(truths: Sequence[Path], config: AUTrainConfig, folder: Path
                        ) -> ClipData:
    """Labelled windows cut from simulator videos along their truth JSON files; the last
    ``val_fraction`` of the drivers validate (module docstring)."""
    length = config.clip_length
    writer = ClipWriter(folder, length, config.size)
    cropper = FrameCropper(config.crop, config.size, config.engine)
    fps = config.sim_fps
    try:
        for d, truth_path in enumerate(truths):
            truth = json.loads(Path(truth_path).read_text())
            fps = float(truth["fps"])
            labels = simulated_labels(truth, config.aus)
            video = Path(truth_path).parent / truth["video"]
            crops = list(crop_frames(video_frames(video), cropper, 1000.0 / fps))
            n = min(len(crops), len(labels))
            val_from = validation_start(d, len(truths), n, config.val_fraction)
            for s, is_val in training_windows(n, length, config.sim_stride, val_from):
                clip_id = f"{truth['driver_id']}/{s:05d}"
                span = crops[s:s + length]
                if len(span) < length or any(c is None for c in span):
                    reason = "no face in a frame" if len(span) == length else "past the video"
                    log.warning("skipping window %s: %s", clip_id, reason)
                    writer.skip(clip_id, reason)
                    continue
                writer.add(np.stack([c for c in span if c is not None]),
                           labels[s:s + length], clip_id, truth["driver_id"], is_val)
    finally:
        cropper.close()
        writer.close()
    return writer.finish(np.asarray(writer.fixed, dtype=bool), fps, _data_key(config),
                         (length, len(config.aus)))


def _data_key(config: AUTrainConfig) -> dict[str, Any]:
    return AUTask(config).data_key()


def counts(data: ClipData, names: Sequence[str]) -> dict[str, Any]:
    """Windows per side, skips, and per AU the positive share of the known training and
    validation frames."""
    val = data.is_val.astype(bool)

    def rates(side: np.ndarray) -> dict[str, float | None]:
        y = data.targets[side].reshape(-1, len(names))
        known = y >= 0
        return {name: float(y[known[:, i], i].mean()) if known[:, i].any() else None
                for i, name in enumerate(names)}

    return {"train_clips": int((~val).sum()), "val_clips": int(val.sum()),
            "skipped_clips": len(data.skipped), "train_rates": rates(~val),
            "val_rates": rates(val)}


def au_weights(targets: np.ndarray, names: Sequence[str]) -> torch.Tensor:
    """(N, T, K) training labels (-1 unknown) -> (K,) w_c from each AU's occurrence rate over
    its known frames (clamped to >= MIN_RATE), via :func:`models.au.occurrence_weights`."""
    y = targets.reshape(-1, len(names))
    known = y >= 0
    rates = np.array([y[known[:, i], i].mean() if known[:, i].any() else 0.0
                      for i in range(len(names))])
    rare = [f"{n} {r:.3f}" for n, r in zip(names, rates, strict=True) if r < 0.05]
    if rare:
        log.warning("AUs occurring in < 5 %% of the known training frames (the paper keeps "
                    "AUs above 5 %%): %s", ", ".join(rare))
    clamped = torch.tensor(np.clip(rates, MIN_RATE, 1.0), dtype=torch.float32)
    return occurrence_weights(clamped[None])


def masked_weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
                        ) -> torch.Tensor:
    """:func:`models.au.weighted_bce` with unknown labels (< 0) contributing nothing:
    logits, labels (..., K), weights (K,)."""
    known = (labels >= 0).to(logits.dtype)
    return weighted_bce(logits, labels.clamp(min=0), weights.to(logits) * known)


# ---------------------------------------------------------------- dataset and training


class AUWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Samples of a :class:`ClipData`: frames (T, 3, S, S) float32 normalised, labels (T, K)
    float32 (-1 unknown); one horizontal flip draw a window when asked."""

    def __init__(self, data: ClipData, indices: np.ndarray, augment: bool = False) -> None:
        self.data, self.indices, self.augment = data, np.asarray(indices), augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(self.indices[i])
        frames = torch.from_numpy(np.array(self.data.frames[k])).permute(0, 3, 1, 2).float()
        frames = frames / 255
        if self.augment:
            frames = apply_photo_augment(frames, sample_photo_augment(("flip",)))
        labels = torch.from_numpy(np.array(self.data.targets[k], dtype=np.float32))
        return normalise(frames, IMAGENET_MEAN, IMAGENET_STD), labels


def au_metrics(labels: np.ndarray, probabilities: np.ndarray, names: Sequence[str]
               ) -> dict[str, float]:
    """labels, probabilities (N, K) per frame (-1 unknown) -> ``f1_<AU>``, ``auc_<AU>``,
    ``mean_f1`` and ``mean_auc`` over the AUs that occur (NaN where undefined)."""
    out: dict[str, float] = {}
    f1s, aucs = [], []
    for i, name in enumerate(names):
        known = labels[:, i] >= 0
        m = binary_metrics(labels[known, i], probabilities[known, i])
        occurs = bool((labels[known, i] == 1).any())
        out[f"f1_{name}"] = m["f1"] if occurs else math.nan
        out[f"auc_{name}"] = m["auc"]
        if occurs:
            f1s.append(m["f1"])
        if not math.isnan(m["auc"]):
            aucs.append(m["auc"])
    out["mean_f1"] = float(np.mean(f1s)) if f1s else math.nan
    out["mean_auc"] = float(np.mean(aucs)) if aucs else math.nan
    return out


def preprocessing(config: AUTrainConfig, fps: float) -> dict[str, Any]:
    """What the checkpoint tells the workers about the inputs."""
    return {"clip_length": config.clip_length, "size": [config.size, config.size],
            "layout": "(B, T, 3, H, W)", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "color": "RGB", "scale": 1 / 255, "fps": float(fps), "labels": config.names,
            "threshold": 0.5,
            "crop": "workers.face.crops.align_face" if config.crop == "align" else "none"}


def initial_model(config: AUTrainConfig) -> SATNet:
    """The network to train: fresh, or its trunk loaded from ``config.init_2d``."""
    model = create_model(MODEL_NAME, **config.model_args())
    assert isinstance(model, SATNet)
    if config.init_2d is not None:
        init_trunk(model.backbone, config.init_2d)
    return model


def au_roc(labels: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> Roc | None:
    """labels, probs (N, K) per frame -> per-AU and pooled curves (roc.json), the pooled one
    plotted; None when the pooled frames hold one class only."""
    known = labels >= 0
    curves: dict[str, Any] = {}
    for i, name in enumerate(names):
        y = labels[known[:, i], i]
        if (y == 1).any() and (y == 0).any():
            fpr, tpr, thr = roc_curve(y, probs[known[:, i], i])
            curves[name] = {"fpr": fpr, "tpr": tpr, "thresholds": thr}
    pooled_y, pooled_p = labels[known], probs[known]
    if not ((pooled_y == 1).any() and (pooled_y == 0).any()):
        return None
    fpr, tpr, thr = roc_curve(pooled_y, pooled_p)
    curves["pooled"] = {"fpr": fpr, "tpr": tpr, "thresholds": thr}
    return Roc(curves, fpr, tpr, "AUs, all frames pooled (validation)")


class AUTask(Task[AUTrainConfig]):
    """The AU network in the recipe: labelled windows, SGD (Nesterov) with the rate
    ×lr_decay every decay_every epochs, the masked weighted BCE with weights from the training
    frames, per-AU F1/AUC and their means."""

    name = STAGE
    model_name = MODEL_NAME
    layout = LAYOUT
    data_fields = ("aus", "intensity", "intensity_threshold", "size", "clip_length", "stride",
                   "crop", "engine", "seed", "val_fraction", "fps")
    sim_fields = ("sim_drivers", "sim_seconds", "sim_fps", "sim_profile", "sim_stride")
    stage_names = (STAGE,)
    unit = "windows"

    def __init__(self, config: AUTrainConfig) -> None:
        super().__init__(config)
        self.weights = torch.ones(len(config.aus))  # set from the training frames by setup

    def from_dir(self, root: Path, folder: Path) -> ClipData:
        return windows_from_dir(root, self.config, folder)

    def from_truths(self, truths: Sequence[Path], folder: Path) -> ClipData:
        return windows_from_truths(truths, self.config, folder)

    def counts(self, data: ClipData) -> dict[str, Any]:
        return counts(data, self.config.names)

    def dataset(self, data: ClipData, indices: np.ndarray, augment: bool = False
                ) -> AUWindows:
        return AUWindows(data, indices, augment)

    def setup(self, data: ClipData, train_idx: np.ndarray) -> dict[str, Any]:
        names = self.config.names
        self.weights = au_weights(data.targets[train_idx], names).to(self.config.device)
        return {"weights": dict(zip(names, self.weights.tolist(), strict=True))}

    def preprocessing(self, fps: float) -> dict[str, Any]:
        return preprocessing(self.config, fps)

    def stages(self) -> Iterator[Stage]:
        config = self.config
        model = initial_model(config)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    nesterov=True, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.decay_every,
                                                    config.lr_decay)
        yield Stage(STAGE, config.epochs, model, optimizer, scheduler)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T, 3, S, S), labels (B, T, K) -> (masked weighted BCE, logits)."""
        frames, labels = batch
        logits = model(frames).float()
        return masked_weighted_bce(logits, labels, self.weights), logits

    def readout(self, outputs: torch.Tensor, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities (B, T, K)."""
        return batch[1].cpu().numpy(), torch.sigmoid(outputs).cpu().numpy()

    def metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        k = len(self.config.aus)
        return au_metrics(truth.reshape(-1, k), outputs.reshape(-1, k), self.config.names)

    def roc(self, truth: np.ndarray, outputs: np.ndarray) -> Roc | None:
        k = len(self.config.aus)
        return au_roc(truth.reshape(-1, k), outputs.reshape(-1, k), self.config.names)

    def headline(self, metrics: dict[str, Any]) -> str:
        per_au = ", ".join(f"{n} F1 {metrics[f'f1_{n}']:.3f} AUC {metrics[f'auc_{n}']:.3f}"
                           for n in self.config.names)
        return f"mean F1 {metrics['mean_f1']:.3f}, mean AUC {metrics['mean_auc']:.3f} ({per_au})"


def train_au(config: AUTrainConfig) -> TrainResult:
    """Prepares the windows, trains, and writes the outputs listed in the module docstring."""
    return train(AUTask(config))


# ---------------------------------------------------------------- command line


def _help(name: str) -> str:
    return defaults_help(AUTrainConfig, SIMULATED_DEFAULTS, name)


# the flags beyond :data:`training.recipe.COMMON_FLAGS` whose default depends on --simulated
_FLAGS = ("aus", "intensity_threshold", "momentum", "weight_decay", "lr_decay", "decay_every",
          "variant", "size", "stride", "crop", "sim_stride")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vigil train au``; unset ones take the paper's values, or
    :data:`SIMULATED_DEFAULTS` with ``--simulated``."""
    add_source_arguments(
        parser, "DIR/<subject>/<sequence>/<frames> with DIR/<subject>/<sequence>.csv (frame, "
        "AU1, AU2, ...) (or DIR/{train,test}/...)",
        f"train on driver-simulator frames labelled with AUs {SIM_AUS} (small CPU "
        "configuration)")
    add = parser.add_argument
    add("--aus", type=int, nargs="+", metavar="N", help="AU numbers to detect "
        + _help("aus"))
    add("--intensity", action="store_true", help="labels are 0-5 intensities (DISFA), "
        "occurring at >= --intensity-threshold")
    add("--intensity-threshold", type=float, help=_help("intensity_threshold"))
    add("--epochs", type=int, help=_help("epochs"))
    add("--batch-size", type=int, help=_help("batch_size"))
    add("--lr", type=float, help="SGD learning rate " + _help("lr"))
    add("--momentum", type=float, help="Nesterov momentum " + _help("momentum"))
    add("--weight-decay", type=float, help=_help("weight_decay"))
    add("--lr-decay", type=float, help="rate factor every --decay-every epochs "
        + _help("lr_decay"))
    add("--decay-every", type=int, help=_help("decay_every"))
    add("--variant", choices=VARIANTS, help="SAT-Net or an ablation " + _help("variant"))
    add("--patience", type=int, help="early stopping, 0 disables " + _help("patience"))
    add("--monitor", help="validation metric deciding the best epoch: val_loss, mean_f1, "
        "mean_auc, f1_AU<n> or auc_AU<n> " + _help("monitor"))
    add("--size", type=int, help="side of the square face crop " + _help("size"))
    add("--clip-length", type=int, help="frames per window " + _help("clip_length"))
    add("--stride", type=int, help="frames between windows " + _help("stride"))
    add("--crop", choices=CROPS, help="align: the face engine's 5-point alignment; none: the "
        "frames are face crops already " + _help("crop"))
    add("--engine", help="face engine for --crop align " + _help("engine"))
    add("--fps", type=float, help="frame rate of the --data frames " + _help("fps"))
    add("--val-fraction", type=float, help="held-out share of subjects without a test split, "
        "of the drivers with --simulated " + _help("val_fraction"))
    add("--init-2d", type=Path, metavar="PT", help="torchvision-layout 2D ResNet-18 state dict "
        "for the trunk (the paper's ImageNet start; none ships)")
    add("--sim-stride", type=int, help="frames between training windows "
        + _help("sim_stride"))
    add_run_arguments(parser, AUTrainConfig, SIMULATED_DEFAULTS)


def config_from_args(args: argparse.Namespace) -> AUTrainConfig:
    """An :class:`AUTrainConfig` from parsed flags (see :func:`add_arguments`)."""
    values = config_values(AUTrainConfig, SIMULATED_DEFAULTS, _FLAGS, args)
    values["aus"] = tuple(values["aus"])
    return AUTrainConfig(intensity=args.intensity, init_2d=args.init_2d, **values)


def run(args: argparse.Namespace) -> int:
    """``vigil train au``: trains and reports; VigilErrors propagate to the CLI."""
    return report(train_au(config_from_args(args)), args)
