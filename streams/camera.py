"""The camera agent: frames from a camera, file, RTSP stream or an injected source -> Kafka.

Sources other than OpenCV's come from above: the `vigil` command hands :func:`open_source` a
scheme for the driver simulator (``sim:PROFILE[:SEED]``), so this layer imports no trainer.
A replayed recording (:func:`load_replay`) is sent as the JPEGs it already is.

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

import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams.errors import ConfigurationError, InputError
from streams.kafka_clients import client_kwargs
from streams.schemas import FrameBatchHeader, FrameInfo, encode_frame_batch
from streams.settings import CameraSettings, KafkaSettings, StreamSettings, load_settings
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


@dataclass(frozen=True)
class EncodedFrame:
    """A frame that already is a JPEG (a replayed recording): the agent sends its bytes as
    they are, so a replaying camera spends no CPU on encoding."""

    jpeg: bytes
    width: int
    height: int


JPEG_SUFFIXES = (".jpg", ".jpeg")


def load_replay(path: Path, fps: float | None = None, max_frames: int = 600,
                jpeg_quality: int = CameraSettings().jpeg_quality) -> list[EncodedFrame]:
    """Frames to replay from ``path``: a directory's ``*.jpg``/``*.jpeg`` files in name order
    (sent as they are), or a video file's first ``max_frames`` frames, JPEG-encoded once here;
    with ``fps``, a video's frames are thinned to that rate, so that a replay at ``fps`` runs
    at the recording's own speed (blinks as long as they were). InputError: no such path, a
    JPEG that does not decode, or no frame at all."""
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in JPEG_SUFFIXES)
        frames = []
        for f in files[:max_frames]:
            data = f.read_bytes()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"{f} is not a readable JPEG")
            frames.append(EncodedFrame(data, image.shape[1], image.shape[0]))
    elif path.is_file():
        capture = cv2.VideoCapture(str(path))
        recorded_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        capture.release()
        step = max(1, round(recorded_fps / fps)) if fps and recorded_fps > 0 else 1
        source, _ = open_source(str(path), fps=1.0)
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        frames = []
        for image in itertools.islice(source, 0, None, step):
            ok, buf = cv2.imencode(".jpg", image, params)
            if ok:
                frames.append(EncodedFrame(buf.tobytes(), image.shape[1], image.shape[0]))
            if len(frames) >= max_frames:
                break
    else:
        raise InputError(f"no replay source at {path}")
    if not frames:
        raise InputError(f"no frames to replay in {path}")
    return frames


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
    """Publishes one camera's frames as batches keyed by driver id. ``kafka``: the broker's
    security settings (None: ``VIGIL_KAFKA__*``)."""

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
    kafka: KafkaSettings | None = None

    def __post_init__(self) -> None:
        if self.kafka is None:
            self.kafka = load_settings(StreamSettings).kafka
        if not 0 < self.fps <= 240 or not 1 <= self.batch <= 256:
            raise ConfigurationError(f"need 0 < fps <= 240 and 1 <= batch <= 256 "
                                     f"(got fps {self.fps}, batch {self.batch})")
        self._outbox: deque[_Batch] = deque()
        self._cond = threading.Condition()
        self._capture_done = False
        self._stop = threading.Event()
        self._seq = 0
        self._batch_seq = 0
        self._captured_at: float | None = None  # monotonic, of the newest frame
        self._failing_since: float | None = None  # monotonic; the sender's failures
        self._last_error = ""

    # --- capture --------------------------------------------------------------------------

    def _encode(self, frames: list[tuple[int, float, np.ndarray | EncodedFrame]]) -> _Batch:
        jpegs, infos = [], []
        params = [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality]
        for seq, captured_at, image in frames:
            if isinstance(image, EncodedFrame):
                data, w, h = image.jpeg, image.width, image.height
            else:
                ok, buf = cv2.imencode(".jpg", image, params)
                if not ok:
                    raise InputError(f"could not JPEG-encode frame {seq}")
                data = buf.tobytes()
                h, w = image.shape[:2]
            jpegs.append(data)
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

    def capture(self, source: Iterable[np.ndarray | EncodedFrame], paced: bool = True,
                max_frames: int | None = None, nominal_times: bool = False) -> None:
        """Reads ``source`` until it ends, ``max_frames`` or stop(); batches into the outbox.

        nominal_times: stamp frame k at start + k / fps instead of the clock, for replaying a
        recording faster than real time with its own timing (tests, backfills)."""
        period = 1.0 / self.fps
        next_at = time.monotonic()
        start = self.clock()
        pending: list[tuple[int, float, np.ndarray | EncodedFrame]] = []
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
                self._captured_at = time.monotonic()
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
            **client_kwargs(self.kafka or KafkaSettings(), "kafka-python"),
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
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    self._last_error = type(exc).__name__
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
                self._failing_since = None
                with self._cond:
                    if self._outbox and self._outbox[0] is head:
                        self._outbox.popleft()
                self.stats.batches_sent += 1
                self.stats.frames_sent += head.frames
        finally:
            if producer is not None:
                _close_quietly(producer, 5)

    def run(self, source: Iterable[np.ndarray | EncodedFrame], paced: bool = True,
            max_frames: int | None = None, nominal_times: bool = False) -> CameraStats:
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

    def capture_problem(self, limit_s: float) -> str | None:
        """Liveness: None while the source delivers (a frame within ``limit_s``), before its
        first frame (a source that never opens fails the command itself), or once capture is
        over; else what is wrong."""
        with self._cond:
            done = self._capture_done
        if done or self._captured_at is None:
            return None
        idle = time.monotonic() - self._captured_at
        if idle <= limit_s:
            return None
        return f"no frame from the source for {idle:.0f} s (limit {limit_s:g} s)"

    def publish_problem(self) -> str | None:
        """Readiness: None unless publishing to the broker is failing now."""
        since = self._failing_since
        if since is None:
            return None
        return (f"publishing frames failing for {time.monotonic() - since:.0f} s "
                f"({self._last_error}); {self.buffered_frames} frames buffered")

    @property
    def buffered_frames(self) -> int:
        with self._cond:
            return sum(b.frames for b in self._outbox)
