"""The blink trainer: clip layout, the loader on real face frames (the real face engine), the
augmentation's geometry, and tiny end-to-end runs on disk clips and on the simulator."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.errors import VigilError
from models.predictor import ClipPredictor
from streams.errors import ConfigurationError, InputError
from training.blink import (
    LABELS,
    PIXEL_MEAN,
    PIXEL_STD,
    BlinkClips,
    BlinkTrainConfig,
    ClipAugment,
    ClipSet,
    FaceCropper,
    add_arguments,
    augment_clip,
    blink_windows,
    clip_indices,
    clips_from_dir,
    clips_from_truths,
    find_clips,
    prepare_clip,
    quiet_windows,
    run,
    train_blink,
)
from workers.face.backends import create_backend

FRAMES_PER_CLIP = 6
TINY_NET = {"attention_widths": (4, 8), "decoder_width": 8, "lstm_hidden": 8, "lstm_layers": 1}
TINY = {"face_size": (64, 48), "region_size": 24, "clip_length": 5, "batch_size": 4,
        "progress": False, "model_overrides": TINY_NET, "val_fraction": 0.34, "threads": 1}


def _read_video(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _close_eyes(frame: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """The frame with both eyes painted over in the skin tone just below them (a shut lid)."""
    out = frame.copy()
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    for x, y in eyes:
        patch = frame[int(y + 0.3 * iod):int(y + 0.4 * iod), int(x - 5):int(x + 5)]
        skin = tuple(float(v) for v in patch.reshape(-1, 3).mean(axis=0))
        cv2.ellipse(out, (round(x), round(y)), (round(0.3 * iod), round(0.14 * iod)), 0, 0, 360,
                    skin, -1, cv2.LINE_AA)
        cv2.line(out, (round(x - 0.25 * iod), round(y)), (round(x + 0.25 * iod), round(y)),
                 tuple(0.5 * v for v in skin), 2, cv2.LINE_AA)
    return out


def _write_clip(folder: Path, frames: list[np.ndarray], suffix: str = ".jpg") -> None:
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{k + 1}{suffix}"), frame)


@pytest.fixture(scope="module")
def clip_tree(tmp_path_factory: pytest.TempPathFactory, video_dir: Path) -> Path:
    """ROOT/{blink,non_blink}/<clip>/frameN.jpg from the real single_face.mp4: three blink
    clips (eyes painted shut mid-clip; one with eyes.json instead of the engine), three
    non-blink clips, and one non-blink clip of a face-less video (must be skipped)."""
    root = tmp_path_factory.mktemp("blink-clips")
    frames = _read_video(video_dir / "single_face.mp4", 72)
    backend = create_backend("mediapipe")
    try:
        found = [backend.detect(f, 40 * k)[0] for k, f in enumerate(frames[:36])]
        eyes = [f.eye_centres for f in found]
    finally:
        backend.close()
    for c in range(3):
        start = 12 * c
        clip = [(_close_eyes(frames[start + k], eyes[start + k]) if k in (2, 3)
                 else frames[start + k]) for k in range(FRAMES_PER_CLIP)]
        _write_clip(root / "blink" / f"b{c}", clip, ".png" if c == 1 else ".jpg")
    span = slice(24, 24 + FRAMES_PER_CLIP)
    (root / "blink" / "b2" / "eyes.json").write_text(json.dumps(
        {"eye_centers": [e.tolist() for e in eyes[span]],
         "face_boxes": [f.box.tolist() for f in found[span]]}))
    for c in range(3):
        start = 36 + 12 * c
        _write_clip(root / "non_blink" / f"n{c}", frames[start:start + FRAMES_PER_CLIP])
    _write_clip(root / "non_blink" / "noface",
                _read_video(video_dir / "no_face.mp4", FRAMES_PER_CLIP))
    return root


def _config(out: Path, **overrides: object) -> BlinkTrainConfig:
    return BlinkTrainConfig(out_dir=out, **{**TINY, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------- layout and pure helpers


def test_layout_errors_name_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected ROOT/"):
        find_clips(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="no blink/non_blink folders"):
        find_clips(tmp_path)
    (tmp_path / "blink" / "empty").mkdir(parents=True)
    with pytest.raises(InputError, match="no clip folders of frames") as err:
        find_clips(tmp_path)
    assert isinstance(err.value, VigilError) and "\n" not in str(err.value)


def test_fixed_split_and_natural_frame_order(tmp_path: Path) -> None:
    for split, label, clip in (("train", "blink", "a"), ("train", "non_blink", "b"),
                               ("test", "blink", "c"), ("test", "no_blink", "d")):
        folder = tmp_path / split / label / clip
        folder.mkdir(parents=True)
        for k in (10, 2, 1):
            cv2.imwrite(str(folder / f"f{k}.png"), np.zeros((4, 4, 3), np.uint8))
    clips = {c.clip_id: c for c in find_clips(tmp_path)}
    assert {k: (c.label, c.is_val) for k, c in clips.items()} == {
        "train/blink/a": (1, False), "train/non_blink/b": (0, False),
        "test/blink/c": (1, True), "test/no_blink/d": (0, True)}
    assert [f.name for f in clips["train/blink/a"].frames] == ["f1.png", "f2.png", "f10.png"]


def test_eyes_json_without_boxes_takes_the_whole_frame_as_the_face(tmp_path: Path) -> None:
    folder = tmp_path / "blink" / "c"
    frames = [np.full((256, 192, 3), 60 + 20 * k, np.uint8) for k in range(3)]
    _write_clip(folder, frames, ".png")
    centres = [[[60.0, 100.0], [130.0, 104.0]]] * 3
    (folder / "eyes.json").write_text(json.dumps({"eye_centers": centres}))
    source = find_clips(tmp_path)[0]
    cropper = FaceCropper("no-such-engine", (128, 96), 24)  # would raise if it were started
    faces, found = prepare_clip(source, 4, cropper)
    assert faces.shape == (4, 128, 96, 3)
    # the 192×256 frame is the face box: the 96×128 crop halves every coordinate
    np.testing.assert_allclose(found[0], [[30.0, 50.0], [65.0, 52.0]], atol=1e-4)
    assert faces[0].mean() == pytest.approx(60, abs=1) and faces[-1].mean() == \
        pytest.approx(100, abs=1)  # 3 frames to 4: the last one repeated
    (folder / "eyes.json").write_text(json.dumps({"eye_centers": centres[:2]}))
    with pytest.raises(InputError, match="expected eye_centers"):
        prepare_clip(source, 4, cropper)


def test_clip_length_keeps_the_middle_or_repeats_the_ends() -> None:
    assert clip_indices(13, 10).tolist() == list(range(1, 11))
    assert clip_indices(10, 10).tolist() == list(range(10))
    assert clip_indices(4, 7).tolist() == [0, 0, 1, 2, 3, 3, 3]
    with pytest.raises(InputError):
        clip_indices(0, 5)


def test_simulated_windows_hold_the_event_or_stay_quiet() -> None:
    starts = blink_windows(start=20, peak=22, end=24, n=100, length=10, count=3)
    assert starts[0] == 17 and len(set(starts)) == 3
    assert all(s <= 20 and s + 9 >= 24 for s in starts)  # the whole blink in every window
    assert blink_windows(start=1, peak=2, end=3, n=100, length=10, count=1) == [0]
    quiet = np.ones(30, bool)
    quiet[12] = False
    assert quiet_windows(quiet, 5, 2) == [0, 2, 4, 6, 14, 16, 18, 20, 22, 24]


def test_augmentation_moves_eye_centres_with_the_pixels() -> None:
    h, w = 64, 48
    faces = torch.zeros(2, 3, h, w)
    centers = torch.tensor([[[14.0, 20.0], [33.0, 22.0]]]).repeat(2, 1, 1)
    faces[:, :, 20, 14] = 1.0  # eye 0 a bright dot, eye 1 a grey one
    faces[:, :, 22, 33] = 0.5
    aug = ClipAugment(flip=True, angle=8.0, scale=1.1, shift=(0.04, -0.03))
    out, moved = augment_clip(faces, centers, aug)
    assert out.shape == faces.shape and moved.shape == centers.shape
    assert torch.equal(out[0], out[1]) and torch.equal(moved[0], moved[1])  # one draw a clip
    # Mirrored: the grey eye is now on the image's left and comes first.
    assert moved[0, 0, 0] < moved[0, 1, 0]
    row, col = torch.nonzero(out[0, 0] == out[0, 0].max())[0].tolist()
    assert abs(col - moved[0, 1, 0].item()) <= 1.0 and abs(row - moved[0, 1, 1].item()) <= 1.0
    x, y = (round(v) for v in moved[0, 0].tolist())
    assert out[0, 0, y - 1:y + 2, x - 1:x + 2].max() > 0.2  # the grey dot went with its centre
    same, kept = augment_clip(faces, centers, ClipAugment())
    assert torch.allclose(same, faces, atol=1e-5) and torch.allclose(kept, centers, atol=1e-5)
    bright = augment_clip(faces, centers, ClipAugment(brightness=0.1, contrast=1.2))[0]
    assert torch.allclose(bright, (faces * 1.2 + 0.1).clamp(0, 1), atol=1e-5)


def test_config_validation_is_a_vigil_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        BlinkTrainConfig(out_dir=tmp_path)  # neither data nor simulated
    with pytest.raises(ConfigurationError):
        BlinkTrainConfig(out_dir=tmp_path, simulated=True, monitor="speed")
    with pytest.raises(ConfigurationError):
        BlinkTrainConfig(out_dir=tmp_path, simulated=True, region_size=300)


# ---------------------------------------------------------------- loader on real frames


@pytest.fixture(scope="module")
def prepared(clip_tree: Path, tmp_path_factory: pytest.TempPathFactory):
    config = _config(tmp_path_factory.mktemp("prep"), data_dir=clip_tree)
    return config, clips_from_dir(clip_tree, config)


def test_loader_crops_faces_and_skips_the_faceless_clip(prepared) -> None:
    config, clips = prepared
    t, (h, w) = config.clip_length, config.face_size
    assert sorted(clips.ids) == ["blink/b0", "blink/b1", "blink/b2", "non_blink/n0",
                                 "non_blink/n1", "non_blink/n2"]
    assert clips.faces.shape == (6, t, h, w, 3) and clips.faces.dtype == np.uint8
    assert clips.centers.shape == (6, t, 2, 2)
    assert [s["clip"] for s in clips.skipped] == ["non_blink/noface"]
    assert "no face" in clips.skipped[0]["reason"]
    assert clips.counts()["skipped_clips"] == 1
    labels = dict(zip(clips.ids, clips.labels.tolist(), strict=True))
    assert labels["blink/b0"] == 1 and labels["non_blink/n0"] == 0
    # Both eyes inside the crop, image order, level-ish, in the upper half of the face.
    c = clips.centers
    assert np.all((c[..., 0] > 0) & (c[..., 0] < w) & (c[..., 1] > 0) & (c[..., 1] < h * 0.6))
    assert np.all(c[..., 0, 0] < c[..., 1, 0])
    # eyes.json and the engine agree on where the eyes are (same video, same face).
    b2 = clips.ids.index("blink/b2")
    b1 = clips.ids.index("blink/b1")
    assert np.abs(c[b2].mean(0) - c[b1].mean(0)).max() < 0.1 * w
    # Stratified hold-out: one clip of each class.
    assert sorted(clips.labels[clips.is_val].tolist()) == [0, 1]


def test_painted_blink_darkens_the_eye_region(prepared) -> None:
    _, clips = prepared
    k = clips.ids.index("blink/b0")
    grey = clips.faces[k].astype(np.float64).mean(-1)  # (T, H, W)
    x, y = clips.centers[k, 0, 0].round().astype(int)
    patch = grey[:, y - 2:y + 3, x - 3:x + 4].std(axis=(1, 2))  # texture of the eye
    # clip_length 5 of 6 frames keeps frames 0..4; frames 2 and 3 are shut (flat skin)
    assert patch[2] < 0.7 * patch[0] and patch[3] < 0.7 * patch[4]


def test_samples_are_normalised_tensors(prepared) -> None:
    config, clips = prepared
    dataset = BlinkClips(clips, np.arange(len(clips.labels)))
    faces, centers, label = dataset[0]
    t, (h, w) = config.clip_length, config.face_size
    assert faces.shape == (t, 3, h, w) and faces.dtype == torch.float32
    assert centers.shape == (t, 2, 2) and label.dtype == torch.int64
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    restored = ((faces * std + mean) * 255).round().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(restored, clips.faces[0], atol=1)
    augmented = BlinkClips(clips, np.arange(len(clips.labels)), augment=True)[0][0]
    assert augmented.shape == faces.shape and torch.isfinite(augmented).all()


# ---------------------------------------------------------------- end to end


def test_tiny_training_writes_a_checkpoint_the_predictor_runs(
        clip_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path, data_dir=clip_tree, epochs=1, warmup_epochs=0)
    result = train_blink(config)
    assert result.skipped_clips == 1 and result.student is not None
    for name in ("blink.pt", "metrics.json", "roc.json", "roc.png", "teacher-history.json",
                 "teacher-loss.png", "student-history.json", "student-loss.png",
                 "student-last.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    model, meta = load_checkpoint(tmp_path / "blink.pt")
    pre = meta["preprocessing"]
    assert pre["clip_length"] == 5 and pre["face_size"] == [64, 48] and pre["region_size"] == 24
    assert pre["labels"] == list(LABELS) == ["no_blink", "blink"]
    assert pre["mean"] == pytest.approx(PIXEL_MEAN) and pre["std"] == list(PIXEL_STD)
    assert pre["fps"] == 30.0
    assert set(meta["metrics"]) >= {"accuracy", "precision", "recall", "f1", "auc"}

    faces, centers, _ = BlinkClips(_reload(tmp_path), np.arange(2))[0]
    predictor = ClipPredictor.from_checkpoint(tmp_path / "blink.pt")
    out = predictor.predict({"driver-1": (faces, centers)})
    assert not out.rejected
    p = float(out.outputs["driver-1"]["blink_probability"])
    assert 0.0 <= p <= 1.0
    with torch.no_grad():
        direct = torch.softmax(model(faces[None], centers[None]), -1)[0, 1]
    assert p == pytest.approx(float(direct), abs=1e-5)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["skipped_clips"] == 1
    assert metrics["data"]["skipped"][0]["clip"] == "non_blink/noface"
    assert {"accuracy", "precision", "recall", "f1", "auc"} <= set(metrics["validation"])
    roc = json.loads((tmp_path / "roc.json").read_text())
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    # The card beside the checkpoint: its data, the licence nobody has stated yet, its
    # validation figures, and how to measure it on the labelled real clips.
    card = (tmp_path / "blink-card.md").read_text()
    assert str(clip_tree) in card and "Licence: TO FILL IN" in card
    assert f"| f1 | {metrics['validation']['f1']:.4g} |" in card
    assert "VIGIL_SERVING__BLINK_CHECKPOINT=" in card and "vigil eval video" in card
    history = json.loads((tmp_path / "student-history.json").read_text())
    assert len(history["epochs"]) == 1 and "train_loss" in history["epochs"][0]

    # Resuming a finished run reuses the prepared clips, trains nothing, keeps the weights.
    first = torch.load(tmp_path / "blink.pt", weights_only=True)["state_dict"]
    caplog.clear()
    with caplog.at_level("INFO", logger="training"):
        again = train_blink(replace(config, resume=True))
    assert "reusing 6 prepared clips" in caplog.text
    assert again.teacher.epochs_run == 1 and again.student and again.student.epochs_run == 1
    second = torch.load(tmp_path / "blink.pt", weights_only=True)["state_dict"]
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def _reload(out: Path) -> ClipSet:
    meta = json.loads((out / "clips" / "clips.json").read_text())
    clips = ClipSet.load(out / "clips", meta["key"])
    assert clips is not None
    return clips


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_errors_for_bad_data_dirs_are_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected ROOT/") as err:
        run(_parse("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")))
    assert "\n" not in str(err.value)
    with pytest.raises(SystemExit):  # --data and --simulated exclude each other
        _parse("--data", "x", "--simulated", "--out", "y")


def _fake_driver(folder: Path, driver: int, frames: list[np.ndarray],
                 blinks: list[tuple[int, int, int]]) -> Path:
    """A simulator-style video + truth JSON (10 fps) of real frames with the given blink
    events (start, peak, end): closure 0.6 inside them, 0 elsewhere."""
    name = f"driver-{driver:03d}"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10.0,
                             (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    closure = np.zeros(len(frames))
    for start, _, end in blinks:
        closure[start:end + 1] = 0.6
    truth = {"schema": "vigil.sim.truth/1", "driver_id": name, "fps": 10.0,
             "frame_count": len(frames), "video": f"{name}.mp4",
             "frames": {"closure_left": closure.tolist(), "closure_right": closure.tolist(),
                        "face_visible": [True] * len(frames),
                        "eyes_visible": [True] * len(frames)},
             "blinks": [{"start_frame": s, "peak_frame": p, "end_frame": e}
                        for s, p, e in blinks]}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(truth))
    return path


def test_simulator_truth_is_cut_into_balanced_clips(video_dir: Path, tmp_path: Path) -> None:
    frames = _read_video(video_dir / "single_face.mp4", 40)
    truths = [_fake_driver(tmp_path, 0, frames, [(10, 11, 12), (30, 31, 32)]),
              _fake_driver(tmp_path, 1, frames, [(20, 21, 22)])]
    config = _config(tmp_path / "out", simulated=True, clip_length=6, val_fraction=0.5)
    clips = clips_from_truths(truths, config)
    assert clips.fps == 10.0 and not clips.skipped
    assert clips.faces.shape[1:] == (6, 64, 48, 3)
    train, val = ~clips.is_val, clips.is_val
    # Training driver: each blink in blink_jitter (3) windows, as many quiet windows.
    assert (clips.labels[train] == 1).sum() == 6 and (clips.labels[train] == 0).sum() == 6
    # Validation driver (the last): one centred window per blink, one quiet window.
    assert sorted(clips.labels[val].tolist()) == [0, 1]
    assert all(i.startswith("driver-001/") for i, v in zip(clips.ids, val, strict=True) if v)
    quiet = [i for i in clips.ids if "quiet" in i]
    for clip_id in quiet:  # quiet windows never touch a blink
        start = int(clip_id.rsplit("quiet", 1)[1])
        blink_frames = (10, 11, 12, 30, 31, 32) if clip_id.startswith("driver-000") \
            else (20, 21, 22)
        assert not any(start <= f < start + 6 for f in blink_frames), clip_id


@pytest.mark.slow  # the simulator's real-face setup alone takes ~10 s
def test_simulated_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--simulated", "--out", str(tmp_path), "--epochs", "1", "--sim-drivers", "2",
            "--sim-seconds", "8", "--face-size", "64", "48", "--region-size", "24",
            "--clip-length", "6", "--no-progress", "--json", "--warmup-epochs", "0",
            "--threads", "1"]
    assert run(_parse(*argv)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"]["train_blink"] >= 1 and result["data"]["val_clips"] >= 2
    _, meta = load_checkpoint(Path(result["checkpoint"]))
    assert meta["preprocessing"]["fps"] == 15.0 and meta["preprocessing"]["clip_length"] == 6
    assert meta["args"]["attention_widths"] == (8, 16, 32, 64)  # the small net
    assert (tmp_path / "student-loss.png").exists()
