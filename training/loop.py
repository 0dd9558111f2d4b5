"""A small generic trainer: epochs, validation, early stopping, resumable checkpoints, plots.

:func:`fit` trains any network given two task functions:

- ``step(model, batch) -> loss``: one training batch (already on the device) to a scalar loss;
  the loop does ``zero_grad``, ``backward``, optional gradient clipping and ``optimizer.step``.
- ``evaluate(model, batches) -> metrics``: the model in eval mode under ``torch.no_grad`` and
  an iterable of validation batches (on the device) to a flat ``{name: float}`` dict, which
  must hold ``val_loss`` and the monitored metric.

Files in ``out_dir`` (``stage`` prefixes them, e.g. ``teacher-last.pt``):

- ``{stage}-last.pt``: the training state after the last finished epoch (model, optimiser,
  scheduler, epoch, best metric, history, RNG states), written atomically every epoch with
  ``torch.save`` and read back with ``torch.load(weights_only=True)``, so it holds tensors and
  plain data only. ``resume=True`` continues from it and ends exactly where an uninterrupted
  run ends (same batches, same augmentations, same weights).
- ``{stage}-best.pt``: the best model so far as a self-rebuilding checkpoint
  (:func:`models.checkpoint.save_checkpoint`: registry name, args, preprocessing, metrics).
- ``{stage}-history.json`` and ``{stage}-loss.png``: per-epoch train loss, validation loss
  and metrics, and the loss curves with the best epoch marked.

Early stopping: after ``patience`` epochs in a row without the monitored metric improving by
more than ``min_delta`` on the best so far, training stops; the best weights are loaded back
into the model either way. The ROC helpers live in
:mod:`training.metrics`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.errors import VigilError
from streams.errors import ConfigurationError, InputError
from training.metrics import auc

log = logging.getLogger(__name__)

STATE_FORMAT = "vigil.training-state.v1"
MODES = ("min", "max")

StepFn = Callable[[nn.Module, Any], torch.Tensor]
EvalFn = Callable[[nn.Module, Iterable[Any]], dict[str, float]]


class TrainingError(VigilError):
    """Training cannot go on: the loss diverged (non-finite)."""


@dataclass(frozen=True)
class CheckpointSpec:
    """What rebuilds the model from a checkpoint: ``create_model(name, **args)``, plus the
    preprocessing the model expects (clip length, size, mean/std, labels, fps)."""

    name: str
    args: dict[str, Any]
    preprocessing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FitConfig:
    """epochs: total epochs (a resumed run counts the ones already done); monitor: the
    metric that decides the best epoch, ``mode`` min or max; patience: epochs without
    improvement before stopping (None: never stop early); stage: file-name prefix."""

    epochs: int
    monitor: str = "val_loss"
    mode: str = "min"
    patience: int | None = None
    min_delta: float = 0.0
    device: str = "cpu"
    progress: bool = True
    resume: bool = False
    grad_clip: float | None = None
    stage: str = "train"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigurationError(f"epochs must be at least 1, got {self.epochs}")
        if self.mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigurationError(f"patience must be at least 1 or None, got {self.patience}")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (None: left as they are)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class FitResult:
    """What :func:`fit` returns; ``history`` has one dict per epoch (epoch, counted from 1,
    train_loss, lr per parameter group, then the validation metrics); ``best_epoch`` counts
    from 1 too."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float
    best_metrics: dict[str, float]
    stopped_early: bool
    best_path: Path
    last_path: Path
    history_path: Path
    plot_path: Path

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# ---------------------------------------------------------------- pure helpers


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Tensors in (nested) tuples, lists and dicts moved to ``device``; the rest unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None and numpy scalars/arrays as plain data."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> None:
    """Atomically writes ``data`` (made :func:`json_ready`) as indented JSON."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_ready(data), indent=1) + "\n")
    tmp.replace(path)


def plot_history(path: Path, history: Sequence[Mapping[str, Any]], title: str = "",
                 best_epoch: int | None = None) -> None:
    """Loss curves (train and validation loss per epoch) as a PNG; the best epoch marked."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    epochs = [int(h["epoch"]) for h in history]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [float("nan") if h.get(key) is None else float(h[key]) for h in history]
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def plot_roc(path: Path, fpr: np.ndarray, tpr: np.ndarray, title: str = "ROC") -> float:
    """The ROC curve with its AUC in the legend as a PNG; returns the AUC."""
    area = auc(fpr, tpr)
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, marker=".", label=f"AUC = {area:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return area


# ---------------------------------------------------------------- RNG and state


def rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state that shapes the next epoch, as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: Mapping[str, Any], loader_generator: torch.Generator | None = None
                  ) -> None:
    """Restores what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """A ``{stage}-last.pt`` training state (weights_only); InputError if unusable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, refused globals
        raise InputError(f"{path} is not a loadable training state: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{path} is not a Vigil training state (expected {STATE_FORMAT})")
    return state


