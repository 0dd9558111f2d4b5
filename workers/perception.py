"""The per-driver perception pipeline, and its use on video files.

:class:`DriverPerception` holds everything one driver's stream needs between frames (face
backend, tracker, signal calibration, blink detector) and processes one frame at a time, so the
stream workers use it unchanged; :class:`VideoAnalysis` and :func:`blink_report` run it over
files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streams.observability import INFERENCE_STAGE
from streams.schemas import NetworkReading
from streams.settings import load_settings
from workers.face.backends import create_backend
from workers.face.engine import DriverFaceTracker, FaceBackend
from workers.serving import DriverNetworks
from workers.settings import PerceptionSettings
from workers.signals import BlinkConfig, BlinkDetector, EyeEvent, FrameSignals, SignalExtractor
from workers.signals.eyes import EyeStateEstimator
from workers.signals.frame import SignalConfig
from workers.signals.yawns import YawnDetector, YawnEvent
from workers.video import VideoReader, prepare_frame

log = logging.getLogger(__name__)
_FACE_SECONDS = INFERENCE_STAGE.labels("face")
_SIGNALS_SECONDS = INFERENCE_STAGE.labels("signals")


@dataclass
class FrameResult:
    """What one frame yields: its signals and the eye events and yawns that finished on it."""

    signals: FrameSignals
    events: list[EyeEvent] = field(default_factory=list)
    perclos: float | None = None
    closed_for_s: float = 0.0
    # Every face the engine found (x0, y0, x1, y1) in the pixels of the frame as given, the
    # driver's and any other: event clips blur them without a second detection.
    face_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    yawns: list[YawnEvent] = field(default_factory=list)
    # The learnt networks' readings that finished since the previous frame (workers.serving).
    networks: list[NetworkReading] = field(default_factory=list)


class DriverPerception:
    """One driver's stream: frames in capture order -> signals and eye events."""

    def __init__(
        self,
        backend: FaceBackend,
        fps: float = 30.0,
        signal_config: SignalConfig | None = None,
        blink_config: BlinkConfig | None = None,
        max_side: int = 1920,
        eye_state: EyeStateEstimator | None = None,
    ) -> None:
        self.backend = backend
        self.tracker = DriverFaceTracker()
        self.signals = SignalExtractor(fps, signal_config, eye_state)
        self.blinks = BlinkDetector(blink_config)
        self.yawns = YawnDetector()
        self.max_side = max_side
        self.frames = 0
        # The driver's windows for the learnt networks, when the worker serves any: fed the
        # frame and detection used here, so no frame is decoded or detected twice.
        self.networks: DriverNetworks | None = None

    def process(
        self, image: np.ndarray, timestamp_ms: int, frame: int | None = None
    ) -> FrameResult:
        """image: any frame :func:`prepare_frame` accepts (raises InputError if unusable)."""
        prepared, scale = prepare_frame(image, self.max_side)
        return self.process_prepared(prepared, timestamp_ms, scale, frame)

    def process_prepared(
        self, image: np.ndarray, timestamp_ms: int, scale: float = 1.0, frame: int | None = None
    ) -> FrameResult:
        """image: (H, W, 3) uint8 BGR already through :func:`prepare_frame`."""
        index = self.frames if frame is None else frame
        self.frames += 1
        t = timestamp_ms / 1000.0
        start = time.perf_counter()
        tracked = self.tracker.update(self.backend.detect(image, timestamp_ms), image.shape)
        detected = time.perf_counter()
        signals = self.signals.update(
            index, t, tracked.driver, image, faces=len(tracked.faces), scale=scale
        )
        events = self.blinks.update(index, t, signals.closure)
        yawns = self.yawns.update(index, t, signals.jaw_open, signals.mouth_open)
        _FACE_SECONDS.observe(detected - start)
        _SIGNALS_SECONDS.observe(time.perf_counter() - detected)
        boxes = [(float(x0) / scale, float(y0) / scale, float(x1) / scale, float(y1) / scale)
                 for x0, y0, x1, y1 in (f.box for f in tracked.faces)]
        readings: list[NetworkReading] = []
        if self.networks is not None:
            self.networks.add(index, t, image, tracked.driver, signals.sensing)
            readings = self.networks.take()
        return FrameResult(signals, events, self.blinks.perclos, self.blinks.closed_for(t),
                           boxes, yawns, readings)

    def finish(self) -> list[EyeEvent]:
        return self.blinks.flush()

    def close(self) -> None:
        self.backend.close()


