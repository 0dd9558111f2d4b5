"""The learnt drowsiness estimate on live blinks: baseline normalisation as UTA-RLDD did it,
the window the network sees, the KSS mapping, the aggregator's use of it, and hot swapping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_helpers import blink, random_features

from models.checkpoint import save_checkpoint
from models.drowsiness import CLASSES, WINDOW_BLINKS
from models.registry import create_model
from streams.aggregator import DriverAggregator
from streams.aggregator.config import AggregatorConfig
from streams.aggregator.drowsiness import (
    SHIPPED_VERSION,
    BlinkBaseline,
    DrowsinessEstimate,
    DrowsinessModel,
    ServedDrowsinessModel,
    kss_from_probabilities,
)
from streams.schemas import AlertReason, Observation

RLDD = Path(__file__).resolve().parents[4] / "shared" / "data" / "rldd"
CFG = AggregatorConfig(drowsiness_baseline_blinks=10)
T0 = 1_800_000_000.0  # a multiple of 60: windows start here


def test_blinks_are_z_normalised_against_the_shift_baseline() -> None:
    rng = np.random.default_rng(0)
    base = [random_features(rng) for _ in range(10)]
    state = BlinkBaseline()
    for i, f in enumerate(base):
        state.add(blink(T0 + i, f), CFG)
    mean, std = np.mean(base, axis=0), np.std(base, axis=0)
    assert np.allclose(state.mean, mean) and np.allclose(state.std, std)
    later = (30.0, 0.4, 0.5, 1.0)
    state.add(blink(T0 + 20, later), CFG)
    assert np.allclose(state.recent[-1], (np.array(later) - mean) / std, atol=1e-3)


def test_the_window_needs_a_full_set_of_post_baseline_blinks_and_a_new_one() -> None:
    rng = np.random.default_rng(1)
    state = BlinkBaseline()
    for i in range(10 + WINDOW_BLINKS - 1):
        state.add(blink(T0 + i, random_features(rng)), CFG)
    assert state.window() is None  # 29 after the baseline
    state.add(blink(T0 + 100, random_features(rng)), CFG)
    window = state.window()
    assert window is not None and window.shape == (WINDOW_BLINKS, 4)
    assert state.window() is None  # nothing new since
    state.add(blink(T0 + 101, random_features(rng)), CFG)
    assert state.window() is not None


def test_sleeps_are_not_blinks_and_a_long_break_starts_a_new_shift() -> None:
    rng = np.random.default_rng(2)
    state = BlinkBaseline()
    for i in range(10):
        state.add(blink(T0 + i, random_features(rng), kind="sleep"), CFG)
    assert state.baseline == [] and state.mean is None
    for i in range(10):
        state.add(blink(T0 + i, random_features(rng)), CFG)
    assert state.mean is not None
    state.add(blink(T0 + 10 + CFG.drowsiness_shift_gap_s + 1, random_features(rng)), CFG)
    assert state.mean is None and len(state.baseline) == 1 and state.recent == []


def test_kss_mapping_follows_the_bands_that_defined_the_classes() -> None:
    assert kss_from_probabilities([1, 0, 0]) == 2
    assert kss_from_probabilities([0, 1, 0]) == 7  # 6.5 rounds up
    assert kss_from_probabilities([0, 0, 1]) == 9  # 8.5 rounds up
    assert kss_from_probabilities([0.5, 0, 0.5]) == 5


class FixedEstimator:
    def __init__(self, state: str = "drowsy", kss: int = 9, fail: bool = False) -> None:
        self.state, self.kss, self.fail, self.seen = state, kss, fail, []

    def estimate(self, window: np.ndarray) -> DrowsinessEstimate:
        if self.fail:
            raise RuntimeError("model fault")
        self.seen.append(window)
        probabilities = {c: float(c == self.state) for c in CLASSES}
        return DrowsinessEstimate(self.state, 1.0, self.kss, probabilities, "v7")


def feed(agg: DriverAggregator, seconds: int, rng: np.random.Generator, start: float = T0
         ) -> None:
    """Open eyes at 2 fps with one blink a second."""
    for k in range(seconds * 2):
        t = start + k / 2
        events = [blink(t, random_features(rng))] if k % 2 == 1 else []
        agg.observe(Observation(driver_id="d1", vehicle_id="v1", seq=int(k), captured_at=t,
                                processed_at=t, face_present=True, closure=0.1,
                                gaze_off_road=False, events=events))


def test_the_aggregator_publishes_the_estimate_and_alerts_on_its_kss() -> None:
    estimator = FixedEstimator()
    agg = DriverAggregator("d1", "v1", CFG, estimator=estimator)
    feed(agg, 60, np.random.default_rng(3))  # 60 blinks: baseline 10, then 50
    windows, alerts = agg.tick(T0 + 63)
    assert len(windows) == 1
    w = windows[0]
    assert (w.drowsiness_state, w.drowsiness_kss, w.drowsiness_model) == ("drowsy", 9, "v7")
    assert w.kss is not None and w.kss < CFG.kss_info  # the rules alone see an alert driver
    (alert,) = alerts
    assert alert.reason == AlertReason.DROWSINESS and alert.evidence["kss"] == 9
    assert alert.evidence["drowsiness"]["model"] == "v7"
    assert np.allclose(alert.evidence["blink_window"], estimator.seen[0])


def test_a_failing_model_costs_neither_the_window_nor_the_rules() -> None:
    agg = DriverAggregator("d1", "v1", CFG, estimator=FixedEstimator(fail=True))
    feed(agg, 60, np.random.default_rng(4))
    windows, alerts = agg.tick(T0 + 63)
    assert len(windows) == 1 and windows[0].drowsiness_state is None
    assert windows[0].blink_count == 60 and alerts == []


def test_the_baseline_survives_a_restart_from_the_saved_state() -> None:
    rng = np.random.default_rng(5)
    agg = DriverAggregator("d1", "v1", CFG, estimator=FixedEstimator())
    feed(agg, 20, rng)
    restored = DriverAggregator.from_state(json.loads(json.dumps(agg.to_state())), CFG,
                                           estimator=FixedEstimator())
    assert restored._blinks == agg._blinks
    feed(restored, 40, rng, start=T0 + 20)
    windows, _ = restored.tick(T0 + 63)
    assert windows[0].drowsiness_state == "drowsy"  # 10 baseline + 30 after it, no restart


def test_the_shipped_network_scores_drowsy_windows_above_alert_ones() -> None:
    x = np.load(RLDD / "BlinksTest_30_Fold2.npy").astype(np.float32)
    y = np.load(RLDD / "LabelsTest_30_Fold2.npy").reshape(-1)
    model = DrowsinessModel.shipped()
    scores = {label: np.mean([model.estimate(w).score for w in x[y == label][:100]])
              for label in (0, 10)}
    assert scores[10] > scores[0] + 0.2
    est = model.estimate(x[0])
    assert est.model == SHIPPED_VERSION and sum(est.probabilities.values()) == pytest.approx(1)


def checkpoint_bytes(bias: float) -> bytes:
    """A drowsiness network whose output is fixed by the last layer's bias."""
    model = create_model("drowsiness-blinks")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        list(model.parameters())[-1].copy_(torch.tensor([0.0, 0.0, bias]))
    buffer = io.BytesIO()
    save_checkpoint(buffer, model, "drowsiness-blinks", {})
    return buffer.getvalue()


class Registry:
    def __init__(self) -> None:
        self.served: tuple[str, bytes] | None = None

    def promoted(self, name: str) -> tuple[str, bytes] | None:
        return self.served


def test_the_served_model_follows_promotions_without_a_restart() -> None:
    registry = Registry()
    served = ServedDrowsinessModel(registry)
    window = np.zeros((WINDOW_BLINKS, 4), np.float32)
    assert not served.refresh() and served.version == SHIPPED_VERSION
    registry.served = ("v1", checkpoint_bytes(10.0))
    assert served.refresh() and served.estimate(window).state == "drowsy"
    assert served.estimate(window).model == "v1"
    registry.served = ("v2", b"not a checkpoint")
    assert not served.refresh() and served.version == "v1"  # a broken version is not served
    registry.served = None
    assert served.refresh() and served.version == SHIPPED_VERSION  # rolled back to shipped
