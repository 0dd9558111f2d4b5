"""Drowsiness from blink-feature windows, trained and judged on real UTA-RLDD data.

Data layout (``../shared/data/rldd``, the dataset authors' subject-disjoint folds):
``BlinksTest_30_FoldK.npy`` float (N, 30, 4) windows of 30 consecutive blinks, each
[frequency, amplitude, duration, eye-opening velocity] z-normalised per subject against the
subject's alert baseline; ``LabelsTest_30_FoldK.npy`` (N,) or (N, 1) in {0, 5, 10} = alert,
low vigilant, drowsy. Consecutive windows of one video overlap; :func:`recover_runs` finds
the videos again, so that nothing is split inside one.

:func:`train_drowsiness` fits the ``drowsiness-blinks`` network, with class-weighted
CE + MSE on the expected level or, with ``gan=True``, inside the class-balancing GAN of
``models/gan.py`` (G, D and the network as the GAN's classifier C, trained jointly; C's
batches are topped up with synthetic windows of the minority classes). :func:`cross_validate`
runs leave-one-fold-out over the folds with and without the GAN and writes a report.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.drowsiness import CLASSES, BlinkWindowNet, drowsiness_loss
from models.drowsiness import NAME as MODEL
from models.gan import GanBalancer, GanOptimisers
from models.predictor import ClipPredictor
from models.registry import create_model
from streams.errors import InputError
from training.loop import torch_threads
from training.metrics import classification_report

log = logging.getLogger(__name__)

LABEL_VALUES = (0, 5, 10)  # the dataset's labels for CLASSES, in order


@dataclass(frozen=True)
class BlinkWindows:
    """x (N, blinks, 4) float32; y (N,) class indices; fold (N,); run (N,) video ids, unique
    across folds."""

    x: np.ndarray
    y: np.ndarray
    fold: np.ndarray
    run: np.ndarray

    def where(self, mask: np.ndarray) -> BlinkWindows:
        return BlinkWindows(self.x[mask], self.y[mask], self.fold[mask], self.run[mask])

    def __len__(self) -> int:
        return len(self.y)


def recover_runs(x: np.ndarray, max_stride: int = 3) -> np.ndarray:
    """(N,) run ids: window i continues window i-1's video when it is that window shifted by
    1..max_stride blinks (the sliding windows of one video overlap)."""
    runs = np.zeros(len(x), dtype=np.int64)
    for i in range(1, len(x)):
        same = any(np.allclose(x[i, :-s], x[i - 1, s:]) for s in range(1, max_stride + 1))
        runs[i] = runs[i - 1] + (0 if same else 1)
    return runs


def load_windows(blinks: Path, labels: Path, fold: int = 0) -> BlinkWindows:
    """One pair of files -> :class:`BlinkWindows`; InputError says what is wrong with them."""
    try:
        x = np.load(blinks, allow_pickle=False)
        raw = np.load(labels, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InputError(f"blink windows not found: {exc.filename}") from None
    except ValueError as exc:
        raise InputError(f"{blinks} / {labels} are not plain .npy arrays: {exc}") from None
    if x.ndim != 3 or x.shape[2] != 4:
        raise InputError(f"{blinks}: expected (N, blinks, 4) blink windows, got {x.shape}")
    raw = raw.reshape(-1)
    if len(raw) != len(x):
        raise InputError(f"{labels}: {len(raw)} labels for {len(x)} windows")
    if not np.isfinite(x).all():
        raise InputError(f"{blinks}: windows hold NaN or infinite values")
    unknown = sorted(set(np.unique(raw).tolist()) - set(LABEL_VALUES))
    if unknown:
        raise InputError(f"{labels}: labels must be in {LABEL_VALUES}, found {unknown}")
    y = np.searchsorted(np.array(LABEL_VALUES), raw).astype(np.int64)
    runs = recover_runs(x) + fold * 100_000
    return BlinkWindows(x.astype(np.float32), y, np.full(len(y), fold), runs)


def load_rldd(data_dir: Path, folds: list[int]) -> BlinkWindows:
    """The folds' windows from ``data_dir`` (``BlinksTest_30_FoldK.npy`` and labels)."""
    parts = [load_windows(data_dir / f"BlinksTest_30_Fold{k}.npy",
                          data_dir / f"LabelsTest_30_Fold{k}.npy", fold=k) for k in folds]
    if not parts:
        raise InputError("no folds chosen")
    return BlinkWindows(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("x", "y", "fold", "run")))


