"""Frame batches -> per-frame observations, per driver (no Kafka here).

:class:`InferenceProcessor` is what the stream agent's per-driver lanes call, off the event
loop. Anything unusable becomes a dead letter carrying the original bytes and the reason:
a malformed envelope or header (bad_schema), a batch over the size limit (oversized), a
driver the fleet does not know (unknown_driver), a JPEG that does not decode (corrupt_frame;
the batch's good frames are still processed). Frames already processed for a driver (a replay
after a rebalance) are skipped, so observations are not duplicated; so are frames that come
out of order within one camera session. Skipped frames are counted (:class:`InferenceStats`)
and logged, at most one line per driver every ``SKIP_LOG_EVERY_S``. A batch from a new camera
session (the camera restarted, its seq from 0 again) starts the driver's sequence afresh:
logged and counted as a restart, and processed.

Each processed frame is also handed to ``on_frame`` (the event clips' ring buffer,
:class:`workers.clip_recorder.ClipRecorder`) with its decoded image and face boxes.

``Observation.processed_at`` is stamped when that frame's inference finished, so
``processed_at - captured_at`` is a frame's capture-to-observation latency; a message's decode
plus inference time is :attr:`ProcessResult.seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streams.errors import InputError
from streams.logs import log_context, stream_position
from streams.observability import BATCH_SECONDS, FRAMES_DROPPED, FRAMES_RECEIVED, INFERENCE_STAGE
from streams.schemas import (
    MAX_BATCH_BYTES,
    DeadLetter,
    DeadLetterReason,
    EyeEventRecord,
    FrameBatchHeader,
    Observation,
    SchemaError,
    YawnRecord,
    check_capture_times,
    decode_frame_batch,
)
from streams.settings import RecordSettings
from streams.topics import FRAMES
from workers.perception import DriverPerception, FrameResult
from workers.serving import DriverNetworks, MicroBatcher
from workers.signals import EyeEvent
from workers.signals.yawns import YawnEvent

log = logging.getLogger(__name__)
_DECODE_SECONDS = INFERENCE_STAGE.labels("decode")

SKIP_LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class RawMessage:
    """A consumed message, as the agent hands it over."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    topic: str = FRAMES.name
    timestamp: float | None = None  # the broker's, epoch seconds (None: unknown)

    @property
    def key_text(self) -> str | None:
        return self.key.decode(errors="replace") if self.key is not None else None

    def dead_letter(self, reason: DeadLetterReason, error: str) -> DeadLetter:
        return DeadLetter(reason=reason, error=error, source_topic=self.topic,
                          partition=self.partition, offset=self.offset, key=self.key_text)


@dataclass(frozen=True)
class ProcessedFrame:
    """A frame the perception has just processed: its decoded image (BGR), the JPEG it came
    as (a view into the message), and every face box found (image pixels)."""

    driver_id: str
    vehicle_id: str
    fps: float
    captured_at: float
    image: np.ndarray
    jpeg: memoryview
    face_boxes: list[tuple[float, float, float, float]]


FrameSink = Callable[[ProcessedFrame], None]


@dataclass
class ProcessResult:
    observations: list[Observation] = field(default_factory=list)
    dead_letters: list[tuple[DeadLetter, bytes]] = field(default_factory=list)
    # Set once the message reached a driver's perception state: whose, and the capture time
    # of its newest frame (the agent holds its offset commit by that; see workers.lanes).
    driver_id: str | None = None
    captured_until: float | None = None
    seconds: float = 0.0


@dataclass
class InferenceStats:
    """Counters of the processor (read by tests and logged on shutdown)."""

    camera_restarts: int = 0  # a driver's batches came from a new camera session
    skipped_frames: int = 0  # at or before the session's last processed seq: replayed, reordered


@dataclass
class _DriverState:
    perception: DriverPerception
    vehicle_id: str
    session: str | None = None
    last_seq: int = -1
    skipped: int = 0  # since the last log line about them
    skip_logged_at: float = float("-inf")


