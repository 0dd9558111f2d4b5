"""The shared training recipe: the simulated drivers' split, the config checks every network
inherits, and the result's report shape for one and for two stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigurationError
from training.recipe import TrainConfig, TrainResult, training_windows, validation_start


def test_the_last_drivers_validate_and_a_single_driver_its_last_part() -> None:
    # 5 drivers, a fifth held out: the last one validates from its first frame.
    assert [validation_start(d, 5, 100, 0.2) for d in range(5)] == [100, 100, 100, 100, 0]
    assert [validation_start(d, 3, 50, 0.01) for d in range(3)] == [50, 50, 0]  # at least one
    assert validation_start(0, 1, 100, 0.25) == 75  # one driver: its last quarter


def test_training_windows_never_reach_into_the_validation_frames() -> None:
    windows = training_windows(20, 4, 2, 10)
    assert windows == [(0, False), (2, False), (4, False), (6, False), (10, True), (12, True),
                       (14, True), (16, True)]
    assert all(s + 4 <= 10 for s, is_val in windows if not is_val)


def test_every_config_checks_its_source_split_and_monitor(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        TrainConfig(out_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="unknown monitor"):
        TrainConfig(out_dir=tmp_path, simulated=True, monitor="f1")
    with pytest.raises(ConfigurationError, match="val_fraction"):
        TrainConfig(out_dir=tmp_path, simulated=True, val_fraction=1.0)
    with pytest.raises(ConfigurationError, match="at least 1"):
        TrainConfig(out_dir=tmp_path, simulated=True, batch_size=0)
    assert TrainConfig(out_dir=str(tmp_path), simulated=True).out_dir == tmp_path  # type: ignore[arg-type]


def test_results_report_epochs_per_stage(tmp_path: Path) -> None:
    class Fit:
        epochs_run = 3

    def result(stages: tuple[str, ...], ran: tuple[str, ...]) -> TrainResult:
        return TrainResult(tmp_path / "x.pt", {}, {"skipped_clips": 2},
                           {s: Fit() for s in ran}, {}, 1.26, stages)  # type: ignore[misc]

    one = result(("fatigue",), ("fatigue",)).to_dict()
    assert one["epochs"] == 3 and one["elapsed_s"] == 1.3 and one["checkpoint"].endswith("x.pt")
    two = result(("teacher", "student"), ("teacher",))
    assert two.to_dict()["teacher_epochs"] == 3 and two.to_dict()["student_epochs"] is None
    assert two.skipped_clips == 2 and two.fit.epochs_run == 3
