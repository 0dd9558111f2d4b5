"""`vigil eval perception`: the perception layer scored against the driver simulator's truth.

For every driver video in a simulator set, the real face engine reads the frames (it never sees
the truth) and the figures below are compared with the truth JSON:

- blinks: a detection matches a true blink one-to-one when their frame intervals overlap by at
  least half of the shorter one; precision, recall, F1.
- long closures (microsleep/sleep): matched the same way; error of the closed duration.
- PERCLOS: share of frames with eyes >= 80 % closed, over the frames where the face is visible
  (truth) and where the eyes were measured (detection).
- face presence: agreement of the face-present flag with the truth per frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import InputError
from streams.settings import load_settings
from workers.perception import VideoAnalysis
from workers.settings import PerceptionSettings
from workers.signals import BlinkConfig, EyeEvent

log = logging.getLogger(__name__)

TRUTH_SCHEMA = "vigil.sim.truth/1"
TARGETS = {"blink_f1": 0.95, "long_closure_median_abs_error_ms": 100.0, "perclos_abs_error": 0.03}


def match_intervals(
    truth: Sequence[tuple[int, int]], detected: Sequence[tuple[int, int]],
    min_overlap: float = 0.5, tolerance: int = 0,
) -> list[tuple[int, int]]:
    """One-to-one matches (truth index, detected index) of inclusive frame intervals that
    overlap by at least ``min_overlap`` of the shorter interval; best overlaps first.
    ``tolerance``: frames each detected interval is widened by on both sides first (hand
    labels and detectors place an event's edges a frame or two apart)."""
    candidates = []
    for i, (ts, te) in enumerate(truth):
        for j, (ds, de) in enumerate(detected):
            ds, de = ds - tolerance, de + tolerance
            overlap = min(te, de) - max(ts, ds) + 1
            shorter = min(te - ts + 1, de - ds + 1)
            if overlap > 0 and overlap >= min_overlap * shorter:
                candidates.append((overlap / shorter, i, j))
    matches, used_t, used_d = [], set(), set()
    for _, i, j in sorted(candidates, reverse=True):
        if i not in used_t and j not in used_d:
            matches.append((i, j))
            used_t.add(i)
            used_d.add(j)
    return sorted(matches)


def prf(tp: int, n_true: int, n_detected: int) -> dict[str, float]:
    """Precision, recall and F1 of ``tp`` matches; a precision (recall) with nothing detected
    (nothing to find) is 1.0."""
    precision = tp / n_detected if n_detected else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def load_truth(path: Path) -> dict[str, Any]:
    try:
        truth: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable truth file: {exc}") from None
    if truth.get("schema") != TRUTH_SCHEMA:
        raise InputError(f"{path}: not a simulator truth file (schema {truth.get('schema')!r})")
    return truth


def evaluate_driver(
    truth: dict[str, Any], video: Path, settings: PerceptionSettings, engine: str | None = None
) -> dict[str, Any]:
    closed_level = BlinkConfig().closed
    frames = truth["frames"]
    n = int(truth["frame_count"])
    true_closure = (np.array(frames["closure_left"]) + np.array(frames["closure_right"])) / 2
    visible = np.array(frames["face_visible"], dtype=bool)

    present = np.zeros(n, dtype=bool)
    measured = np.zeros(n, dtype=bool)
    closure = np.zeros(n)
    events: list[EyeEvent] = []
    analysis = VideoAnalysis(video, settings, engine)
    for result in analysis:
        s = result.signals
        if s.frame < n:
            present[s.frame] = s.face_present
            if s.closure is not None:
                measured[s.frame], closure[s.frame] = True, s.closure
        events.extend(result.events)
    events.extend(analysis.trailing_events)

    true_blinks = [(b["start_frame"], b["end_frame"]) for b in truth["blinks"]]
    found_blinks = [(e.start_frame, e.end_frame) for e in events if e.kind == "blink"]
    blink_matches = match_intervals(true_blinks, found_blinks)

    true_long = truth["long_closures"]
    found_long = [e for e in events if e.kind != "blink"]
    long_matches = match_intervals(
        [(c["start_frame"], c["end_frame"]) for c in true_long],
        [(e.start_frame, e.end_frame) for e in found_long],
    )
    long_errors_ms = [
        abs(found_long[j].closed_duration_s - true_long[i]["closed_duration_s"]) * 1000
        for i, j in long_matches
    ]
    perclos_true = float(np.mean(true_closure[visible] >= closed_level)) if visible.any() else 0.0
    perclos_found = float(np.mean(closure[measured] >= closed_level)) if measured.any() else 0.0
    return {
        "driver_id": truth["driver_id"],
        "profile": truth["profile"],
        "source_face": truth.get("source_face"),
        "frames": n,
        "face_present_agreement": float(np.mean(present == visible)),
        "blinks": {
            "true": len(true_blinks),
            "detected": len(found_blinks),
            "matched": len(blink_matches),
            **prf(len(blink_matches), len(true_blinks), len(found_blinks)),
        },
        "long_closures": {
            "true": len(true_long),
            "detected": len(found_long),
            "matched": len(long_matches),
            "abs_errors_ms": [round(e, 1) for e in long_errors_ms],
        },
        "perclos": {
            "true": perclos_true,
            "measured": perclos_found,
            "abs_error": abs(perclos_true - perclos_found),
        },
    }


def evaluate_simulation(
    sim_dir: Path, engine: str | None = None, settings: PerceptionSettings | None = None
) -> dict[str, Any]:
    """Scores every driver of a simulator set; ``passed`` says whether the targets are met."""
    settings = settings or load_settings(PerceptionSettings)
    truths = sorted(sim_dir.glob("*.json")) if sim_dir.is_dir() else []
    if not truths:
        raise InputError(f"{sim_dir}: no simulator truth files (*.json) found")
    drivers = []
    for path in truths:
        truth = load_truth(path)
        video = path.parent / truth["video"]
        log.info("evaluating %s (%s)", truth["driver_id"], truth["profile"])
        drivers.append(evaluate_driver(truth, video, settings, engine))

    tp = sum(d["blinks"]["matched"] for d in drivers)
    n_true = sum(d["blinks"]["true"] for d in drivers)
    n_found = sum(d["blinks"]["detected"] for d in drivers)
    blink = prf(tp, n_true, n_found)
    long_errors = [e for d in drivers for e in d["long_closures"]["abs_errors_ms"]]
    long_true = sum(d["long_closures"]["true"] for d in drivers)
    long_found = sum(d["long_closures"]["detected"] for d in drivers)
    long_matched = sum(d["long_closures"]["matched"] for d in drivers)
    perclos_errors = [d["perclos"]["abs_error"] for d in drivers]
    summary = {
        "blink_precision": blink["precision"],
        "blink_recall": blink["recall"],
        "blink_f1": blink["f1"],
        "long_closures_true": long_true,
        "long_closures_detected": long_found,
        "long_closures_matched": long_matched,
        "long_closure_median_abs_error_ms": float(np.median(long_errors)) if long_errors else None,
        "perclos_abs_error_max": max(perclos_errors),
        "face_present_agreement_min": min(d["face_present_agreement"] for d in drivers),
    }
    checks = {
        "blink_f1": summary["blink_f1"] >= TARGETS["blink_f1"],
        "long_closure_median_abs_error_ms": (
            long_true == 0
            or (
                summary["long_closure_median_abs_error_ms"] is not None
                and summary["long_closure_median_abs_error_ms"]
                <= TARGETS["long_closure_median_abs_error_ms"]
            )
        ),
        "perclos_abs_error": summary["perclos_abs_error_max"] <= TARGETS["perclos_abs_error"],
    }
    return {
        "sim_dir": str(sim_dir),
        "engine": engine or settings.engine,
        "summary": summary,
        "targets": TARGETS,
        "checks": checks,
        "passed": all(checks.values()),
        "drivers": drivers,
    }
