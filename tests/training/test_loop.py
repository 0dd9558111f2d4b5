"""The generic trainer: resume equivalence, early stopping, history/plots, ROC and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models.checkpoint import load_checkpoint
from models.errors import VigilError
from models.registry import register_model, unregister_model
from streams.errors import ConfigurationError, InputError
from training.loop import (
    CheckpointSpec,
    FitConfig,
    TrainingError,
    fit,
    load_state,
)
from training.metrics import binary_metrics, roc_auc, roc_curve

TINY = "test-loop-tiny-mlp"


def _tiny_example(batch: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 4),)


@pytest.fixture(scope="module", autouse=True)
def tiny_model_registered() -> Any:
    @register_model(TINY, example=_tiny_example)
    def tiny(hidden: int = 8, dropout: float = 0.2) -> nn.Module:
        """A 4 -> hidden -> 1 MLP with dropout (so RNG state matters)."""
        return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, 1))

    yield
    unregister_model(TINY)


def _data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])


def _step(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    noisy = x + 0.05 * torch.randn_like(x)  # an "augmentation" drawing from the global RNG
    return nn.functional.binary_cross_entropy_with_logits(model(noisy).squeeze(-1), y)


def _evaluate(model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    labels, scores, losses = [], [], []
    for x, y in batches:
        logits = model(x).squeeze(-1)
        losses.append(float(nn.functional.binary_cross_entropy_with_logits(logits, y)))
        labels.append(y.numpy())
        scores.append(torch.sigmoid(logits).numpy())
    return {"val_loss": float(np.mean(losses)),
            **binary_metrics(np.concatenate(labels), np.concatenate(scores))}


def _run(out: Path, epochs: int, resume: bool = False, seed: int = 0) -> tuple[nn.Module, Any]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    train, val = _data()
    result = fit(model, optimizer, DataLoader(train, batch_size=8, shuffle=True),
                 DataLoader(val, batch_size=8), _step, _evaluate, out,
                 CheckpointSpec(TINY, {"hidden": 8, "dropout": 0.2}, {"labels": ["no", "yes"]}),
                 FitConfig(epochs=epochs, progress=False, resume=resume, stage="tiny"),
                 scheduler)
    return model, result


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, straight_result = _run(tmp_path / "a", epochs=4)
    _run(tmp_path / "b", epochs=2)
    # A new process would start with another RNG state: prove the state file restores it.
    torch.manual_seed(12345)
    np.random.seed(999)
    resumed, resumed_result = _run(tmp_path / "b", epochs=4, resume=True, seed=777)

    last_a = load_state(tmp_path / "a" / "tiny-last.pt")["model"]
    last_b = load_state(tmp_path / "b" / "tiny-last.pt")["model"]
    for name, value in last_a.items():
        assert torch.equal(value, last_b[name]), name
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert [h["train_loss"] for h in resumed_result.history] == \
        [h["train_loss"] for h in straight_result.history]
    assert resumed_result.epochs_run == 4
    assert resumed_result.best_epoch == straight_result.best_epoch


def test_resume_of_a_finished_run_trains_no_further(tmp_path: Path) -> None:
    _, first = _run(tmp_path, epochs=2)
    before = (tmp_path / "tiny-last.pt").read_bytes()
    _, again = _run(tmp_path, epochs=2, resume=True)
    assert (tmp_path / "tiny-last.pt").read_bytes() == before
    assert again.epochs_run == 2 and again.best_epoch == first.best_epoch


def test_outputs_rebuild_and_describe_the_run(tmp_path: Path) -> None:
    _, result = _run(tmp_path, epochs=3)
    model, meta = load_checkpoint(result.best_path)
    assert meta["name"] == TINY and meta["preprocessing"] == {"labels": ["no", "yes"]}
    assert meta["metrics"]["epoch"] == result.best_epoch
    assert model(torch.zeros(2, 4)).shape == (2, 1)
    history = json.loads(result.history_path.read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert {"train_loss", "val_loss", "f1", "auc", "lr"} <= set(history["epochs"][0])
    assert history["best_epoch"] == result.best_epoch
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _scripted_fit(out: Path, values: list[float], patience: int, mode: str
                  ) -> tuple[nn.Module, Any]:
    """Trains with a validation metric that follows ``values`` epoch by epoch."""
    model = nn.Linear(4, 1)
    calls = iter(values)

    def evaluate(m: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        for _ in batches:
            pass
        return {"val_loss": 0.0, "score": next(calls)}

    def step(m: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return ((m(x).squeeze(-1) - y) ** 2).mean()

    train, val = _data()
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.1),
                 DataLoader(train, batch_size=16), DataLoader(val, batch_size=16), step,
                 evaluate, out, CheckpointSpec(TINY, {}), FitConfig(
                     epochs=len(values), monitor="score", mode=mode, patience=patience,
                     progress=False, stage="s"))
    return model, result


def test_early_stopping_after_patience_keeps_the_best(tmp_path: Path) -> None:
    model, result = _scripted_fit(tmp_path, [0.5, 0.8, 0.7, 0.8, 0.6, 0.9, 0.95], patience=3,
                                  mode="max")
    assert result.stopped_early
    assert result.epochs_run == 5  # best in epoch 2, then 3 epochs without improvement
    assert result.best_epoch == 2 and result.best_value == pytest.approx(0.8)
    best = torch.load(result.best_path, weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():  # the best weights are back in the model
        assert torch.equal(value, best[name]), name
    last = load_state(result.last_path)["model"]
    assert any(not torch.equal(last[n], v) for n, v in best.items())


def test_min_mode_and_no_early_stop_without_patience_exhausted(tmp_path: Path) -> None:
    _, result = _scripted_fit(tmp_path, [3.0, 2.0, 2.5, 1.0], patience=2, mode="min")
    assert not result.stopped_early and result.epochs_run == 4 and result.best_epoch == 4


def test_a_diverging_loss_stops_with_a_training_error(tmp_path: Path) -> None:
    model = nn.Linear(4, 1)
    train, val = _data()

    def step(m: nn.Module, batch: Any) -> torch.Tensor:
        return m(batch[0]).sum() * float("nan")

    with pytest.raises(TrainingError, match="lower the learning rate") as err:
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(train, batch_size=8),
            DataLoader(val, batch_size=8), step, _evaluate, tmp_path, CheckpointSpec(TINY, {}),
            FitConfig(epochs=2, progress=False))
    assert isinstance(err.value, VigilError)


def test_bad_configuration_is_a_vigil_error() -> None:
    with pytest.raises(ConfigurationError):
        FitConfig(epochs=0)
    with pytest.raises(ConfigurationError):
        FitConfig(epochs=1, mode="up")


def test_roc_against_hand_computed_points() -> None:
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds.tolist() == [np.inf, 0.8, 0.4, 0.35, 0.1]
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_edge_cases() -> None:
    assert roc_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert roc_auc([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie is a diagonal
    # 3 positives, 2 negatives; pairs ranked correctly: 5 of 6, one tie counts half
    assert roc_auc([1, 1, 1, 0, 0], [0.9, 0.6, 0.3, 0.6, 0.1]) == pytest.approx(4.5 / 6)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    with pytest.raises(InputError) as err:
        roc_curve([1, 1], [0.2, 0.3])
    assert isinstance(err.value, VigilError)


def test_binary_metrics_by_hand() -> None:
    m = binary_metrics([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7])
    # predicted positive: samples 0, 2, 4 -> TP 2, FP 1, FN 1, TN 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(5 / 6)
    nothing = binary_metrics([1, 0], [0.1, 0.2])
    assert nothing["precision"] == 0.0 and nothing["f1"] == 0.0
