"""The rule-based fatigue score (0..1) of one window and its Karolinska Sleepiness Scale level.

A stand-in until the learnt estimator arrives: honest, monotone, documented.

Each sign of drowsiness becomes "evidence" in units of its literature threshold:

- PERCLOS (P80): ``perclos / perclos_drowsy``; 1.0 at PERCLOS = 0.15, the "drowsy" criterion
  of Wierwille et al. (1994) and Dinges & Grace (1998, FHWA-MCRT-98-006).
- mean blink duration: ``(mean - 0.2 s) / (0.4 s - 0.2 s)`` clipped to [0, 2]; alert blinks
  last ~0.1–0.2 s, drowsy ones > 0.4 s (Caffier et al. 2003; Schleicher et al. 2008).
- long closures (microsleep + sleep events): their count, capped at 3. A single microsleep is
  a lapse, in itself strong evidence (Euro NCAP 2023 DSM).
- yawns: their count, capped at 4; a weak sign on its own.

``z = 1.0·perclos + 0.3·blink_duration + 1.0·long_closures + 0.15·yawns`` (weights in
:class:`AggregatorConfig`), and ``score = 1 / (1 + exp(-3·(z - 0.9)))``. Every weight is >= 0
and every evidence term non-decreasing in its signal, so the score is monotone in each of
PERCLOS, blink duration, long closures and yawns. Calibration points (nothing else in the
window): an alert driver (PERCLOS 0.03, blinks 0.2 s) scores ~0.11 (KSS 3); PERCLOS at the 0.15
criterion ~0.57 (KSS 7, may warn); PERCLOS 0.15 with 0.4 s blinks, or any microsleep, >= 0.65
(KSS 8, must warn); PERCLOS >= 0.3, or two long closures, >= 0.8 (KSS 9).
"""

from __future__ import annotations

import math

from streams.aggregator.config import AggregatorConfig

# (lowest score, KSS level), ascending. Eye and mouth signals cannot tell "extremely alert"
# (KSS 1) from "alert" (KSS 3), so the estimator's floor is 3.
KSS_LEVELS: tuple[tuple[float, int], ...] = (
    (0.0, 3),
    (0.2, 4),
    (0.3, 5),
    (0.4, 6),
    (0.5, 7),
    (0.65, 8),
    (0.8, 9),
)


def fatigue_evidence(
    perclos: float,
    blink_duration_mean_s: float | None,
    long_closures: int,
    yawns: int,
    config: AggregatorConfig | None = None,
) -> dict[str, float]:
    """The weighted evidence terms (their sum is z); see the module docstring."""
    cfg = config or AggregatorConfig()
    duration = 0.0
    if blink_duration_mean_s is not None:
        span = cfg.blink_duration_drowsy_s - cfg.blink_duration_alert_s
        duration = min(max((blink_duration_mean_s - cfg.blink_duration_alert_s) / span, 0.0), 2.0)
    return {
        "perclos": cfg.weight_perclos * max(perclos, 0.0) / cfg.perclos_drowsy,
        "blink_duration": cfg.weight_blink_duration * duration,
        "long_closures": (
            cfg.weight_long_closure * min(max(long_closures, 0), cfg.max_long_closures)
        ),
        "yawns": cfg.weight_yawn * min(max(yawns, 0), cfg.max_yawns),
    }


def fatigue_score(
    perclos: float,
    blink_duration_mean_s: float | None,
    long_closures: int,
    yawns: int,
    config: AggregatorConfig | None = None,
) -> float:
    """Window signals -> fatigue score in [0, 1] (logistic of the weighted evidence).

    perclos: share of measured frames with closure >= 0.8; blink_duration_mean_s: seconds, None
    when the window had no blinks; long_closures, yawns: counts in the window.
    """
    cfg = config or AggregatorConfig()
    z = sum(fatigue_evidence(perclos, blink_duration_mean_s, long_closures, yawns, cfg).values())
    return 1.0 / (1.0 + math.exp(-cfg.score_slope * (z - cfg.score_centre)))


def kss_from_score(score: float) -> int:
    """Fatigue score in [0, 1] -> KSS level (3..9) by :data:`KSS_LEVELS`."""
    level = KSS_LEVELS[0][1]
    for lowest, kss in KSS_LEVELS:
        if score >= lowest:
            level = kss
    return level