@dataclass(frozen=True)
class DrowsinessConfig:
    """How the network is trained; ``model_args`` go to ``create_model``."""

    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-3
    mse_weight: float = 1.0
    gan: bool = False
    gan_lr: float = 1e-4
    gan_regime: str = "scratch"
    gan_unfreeze_after: int = 5
    # 120 numbers per window: a quarter of the paper-sized generator learns them 2.4× faster
    gan_generator_channels: int = 32
    gan_generator_hidden: int = 128
    seed: int = 0
    threads: int = 1  # these networks are small: one thread each beats contended cores


def class_weights(y: np.ndarray, classes: int = len(CLASSES)) -> torch.Tensor:
    """(K,) N / (K · count_k): rarer classes weigh more, the weights average 1 per sample."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    return torch.tensor(len(y) / (classes * np.maximum(counts, 1)), dtype=torch.float32)


def train_drowsiness(train: BlinkWindows, config: DrowsinessConfig,
                     init: BlinkWindowNet | None = None
                     ) -> tuple[BlinkWindowNet, list[dict[str, float]]]:
    """The trained network (eval mode) and its per-epoch training losses. ``init``: a trained
    network to fine-tune (left unchanged; a copy is trained) instead of a fresh one."""
    with torch_threads(config.threads):
        return _train(train, config, init)


def _train(train: BlinkWindows, config: DrowsinessConfig, init: BlinkWindowNet | None
           ) -> tuple[BlinkWindowNet, list[dict[str, float]]]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = copy.deepcopy(init) if init is not None else create_model(MODEL, **config.model_args)
    assert isinstance(model, BlinkWindowNet)
    x = model.transform(torch.from_numpy(train.x))
    y = torch.from_numpy(train.y)
    optimiser = torch.optim.AdamW(model.core.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    gan = optimisers = None
    if config.gan:
        gan = GanBalancer(seq_len=x.shape[1], features=x.shape[2], n_classes=len(CLASSES),
                          regime=config.gan_regime, unfreeze_after=config.gan_unfreeze_after,
                          generator_channels=config.gan_generator_channels,
                          generator_hidden=config.gan_generator_hidden)
        gan.classifier = model.core  # the GAN's C is our network, in the transformed space
        optimisers = GanOptimisers(
            torch.optim.Adam(gan.generator.parameters(), lr=config.gan_lr),
            torch.optim.Adam(gan.discriminator.parameters(), lr=config.gan_lr), optimiser)
        gan.train()
    weights = class_weights(train.y)
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        totals: dict[str, float] = {}
        batches = 0
        for start in range(0, len(y), config.batch_size):
            index = order[start:start + config.batch_size]
            if len(index) < 2:
                continue  # BatchNorm needs two samples
            if gan is not None and optimisers is not None:
                losses = gan.train_step(x[index], y[index], optimisers, epoch)
            else:
                loss = drowsiness_loss(model.core(x[index]), y[index], weights,
                                       config.mse_weight)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses = {"loss": loss.item()}
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v
            batches += 1
        history.append({"epoch": epoch + 1, **{k: v / batches for k, v in totals.items()}})
        log.debug("epoch %d: %s", epoch + 1, history[-1])
    return model.eval(), history


def evaluate(model: torch.nn.Module, data: BlinkWindows) -> dict[str, Any]:
    """The classification report (accuracy, macro-F1, per-class recall, one-vs-rest ROC-AUC,
    confusion matrix) of ``model`` on ``data``, with the mean score per true class."""
    readout = ClipPredictor(model, max_batch=len(data) or 1).run_batch(torch.from_numpy(data.x))
    probabilities, score = readout["probabilities"].numpy(), readout["score"].numpy()
    report = classification_report(data.y, probabilities, CLASSES)
    report["mean_score"] = {name: float(score[data.y == c].mean()) if (data.y == c).any()
                            else None for c, name in enumerate(CLASSES)}
    return report


def save_model(path: Path | IO[bytes], model: BlinkWindowNet, config: DrowsinessConfig,
               folds: list[int], metrics: dict[str, Any]) -> None:
    preprocessing = {"window_blinks": 30, "features": ["frequency", "amplitude", "duration",
                                                       "velocity"],
                     "normalisation": "z-score per driver against the driver's alert baseline",
                     "labels": list(CLASSES), "training": {**asdict(config), "folds": folds}}
    save_checkpoint(path, model, MODEL, dict(config.model_args), preprocessing, metrics)


def cross_validate(data_dir: Path, folds: list[int], config: DrowsinessConfig, out_dir: Path,
                   gan_settings: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """Leave-one-fold-out over ``folds``, for each GAN setting: train on the others, test on
    the fold. Writes ``report.json`` and ``report.png`` to ``out_dir``; returns the report."""
    data = load_rldd(data_dir, folds)
    report: dict[str, Any] = {"data": str(data_dir), "folds": folds, "config": asdict(config),
                              "settings": {}}
    for gan in gan_settings:
        name = "gan" if gan else "no_gan"
        per_fold = {}
        started = time.perf_counter()
        for k in folds:
            model, _ = train_drowsiness(data.where(data.fold != k), replace(config, gan=gan))
            per_fold[str(k)] = evaluate(model, data.where(data.fold == k))
            log.info("%s fold %d: accuracy %.3f, macro-F1 %.3f", name, k,
                     per_fold[str(k)]["accuracy"], per_fold[str(k)]["macro_f1"])
        report["settings"][name] = {"per_fold": per_fold, "mean": _mean_of(per_fold),
                                    "seconds": time.perf_counter() - started}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    plot_report(report, out_dir / "report.png")
    return report


def _mean_of(per_fold: dict[str, dict[str, Any]]) -> dict[str, float]:
    folds = list(per_fold.values())
    mean = {key: float(np.mean([f[key] for f in folds]))
            for key in ("accuracy", "macro_f1", "macro_roc_auc")}
    for name in CLASSES:
        mean[f"recall_{name}"] = float(np.mean([f["per_class"][name]["recall"] for f in folds]))
    return mean


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Per-fold accuracy and macro-F1 per setting, and each setting's summed confusion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    fig, axes = plt.subplots(1, 1 + len(settings), figsize=(5 + 4 * len(settings), 4))
    ax = axes[0]
    width = 0.8 / (2 * len(settings))
    folds = [str(k) for k in report["folds"]]
    for i, (name, result) in enumerate(settings.items()):
        for j, metric in enumerate(("accuracy", "macro_f1")):
            values = [result["per_fold"][k][metric] for k in folds]
            offset = (2 * i + j) * width
            ax.bar(np.arange(len(folds)) + offset, values, width, label=f"{name} {metric}")
    ax.set_xticks(np.arange(len(folds)) + 0.4 - width / 2, [f"fold {k}" for k in folds])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("leave-one-fold-out")
    for ax, (name, result) in zip(axes[1:], settings.items(), strict=True):
        matrix = np.sum([result["per_fold"][k]["confusion_matrix"] for k in folds], axis=0)
        normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
        for (r, c), v in np.ndenumerate(normalised):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center")
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=20)
        ax.set_yticks(range(len(CLASSES)), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: recall per true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