class InferenceProcessor:
    """Holds every driver's perception state. Different drivers may be processed in different
    threads at once; one driver's messages must be processed in order, one at a time (the
    agent's per-driver lanes do that)."""

    def __init__(
        self,
        make_perception: Callable[[float], DriverPerception],
        known_drivers: frozenset[str] | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        clock: Callable[[], float] = time.time,
        on_frame: FrameSink | None = None,
        records: RecordSettings | None = None,
        serving: MicroBatcher | None = None,
    ) -> None:
        """serving: the batcher of the learnt networks, when the worker serves any; every
        driver's perception then feeds it its windows (it is closed with the processor)."""
        self._make = make_perception
        self.serving = serving
        self.records = records or RecordSettings()
        self.known_drivers = known_drivers
        self.max_batch_bytes = max_batch_bytes
        self.clock = clock
        self.on_frame = on_frame
        self.stats = InferenceStats()
        self._drivers: dict[str, _DriverState] = {}
        self._lock = threading.Lock()  # guards _drivers, not the states in it

    def process_batch(self, msgs: list[RawMessage]) -> list[ProcessResult]:
        """One executor call for a lane's queued messages (one driver, in order). The learnt
        networks' windows are batched across drivers elsewhere (:mod:`workers.serving`)."""
        return [self.process_safely(msg) for msg in msgs]

    def process_safely(self, msg: RawMessage) -> ProcessResult:
        """:meth:`process`, with any unexpected failure set aside as a processing_error dead
        letter (traceback logged) so one bad message never stops the stream."""
        start = time.perf_counter()
        position = stream_position(msg.topic, msg.partition, msg.offset)
        with log_context(driver=msg.key_text, where=position):
            try:
                result = self.process(msg)
            except Exception as exc:
                log.exception("processing %s[%d]@%d failed", msg.topic, msg.partition,
                              msg.offset)
                letter = msg.dead_letter(DeadLetterReason.PROCESSING_ERROR,
                                         f"{type(exc).__name__}: {exc}")
                result = ProcessResult(dead_letters=[(letter, msg.value)])
        result.seconds = time.perf_counter() - start
        BATCH_SECONDS.observe(result.seconds)
        return result

    def process(self, msg: RawMessage) -> ProcessResult:
        result = ProcessResult()
        key = msg.key_text

        def dead(reason: DeadLetterReason, error: str) -> ProcessResult:
            letter = msg.dead_letter(reason, error)
            log.warning("dead letter %s: %s: %s", letter.where, reason.value, letter.error)
            result.dead_letters.append((letter, msg.value))
            return result

        if len(msg.value) > self.max_batch_bytes:
            return dead(DeadLetterReason.OVERSIZED,
                        f"{len(msg.value)} bytes > limit {self.max_batch_bytes}")
        try:
            header, images = decode_frame_batch(msg.value, self.max_batch_bytes)
        except SchemaError as exc:
            return dead(DeadLetterReason.BAD_SCHEMA, str(exc))
        if key != header.driver_id:  # lanes go by key: keyless frames could race a lane
            return dead(DeadLetterReason.BAD_SCHEMA,
                        f"message key {key!r} differs from driver {header.driver_id!r}")
        if self.known_drivers is not None and header.driver_id not in self.known_drivers:
            return dead(DeadLetterReason.UNKNOWN_DRIVER,
                        f"driver {header.driver_id!r} is not registered")
        try:  # before any state: a frame dated far ahead would poison the driver's clock
            check_capture_times([f.captured_at for f in header.frames], msg.timestamp,
                                self.records.max_ahead_s, self.records.max_behind_s)
        except SchemaError as exc:
            return dead(DeadLetterReason.BAD_SCHEMA, str(exc))
        FRAMES_RECEIVED.inc(len(header.frames))
        state = self._state(header)
        result.driver_id, result.captured_until = header.driver_id, header.frames[-1].captured_at
        self._follow_session(state, header)
        corrupt = []
        skipped = 0
        for info, jpeg in zip(header.frames, images, strict=True):
            if info.seq <= state.last_seq:
                skipped += 1  # replayed after a rebalance (already observed), or reordered
                continue
            decoding = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            _DECODE_SECONDS.observe(time.perf_counter() - decoding)
            if image is None:
                corrupt.append(info.seq)
                continue
            try:
                frame_result = state.perception.process(
                    image, round(info.captured_at * 1000), frame=info.seq
                )
            except InputError as exc:
                corrupt.append(info.seq)
                log.warning("driver %s frame %d unusable: %s", header.driver_id, info.seq, exc)
                continue
            state.last_seq = info.seq
            if self.on_frame is not None:
                try:
                    self.on_frame(ProcessedFrame(header.driver_id, header.vehicle_id, header.fps,
                                                 info.captured_at, image, jpeg,
                                                 frame_result.face_boxes))
                except Exception:  # a clip is never worth an observation
                    log.exception("driver %s frame %d: clip buffer failed", header.driver_id,
                                  info.seq)
            result.observations.append(frame_observation(
                header.driver_id, header.vehicle_id, info.captured_at, frame_result,
                self.clock()))
        if corrupt:
            FRAMES_DROPPED.labels("corrupt").inc(len(corrupt))
            dead(DeadLetterReason.CORRUPT_FRAME,
                 f"frames {corrupt} of driver {header.driver_id} do not decode")
        if skipped:
            self._skipped(state, header, skipped)
        return result

    def _follow_session(self, state: _DriverState, header: FrameBatchHeader) -> None:
        if header.session == state.session:
            return
        if state.last_seq >= 0 or state.session is not None:
            with self._lock:
                self.stats.camera_restarts += 1
            log.warning("driver %s: camera restarted (session %s after %s, last frame %d); "
                        "its frames from seq %d on are processed", header.driver_id,
                        header.session, state.session, state.last_seq, header.frames[0].seq)
        state.session, state.last_seq = header.session, -1

    def _skipped(self, state: _DriverState, header: FrameBatchHeader, n: int) -> None:
        FRAMES_DROPPED.labels("skipped").inc(n)
        with self._lock:
            self.stats.skipped_frames += n
        state.skipped += n
        now = self.clock()
        if now - state.skip_logged_at >= SKIP_LOG_EVERY_S:
            log.warning("driver %s: %d frames skipped since the last report: seq not after "
                        "one already processed in camera session %s (replayed or out of "
                        "order)", header.driver_id, state.skipped, header.session)
            state.skipped, state.skip_logged_at = 0, now

    def _state(self, header: FrameBatchHeader) -> _DriverState:
        state = self._drivers.get(header.driver_id)
        if state is None:
            # Lanes of different drivers get here at once; the lock keeps the dict, and
            # close(), consistent. Loading models one at a time costs only at start-up.
            with self._lock:
                state = self._drivers.get(header.driver_id)
                if state is None:
                    state = _DriverState(self._make(header.fps), header.vehicle_id)
                    if self.serving is not None:
                        state.perception.networks = DriverNetworks(
                            header.driver_id, self.serving, self.serving.networks.settings)
                    self._drivers[header.driver_id] = state
        return state

    def close(self) -> None:
        with self._lock:
            for state in self._drivers.values():
                state.perception.close()
            self._drivers.clear()
        if self.serving is not None:
            self.serving.close()


