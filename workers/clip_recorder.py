"""Event clips: the few seconds of video behind an alert, faces blurred, written by the worker
that has just processed those frames.

Frames are processed and dropped; all the worker keeps is a bounded ring per driver
(:class:`FrameRing`) of the frames it processed in the last ``pre_s +
alert_latency_s + post_s`` seconds (capture time), at most ``max_frames``
frames and ``max_bytes`` bytes, downscaled to ``max_width`` and kept as JPEG, each
with the face boxes perception found on it (so blurring needs no second detection).

On an alert for a driver whose ring this worker holds (:meth:`ClipRecorder.on_alert`), the
frames from ``pre_s`` before its detection to ``post_s`` after it (waited for, up to
``post_grace_s`` longer on the wall clock) become a clip (:meth:`ClipRecorder.write`, in
an executor): every face box, grown by ``face_margin``, pixelated and smoothed; a frame
with no face box blurred whole, so a face the engine missed never shows (unless
``blur_faces`` is off). The clip is VP8 in WebM (``<alert id>.webm``): opencv-python-headless
writes it, and browsers play it, which they do not for MPEG-4 part 2 (``mp4v``). It is written
to a hidden temporary file, read back and checked, then put in place without replacing an
existing clip; the :class:`~streams.schemas.EventClip` record goes beside it
(``<alert id>.json``) and onto the event-clips topic.

Idempotent by alert id: an alert seen again (a replay) writes nothing; if the clip exists
from an earlier run, its record is published again from the sidecar (the store keeps one
row). An alert with no buffered frames in its span, or a clip that cannot be written (an
unwritable directory, an encoder failure), is logged with the alert id and counted in
:class:`ClipStats`; the worker goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.errors import VigilError
from streams.event_clips import (
    CLIP_SUFFIX,
    SIDECAR_SUFFIX,
    ClipSettings,
    UnsafePathError,
    clip_path,
    temp_name,
)
from streams.schemas import Alert, EventClip, SchemaError, decode_record
from workers.inference import ProcessedFrame

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
FOURCC = "VP80"
# Pixelation: this many cells across a face's larger side, or across a whole frame's width.
FACE_CELLS = 8
FRAME_CELLS = 12
DONE_MEMORY = 10_000  # alert ids remembered as handled (replays of older ones hit the files)


class ClipError(VigilError):
    """A clip could not be written."""


# --- buffering --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BufferedFrame:
    """One processed frame as the ring keeps it: JPEG (downscaled) and face boxes in its
    pixels."""

    captured_at: float
    jpeg: bytes
    width: int
    height: int
    boxes: tuple[Box, ...]


def buffered_frame(frame: ProcessedFrame, max_width: int, quality: int) -> BufferedFrame:
    """The frame downscaled to at most ``max_width`` (its JPEG kept as is when it is no
    wider), with its face boxes scaled alike."""
    h, w = frame.image.shape[:2]
    scale = min(1.0, max_width / w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ClipError("JPEG encoding failed")
        jpeg, (w, h) = buf.tobytes(), size
    else:
        jpeg = bytes(frame.jpeg)
    boxes = tuple(_int_box(b, scale, w, h) for b in frame.face_boxes)
    return BufferedFrame(frame.captured_at, jpeg, w, h, tuple(b for b in boxes if b))


def _int_box(box: Sequence[float], scale: float, w: int, h: int) -> Box | None:
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])):
        return None
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    return (ix0, iy0, ix1, iy1) if ix1 > ix0 and iy1 > iy0 else None


class FrameRing:
    """One driver's latest frames in capture order, bounded by time span (capture time),
    frame count and bytes: the oldest go first whichever bound is passed."""

    def __init__(self, span_s: float, max_frames: int, max_bytes: int) -> None:
        self.span_s, self.max_frames, self.max_bytes = span_s, max_frames, max_bytes
        self._frames: deque[BufferedFrame] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def newest(self) -> float | None:
        return self._frames[-1].captured_at if self._frames else None

    @property
    def oldest(self) -> float | None:
        return self._frames[0].captured_at if self._frames else None

    def add(self, frame: BufferedFrame) -> None:
        newest = self.newest
        if newest is not None and frame.captured_at <= newest:
            if frame.captured_at >= newest - self.span_s:
                return  # a replayed or out-of-order frame: the ring has its time already
            self.clear()  # the camera's clock went back: start again
        self._frames.append(frame)
        self.bytes += len(frame.jpeg)
        while self._frames and (
            frame.captured_at - self._frames[0].captured_at > self.span_s
            or len(self._frames) > self.max_frames
            or self.bytes > self.max_bytes
        ):
            self.bytes -= len(self._frames.popleft().jpeg)

    def window(self, start: float, end: float) -> list[BufferedFrame]:
        """The frames captured in [start, end]."""
        return [f for f in self._frames if start <= f.captured_at <= end]

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0


# --- blurring and encoding ----------------------------------------------------------------


def grow_box(box: Box, margin: float, width: int, height: int) -> Box:
    """``box`` grown by ``margin`` of its size on every side, within the image."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)),
            min(width, int(np.ceil(x1 + dx))), min(height, int(np.ceil(y1 + dy))))


