"""Per-driver aggregation: windows of driver signals, the fatigue/KSS estimate and the alert
rules (DESIGN §4). Pure and deterministic; the Faust agent that drives it lives elsewhere."""

from streams.aggregator.clock import CaptureClock
from streams.aggregator.config import AggregatorConfig
from streams.aggregator.driver import STATE_VERSION, DriverAggregator
from streams.aggregator.fatigue import KSS_LEVELS, fatigue_evidence, fatigue_score, kss_from_score
from streams.aggregator.state import decide_window, window_state
from streams.aggregator.windows import WindowAccumulator

__all__ = [
    "KSS_LEVELS",
    "STATE_VERSION",
    "AggregatorConfig",
    "CaptureClock",
    "DriverAggregator",
    "WindowAccumulator",
    "decide_window",
    "fatigue_evidence",
    "fatigue_score",
    "kss_from_score",
    "window_state",
]