def frame_observation(driver_id: str, vehicle_id: str, captured_at: float, r: FrameResult,
                      processed_at: float) -> Observation:
    """The observation the worker publishes for one frame's perception result (pure; also
    what `vigil eval video` feeds the aggregator)."""
    s = r.signals
    scores = [v for v in (s.blink_score_left, s.blink_score_right) if v is not None]
    return Observation(
        driver_id=driver_id, vehicle_id=vehicle_id, seq=s.frame,
        captured_at=captured_at, processed_at=processed_at, face_present=s.face_present,
        faces=s.faces, closure=s.closure, sensing=s.sensing, openness_left=s.openness_left,
        openness_right=s.openness_right, blink_score=float(np.mean(scores)) if scores else None,
        mouth_open=s.mouth_open, jaw_open=s.jaw_open, yaw=s.yaw, pitch=s.pitch, roll=s.roll,
        gaze_off_road=s.gaze_off_road, perclos=r.perclos, closed_for_s=r.closed_for_s,
        au=s.au, events=[_event_record(e) for e in r.events],
        yawns=[_yawn_record(y) for y in r.yawns], networks=r.networks,
    )


def _event_record(e: EyeEvent) -> EyeEventRecord:
    """Perception timestamps are capture times (the agent feeds them), so event times are too."""
    return EyeEventRecord(
        kind=e.kind, start_seq=e.start_frame, end_seq=e.end_frame, start_at=e.start_t,
        end_at=e.end_t, duration_s=e.duration_s, amplitude=e.amplitude,
        peak_closure=e.peak_closure, opening_velocity=e.opening_velocity,
        closed_duration_s=e.closed_duration_s, frequency_per_min=e.frequency_per_min,
    )


def _yawn_record(y: YawnEvent) -> YawnRecord:
    return YawnRecord(
        start_seq=y.start_frame, end_seq=y.end_frame, start_at=y.start_t, end_at=y.end_t,
        duration_s=y.duration_s, peak_jaw_open=y.peak_jaw_open, peak_mouth_open=y.peak_mouth_open,
    )
