"""The fatigue trainer: the video/labels layout, clip cutting (whole frames and the real face
engine's alignment), the six clip-level augmentations, the simulator's score, and tiny
end-to-end runs (resumed, and through the CLI)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.errors import VigilError
from models.fatigue import FatigueNet
from models.resnet import ResNet18
from streams.errors import ConfigurationError, InputError
from training.augment import SIX, PhotoAugment, apply_photo_augment, sample_photo_augment
from training.clip_data import ClipWriter, FrameCropper
from training.fatigue import (
    FatigueClips,
    FatigueTrainConfig,
    clips_from_dir,
    fatigue_metrics,
    find_videos,
    initial_model,
    prepare_video,
    simulated_score,
    train_fatigue,
)
from vigil.cli import main
from workers.face.backends import create_backend
from workers.face.crops import align_face

TINY = {"size": 32, "clip_length": 8, "batch_size": 2, "crop": "none", "progress": False,
        "threads": 1, "hidden": 8}


def _video(path: Path, frames: int, start: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    """An mp4 whose frame k is a flat grey of level 10·(start + k) with a white square in its
    top-left corner (to see flips)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
    for k in range(frames):
        frame = np.full((h, w, 3), 10 * (start + k) % 250, np.uint8)
        frame[:8, :8] = 255
        writer.write(frame)
    writer.release()
    return path


