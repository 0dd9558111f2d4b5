"""The learnt networks in the worker's serving path: crop windows, micro-batching across
drivers, skipped windows, versions swapped mid-stream, and the observation contract."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from models.checkpoint import save_checkpoint
from models.registry import create_model
from streams.errors import ConfigurationError
from streams.schemas import (
    FrameBatchHeader,
    FrameInfo,
    NetworkReading,
    NetworkRole,
    Observation,
    decode_record,
    encode_frame_batch,
)
from training.au import AUTrainConfig
from training.au import preprocessing as au_preprocessing
from training.blink import BlinkTrainConfig
from training.blink import preprocessing as blink_preprocessing
from training.fatigue import FatigueTrainConfig
from training.fatigue import preprocessing as fatigue_preprocessing
from workers.face.backends import create_backend
from workers.face.crops import align_face
from workers.inference import InferenceProcessor, RawMessage
from workers.perception import DriverPerception
from workers.serving import ROLE_MODELS, MicroBatcher, NetworkSet, WindowRequest
from workers.settings import ServingSettings
from workers.windows import ALIGNED_FACE, EYE_REGIONS, FILLING, NO_FACE, CropWindow, InputSpec

FPS = 10.0


def tiny_checkpoint(role: NetworkRole, path: Path, frames: int = 4, seed: int = 0) -> Path:
    """A small, untrained network of ``role`` with the preprocessing its trainer writes (the
    fatigue network's 3D trunk needs at least 8 frames)."""
    import torch

    torch.manual_seed(seed)
    out = path.parent / "train"
    if role is NetworkRole.BLINK:
        pre = blink_preprocessing(BlinkTrainConfig(out_dir=out, simulated=True, face_size=(64, 48),
                                                   region_size=24, clip_length=frames), FPS)
        args = {"region_size": 24, "attention_widths": (8, 8, 8, 8), "decoder_width": 8,
                "lstm_hidden": 16}
    elif role is NetworkRole.AU:
        pre = au_preprocessing(AUTrainConfig(out_dir=out, data_dir=out, size=64,
                                             clip_length=frames), FPS)
        args = {}
    else:
        pre = fatigue_preprocessing(FatigueTrainConfig(out_dir=out, simulated=True, size=64,
                                                       clip_length=max(frames, 8)), FPS)
        args = {"hidden": 16}
    name = ROLE_MODELS[role]
    save_checkpoint(path, create_model(name, **args), name, args, pre)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[NetworkRole, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {role: tiny_checkpoint(role, root / f"{role.value}.pt") for role in NetworkRole}


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def blank_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((512, 512, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


def serving_settings(checkpoints: dict[NetworkRole, Path], networks: str, **kw: object
                     ) -> ServingSettings:
    return ServingSettings(networks=networks, blink_checkpoint=checkpoints[NetworkRole.BLINK],
                           au_checkpoint=checkpoints[NetworkRole.AU],
                           fatigue_checkpoint=checkpoints[NetworkRole.FATIGUE], **kw)


class Registry:
    """The model registry's read side, as the worker sees it (streams.store.model_versions)."""

    def __init__(self) -> None:
        self.promoted_versions: dict[str, tuple[str, bytes]] = {}

    def promoted(self, name: str) -> tuple[str, bytes] | None:
        return self.promoted_versions.get(name)


def worker(settings: ServingSettings, registry: Registry | None = None,
           max_wait_ms: float = 20.0) -> InferenceProcessor:
    batcher = MicroBatcher(NetworkSet(settings, registry), settings.max_batch, max_wait_ms)
    return InferenceProcessor(
        lambda fps: DriverPerception(create_backend("mediapipe"), fps=fps), serving=batcher)


def frames_message(driver: str, first_seq: int, images: list[bytes], t0: float,
                   offset: int = 0) -> RawMessage:
    frames = [FrameInfo(seq=first_seq + i, captured_at=t0 + (first_seq + i) / FPS, width=512,
                        height=512, size=len(b)) for i, b in enumerate(images)]
    header = FrameBatchHeader(driver_id=driver, vehicle_id="van-9", batch_seq=first_seq,
                              fps=FPS, sent_at=t0, frames=frames)
    return RawMessage(key=driver.encode(), value=encode_frame_batch(header, images),
                      partition=0, offset=offset)


def readings(observations: list[Observation]) -> list[NetworkReading]:
    return [r for o in observations for r in o.networks]


# --- the checkpoint says what to cut ---------------------------------------------------------


def test_each_trainers_preprocessing_gives_the_crop_the_network_was_trained_on(
        checkpoints: dict[NetworkRole, Path]) -> None:
    from models.checkpoint import load_checkpoint

    specs = {role: InputSpec.from_preprocessing(load_checkpoint(path)[1]["preprocessing"])
             for role, path in checkpoints.items()}
    assert specs[NetworkRole.BLINK].crop == EYE_REGIONS
    assert specs[NetworkRole.BLINK].size == (64, 48)
    assert specs[NetworkRole.BLINK].region_size == 24
    assert specs[NetworkRole.AU].crop == ALIGNED_FACE and specs[NetworkRole.AU].time_first
    assert specs[NetworkRole.FATIGUE].crop == ALIGNED_FACE
    assert not specs[NetworkRole.FATIGUE].time_first  # (3, T, H, W), the 3D ResNet's layout
    with pytest.raises(ConfigurationError, match="crop"):
        InputSpec.from_preprocessing({"clip_length": 4, "mean": [0, 0, 0], "std": [1, 1, 1],
                                      "crop": "none"})


def test_a_window_runs_only_when_full_of_usable_crops_and_says_why_not() -> None:
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    backend = create_backend("mediapipe")
    face = backend.detect(image, 0)[0]
    backend.close()
    spec = InputSpec(ALIGNED_FACE, 3, (32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False)
    window = CropWindow(spec)
    window.add(0, 0.0, image, face, None)
    assert window.missing() == FILLING
    window.add(1, 0.1, image, None, None)
    assert window.missing() == NO_FACE
    window.add(2, 0.2, image, face, "eyes_hidden")
    assert window.missing() == "eyes_hidden"  # degraded sensing is a gap too
    for seq in (3, 4, 5):
        window.add(seq, seq / 10, image, face, None)
    assert window.missing() is None
    (clip,) = window.clip()
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == np.float32  # (C, T, H, W)
    # Normalised as in training: (x / 255 - mean) / std.
    aligned = cv2.cvtColor(align_face(image, face.landmarks5, 32), cv2.COLOR_BGR2RGB)
    assert np.allclose(clip[:, 0], (aligned.transpose(2, 0, 1) / 255 - 0.5) / 0.25, atol=1e-5)


# --- micro-batching --------------------------------------------------------------------------


def test_due_windows_of_many_drivers_share_one_forward_pass(
        checkpoints: dict[NetworkRole, Path]) -> None:
    settings = serving_settings(checkpoints, "fatigue")
    networks = NetworkSet(settings)
    spec = networks.get(NetworkRole.FATIGUE).spec  # type: ignore[union-attr]
    batcher = MicroBatcher(networks, max_batch=8, max_wait_ms=5000)
    try:
        rng = np.random.default_rng(0)
        drivers = [f"d{k}" for k in range(8)]
        for k, driver in enumerate(drivers):
            clip = rng.normal(size=(3, 8, 64, 64)).astype(np.float32)
            if k == 3:
                clip[0, 0, 0, 0] = np.nan  # one broken window never stops the others
            batcher.submit(WindowRequest(driver, NetworkRole.FATIGUE, 40, 4.0, (clip,), spec,
                                         time.perf_counter()))
        assert batcher.drain()
        assert batcher.stats.batches["fatigue"] == 1  # eight full: one pass, no waiting
        assert batcher.stats.rejected["fatigue"] == 1
        for driver in drivers:
            got = batcher.take(driver)
            if driver == "d3":
                assert got == []
                continue
            (reading,) = got
            assert reading.model == "fatigue-nonlocal-r3d18"
            assert reading.version == "file:fatigue.pt"
            assert 0.0 <= reading.outputs["fatigue_score"] <= 1.0
            assert reading.window_end_seq == 40 and reading.skipped is None
        assert batcher.take("d0") == []  # handed over once
    finally:
        batcher.close()


def test_a_lone_window_waits_at_most_max_wait(checkpoints: dict[NetworkRole, Path]) -> None:
    networks = NetworkSet(serving_settings(checkpoints, "au"))
    spec = networks.get(NetworkRole.AU).spec  # type: ignore[union-attr]
    batcher = MicroBatcher(networks, max_batch=64, max_wait_ms=30)
    try:
        clip = np.zeros((4, 3, 64, 64), np.float32)
        batcher.submit(WindowRequest("ann", NetworkRole.AU, 7, 0.7, (clip,), spec,
                                     time.perf_counter()))
        deadline = time.monotonic() + 30
        got: list[NetworkReading] = []
        while not got and time.monotonic() < deadline:
            got = batcher.take("ann")
            time.sleep(0.01)
        (reading,) = got
        assert sorted(reading.outputs) == sorted(
            ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23",
             "AU24"])
        assert batcher.stats.batches["au"] == 1 and batcher.stats.windows["au"] == 1
    finally:
        batcher.close()


# --- in the worker ---------------------------------------------------------------------------


def test_the_worker_serves_every_network_on_its_stride_and_skips_drivers_it_cannot_see(
        checkpoints: dict[NetworkRole, Path], face_jpeg: bytes) -> None:
    settings = serving_settings(checkpoints, "blink,au,fatigue", blink_stride_s=0.5,
                                au_stride_s=1.0, fatigue_stride_s=1.0)
    processor = worker(settings)
    t0 = time.time() - 60
    observed: list[Observation] = []
    try:
        for first in range(0, 30, 5):
            observed += processor.process(
                frames_message("ann", first, [face_jpeg] * 5, t0, offset=first)).observations
            assert processor.serving is not None and processor.serving.drain()
        # The driver looks away from the camera (no face) for a second.
        observed += processor.process(
            frames_message("ann", 30, [blank_jpeg()] * 10, t0, offset=30)).observations
        assert processor.serving.drain()
        observed += processor.process(
            frames_message("ann", 40, [face_jpeg], t0, offset=40)).observations
    finally:
        processor.close()
    assert [o.seq for o in observed] == list(range(41))  # every frame observed, none held
    got = readings(observed)
    by_role = {role: [r for r in got if r.role is role] for role in NetworkRole}
    run = {role: [r.window_end_seq for r in rs if r.skipped is None]
           for role, rs in by_role.items()}
    # First due at the first frame (filling: skipped), then every stride once 4 crops are in.
    assert run[NetworkRole.BLINK] == [5, 10, 15, 20, 25]
    assert run[NetworkRole.AU] == [10, 20]
    assert run[NetworkRole.FATIGUE] == [10, 20]
    for role in NetworkRole:
        skipped = {r.window_end_seq: r.skipped for r in by_role[role] if r.skipped}
        assert skipped[0] == FILLING
        assert {skipped[s] for s in skipped if 30 <= s <= 39} == {NO_FACE}
    blink = [r for r in by_role[NetworkRole.BLINK] if r.skipped is None]
    assert all(0.0 <= r.outputs["blink_probability"] <= 1.0 for r in blink)
    # Each reading spans its window: the 4 frames up to its last one (an event with a span).
    assert all(r.window_end_seq - r.window_start_seq == 3 for r in blink)
    assert all(r.outputs["blink"] == float(r.outputs["blink_probability"] >= 0.5)
               for r in blink)
    assert {r.model for r in got} == set(ROLE_MODELS.values())
    # The contract: v2 observations carry the readings and decode again.
    last = next(o for o in reversed(observed) if o.networks)
    again = decode_record(Observation, last.to_bytes())
    assert again.networks == last.networks
    assert json.loads(last.to_bytes())["schema"] == "vigil.observation.v2"


def test_a_promoted_version_is_served_mid_stream_without_losing_a_frame(
        checkpoints: dict[NetworkRole, Path], face_jpeg: bytes, tmp_path: Path) -> None:
    registry = Registry()
    settings = serving_settings(checkpoints, "fatigue", fatigue_stride_s=0.5)
    processor = worker(settings, registry)
    t0 = time.time() - 60
    observed: list[Observation] = []
    second = tiny_checkpoint(NetworkRole.FATIGUE, tmp_path / "v2.pt", seed=1)
    try:
        assert processor.serving is not None
        networks = processor.serving.networks
        for first in range(0, 40, 5):
            if first == 20:
                registry.promoted_versions["fatigue-nonlocal-r3d18"] = ("v2", second.read_bytes())
                assert networks.refresh() == [NetworkRole.FATIGUE]
                assert networks.refresh() == []  # already served
            observed += processor.process(
                frames_message("ann", first, [face_jpeg] * 5, t0, offset=first)).observations
            assert processor.serving.drain()
        # A reading that finished after the last frame would ride on the driver's next one.
        late = processor.serving.take("ann")
    finally:
        processor.close()
    assert [o.seq for o in observed] == list(range(40))
    got = [r for r in readings(observed) + late if r.skipped is None]
    served = [(r.window_end_seq, r.version) for r in got]
    assert served == [(10, "file:fatigue.pt"), (15, "file:fatigue.pt"), (20, "v2"), (25, "v2"),
                      (30, "v2"), (35, "v2")]
    scores = {r.version: r.outputs["fatigue_score"] for r in got}
    assert scores["v2"] != scores["file:fatigue.pt"]  # other weights, other readings


def test_a_promoted_version_that_does_not_load_leaves_the_current_one_serving(
        checkpoints: dict[NetworkRole, Path]) -> None:
    registry = Registry()
    networks = NetworkSet(serving_settings(checkpoints, "au"), registry)
    registry.promoted_versions["satnet"] = ("v7", checkpoints[NetworkRole.FATIGUE].read_bytes())
    assert networks.refresh() == []
    assert networks.versions() == {"au": "file:au.pt"}


def test_serving_settings_refuse_unknown_networks_and_networks_without_weights() -> None:
    with pytest.raises(ConfigurationError, match="gaze"):
        NetworkSet(ServingSettings(networks="blink,gaze"))
    with pytest.raises(ConfigurationError, match="no weights"):
        NetworkSet(ServingSettings(networks="fatigue"))
    assert ServingSettings().roles == []  # off by default


def test_first_version_observations_still_decode() -> None:
    v1 = {"schema": "vigil.observation.v1", "driver_id": "ann", "vehicle_id": "van-9",
          "seq": 3, "captured_at": 1.7e9, "processed_at": 1.7e9, "face_present": True}
    obs = decode_record(Observation, json.dumps(v1))
    assert obs.networks == [] and obs.schema_ == "vigil.observation.v1"


def test_the_benches_cut_what_the_trainers_checkpoints_ask_for(tmp_path: Path) -> None:
    """`vigil bench serving/pipeline` write their own cost-only checkpoints: serving must read
    them exactly as it reads the trainers' at the same sizes."""
    from models.checkpoint import load_checkpoint
    from workers.serving_bench import SERVING_SIZES, cost_checkpoints

    made = cost_checkpoints(tmp_path, list(NetworkRole), "cpu")
    for role, path in made.items():
        frames, (h, w), args = SERVING_SIZES["cpu"][role]
        out = tmp_path / "train"
        if role is NetworkRole.BLINK:
            trainer = blink_preprocessing(BlinkTrainConfig(
                out_dir=out, simulated=True, face_size=(h, w), clip_length=frames,
                region_size=args["region_size"]), FPS)
        elif role is NetworkRole.AU:
            trainer = au_preprocessing(AUTrainConfig(out_dir=out, data_dir=out, size=h,
                                                     clip_length=frames), FPS)
        else:
            trainer = fatigue_preprocessing(FatigueTrainConfig(out_dir=out, simulated=True,
                                                               size=h, clip_length=frames), FPS)
        bench = load_checkpoint(path)[1]["preprocessing"]
        assert InputSpec.from_preprocessing(bench) == InputSpec.from_preprocessing(trainer)


def test_bench_serving_reads_every_network_for_every_driver() -> None:
    from workers.serving_bench import bench_serving

    result = bench_serving([2], seconds=2.5, roles=[NetworkRole.BLINK, NetworkRole.FATIGUE],
                           blink_stride_s=1.0, fatigue_stride_s=1.0)
    (run,) = result["runs"]
    per = run["per_network"]
    # Two drivers spread over the 1 s stride (due at 0 and 0.5 s), for 2.5 s: 3 + 2 windows
    # each per network, every one read (what was queued at the end included).
    assert run["windows_submitted"] == 10
    for role in ("blink", "fatigue"):
        assert per[role]["windows"] == 5 and per[role]["rejected"] == 0


def test_the_gpu_options_run_on_the_cpu_and_agree_with_fp32(
        checkpoints: dict[NetworkRole, Path]) -> None:
    """bf16 autocast and channels-last weights, the GPU configuration, take the same code path
    on the CPU, and read the same windows about the same."""
    scores = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        networks = NetworkSet(serving_settings(checkpoints, "fatigue", precision=precision,
                                               channels_last=channels_last))
        spec = networks.get(NetworkRole.FATIGUE).spec  # type: ignore[union-attr]
        batcher = MicroBatcher(networks, max_batch=4, max_wait_ms=1)
        try:
            clip = np.random.default_rng(1).normal(size=(3, 8, 64, 64)).astype(np.float32)
            batcher.submit(WindowRequest("ann", NetworkRole.FATIGUE, 8, 0.8, (clip,), spec,
                                         time.perf_counter()))
            assert batcher.drain()
            (reading,) = batcher.take("ann")
            scores[precision] = reading.outputs["fatigue_score"]
        finally:
            batcher.close()
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.02)


def test_an_unreadable_registry_leaves_the_configured_weights_serving(
        checkpoints: dict[NetworkRole, Path], caplog: pytest.LogCaptureFixture) -> None:
    """A worker starting while the database is down (or not migrated yet) serves its
    configured checkpoints, and takes the promoted version once the registry answers."""
    from streams.store import StoreUnavailableError

    class Down(Registry):
        down = True

        def promoted(self, name: str) -> tuple[str, bytes] | None:
            if self.down:
                raise StoreUnavailableError("connection refused")
            return super().promoted(name)

    registry = Down()
    with caplog.at_level("WARNING"):
        networks = NetworkSet(serving_settings(checkpoints, "au"), registry)
    assert networks.versions() == {"au": "file:au.pt"}
    assert "model registry unreadable" in caplog.text
    registry.down = False
    registry.promoted_versions["satnet"] = ("v3", checkpoints[NetworkRole.AU].read_bytes())
    assert networks.refresh() == [NetworkRole.AU]
    assert networks.versions() == {"au": "v3"}


def test_a_network_read_seldom_costs_crops_for_its_windows_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Read every 2 s over 3 frames at 10 fps, a window needs 3 crops of every 20 frames
    (plus the margin), and each due window is still full; two networks that want the same
    crop of a frame share one."""
    import workers.windows as windows

    cuts: list[int] = []

    def fake_cut(spec: InputSpec, frame: np.ndarray, face: object) -> windows.Crop:
        cuts.append(int(frame[0, 0, 0]))
        return windows.Crop(np.zeros((*spec.size, 3), np.uint8))

    monkeypatch.setattr(windows, "cut_crop", fake_cut)
    spec = InputSpec(ALIGNED_FACE, 3, (8, 8), (0, 0, 0), (1, 1, 1))
    first, second = CropWindow(spec), CropWindow(spec)
    runs = []
    face = object()
    for seq in range(61):
        t = seq / 10
        frame = np.full((2, 2, 3), seq % 256, np.uint8)
        cut: dict[tuple[object, ...], object] = {}
        for window in (first, second):
            window.add(seq, t, frame, face, None, 2.0, cut)  # type: ignore[arg-type]
        if first.due(t, 2.0):
            first.last_run_at = second.last_run_at = t
            runs.append((seq, first.missing()))
    assert runs == [(0, FILLING), (20, None), (40, None), (60, None)]
    # Frames 0-1 (before the first run and its interval), then 15-20, 35-40 and 55-60: the
    # 3 frames of each window and 2 of margin, cut once for both windows.
    assert cuts == [0, 1, *range(15, 21), *range(35, 41), *range(55, 61)]
