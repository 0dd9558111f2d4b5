"""The AU trainer: the subject/sequence/CSV layout, BP4D occurrence and DISFA intensity labels
with unknowns masked, windows and the subject-disjoint split, the masked weighted BCE and its
occurrence weights, the simulator's labels, and tiny end-to-end runs (resumed, and through the
CLI)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.au import SATNet, weighted_bce
from models.checkpoint import load_checkpoint
from models.errors import VigilError
from streams.errors import ConfigurationError, InputError
from training.au import (
    SIM_AUS,
    AUTrainConfig,
    AUWindows,
    au_metrics,
    au_weights,
    find_sequences,
    masked_weighted_bce,
    read_labels,
    simulated_labels,
    train_au,
    windows_from_dir,
)
from vigil.cli import main

AUS = (1, 2, 12)
TINY = {"aus": AUS, "size": 32, "clip_length": 4, "stride": 4, "batch_size": 2, "crop": "none",
        "progress": False, "threads": 1, "lr": 0.001}


def _sequence(root: Path, subject: str, sequence: str, frames: int, rows: list[str] | None,
              header: str = "frame,AU1,AU2,AU12") -> None:
    """Frames 0001.jpg.. (grey level 10·k) and, unless rows is None, the labels CSV."""
    folder = root / subject / sequence
    folder.mkdir(parents=True)
    for k in range(frames):
        cv2.imwrite(str(folder / f"{k + 1:04d}.jpg"), np.full((40, 36, 3), 10 * k, np.uint8))
    if rows is not None:
        (root / subject / f"{sequence}.csv").write_text("\n".join([header, *rows]) + "\n")


def _rows(frames: int, pattern: tuple[int, int, int] = (1, 0, 1)) -> list[str]:
    """Frame k: AU1 on for odd k, AU2 from the pattern, AU12 on for the first half."""
    return [f"{k + 1},{k % 2},{pattern[1]},{int(k < frames // 2)}" for k in range(frames)]


@pytest.fixture(scope="module")
def au_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three subjects with one 8-frame sequence each (2 windows of 4), s1 with a second
    sequence holding an unreadable frame (its window skipped) and s3 with a sequence that has
    no CSV (skipped)."""
    root = tmp_path_factory.mktemp("au-frames")
    for subject in ("s1", "s2", "s3"):
        _sequence(root, subject, "T1", 8, _rows(8))
    _sequence(root, "s1", "T2", 8, _rows(8))
    (root / "s1" / "T2" / "0006.jpg").write_bytes(b"broken")
    _sequence(root, "s3", "T2", 4, None)
    return root


