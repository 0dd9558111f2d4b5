"""The learnt drowsiness estimate on each driver's live blinks (DESIGN §4, §6).

The ``drowsiness-blinks`` network (``models/drowsiness.py``, card in ``models/cards/``) was
trained on UTA-RLDD windows of 30 consecutive blinks, each [frequency, amplitude, duration,
eye-opening velocity] z-normalised per subject against that subject's alert blinks. Live blinks
get exactly that treatment here:

- features: :class:`EyeEventRecord` ``frequency_per_min``, ``amplitude``, ``duration_s``,
  ``opening_velocity`` (the perception layer measures the four RLDD features; their units
  differ from the dataset's only by a scale, which the z-normalisation removes). ``blink`` and
  ``microsleep`` events count as blinks (the dataset's EAR-based detector counts every closure
  that reopens); a ``sleep`` is not a blink.
- baseline: the driver's first ``drowsiness_baseline_blinks`` blinks of the shift, assumed
  alert as the dataset's first recording was; mean and standard deviation per feature. A shift
  starts at the first blink, and again after ``drowsiness_shift_gap_s`` without blinks.
- window: the latest :data:`WINDOW_BLINKS` normalised blinks after the baseline. Each closed
  time window with at least one new blink gets an estimate (:class:`DrowsinessEstimate`).

KSS mapping: the dataset's classes were defined by KSS, alert = 1–3, low vigilant = 6–7,
drowsy = 8–9; a window's KSS is the expectation of the class probabilities over the middles of
those bands, :data:`CLASS_KSS`, rounded.

:class:`ServedDrowsinessModel` is what the aggregator calls: the registry's promoted version of
the network when there is one (``store.model_versions.promoted``), else the shipped weights, swapped
without a restart when :meth:`~ServedDrowsinessModel.refresh` finds another promotion.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.drowsiness import CLASSES, SHIPPED_CHECKPOINT, SHIPPED_VERSION, WINDOW_BLINKS
from models.drowsiness import NAME as MODEL_NAME
from models.predictor import ClipPredictor
from models.registry import ModelError
from streams.aggregator.config import AggregatorConfig
from streams.schemas import EyeEventRecord

log = logging.getLogger(__name__)

CLASS_KSS = (2.0, 6.5, 8.5)  # middles of the KSS bands that defined alert / low vig. / drowsy
BLINK_KINDS = ("blink", "microsleep")
_STD_FLOOR = 1e-3  # a baseline feature that never varied still divides by something finite
_DIGITS = 4


def blink_features(event: EyeEventRecord) -> list[float]:
    """[frequency, amplitude, duration, velocity]: the RLDD features of one blink."""
    return [event.frequency_per_min, event.amplitude, event.duration_s, event.opening_velocity]


def kss_from_probabilities(probabilities: Iterable[float]) -> int:
    """Class probabilities (alert, low vigilant, drowsy) -> KSS 1..9 (see module docstring)."""
    expected = sum(p * k for p, k in zip(probabilities, CLASS_KSS, strict=True))
    return int(min(max(math.floor(expected + 0.5), 1), 9))  # halves up: 6.5 is KSS 7


@dataclass(frozen=True)
class DrowsinessEstimate:
    """The network's reading of one blink window."""

    state: str  # one of models.drowsiness.CLASSES
    score: float  # 0 alert .. 1 drowsy, the expectation over the class levels
    kss: int
    probabilities: dict[str, float]
    model: str  # the version that produced it


class DrowsinessEstimator(Protocol):
    def estimate(self, window: np.ndarray) -> DrowsinessEstimate:
        """window: (WINDOW_BLINKS, 4) normalised blink features."""
        ...


