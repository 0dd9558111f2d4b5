"""Scoring rules of `vigil eval perception`, and the perception layer against simulator truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.errors import InputError
from training.eval_perception import evaluate_simulation, load_truth, match_intervals


def test_matching_is_one_to_one_with_half_overlap_of_the_shorter() -> None:
    truth = [(10, 19), (40, 45), (80, 90)]
    detected = [(8, 16), (13, 18), (44, 50), (100, 110)]
    # (8,16) and (13,18) both overlap (10,19) enough; only the better one, (13,18), matches.
    # (44,50) overlaps (40,45) by 2 frames of the shorter 6: below half, no match.
    assert match_intervals(truth, detected) == [(0, 1)]
    assert match_intervals([(0, 9)], [(5, 14)]) == [(0, 0)]  # 5 of 10 frames: exactly half
    assert match_intervals([(0, 9)], [(6, 15)]) == []


def test_best_overlap_wins_a_contested_detection() -> None:
    assert match_intervals([(0, 10), (8, 20)], [(9, 19)]) == [(1, 0)]


def test_truth_files_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "driver-000.json"
    bad.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(InputError, match="not a simulator truth file"):
        load_truth(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="unreadable truth file"):
        load_truth(bad)
    with pytest.raises(InputError, match="no simulator truth files"):
        evaluate_simulation(tmp_path / "nothing-here")


@pytest.fixture(scope="module")
def drowsy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.simulator import simulate_set

    out = tmp_path_factory.mktemp("sim")
    simulate_set(out, drivers=2, seconds=25, seed=11, profile="drowsy")
    return out


def test_perception_meets_targets_on_simulated_drowsy_drivers(drowsy_set: Path) -> None:
    """Through the CLI, as an ML engineer runs it: the report, and the exit code."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vigil", "eval", "perception", "--sim", str(drowsy_set),
         "--json"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["drivers"]) == 2
    summary = report["summary"]
    assert summary["long_closures_true"] >= 2
    assert summary["long_closures_matched"] == summary["long_closures_true"]
    assert summary["blink_f1"] >= 0.95
    assert summary["long_closure_median_abs_error_ms"] <= 100
    assert summary["perclos_abs_error_max"] <= 0.03
    assert summary["face_present_agreement_min"] >= 0.97
    assert report["passed"]