def _loader_generator(loader: Iterable[Any]) -> torch.Generator | None:
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _batches(loader: Iterable[Any], device: torch.device) -> Iterator[Any]:
    for batch in loader:
        yield to_device(batch, device)


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    if isinstance(first, Mapping):
        first = next(iter(first.values()))
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1


# ---------------------------------------------------------------- the loop


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable[Any],
        val_loader: Iterable[Any], step: StepFn, evaluate: EvalFn, out_dir: Path,
        spec: CheckpointSpec, config: FitConfig,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> FitResult:
    """Trains ``model`` (see the module docstring); the scheduler steps once per epoch.

    Returns with the best epoch's weights loaded into ``model``. With ``config.resume`` and a
    ``{stage}-last.pt`` in ``out_dir`` training continues from it; a state that already ran
    its epochs (or stopped early) returns at once."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{config.stage}-" if config.stage else ""
    last_path, best_path = out_dir / f"{prefix}last.pt", out_dir / f"{prefix}best.pt"
    history_path, plot_path = out_dir / f"{prefix}history.json", out_dir / f"{prefix}loss.png"
    device = torch.device(config.device)
    model.to(device)
    generator = _loader_generator(train_loader)

    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch, bad_epochs, stopped_early = 0, 0, False
    if config.resume and last_path.exists():
        state = load_state(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        history, best_value = list(state["history"]), state["best_value"]
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        stopped_early = bool(state["stopped_early"])
        set_rng_state(state["rng"], generator)
        log.info("%s: resuming after epoch %d of %d (best %s %s at epoch %d)", config.stage,
                 len(history), config.epochs, config.monitor, best_value, best_epoch)
    else:
        if config.resume:
            log.info("%s: nothing to resume in %s, starting afresh", config.stage, out_dir)
        best_path.unlink(missing_ok=True)  # a previous run's best must not pass for this one's

    def finish() -> FitResult:
        if best_path.exists():
            data = torch.load(best_path, map_location="cpu", weights_only=True)
            model.load_state_dict(data["state_dict"])
        best = next((h for h in history if h["epoch"] == best_epoch), {})
        metrics = {k: float(v) for k, v in best.items()
                   if isinstance(v, (int, float)) and k not in ("epoch", "lr")}
        return FitResult(history, best_epoch, float("nan") if best_value is None else best_value,
                         metrics, stopped_early, best_path, last_path, history_path, plot_path)

    for epoch in range(len(history), config.epochs):
        if stopped_early:
            break
        model.train()
        total, count = 0.0, 0
        bar = tqdm(train_loader, desc=f"{config.stage} {epoch + 1}/{config.epochs}",
                   disable=not config.progress, file=sys.stderr, leave=False, dynamic_ncols=True)
        for batch in bar:
            batch = to_device(batch, device)
            loss = step(model, batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"{config.stage}: the training loss became {loss.item()} "
                                    f"in epoch {epoch + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            n = _batch_size(batch)
            total, count = total + float(loss.detach()) * n, count + n
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        bar.close()
        lrs = [float(g["lr"]) for g in optimizer.param_groups]
        if scheduler is not None:
            scheduler.step()
        model.eval()
        with torch.no_grad():
            scores = evaluate(model, _batches(val_loader, device))
        metrics = {k: float(v) for k, v in scores.items()}
        if config.monitor not in metrics:
            raise ConfigurationError(f"the monitored metric {config.monitor!r} is not among the "
                                     f"validation metrics {sorted(metrics)}")
        record = {"epoch": epoch + 1, "train_loss": total / count if count else float("nan"),
                  "lr": lrs, **metrics}
        history.append(record)
        value = metrics[config.monitor]
        if improved(value, best_value, config.mode, config.min_delta):
            best_value, best_epoch, bad_epochs = value, epoch + 1, 0
            save_checkpoint(best_path, model, spec.name, spec.args, spec.preprocessing,
                            metrics={**metrics, "epoch": epoch + 1})
        else:
            bad_epochs += 1
            if config.patience is not None and bad_epochs >= config.patience:
                stopped_early = True
        if best_value is None and (stopped_early or epoch == config.epochs - 1):
            best_epoch = epoch + 1  # the monitored metric was never finite: keep the last model
            save_checkpoint(best_path, model, spec.name, spec.args, spec.preprocessing,
                            metrics={**metrics, "epoch": epoch + 1})
        log.info("%s epoch %d/%d: train loss %.4f, %s", config.stage, epoch + 1, config.epochs,
                 record["train_loss"], ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        _save_state(last_path, {
            "format": STATE_FORMAT, "stage": config.stage, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history, "best_value": best_value, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "stopped_early": stopped_early,
            "rng": rng_state(generator)})
        write_json(history_path, {"stage": config.stage, "monitor": config.monitor,
                                  "mode": config.mode, "best_epoch": best_epoch,
                                  "stopped_early": stopped_early, "epochs": history})
        plot_history(plot_path, history, f"{config.stage} loss", best_epoch or None)
        if stopped_early:
            log.info("%s: no %s improvement for %d epochs, stopping after epoch %d (best epoch "
                     "%d)", config.stage, config.monitor, bad_epochs, epoch + 1, best_epoch)
    return finish()