def open_perception(
    settings: PerceptionSettings, fps: float, engine: str | None = None
) -> DriverPerception:
    torch.set_num_threads(settings.torch_threads)
    backend = create_backend(engine or settings.engine, settings=settings)
    eye_state = (EyeStateEstimator.load(settings.eye_state_checkpoint)
                 if settings.eye_state_checkpoint else None)
    return DriverPerception(backend, fps=fps, max_side=settings.max_frame_side,
                            eye_state=eye_state)


class VideoAnalysis:
    """Per-frame results of a video file, streamed by iterating.

    Opening checks the file (InputError for unusable ones); iterating goes past frames that do
    not decode (``video.frames_lost``, ``video.lost_spans`` after iteration; ``strict`` raises
    InputError after the frames before a truncation instead). Eye events and yawns are
    reported on the frame they finish; after iteration, ``trailing_events`` and
    ``trailing_yawns`` hold those still open when the video ended.
    """

    def __init__(
        self,
        path: str | Path,
        settings: PerceptionSettings | None = None,
        engine: str | None = None,
        strict: bool = False,
    ) -> None:
        self.settings = settings or load_settings(PerceptionSettings)
        self.engine = engine
        self.video = VideoReader(path, self.settings.max_frame_side, self.settings.max_file_bytes,
                                 strict)
        self.fps = self.video.fps
        self.trailing_events: list[EyeEvent] = []
        self.trailing_yawns: list[YawnEvent] = []

    def __iter__(self) -> Iterator[FrameResult]:
        perception = open_perception(self.settings, self.fps, self.engine)
        try:
            for frame in self.video:
                yield perception.process_prepared(
                    frame.image, frame.timestamp_ms, frame.scale, frame.index
                )
            self.trailing_events = perception.finish()
            self.trailing_yawns = perception.yawns.flush()
        finally:
            perception.close()
            self.video.close()


@dataclass
class BlinkReport:
    """Eye events, yawns and PERCLOS of a whole video. frames: frames decoded and analysed;
    frames_declared: what the container declares (None if it does not say); frames_lost and
    lost_spans (inclusive frame ranges): see :class:`workers.video.VideoReader`."""

    fps: float
    frames: int
    frames_with_face: int
    frames_measured: int
    perclos: float | None
    blinks: list[EyeEvent]
    long_closures: list[EyeEvent]
    yawns: list[YawnEvent] = field(default_factory=list)
    frames_declared: int | None = None
    frames_lost: int = 0
    lost_spans: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        minutes = self.frames / self.fps / 60.0 if self.fps else 0.0
        return {
            "fps": round(self.fps, 3),
            "frames": self.frames,
            "frames_with_face": self.frames_with_face,
            "frames_measured": self.frames_measured,
            "perclos": None if self.perclos is None else round(self.perclos, 4),
            "blink_count": len(self.blinks),
            "blinks_per_min": round(len(self.blinks) / minutes, 2) if minutes else None,
            "blinks": [e.to_dict() for e in self.blinks],
            "long_closures": [e.to_dict() for e in self.long_closures],
            "yawn_count": len(self.yawns),
            "yawns": [y.to_dict() for y in self.yawns],
            "frames_declared": self.frames_declared,
            "frames_lost": self.frames_lost,
            "lost_spans": [list(span) for span in self.lost_spans],
        }


def blink_report(
    path: str | Path, settings: PerceptionSettings | None = None, engine: str | None = None,
    strict: bool = False,
) -> BlinkReport:
    """Eye events and yawns of a whole video; PERCLOS over the whole video (share of measured
    frames with eyes >= 80 % closed)."""
    closed_level = BlinkConfig().closed
    frames = with_face = measured = closed = 0
    events: list[EyeEvent] = []
    yawns: list[YawnEvent] = []
    analysis = VideoAnalysis(path, settings, engine, strict)
    for result in analysis:
        frames += 1
        with_face += result.signals.face_present
        if result.signals.closure is not None:
            measured += 1
            closed += result.signals.closure >= closed_level
        events.extend(result.events)
        yawns.extend(result.yawns)
    events.extend(analysis.trailing_events)
    yawns.extend(analysis.trailing_yawns)
    video = analysis.video
    return BlinkReport(
        fps=analysis.fps,
        frames=frames,
        frames_with_face=with_face,
        frames_measured=measured,
        perclos=closed / measured if measured else None,
        blinks=[e for e in events if e.kind == "blink"],
        long_closures=[e for e in events if e.kind != "blink"],
        yawns=yawns,
        frames_declared=video.declared_frames or None,
        frames_lost=video.frames_lost,
        lost_spans=video.lost_spans,
    )
