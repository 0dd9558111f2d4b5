"""Drowsiness from real UTA-RLDD blink windows: loading, training with and without the GAN,
evaluation, and the train / eval / cross-validation commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.predictor import ClipPredictor
from streams.errors import InputError
from training.drowsiness import (
    DrowsinessConfig,
    class_weights,
    evaluate,
    load_rldd,
    load_windows,
    recover_runs,
    train_drowsiness,
)
from vigil.cli import main

RLDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "rldd"


@pytest.fixture(scope="module")
def rldd() -> Path:
    if not (RLDD / "BlinksTest_30_Fold1.npy").is_file():
        pytest.fail(f"real data missing: {RLDD} (../shared must sit beside the repo)")
    return RLDD


def test_folds_load_with_their_videos_recovered(rldd: Path) -> None:
    data = load_rldd(rldd, [1, 2])
    assert data.x.shape == (1269 + 2043, 30, 4) and data.x.dtype == np.float32
    assert np.bincount(data.y[data.fold == 1]).tolist() == [228, 494, 547]
    # each fold holds about a dozen subjects × 3 videos; every video has one label
    for fold in (1, 2):
        runs = np.unique(data.run[data.fold == fold])
        assert 30 <= len(runs) <= 40
    assert all(len(np.unique(data.y[data.run == r])) == 1 for r in np.unique(data.run))


def test_runs_follow_sliding_windows() -> None:
    video = np.arange(40, dtype=np.float32)[:, None].repeat(4, axis=1)
    windows = np.stack([video[i:i + 30] for i in (0, 2, 4)] + [video[5:35] + 100])
    assert recover_runs(windows).tolist() == [0, 0, 0, 1]


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    blinks, labels = tmp_path / "b.npy", tmp_path / "l.npy"
    np.save(blinks, np.zeros((3, 30, 4)))
    np.save(labels, np.array([0, 5, 7]))
    with pytest.raises(InputError, match=r"labels must be in \(0, 5, 10\), found \[7\]"):
        load_windows(blinks, labels)
    np.save(labels, np.array([0, 5]))
    with pytest.raises(InputError, match="2 labels for 3 windows"):
        load_windows(blinks, labels)
    np.save(blinks, np.zeros((3, 30)))
    with pytest.raises(InputError, match=r"expected \(N, blinks, 4\)"):
        load_windows(blinks, labels)
    bad = np.zeros((2, 30, 4))
    bad[1, 3, 2] = np.nan
    np.save(blinks, bad)
    with pytest.raises(InputError, match="NaN"):
        load_windows(blinks, labels)
    with pytest.raises(InputError, match="not found"):
        load_windows(tmp_path / "missing.npy", labels)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match=r"not plain \.npy"):
        load_windows(tmp_path / "junk.npy", labels)


def test_class_weights_favour_the_rare_class() -> None:
    weights = class_weights(np.array([0, 1, 1, 1, 2, 2]))
    assert torch.allclose(weights, torch.tensor([2.0, 2 / 3, 1.0]))


@pytest.mark.parametrize("gan", [False, True])
def test_it_learns_real_windows_with_and_without_the_gan(rldd: Path, gan: bool) -> None:
    data = load_rldd(rldd, [1])
    config = DrowsinessConfig(epochs=6, gan=gan, seed=0)
    model, history = train_drowsiness(data, config)
    report = evaluate(model, data)
    majority = np.bincount(data.y).max() / len(data)
    assert report["accuracy"] > majority + 0.1  # fits its own training windows
    key = "c_opt" if gan else "loss"
    assert history[-1][key] < history[0][key]
    if gan:
        assert history[0]["c_synthetic"] > 0  # C saw synthetic minority windows
    # the drowsy windows score higher than the alert ones on the 0-1 scale
    assert report["mean_score"]["drowsy"] > report["mean_score"]["alert"]


def test_train_then_eval_commands_and_the_checkpoint(rldd: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "drowsiness.pt"
    assert main(["train", "drowsiness", "--data", str(rldd), "--folds", "1", "--epochs", "2",
                 "--out", str(ckpt)]) == 0
    model, meta = load_checkpoint(ckpt)
    assert meta["preprocessing"]["labels"] == ["alert", "low_vigilant", "drowsy"]
    assert meta["metrics"]["training_folds"] == [1]
    assert main(["eval", "drowsiness", "--ckpt", str(ckpt), "--blinks",
                 str(rldd / "BlinksTest_30_Fold2.npy"), "--labels",
                 str(rldd / "LabelsTest_30_Fold2.npy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 2043
    assert set(report["per_class"]) == {"alert", "low_vigilant", "drowsy"}
    assert np.array(report["confusion_matrix"]).sum() == 2043
    assert 0.0 <= report["macro_roc_auc"] <= 1.0
    # what the aggregator will call: a driver's window in, probabilities and a 0-1 score out
    predictor = ClipPredictor(model)
    out = predictor.predict({"d1": load_windows(rldd / "BlinksTest_30_Fold2.npy",
                                                rldd / "LabelsTest_30_Fold2.npy").x[0]})
    assert 0.0 <= out.outputs["d1"]["score"].item() <= 1.0
    assert main(["eval", "drowsiness", "--ckpt", str(tmp_path / "none.pt"), "--blinks",
                 str(rldd / "BlinksTest_30_Fold2.npy"), "--labels",
                 str(rldd / "LabelsTest_30_Fold2.npy")]) == 2


def test_cross_validation_writes_its_report(rldd: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cv", "drowsiness", "--data", str(rldd), "--folds", "1,4", "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["settings"]) == {"no_gan", "gan"}
    for result in report["settings"].values():
        assert set(result["per_fold"]) == {"1", "4"}
        assert result["per_fold"]["1"]["n"] == 1269  # tested on fold 1, trained on fold 4
        assert result["mean"]["accuracy"] == pytest.approx(np.mean(
            [r["accuracy"] for r in result["per_fold"].values()]))
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "mean accuracy" in capsys.readouterr().out


def test_the_shipped_model_is_what_its_card_says(rldd: Path) -> None:
    from models.drowsiness import SHIPPED_CHECKPOINT

    model, meta = load_checkpoint(SHIPPED_CHECKPOINT)
    assert meta["name"] == "drowsiness-blinks" and meta["args"] == {"core": "stats"}
    assert meta["preprocessing"]["training"]["folds"] == [1, 2, 3, 4]
    assert not meta["preprocessing"]["training"]["gan"]
    report = evaluate(model, load_rldd(rldd, [1, 2, 3, 4]))
    assert report["accuracy"] == pytest.approx(meta["metrics"]["train"]["accuracy"], abs=1e-6)
    card = (SHIPPED_CHECKPOINT.parents[1] / "cards" / "drowsiness-blinks.md").read_text()
    assert f"{report['accuracy']:.3f} accuracy" in card