def _config(out: Path, **overrides: object) -> AUTrainConfig:
    return AUTrainConfig(out_dir=out, **{**TINY, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------- layout and labels


def test_layout_errors_name_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected ROOT/<subject>/<sequence>/") as err:
        find_sequences(tmp_path / "missing")
    assert isinstance(err.value, VigilError) and "\n" not in str(err.value)
    cv2.imwrite(str(tmp_path / "loose.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="no <subject>/<sequence>/ folders"):
        find_sequences(tmp_path)
    _sequence(tmp_path, "s1", "T1", 2, None)
    with pytest.raises(InputError, match=r"has a <sequence>\.csv"):
        find_sequences(tmp_path)


def test_fixed_split_and_frame_order(tmp_path: Path) -> None:
    _sequence(tmp_path / "train", "F001", "T1", 3, _rows(3))
    _sequence(tmp_path / "test", "M002", "T1", 3, _rows(3))
    (tmp_path / "train" / "F001" / "T1" / "0010.jpg").write_bytes(
        (tmp_path / "train" / "F001" / "T1" / "0001.jpg").read_bytes())
    found = {s.sequence_id: s for s in find_sequences(tmp_path)}
    assert {k: (s.subject, s.is_val) for k, s in found.items()} == {
        "train/F001/T1": ("F001", False), "test/M002/T1": ("M002", True)}
    assert [f.name for f in found["train/F001/T1"].frames] == [
        "0001.jpg", "0002.jpg", "0003.jpg", "0010.jpg"]


def test_labels_occurrence_intensity_and_unknowns(tmp_path: Path) -> None:
    path = tmp_path / "T1.csv"
    path.write_text("Frame,AU01,AU2,AU04\n0001.jpg,1,0,1\n2,9,1,\n3,0,1,0\n")
    labels, missing = read_labels(path, (1, 2, 12))
    assert missing == [12]  # no AU12 column: masked
    assert labels[1].tolist() == [1, 0, -1] and labels[2].tolist() == [-1, 1, -1]
    assert labels[3].tolist() == [0, 1, -1]  # BP4D's 9 is unknown, as is an empty cell
    path.write_text("frame,AU1,AU2\n1,0,5\n2,2,1\n3,7,\n")
    labels, _ = read_labels(path, (1, 2), intensity=True)  # DISFA: occurs at >= 2
    assert [labels[k].tolist() for k in (1, 2, 3)] == [[0, 1], [1, 0], [-1, -1]]
    path.write_text("image,AU1\n1,0\n")
    with pytest.raises(InputError, match="no frame column"):
        read_labels(path, (1,))
    path.write_text("frame,AU5\n1,0\n")
    with pytest.raises(InputError, match="none of the AU columns AU1"):
        read_labels(path, (1,))


def test_windows_split_by_subject_and_bad_samples_are_counted(au_tree: Path,
                                                              tmp_path: Path) -> None:
    data = windows_from_dir(au_tree, _config(tmp_path, data_dir=au_tree), tmp_path / "clips")
    assert sorted(data.ids) == ["s1/T1#0", "s1/T1#4", "s1/T2#0", "s2/T1#0", "s2/T1#4",
                                "s3/T1#0", "s3/T1#4"]
    assert data.frames.shape == (7, 4, 32, 32, 3) and data.targets.shape == (7, 4, 3)
    assert {s["clip"]: s["reason"] for s in data.skipped} == {
        "s1/T2#4": "unreadable frame 0006.jpg", "s3/T2": "no labels file T2.csv"}
    # s1/T1#4 holds frames 5..8 in order with their labels (AU1 on odd k, AU12 first half).
    k = data.ids.index("s1/T1#4")
    np.testing.assert_allclose(data.frames[k].mean(axis=(1, 2, 3)), 10 * np.arange(4, 8),
                               atol=2)
    assert data.targets[k].tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]]
    # One of three subjects is held out (val_fraction 1/3), all of its windows.
    held = {i.split("/")[0] for i, v in zip(data.ids, data.is_val, strict=True) if v}
    kept = {i.split("/")[0] for i, v in zip(data.ids, data.is_val, strict=True) if not v}
    assert len(held) == 1 and not held & kept


def test_samples_flip_whole_windows(au_tree: Path, tmp_path: Path) -> None:
    data = windows_from_dir(au_tree, _config(tmp_path, data_dir=au_tree), tmp_path / "clips")
    frames, labels = AUWindows(data, np.arange(len(data.ids)))[0]
    assert frames.shape == (4, 3, 32, 32) and labels.shape == (4, 3)
    torch.manual_seed(0)
    data.frames = np.array(data.frames)  # writable
    data.frames[0, :, :, :8] = 255  # a bright left edge in every frame: flips show
    for _ in range(8):
        out, same = AUWindows(data, np.array([0]), augment=True)[0]
        left, right = out[..., :8].mean(dim=(1, 2, 3)), out[..., -8:].mean(dim=(1, 2, 3))
        assert bool((left > right).all()) or bool((right > left).all())  # all frames alike
        assert torch.equal(same, labels)  # AU labels are bilateral: a flip keeps them


# ---------------------------------------------------------------- loss, weights, metrics


def test_masked_loss_is_the_papers_loss_without_the_unknowns() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    labels = (torch.rand(2, 4, 3) > 0.5).float()
    weights = torch.tensor([0.5, 1.0, 1.5])
    assert torch.allclose(masked_weighted_bce(logits, labels, weights),
                          weighted_bce(logits, labels, weights))
    masked = labels.clone()
    masked[0, 0, 1] = -1
    changed = logits.clone()
    changed[0, 0, 1] = 50.0  # whatever the net says about an unknown label costs nothing
    assert torch.allclose(masked_weighted_bce(logits, masked, weights),
                          masked_weighted_bce(changed, masked, weights))
    assert not torch.allclose(masked_weighted_bce(logits, labels, weights),
                              masked_weighted_bce(changed, labels, weights))


def test_occurrence_weights_favour_rare_aus_over_known_frames() -> None:
    targets = np.zeros((4, 5, 3), np.float32)
    targets[:, :, 0] = 1  # always on
    targets[:, :1, 1] = 1  # on in 1/5 of the frames
    targets[:, 1:, 1] = [[-1, 0, 0, 0]] * 4  # ... of its known frames: 1/4
    w = au_weights(targets, ["AU1", "AU2", "AU12"])  # AU12 never occurs: clamped to 1 %
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[2]) > float(w[1]) > float(w[0])
    assert float(w[1] / w[0]) == pytest.approx(4.0, rel=1e-4)  # eps in the inverse


def test_metrics_per_au_and_means() -> None:
    labels = np.array([[1, 0, 0], [0, 0, -1], [1, 0, 1], [0, 0, 0]], np.float32)
    probs = np.array([[0.9, 0.1, 0.2], [0.2, 0.7, 0.9], [0.8, 0.1, 0.1], [0.1, 0.2, 0.3]])
    m = au_metrics(labels, probs, ["AU1", "AU2", "AU12"])
    assert m["f1_AU1"] == 1.0 and m["auc_AU1"] == 1.0
    assert math.isnan(m["f1_AU2"]) and math.isnan(m["auc_AU2"])  # never occurs: left out
    assert m["f1_AU12"] == 0.0 and m["auc_AU12"] == 0.0  # the unknown 0.9 does not count
    assert m["mean_f1"] == pytest.approx(0.5) and m["mean_auc"] == pytest.approx(0.5)


def test_simulated_labels_from_the_truth() -> None:
    n = 12
    closure = [0.0] * n
    closure[2:4] = [0.6, 0.3]  # a blink, frames 2-3 (peak 0.6)
    closure[6:11] = [0.9] * 5  # a long closure, closed 6-10
    truth = {"frame_count": n, "blinks": [{"start_frame": 2, "end_frame": 3}],
             "long_closures": [{"closed_start_frame": 6, "closed_end_frame": 10}],
             "frames": {"closure_left": closure, "closure_right": closure,
                        "mouth_open": [0.0] * 4 + [0.5] * 2 + [0.0] * 6,
                        "face_visible": [True] * 11 + [False],
                        "eyes_visible": [True] * 10 + [False] * 2}}
    y = simulated_labels(truth, SIM_AUS)  # AU26, AU43, AU45
    assert y[:, 0].tolist()[:11] == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert y[:, 1].tolist()[:10] == [0] * 6 + [1] * 4
    assert y[:, 2].tolist()[:10] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]  # >= 0.5 only
    assert y[10].tolist() == [0, -1, -1] and y[11].tolist() == [-1, -1, -1]