@dataclass
class BlinkBaseline:
    """One driver's shift baseline and latest normalised blinks; every field JSON-safe."""

    baseline: list[list[float]] = field(default_factory=list)
    mean: list[float] | None = None
    std: list[float] | None = None
    recent: list[list[float]] = field(default_factory=list)
    last_blink_at: float | None = None
    new_blinks: int = 0

    def add(self, event: EyeEventRecord, config: AggregatorConfig) -> None:
        """One eye event of the driver, in order (non-blinks are ignored)."""
        if event.kind not in BLINK_KINDS:
            return
        features = blink_features(event)
        if not all(math.isfinite(v) for v in features):
            log.warning("blink at %.3f with non-finite features %s, left out", event.end_at,
                        features)
            return
        if (self.last_blink_at is not None
                and event.end_at - self.last_blink_at > config.drowsiness_shift_gap_s):
            # A new shift: a new baseline.
            self.baseline, self.mean, self.std, self.recent, self.new_blinks = [], None, None, [], 0
        self.last_blink_at = event.end_at
        if self.mean is None or self.std is None:
            self.baseline.append(features)
            if len(self.baseline) >= config.drowsiness_baseline_blinks:
                data = np.asarray(self.baseline, dtype=np.float64)
                self.mean = data.mean(axis=0).tolist()
                self.std = np.maximum(data.std(axis=0), _STD_FLOOR).tolist()
                self.baseline = []  # the baseline blinks need not be kept once summarised
            return
        z = (np.asarray(features) - np.asarray(self.mean)) / np.asarray(self.std)
        self.recent = [*self.recent, [round(float(v), _DIGITS) for v in z]][-WINDOW_BLINKS:]
        self.new_blinks += 1

    def window(self) -> np.ndarray | None:
        """(WINDOW_BLINKS, 4) float32 when enough blinks followed the baseline and at least one
        arrived since the last call; None otherwise."""
        if len(self.recent) < WINDOW_BLINKS or self.new_blinks == 0:
            return None
        self.new_blinks = 0
        return np.asarray(self.recent, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlinkBaseline:
        return cls(**data)


class DrowsinessModel:
    """One version of the network, ready to estimate (eval mode, CPU, no autograd)."""

    def __init__(self, model: torch.nn.Module, version: str) -> None:
        self.version = version
        self._predictor = ClipPredictor(model, max_batch=1)

    @classmethod
    def from_bytes(cls, checkpoint: bytes, version: str) -> DrowsinessModel:
        model, meta = load_checkpoint(io.BytesIO(checkpoint))
        if meta["name"] != MODEL_NAME:
            raise ModelError(f"version {version} holds {meta['name']!r}, not {MODEL_NAME!r}")
        return cls(model, version)

    @classmethod
    def shipped(cls) -> DrowsinessModel:
        return cls(load_checkpoint(SHIPPED_CHECKPOINT)[0], SHIPPED_VERSION)

    def estimate(self, window: np.ndarray) -> DrowsinessEstimate:
        readout = self._predictor.run_batch(torch.from_numpy(window[None]))
        probabilities = readout["probabilities"][0].tolist()
        return DrowsinessEstimate(
            state=CLASSES[int(np.argmax(probabilities))],
            score=round(float(readout["score"][0]), _DIGITS),
            kss=kss_from_probabilities(probabilities),
            probabilities={c: round(p, _DIGITS) for c, p in zip(CLASSES, probabilities,
                                                                  strict=True)},
            model=self.version)


class PromotedModelSource(Protocol):
    """Where promoted versions come from (:class:`streams.store.Store` in production)."""

    def promoted(self, name: str) -> tuple[str, bytes] | None:
        """(version, checkpoint bytes) of the promoted version of ``name``, or None."""
        ...


class ServedDrowsinessModel:
    """The version the aggregator serves: promoted in the registry, else shipped.

    :meth:`refresh` (called from a timer, off the event loop) loads a newly promoted version
    and swaps it in between two estimates; a version that fails to load is logged and the
    current one stays in service."""

    def __init__(self, source: PromotedModelSource | None = None,
                 initial: DrowsinessModel | None = None) -> None:
        self._source = source
        self._current = initial or DrowsinessModel.shipped()
        self._failed: str | None = None

    @property
    def version(self) -> str:
        return self._current.version

    def estimate(self, window: np.ndarray) -> DrowsinessEstimate:
        return self._current.estimate(window)

    def refresh(self) -> bool:
        """Serves the promoted version if it changed; True when it swapped. One caller at a
        time (the aggregator's timer awaits each call before the next)."""
        if self._source is None:
            return False
        promoted = self._source.promoted(MODEL_NAME)
        if promoted is None:
            if self._current.version == SHIPPED_VERSION:
                return False
            version, model = SHIPPED_VERSION, DrowsinessModel.shipped()
        else:
            version, blob = promoted
            if version in (self._current.version, self._failed):
                return False
            try:
                model = DrowsinessModel.from_bytes(blob, version)
            except ModelError as exc:
                self._failed = version
                log.error("promoted %s version %s does not load, still serving %s: %s",
                          MODEL_NAME, version, self._current.version, exc)
                return False
        log.info("serving %s version %s (was %s)", MODEL_NAME, version,
                 self._current.version)
        self._current = model
        return True
