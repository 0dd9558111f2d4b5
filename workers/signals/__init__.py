"""Per-frame driver signals and streaming eye events."""

from workers.signals.blinks import BlinkConfig, BlinkDetector, EyeEvent
from workers.signals.frame import FrameSignals, SignalConfig, SignalExtractor

__all__ = [
    "BlinkConfig",
    "BlinkDetector",
    "EyeEvent",
    "FrameSignals",
    "SignalConfig",
    "SignalExtractor",
]