def _labels(folder: Path, rows: list[str], header: str = "video,score") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/videos/ with five scored videos (two of 20 frames, two of 16, one of 5), a corrupt
    one (skipped when read), a label row naming no video and one out of range (both skipped),
    and an unlabelled video (ignored)."""
    root = tmp_path_factory.mktemp("fatigue-videos")
    for name, n, start in (("a", 20, 0), ("b", 20, 3), ("c", 16, 1), ("d", 16, 5),
                           ("short", 5, 2), ("unlabelled", 8, 0), ("e", 8, 0)):
        _video(root / "videos" / f"{name}.mp4", n, start)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    _labels(root, ["a.mp4,0.9", "b,0.1", "c.mp4,0.7", "d.mp4,0.2", "short.mp4,0.4",
                   "broken.mp4,0.5", "ghost.mp4,0.5", "d.mp4,0.3", "e.mp4,1.7"])
    return root


def _config(out: Path, **overrides: object) -> FatigueTrainConfig:
    return FatigueTrainConfig(out_dir=out, **{**TINY, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------- layout


def test_layout_errors_name_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected ROOT/videos/") as err:
        find_videos(tmp_path / "missing")
    assert isinstance(err.value, VigilError) and "\n" not in str(err.value)
    (tmp_path / "videos").mkdir()
    with pytest.raises(InputError, match=r"no labels\.csv and videos/ folder"):
        find_videos(tmp_path)
    _labels(tmp_path, ["a.mp4,3"], header="clip,fatigue")
    with pytest.raises(InputError, match="not video and score or level"):
        find_videos(tmp_path)
    _labels(tmp_path, ["a.mp4,0.3"])
    with pytest.raises(InputError, match="no usable labelled video"):
        find_videos(tmp_path)  # the one row names a video that is not there


def test_labels_skip_bad_rows_and_map_levels(video_tree: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        sources, skipped = find_videos(video_tree)
    assert {s.video_id: s.score for s in sources} == {
        "videos/a.mp4": 0.9, "videos/b.mp4": 0.1, "videos/c.mp4": 0.7, "videos/d.mp4": 0.2,
        "videos/short.mp4": 0.4, "videos/broken.mp4": 0.5}
    reasons = {s["clip"]: s["reason"] for s in skipped}
    assert "no video 'ghost.mp4'" in reasons["videos/ghost.mp4"]
    assert "second label row" in reasons["videos/d.mp4"]
    assert "outside [0, 1]" in reasons["videos/e.mp4"]
    assert "have no row in labels.csv and are ignored: unlabelled.mp4\n" in caplog.text
    # DLFD levels 1-5 map to [0, 1]; subjects are the split unit; a fixed split is kept.
    for split, rows in (("train", ["x.mp4,1,p1", "y.mp4,3.5,p1"]), ("test", ["z.mp4,5,p2"])):
        _labels(tmp_path / split, rows, header="video,level,subject")
        for row in rows:
            _video(tmp_path / split / "videos" / row.split(",")[0], 2)
    found = {s.video_id: (s.score, s.is_val, s.group) for s in find_videos(tmp_path)[0]}
    assert found == {"train/videos/x.mp4": (0.0, False, "subject:p1"),
                     "train/videos/y.mp4": (0.625, False, "subject:p1"),
                     "test/videos/z.mp4": (1.0, True, "subject:p2")}


def test_clips_are_consecutive_windows_and_bad_videos_are_counted(video_tree: Path,
                                                                  tmp_path: Path) -> None:
    config = _config(tmp_path, data_dir=video_tree, val_fraction=0.4)
    data = clips_from_dir(video_tree, config, tmp_path / "clips")
    # 20 frames -> 2 windows of 8 (the tail of 4 dropped); 16 -> 2; 5 -> 1 padded clip.
    assert sorted(data.ids) == ["videos/a.mp4#0", "videos/a.mp4#1", "videos/b.mp4#0",
                                "videos/b.mp4#1", "videos/c.mp4#0", "videos/c.mp4#1",
                                "videos/d.mp4#0", "videos/d.mp4#1", "videos/short.mp4#0"]
    assert data.frames.shape == (9, 8, 32, 32, 3) and data.frames.dtype == np.uint8
    scores = dict(zip(data.ids, data.targets.tolist(), strict=True))
    assert scores["videos/a.mp4#1"] == pytest.approx(0.9)
    assert scores["videos/short.mp4#0"] == pytest.approx(0.4)
    # a.mp4's second clip holds its frames 8..15 in order (grey level 10 per frame; the
    # mp4 codec is lossy, hence the tolerance), the short one repeats its ends.
    grey = data.frames[data.ids.index("videos/a.mp4#1")][:, 20:, 20:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, 10 * np.arange(8, 16), atol=4)
    short = data.frames[data.ids.index("videos/short.mp4#0")][:, 20:, 20:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(short, 10 * (2 + np.array([0, 0, 1, 2, 3, 4, 4, 4])), atol=4)
    # the corrupt video and the three bad label rows are skipped and counted
    assert {s["clip"] for s in data.skipped} == {"videos/broken.mp4", "videos/ghost.mp4",
                                                 "videos/d.mp4", "videos/e.mp4"}
    # the split is by video: both clips of a video are on the same side; 2 of the 6 labelled
    # videos are held out (one may be the broken one)
    sides = {i.split("#")[0]: bool(v) for i, v in zip(data.ids, data.is_val, strict=True)}
    for clip_id, v in zip(data.ids, data.is_val, strict=True):
        assert sides[clip_id.split("#")[0]] == bool(v)
    assert 1 <= sum(sides.values()) <= 2


def test_real_faces_are_aligned_and_faceless_clips_skipped(video_dir: Path,
                                                           tmp_path: Path) -> None:
    from training.fatigue import VideoSource

    config = _config(tmp_path, data_dir=tmp_path, crop="align", size=64)
    writer = ClipWriter(tmp_path / "clips", 8, 64)
    cropper = FrameCropper("align", 64, "mediapipe")
    try:
        fps = prepare_video(VideoSource(video_dir / "single_face.mp4", 0.3, False, "face",
                                        "face"), config, cropper, writer)
        prepare_video(VideoSource(video_dir / "no_face.mp4", 0.3, False, "empty", "empty"),
                      config, cropper, writer)
    finally:
        cropper.close()
    data = writer.finish(np.zeros(len(writer.ids), bool), fps, {}, ())
    assert fps == pytest.approx(30.0)
    assert data.ids == [f"face#{k}" for k in range(9)]  # 72 frames -> 9 clips of 8
    assert {s["clip"].split("#")[0] for s in data.skipped} == {"empty"}
    assert all("no face" in s["reason"] for s in data.skipped)
    # Each frame is the face aligned on its 5 landmarks (as align_face cuts it from the
    # engine's detection), not the whole frame resized.
    capture = cv2.VideoCapture(str(video_dir / "single_face.mp4"))
    frame = capture.read()[1]
    capture.release()
    backend = create_backend("mediapipe")
    try:
        landmarks = backend.detect(frame, 0)[0].landmarks5
    finally:
        backend.close()
    aligned = cv2.cvtColor(align_face(frame, landmarks, 64), cv2.COLOR_BGR2RGB).astype(float)
    whole = cv2.cvtColor(cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB).astype(float)
    first = data.frames[0, 0].astype(float)
    assert np.abs(first - aligned).mean() < 8 < np.abs(first - whole).mean()


# ---------------------------------------------------------------- augmentation and scores


def test_augmentation_is_one_draw_for_the_whole_clip() -> None:
    torch.manual_seed(0)
    frame = torch.rand(3, 24, 24)
    clip = frame.expand(6, 3, 24, 24).clone()  # six identical frames
    draws = [sample_photo_augment(SIX) for _ in range(20)]
    outs = [apply_photo_augment(clip, aug) for aug in draws]
    for out in outs:  # the same transform on every frame
        assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6)
    assert len(set(draws)) > 15  # draws differ (all six off, 1 in 64, is the identity) ...
    assert len({round(float(o.sum()), 3) for o in outs}) > 15  # ... and so do their clips
    assert sum(d.flip for d in draws) not in (0, 20)  # each op on about half the time
    assert sum(d.blur > 0 for d in draws) not in (0, 20)
    # Each op does what it says.
    assert torch.equal(apply_photo_augment(clip, PhotoAugment(flip=True)), clip.flip(-1))
    assert torch.allclose(apply_photo_augment(clip, PhotoAugment(brightness=0.5)), clip * 0.5)
    grey = apply_photo_augment(clip, PhotoAugment(saturation=0.0))
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6)
    flat = apply_photo_augment(clip, PhotoAugment(contrast=0.0))
    assert float(flat.std()) < 1e-6
    blurred = apply_photo_augment(clip, PhotoAugment(blur=1.5))
    assert float(blurred.std()) < float(clip.std()) and blurred.shape == clip.shape
    assert torch.equal(apply_photo_augment(clip, PhotoAugment()), clip)
    # The AU trainer's flip-only draws never touch colour.
    flips = [sample_photo_augment(("flip",)) for _ in range(20)]
    assert all(d == PhotoAugment(flip=d.flip) for d in flips)


def test_samples_are_conv3d_clips_augmented_per_clip(video_tree: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, data_dir=video_tree)
    data = clips_from_dir(video_tree, config, tmp_path / "clips")
    clip, score = FatigueClips(data, np.arange(len(data.ids)))[0]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.float32
    assert score.shape == () and float(score) == pytest.approx(float(data.targets[0]))
    torch.manual_seed(3)
    augmented = [FatigueClips(data, np.array([0]), augment=True)[0][0] for _ in range(6)]
    assert any(not torch.allclose(a, clip) for a in augmented)


def test_simulated_score_follows_closure_and_yawns() -> None:
    n = 10
    frames = {"closure_left": [0.0] * n, "closure_right": [0.0] * n, "mouth_open": [0.0] * n,
              "face_visible": [True] * n}
    assert simulated_score(frames, 0, n) == 0.0
    frames["closure_left"] = frames["closure_right"] = [1.0] * 5 + [0.0] * 5
    assert simulated_score(frames, 0, n) == pytest.approx(0.5)  # (PERCLOS .5 + closure .5)/2
    assert simulated_score(frames, 0, 5) == pytest.approx(1.0)
    frames["mouth_open"] = [0.9] * n
    assert simulated_score(frames, 5, 5) == pytest.approx(0.9)  # eyes open, yawning


def test_metrics_and_config_checks(tmp_path: Path) -> None:
    scores = np.array([0.05, 0.15, 0.85, 0.95])
    probs = np.eye(10)[[0, 1, 8, 9]]
    m = fatigue_metrics(scores, np.array([0.1, 0.2, 0.8, 0.6]), probs)
    assert m["mae"] == pytest.approx(0.125) and m["bin_accuracy"] == 1.0
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0 and m["f1"] == 1.0
    with pytest.raises(ConfigurationError):
        FatigueTrainConfig(out_dir=tmp_path)  # neither data nor simulated
    with pytest.raises(ConfigurationError):
        FatigueTrainConfig(out_dir=tmp_path, simulated=True, monitor="speed")
    with pytest.raises(ConfigurationError):
        FatigueTrainConfig(out_dir=tmp_path, simulated=True, crop="zoom")


def test_2d_weights_are_inflated_into_the_trunk(tmp_path: Path) -> None:
    state = ResNet18(dims=2).state_dict()
    torch.save(state, tmp_path / "r18.pt")
    model = initial_model(_config(tmp_path, data_dir=tmp_path, init_2d=tmp_path / "r18.pt"))
    w3 = model.backbone.state_dict()["conv1.weight"]  # (64, 3, 7, 7, 7): slices = 2D / 7
    assert torch.allclose(w3[:, :, 3], state["conv1.weight"] / 7)
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="no ResNet-18 trunk weights"):
        initial_model(_config(tmp_path, data_dir=tmp_path, init_2d=tmp_path / "other.pt"))


# ---------------------------------------------------------------- end to end


def test_tiny_training_writes_everything_and_resumes(video_tree: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path, data_dir=video_tree, epochs=1, val_fraction=0.4)
    result = train_fatigue(config)
    assert result.skipped_clips == 4 and result.fit.epochs_run == 1
    for name in ("fatigue.pt", "metrics.json", "fatigue-history.json", "fatigue-loss.png",
                 "fatigue-last.pt", "fatigue-best.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "fatigue-loss.png").read_bytes()[:4] == b"\x89PNG"
    model, meta = load_checkpoint(tmp_path / "fatigue.pt")
    pre = meta["preprocessing"]
    assert pre["clip_length"] == 8 and pre["size"] == [32, 32] and pre["bins"] == 10
    assert pre["layout"] == "(B, 3, T, H, W)" and pre["crop"] == "none"
    assert meta["args"]["hidden"] == 8
    assert {"mae", "rmse", "bin_accuracy", "accuracy", "auc"} <= set(meta["metrics"])
    with torch.no_grad():
        out = FatigueNet.readout(model(torch.zeros(1, 3, 8, 32, 32)))
    assert 0.0 <= float(out["score"][0]) <= 1.0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["skipped_clips"] == 4
    assert {"mae", "rmse", "bin_accuracy", "f1"} <= set(metrics["validation"])
    val = metrics["data"]["val_clips"]
    assert val >= 2 and metrics["data"]["train_clips"] + val == 9
    if 0 < metrics["data"]["val_fatigued"] < val:  # both classes held out: a ROC curve
        assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((tmp_path / "roc.json").read_text())["tpr"][-1] == 1.0

    # Resuming with more epochs continues after epoch 1 on the prepared clips.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training"):
        again = train_fatigue(replace(config, resume=True, epochs=2))
    assert "reusing 9 prepared clips" in caplog.text
    assert "resuming after epoch 1 of 2" in caplog.text
    history = json.loads((tmp_path / "fatigue-history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2] and again.fit.epochs_run == 2


def test_cli_trains_and_reports_bad_layouts_in_one_line(
        video_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "fatigue", "--data", str(video_tree), "--out", str(out), "--epochs", "1",
            "--size", "32", "--clip-length", "8", "--batch-size", "4", "--crop", "none",
            "--no-progress", "--threads", "1", "--no-augment", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 1 and Path(result["checkpoint"]) == out / "fatigue.pt"
    assert result["data"]["skipped_clips"] == 4
    assert main(["train", "fatigue", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vigil: error:") and "expected ROOT/videos/" in err and "\n" not in err
    with pytest.raises(SystemExit):  # --data and --simulated exclude each other
        main(["train", "fatigue", "--data", "x", "--simulated", "--out", "y"])