def obscure(region: np.ndarray, cells: int) -> np.ndarray:
    """Pixelated to ``cells`` across its larger side, then smoothed (no block edges to
    read): no facial detail survives."""
    h, w = region.shape[:2]
    step = max(w, h) / cells
    small = cv2.resize(region, (max(1, round(w / step)), max(1, round(h / step))),
                       interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    sigma = max(1.0, step / 2)
    return cv2.GaussianBlur(coarse, (0, 0), sigmaX=sigma, sigmaY=sigma)


def blur_faces(image: np.ndarray, boxes: Iterable[Box], margin: float) -> np.ndarray:
    """A copy of ``image`` with every face box (grown by ``margin``) obscured; with no box at
    all, the whole frame is (a face the engine missed must not show)."""
    boxes = list(boxes)
    h, w = image.shape[:2]
    if not boxes:
        return obscure(image, FRAME_CELLS)
    out = image.copy()
    for box in boxes:
        x0, y0, x1, y1 = grow_box(box, margin, w, h)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = obscure(out[y0:y1, x0:x1], FACE_CELLS)
    return out


def clip_fps(frames: Sequence[BufferedFrame], nominal: float) -> float:
    """The rate the frames were captured at (so the clip plays in real time)."""
    if len(frames) > 1:
        span = frames[-1].captured_at - frames[0].captured_at
        if span > 0:
            return float(min(max((len(frames) - 1) / span, 1.0), 60.0))
    return float(min(max(nominal, 1.0), 60.0))


def encode_clip(frames: Sequence[BufferedFrame], path: Path, fps: float, *, blur: bool,
                margin: float) -> int:
    """Writes ``frames`` (blurred when ``blur``) to ``path`` (its suffix picks the container)
    and checks that the file reads back whole; returns the frame count. Raises ClipError."""
    if not frames:
        raise ClipError("no frames")
    width, height = frames[0].width, frames[0].height
    width, height = width - width % 2, height - height % 2  # codecs want even sizes
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise ClipError(f"the {FOURCC} encoder would not open {path.name}")
    written = 0
    try:
        for frame in frames:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            boxes = frame.boxes
            if image.shape[1] != frame.width or image.shape[0] != frame.height:
                raise ClipError("buffered frame does not match its size")
            if blur:
                image = blur_faces(image, boxes, margin)
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            writer.write(image)
            written += 1
    finally:
        writer.release()
    if not written:
        raise ClipError("no frame decoded")
    read = count_frames(path)
    if read != written:
        raise ClipError(f"wrote {written} frames but {read} read back")
    return written


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        n = 0
        while capture.grab():
            n += 1
        return n
    finally:
        capture.release()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the recorder -------------------------------------------------------------------------


@dataclass
class ClipStats:
    """Counters of the worker's clips (read by tests and logged on shutdown)."""

    written: int = 0
    republished: int = 0  # the clip existed from an earlier run: its record sent again
    replayed: int = 0  # an alert already handled: nothing done
    no_frames: int = 0  # no buffered frame in the alert's span (not this worker's driver)
    failed: int = 0  # could not be written (logged with the alert id)


@dataclass(frozen=True)
class ClipJob:
    """A clip to write (``frames``), or an existing clip's record to publish again."""

    alert: Alert
    frames: tuple[BufferedFrame, ...] = ()
    fps: float = 0.0
    existing: EventClip | None = None


@dataclass
class _Driver:
    ring: FrameRing
    fps: float
    active: float  # monotonic clock of the last frame added


@dataclass
class _Pending:
    alert: Alert
    until: float  # capture time the post-alert frames must reach
    deadline: float  # monotonic: written with what there is from then on


@dataclass
class ClipRecorder:
    """Every driver's ring, the alerts waiting for post-alert frames, and the writing.

    Thread-safe: :meth:`add_frame` runs in the inference threads, :meth:`on_alert` and
    :meth:`due` on the event loop, :meth:`write` in an executor."""

    settings: ClipSettings = field(default_factory=ClipSettings)
    clock: Callable[[], float] = time.monotonic
    stats: ClipStats = field(default_factory=ClipStats)

    def __post_init__(self) -> None:
        self._drivers: dict[str, _Driver] = {}
        self._pending: dict[str, _Pending] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def clips_dir(self) -> Path:
        return self.settings.directory

    # --- buffering (inference threads) --------------------------------------------------

    def add_frame(self, frame: ProcessedFrame) -> None:
        s = self.settings
        buffered = buffered_frame(frame, s.max_width, s.jpeg_quality)
        with self._lock:
            driver = self._drivers.get(frame.driver_id)
            if driver is None:
                ring = FrameRing(s.buffer_s, s.max_frames, s.max_bytes)
                driver = self._drivers[frame.driver_id] = _Driver(ring, frame.fps, 0.0)
            driver.ring.add(buffered)
            driver.fps, driver.active = frame.fps, self.clock()

    def ring(self, driver_id: str) -> FrameRing | None:
        return d.ring if (d := self._drivers.get(driver_id)) is not None else None

    # --- deciding (event loop) ----------------------------------------------------------

    def on_alert(self, alert: Alert) -> ClipJob | None:
        """A clip to write now; None when it waits for post-alert frames (see :meth:`due`),
        has no frames here, or was handled already."""
        with self._lock:
            if alert.alert_id in self._done:
                self.stats.replayed += 1
                log.debug("alert %s: clip handled already", alert.alert_id)
                return None
            try:  # the alert id names the file
                video = clip_path(self.clips_dir, alert.alert_id)
            except UnsafePathError as exc:
                self.stats.failed += 1
                log.error("alert %s: no clip: %s", alert.alert_id, exc)
                return None
            if video.exists():  # written by an earlier run
                self._remember(alert.alert_id)
                return self._republish(alert, video)
            driver = self._drivers.get(alert.driver_id)
            start, end = self._span(alert)
            if driver is None or not driver.ring.window(start, end):
                self.stats.no_frames += 1
                log.debug("alert %s: no frames of driver %s buffered here, no clip",
                          alert.alert_id, alert.driver_id)
                return None
            self._remember(alert.alert_id)
            newest = driver.ring.newest or 0.0
            if self.settings.post_s > 0 and newest < end:
                grace = self.settings.post_s + self.settings.post_grace_s
                self._pending[alert.alert_id] = _Pending(alert, end, self.clock() + grace)
                return None
            return self._job(alert, driver)

    def due(self) -> list[ClipJob]:
        """Clips whose post-alert frames have arrived (or whose wait is over); also lets go
        of the rings of drivers gone quiet."""
        now = self.clock()
        jobs = []
        with self._lock:
            for aid, p in list(self._pending.items()):
                driver = self._drivers.get(p.alert.driver_id)
                newest = driver.ring.newest if driver is not None else None
                if newest is not None and newest < p.until and now < p.deadline:
                    continue
                del self._pending[aid]
                job = self._job(p.alert, driver) if driver is not None else None
                if job is None:
                    self.stats.no_frames += 1
                    log.debug("alert %s: frames gone before the clip, no clip", aid)
                else:
                    jobs.append(job)
            idle = self.settings.buffer_s + self.settings.post_grace_s + 30.0
            waiting = {p.alert.driver_id for p in self._pending.values()}
            for driver_id, d in list(self._drivers.items()):
                if now - d.active > idle and driver_id not in waiting:
                    del self._drivers[driver_id]
        return jobs

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _span(self, alert: Alert) -> tuple[float, float]:
        s = self.settings
        return alert.detected_at - s.pre_s, alert.detected_at + s.post_s

    def _job(self, alert: Alert, driver: _Driver) -> ClipJob | None:
        frames = tuple(driver.ring.window(*self._span(alert)))
        if not frames:
            return None
        return ClipJob(alert, frames, clip_fps(frames, driver.fps))

    def _remember(self, alert_id: str) -> None:
        self._done[alert_id] = None
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    def _republish(self, alert: Alert, video: Path) -> ClipJob | None:
        """The record of a clip an earlier run wrote, to publish again (None: unreadable)."""
        alert_id = alert.alert_id
        try:
            record = decode_record(EventClip, video.with_suffix(SIDECAR_SUFFIX).read_bytes())
        except (OSError, SchemaError) as exc:
            log.warning("alert %s: clip %s exists without a readable record (%s); not "
                        "written again", alert_id, video, exc)
            self.stats.replayed += 1
            return None
        return ClipJob(alert, existing=record)

    # --- writing (executor) -------------------------------------------------------------

    def write(self, job: ClipJob) -> EventClip | None:
        """Writes the clip; its record, or None when it failed (logged and counted)."""
        if job.existing is not None:
            self.stats.republished += 1
            return job.existing
        alert = job.alert
        try:
            record = self._write(job)
        except Exception as exc:
            self.stats.failed += 1
            log.error("alert %s: clip not written: %s: %s", alert.alert_id,
                      type(exc).__name__, exc)
            return None
        if record is None:
            self.stats.replayed += 1
            return None
        self.stats.written += 1
        log.info("alert %s: clip %s (%d frames, %.1f s, faces %s)", alert.alert_id,
                 record.path, record.frames, record.ended_at - record.started_at,
                 "blurred" if record.blurred else "NOT blurred")
        return record

    def _write(self, job: ClipJob) -> EventClip | None:
        alert, s = job.alert, self.settings
        directory = s.directory
        directory.mkdir(parents=True, exist_ok=True)
        final = clip_path(directory, alert.alert_id)
        token = secrets.token_hex(4)
        tmp = directory / temp_name(alert.alert_id, token, CLIP_SUFFIX)
        try:
            frames = encode_clip(job.frames, tmp, job.fps, blur=s.blur_faces,
                                 margin=s.face_margin)
            record = EventClip(
                alert_id=alert.alert_id, driver_id=alert.driver_id,
                vehicle_id=alert.vehicle_id, path=str(final.resolve()), sha256=sha256_of(tmp),
                size_bytes=tmp.stat().st_size, frames=frames, fps=job.fps,
                started_at=job.frames[0].captured_at, ended_at=job.frames[-1].captured_at,
                blurred=s.blur_faces, created_at=time.time(),
            )
            if not _place(tmp, final):
                log.info("alert %s: clip exists already (another run wrote it)",
                         alert.alert_id)
                return None
        finally:
            tmp.unlink(missing_ok=True)
        sidecar = final.with_suffix(SIDECAR_SUFFIX)
        tmp_sidecar = directory / temp_name(alert.alert_id, token, SIDECAR_SUFFIX)
        try:
            tmp_sidecar.write_bytes(record.to_bytes())
            os.replace(tmp_sidecar, sidecar)
        finally:
            tmp_sidecar.unlink(missing_ok=True)
        return record


def _place(tmp: Path, final: Path) -> bool:
    """Moves the finished file into place unless a clip is there already (False)."""
    try:
        os.link(tmp, final)  # atomic, and never replaces
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
