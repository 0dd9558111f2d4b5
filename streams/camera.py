"""The camera agent: frames from a camera, file, RTSP stream or an injected source -> Kafka.

Sources other than OpenCV's come from above: the `vigil` command hands :func:`open_source` a
scheme for the driver simulator (``sim:PROFILE[:SEED]``), so this layer imports no trainer.

Two threads: capture paces the source in real time, encodes JPEGs and appends finished
batches to a bounded outbox; the sender publishes the outbox in order through an idempotent
kafka-python producer (acks=all) and only drops a batch once the broker has it. While the
broker is unreachable the outbox grows up to ``max_buffer_s`` worth of frames, so an outage
shorter than that leaves no gap in the sequence numbers; past it the oldest frames are dropped
and counted.

Each agent start is a new camera session (a random id in every batch): its sequence numbers
start again at 0, and the worker tells the restart from a replay by the session. A live source
that stops delivering is reopened with backoff for ``reconnect_for_s``, then the agent gives
up with an InputError (so `vigil camera` exits non-zero); a file that ends is simply done.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams.errors import ConfigurationError, InputError
from streams.schemas import FrameBatchHeader, FrameInfo, encode_frame_batch
from streams.settings import CameraSettings
from streams.topics import FRAMES

log = logging.getLogger(__name__)

FrameSource = Iterator[np.ndarray]
# (the spec after "SCHEME:", fps, default seed) -> frames the agent paces (not live)
SourceOpener = Callable[[str, float, int], FrameSource]
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0


def open_source(spec: str, fps: float, seed: int = 0,
                reconnect_for_s: float = CameraSettings().reconnect_for_s,
                schemes: Mapping[str, SourceOpener] | None = None
                ) -> tuple[FrameSource, bool]:
    """spec -> (frames, is_live). Live sources (devices, RTSP) pace themselves; files and
    ``schemes`` sources (the simulator) are paced by the agent.

    spec: ``SCHEME:REST`` for a scheme in ``schemes`` (``sim:PROFILE[:SEED]`` when the
    caller gives the simulator's), a device index (``0``), an RTSP/HTTP URL, or a video file.
    InputError: the source does not open; while iterating, a file with no readable frame, or
    a live source that stopped delivering and did not come back within ``reconnect_for_s``.
    """
    scheme, colon, rest = spec.partition(":")
    if colon and schemes and scheme in schemes:
        return schemes[scheme](rest, fps, seed), False
    live = spec.isdigit() or "://" in spec
    target: int | str = int(spec) if spec.isdigit() else spec
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot open camera source {spec!r}")

    def frames() -> FrameSource:
        capture, read, backoff = cap, 0, RECONNECT_FIRST_S
        dropped_at: float | None = None  # monotonic; counts from the first failed read
        try:
            while True:
                ok, frame = capture.read()
                if ok:
                    if dropped_at is not None:
                        log.info("camera source %s back after %.1f s", spec,
                                 time.monotonic() - dropped_at)
                    read, dropped_at, backoff = read + 1, None, RECONNECT_FIRST_S
                    yield frame
                    continue
                if not live:
                    if read == 0:
                        raise InputError(f"no frame could be read from {spec!r}")
                    return  # the end of the file
                now = time.monotonic()
                if dropped_at is None:
                    dropped_at = now
                    log.warning("camera source %s stopped delivering frames; reconnecting "
                                "for up to %g s", spec, reconnect_for_s)
                if now - dropped_at >= reconnect_for_s:
                    raise InputError(f"camera source {spec!r} stopped delivering frames and "
                                     f"did not come back within {reconnect_for_s:g} s")
                time.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                capture.release()
                capture = cv2.VideoCapture(target)
        finally:
            capture.release()

    return frames(), live


def _close_quietly(producer: KafkaProducer, timeout_s: float) -> None:
    """Closing flushes, and a flush fails while the broker is away; the outbox still holds
    every unacknowledged batch, so nothing is lost by abandoning the producer's own queue."""
    try:
        producer.close(timeout=timeout_s)
    except KafkaError as exc:
        log.debug("producer closed with %s pending", type(exc).__name__)


@dataclass
class CameraStats:
    frames_captured: int = 0
    batches_sent: int = 0
    frames_sent: int = 0
    send_failures: int = 0
    frames_dropped: int = 0


@dataclass
class _Batch:
    key: bytes
    value: bytes
    first_seq: int
    frames: int


@dataclass
class CameraAgent:
    """Publishes one camera's frames as batches keyed by driver id."""

    bootstrap: str
    driver_id: str
    vehicle_id: str
    fps: float
    batch: int = 8
    settings: CameraSettings = field(default_factory=CameraSettings)
    compression: str = "gzip"
    stats: CameraStats = field(default_factory=CameraStats)
    clock: Callable[[], float] = time.time
    session: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 240 or not 1 <= self.batch <= 256:
            raise ConfigurationError(f"need 0 < fps <= 240 and 1 <= batch <= 256 "
                                     f"(got fps {self.fps}, batch {self.batch})")
        self._outbox: deque[_Batch] = deque()
        self._cond = threading.Condition()
        self._capture_done = False
        self._stop = threading.Event()
        self._seq = 0
        self._batch_seq = 0

    # --- capture --------------------------------------------------------------------------

    def _encode(self, frames: list[tuple[int, float, np.ndarray]]) -> _Batch:
        jpegs, infos = [], []
        params = [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality]
        for seq, captured_at, image in frames:
            ok, buf = cv2.imencode(".jpg", image, params)
            if not ok:
                raise InputError(f"could not JPEG-encode frame {seq}")
            data = buf.tobytes()
            jpegs.append(data)
            h, w = image.shape[:2]
            infos.append(FrameInfo(seq=seq, captured_at=captured_at, width=w, height=h,
                                   size=len(data)))
        header = FrameBatchHeader(driver_id=self.driver_id, vehicle_id=self.vehicle_id,
                                  session=self.session, batch_seq=self._batch_seq,
                                  fps=self.fps, sent_at=self.clock(), frames=infos)
        self._batch_seq += 1
        return _Batch(self.driver_id.encode(), encode_frame_batch(header, jpegs),
                      frames[0][0], len(frames))

    def _enqueue(self, batch: _Batch) -> None:
        limit = max(1, int(self.settings.max_buffer_s * self.fps))
        with self._cond:
            self._outbox.append(batch)
            while sum(b.frames for b in self._outbox) > limit and len(self._outbox) > 1:
                dropped = self._outbox.popleft()
                self.stats.frames_dropped += dropped.frames
                log.warning("broker unreachable for over %.0f s: dropped frames %d-%d of %s",
                            self.settings.max_buffer_s, dropped.first_seq,
                            dropped.first_seq + dropped.frames - 1, self.driver_id)
            self._cond.notify()

    def capture(self, source: FrameSource, paced: bool = True,
                max_frames: int | None = None, nominal_times: bool = False) -> None:
        """Reads ``source`` until it ends, ``max_frames`` or stop(); batches into the outbox.

        nominal_times: stamp frame k at start + k / fps instead of the clock, for replaying a
        recording faster than real time with its own timing (tests, backfills)."""
        period = 1.0 / self.fps
        next_at = time.monotonic()
        start = self.clock()
        pending: list[tuple[int, float, np.ndarray]] = []
        try:
            for image in source:
                if self._stop.is_set() or (max_frames is not None and self._seq >= max_frames):
                    break
                if paced:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_at = max(next_at + period, time.monotonic() - period)
                stamp = start + self._seq * period if nominal_times else self.clock()
                pending.append((self._seq, stamp, image))
                self._seq += 1
                self.stats.frames_captured += 1
                if len(pending) >= self.batch:
                    full, pending = pending, []
                    self._enqueue(self._encode(full))
        finally:
            try:  # also when the source failed: what was captured before still goes out
                if pending:
                    self._enqueue(self._encode(pending))
            finally:
                with self._cond:
                    self._capture_done = True
                    self._cond.notify()

    # --- sending --------------------------------------------------------------------------

    def _producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=f"vigil-camera-{self.driver_id}",
            acks="all", enable_idempotence=True, compression_type=self.compression,
            linger_ms=5, max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(self.settings.send_timeout_s * 1000),
            reconnect_backoff_max_ms=2000,
        )

    def send_loop(self) -> None:
        """Publishes the outbox in order until capture is done and the outbox is empty, or
        stop(). A batch leaves the outbox only after the broker acknowledged it."""
        producer: KafkaProducer | None = None
        backoff = 0.2
        try:
            while not self._stop.is_set():
                with self._cond:
                    while not self._outbox and not self._capture_done and not self._stop.is_set():
                        self._cond.wait(0.5)
                    if not self._outbox:
                        if self._capture_done or self._stop.is_set():
                            return
                        continue
                    head = self._outbox[0]
                try:
                    if producer is None:
                        producer = self._producer()
                    producer.send(FRAMES.name, key=head.key, value=head.value).get(
                        timeout=self.settings.send_timeout_s
                    )
                except (KafkaError, OSError) as exc:
                    self.stats.send_failures += 1
                    log.warning("publishing frames %d.. of %s failed (%s); retrying in %.1f s",
                                head.first_seq, self.driver_id, type(exc).__name__, backoff)
                    # A producer that saw the broker vanish may be stuck with stale state
                    # (its idempotence session); start a fresh one.
                    if producer is not None:
                        _close_quietly(producer, 1)
                        producer = None
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.2
                with self._cond:
                    if self._outbox and self._outbox[0] is head:
                        self._outbox.popleft()
                self.stats.batches_sent += 1
                self.stats.frames_sent += head.frames
        finally:
            if producer is not None:
                _close_quietly(producer, 5)

    def run(self, source: FrameSource, paced: bool = True, max_frames: int | None = None,
            nominal_times: bool = False) -> CameraStats:
        """Capture and send until the source ends (then flush) or stop() is called."""
        sender = threading.Thread(target=self.send_loop, name=f"camera-send-{self.driver_id}",
                                  daemon=True)
        sender.start()
        try:
            self.capture(source, paced, max_frames, nominal_times)
        finally:
            sender.join()
        return self.stats

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def buffered_frames(self) -> int:
        with self._cond:
            return sum(b.frames for b in self._outbox)