def test_config_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        AUTrainConfig(out_dir=tmp_path)  # neither data nor simulated
    with pytest.raises(ConfigurationError, match="renders AUs"):
        AUTrainConfig(out_dir=tmp_path, simulated=True, aus=(1, 43))
    with pytest.raises(ConfigurationError, match="unknown monitor"):
        AUTrainConfig(out_dir=tmp_path, data_dir=tmp_path, monitor="f1_AU99")
    assert AUTrainConfig(out_dir=tmp_path, data_dir=tmp_path, monitor="auc_AU12").monitor


# ---------------------------------------------------------------- end to end


def test_tiny_training_writes_everything_and_resumes(au_tree: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path, data_dir=au_tree, epochs=1, monitor="val_loss")
    result = train_au(config)
    assert result.skipped_clips == 2 and result.fit.epochs_run == 1
    for name in ("au.pt", "metrics.json", "au-history.json", "au-loss.png", "au-last.pt",
                 "au-best.pt", "roc.png", "roc.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    model, meta = load_checkpoint(tmp_path / "au.pt")
    pre = meta["preprocessing"]
    assert pre["labels"] == ["AU1", "AU2", "AU12"] and pre["clip_length"] == 4
    assert pre["layout"] == "(B, T, 3, H, W)" and pre["size"] == [32, 32]
    assert meta["args"]["aus"] == 3 and meta["args"]["variant"] == "sat-net"
    with torch.no_grad():
        out = SATNet.readout(model(torch.zeros(1, 4, 3, 32, 32)))["probabilities"]
    assert out.shape == (1, 4, 3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"mean_f1", "mean_auc", "f1_AU1", "auc_AU12"} <= set(metrics["validation"])
    assert metrics["data"]["skipped_clips"] == 2
    assert set(metrics["data"]["weights"]) == {"AU1", "AU2", "AU12"}
    roc = json.loads((tmp_path / "roc.json").read_text())
    assert roc["pooled"]["tpr"][-1] == 1.0

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training"):
        again = train_au(replace(config, resume=True, epochs=2))
    assert "reusing 7 prepared windows" in caplog.text
    assert "resuming after epoch 1 of 2" in caplog.text
    history = json.loads((tmp_path / "au-history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2] and again.fit.epochs_run == 2


def test_cli_trains_and_reports_bad_layouts_in_one_line(
        au_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "au", "--data", str(au_tree), "--out", str(out), "--epochs", "1",
            "--aus", "1", "2", "12", "--size", "32", "--clip-length", "4", "--stride", "4",
            "--batch-size", "4", "--crop", "none", "--variant", "sa-net", "--no-progress",
            "--threads", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 1 and Path(result["checkpoint"]) == out / "au.pt"
    _, meta = load_checkpoint(out / "au.pt")
    assert meta["args"]["variant"] == "sa-net"
    assert main(["train", "au", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vigil: error:") and "expected ROOT/<subject>" in err
    assert "\n" not in err
