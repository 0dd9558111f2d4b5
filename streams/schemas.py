"""Every record Vigil puts on a topic or in the store: one module, versioned names.

Records are pydantic models serialised as JSON, each carrying ``schema`` = "vigil.<kind>.vN";
a new incompatible shape gets a new N (and a new topic), never a silent change. Frame batches
are the exception: JPEG bytes travel raw in a binary envelope (a JSON header plus the images
back to back), never base64 inside JSON.

Envelope layout (big-endian): b"VGF1" | u32 header length | header JSON | image bytes...
The header lists each frame's byte length, so the images are sliced without copying.
"""

from __future__ import annotations

import json
import struct
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.errors import InputError


class SchemaError(InputError):
    """A message is not what its topic promises: bad envelope, wrong schema, invalid fields."""


class Record(BaseModel):
    """Base of all JSON records: strict (unknown fields are errors), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    SCHEMA: ClassVar[str]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


R = TypeVar("R", bound=Record)


def decode_record(cls: type[R], data: bytes | str) -> R:
    """Parses ``data`` as ``cls``; anything else raises SchemaError naming what is wrong."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object for {cls.SCHEMA}")
    found = obj.get("schema")
    if found != cls.SCHEMA:
        raise SchemaError(f"schema {found!r} where {cls.SCHEMA!r} was expected")
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SchemaError(f"invalid {cls.SCHEMA}: {where}: {first['msg']}") from None


# --- frames -----------------------------------------------------------------------------

FRAME_MAGIC = b"VGF1"
MAX_BATCH_BYTES = 4 * 1024 * 1024


class FrameInfo(BaseModel):
    """One frame of a batch: capture sequence number and time, JPEG size."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: int = Field(ge=0)
    captured_at: float = Field(description="capture time, seconds since the Unix epoch")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    size: int = Field(gt=0, description="JPEG bytes")


class FrameBatchHeader(Record):
    SCHEMA: ClassVar[str] = "vigil.frames.v1"
    schema_: Literal["vigil.frames.v1"] = Field("vigil.frames.v1", alias="schema")
    driver_id: str = Field(min_length=1, max_length=128)
    vehicle_id: str = Field(min_length=1, max_length=128)
    camera_id: str = "cabin"
    batch_seq: int = Field(ge=0)
    fps: float = Field(gt=0, le=240)
    sent_at: float
    frames: list[FrameInfo] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _ordered(self) -> FrameBatchHeader:
        seqs = [f.seq for f in self.frames]
        if seqs != sorted(set(seqs)):
            raise ValueError("frame sequence numbers must increase within a batch")
        return self


def encode_frame_batch(header: FrameBatchHeader, jpegs: list[bytes]) -> bytes:
    """header + JPEG images -> one message value."""
    if len(jpegs) != len(header.frames) or any(
        len(j) != f.size for j, f in zip(jpegs, header.frames, strict=True)
    ):
        raise SchemaError("frame sizes in the header do not match the images")
    head = header.to_bytes()
    return b"".join([FRAME_MAGIC, struct.pack(">I", len(head)), head, *jpegs])


def decode_frame_batch(
    data: bytes, max_bytes: int = MAX_BATCH_BYTES
) -> tuple[FrameBatchHeader, list[memoryview]]:
    """Message value -> (header, JPEG views). Raises SchemaError for anything malformed."""
    if len(data) > max_bytes:
        raise SchemaError(f"frame batch of {len(data)} bytes exceeds the {max_bytes} byte limit")
    if len(data) < 8 or data[:4] != FRAME_MAGIC:
        raise SchemaError("not a frame batch (bad magic)")
    (head_len,) = struct.unpack(">I", data[4:8])
    if 8 + head_len > len(data):
        raise SchemaError("frame batch header runs past the message")
    header = decode_record(FrameBatchHeader, data[8 : 8 + head_len])
    view, pos = memoryview(data), 8 + head_len
    images = []
    for frame in header.frames:
        if pos + frame.size > len(data):
            raise SchemaError(f"frame {frame.seq} runs past the message (truncated batch)")
        images.append(view[pos : pos + frame.size])
        pos += frame.size
    if pos != len(data):
        raise SchemaError(f"{len(data) - pos} unexpected bytes after the last frame")
    return header, images


# --- observations -----------------------------------------------------------------------


class EyeEventRecord(BaseModel):
    """A blink or long closure as the perception layer reports it (workers.signals)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["blink", "microsleep", "sleep"]
    start_seq: int
    end_seq: int
    start_at: float
    end_at: float
    duration_s: float
    amplitude: float
    peak_closure: float
    opening_velocity: float
    closed_duration_s: float
    frequency_per_min: float


class YawnRecord(BaseModel):
    """A yawn as the perception layer reports it (workers.signals.yawns): the span the mouth
    was wide open, which the aggregator counts as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_seq: int
    end_seq: int
    start_at: float
    end_at: float
    duration_s: float
    peak_jaw_open: float | None = None
    peak_mouth_open: float | None = None


class SensingIssue(StrEnum):
    """Why a frame's eye state cannot be trusted (``Observation.sensing``)."""

    EYES_HIDDEN = "eyes_hidden"  # sunglasses, a hand, glare: no judgeable eye in the crop
    FACE_SMALL = "face_small"  # too few pixels on the eyes
    FACE_TURNED = "face_turned"  # head turned so far the eyes cannot be judged


SENSING_WORDS: dict[str, str] = {
    SensingIssue.EYES_HIDDEN: "eyes hidden (sunglasses, a hand or glare)",
    SensingIssue.FACE_SMALL: "face too small in the image",
    SensingIssue.FACE_TURNED: "head turned too far away",
}


def sensing_words(code: str) -> str:
    """A sensing reason code in an operator's words (a code this version lacks: its words)."""
    return SENSING_WORDS.get(code, code.replace("_", " "))


class Observation(Record):
    """Driver signals of one frame (see workers.signals.FrameSignals for the meaning).

    ``sensing``: None when the eye state is measurable, else why not (a SensingIssue value;
    ``closure`` is then None or untrusted). Not a closed enum on purpose: a worker that knows a
    newer reason must not get its observations, face and gaze included, dead-lettered by an
    older aggregator; any code counts as degraded sensing."""

    SCHEMA: ClassVar[str] = "vigil.observation.v1"
    schema_: Literal["vigil.observation.v1"] = Field("vigil.observation.v1", alias="schema")
    driver_id: str
    vehicle_id: str
    seq: int
    captured_at: float
    processed_at: float
    face_present: bool
    faces: int = 0
    closure: float | None = None
    sensing: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    openness_left: float | None = None
    openness_right: float | None = None
    blink_score: float | None = None
    mouth_open: float | None = None
    jaw_open: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    gaze_off_road: bool | None = None
    perclos: float | None = None
    closed_for_s: float = 0.0
    au: dict[str, float] = Field(default_factory=dict)
    events: list[EyeEventRecord] = Field(default_factory=list)
    # Yawns finished on this frame; observations from producers that predate yawn events
    # simply carry none.
    yawns: list[YawnRecord] = Field(default_factory=list)


# --- windows and alerts -----------------------------------------------------------------


class WindowMetrics(Record):
    """Per-driver statistics of one closed time window."""

    SCHEMA: ClassVar[str] = "vigil.window-metrics.v1"
    schema_: Literal["vigil.window-metrics.v1"] = Field("vigil.window-metrics.v1", alias="schema")
    driver_id: str
    vehicle_id: str
    window_start: float
    window_end: float
    frames: int
    face_frames: int
    perclos: float | None
    blink_count: int
    blink_rate_per_min: float | None
    blink_duration_mean_s: float | None
    blink_duration_max_s: float | None
    long_closures: int
    yawns: int
    off_road_s: float
    au_rates: dict[str, float] = Field(default_factory=dict)
    fatigue_score: float | None = None
    kss: int | None = Field(default=None, ge=1, le=9)
    # The learnt estimate on the driver's latest blinks (streams.aggregator.drowsiness); None
    # until the shift's baseline and a full blink window exist, or with no new blink.
    drowsiness_state: str | None = None
    drowsiness_score: float | None = Field(default=None, ge=0, le=1)
    drowsiness_kss: int | None = Field(default=None, ge=1, le=9)
    drowsiness_probabilities: dict[str, float] = Field(default_factory=dict)
    drowsiness_model: str | None = None
    # Seconds with a face whose eye state could not be trusted (Observation.sensing), and the
    # most frequent reason; the window's eye statistics leave those seconds out.
    degraded_s: float = Field(default=0.0, ge=0)
    sensing: str | None = Field(default=None, max_length=32)


class AlertReason(StrEnum):
    MICROSLEEP = "microsleep"
    SLEEP = "sleep"
    DISTRACTION = "distraction"
    UNRESPONSIVE = "unresponsive"
    DROWSINESS = "drowsiness"
    CAMERA_BLOCKED = "camera_blocked"
    NO_FACE = "no_face"
    SENSING_DEGRADED = "sensing_degraded"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    OPEN = "open"
    ACKED = "acked"
    RESOLVED = "resolved"


ALERT_NAMESPACE = uuid.UUID("6f1c2a4e-5d0b-4c1e-9a57-3b8f0e7d9c21")


def alert_id(driver_id: str, reason: AlertReason, started_at: float) -> str:
    """Stable under reprocessing: the same driver, reason and onset give the same id."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{driver_id}|{reason.value}|{started_at:.3f}"))


class Alert(Record):
    SCHEMA: ClassVar[str] = "vigil.alert.v1"
    schema_: Literal["vigil.alert.v1"] = Field("vigil.alert.v1", alias="schema")
    alert_id: str
    driver_id: str
    vehicle_id: str
    reason: AlertReason
    severity: Severity
    started_at: float = Field(description="onset of the condition, epoch seconds")
    detected_at: float
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


# --- event clips ------------------------------------------------------------------------


class EventClip(Record):
    """A video clip of the frames behind an alert, written by the inference worker that held
    the driver's frames (workers.clips). Faces are blurred unless ``blurred`` is False (an
    operator's explicit setting). ``started_at``/``ended_at``: capture times of the first and
    last frame; ``created_at``: when the file was written (retention counts from it)."""

    SCHEMA: ClassVar[str] = "vigil.event-clip.v1"
    schema_: Literal["vigil.event-clip.v1"] = Field("vigil.event-clip.v1", alias="schema")
    alert_id: str = Field(min_length=1, max_length=64)
    driver_id: str = Field(min_length=1, max_length=128)
    vehicle_id: str = Field(min_length=1, max_length=128)
    path: str = Field(min_length=1, max_length=4096)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    frames: int = Field(gt=0)
    fps: float = Field(gt=0, le=240)
    started_at: float
    ended_at: float
    blurred: bool
    created_at: float


# --- dead letters -----------------------------------------------------------------------


class DeadLetterReason(StrEnum):
    BAD_SCHEMA = "bad_schema"
    CORRUPT_FRAME = "corrupt_frame"
    UNKNOWN_DRIVER = "unknown_driver"
    OVERSIZED = "oversized"
    PROCESSING_ERROR = "processing_error"


class DeadLetter(Record):
    """Why a message was set aside. On the dead-letter topic the original value travels
    unchanged as the message value and this record as the ``vigil-dead-letter`` header."""

    SCHEMA: ClassVar[str] = "vigil.dead-letter.v1"
    schema_: Literal["vigil.dead-letter.v1"] = Field("vigil.dead-letter.v1", alias="schema")
    reason: DeadLetterReason
    error: str
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    failed_at: float = Field(default_factory=lambda: datetime.now(UTC).timestamp())
    payload_size: int | None = Field(default=None, description="bytes of the original value")
    payload_truncated: bool = Field(
        default=False, description="the value carried is a prefix; the whole message stays "
        "at source_topic[partition]@offset for the topic's retention")

    HEADER: ClassVar[str] = "vigil-dead-letter"
    MAX_PAYLOAD: ClassVar[int] = 1024 * 1024

    @property
    def where(self) -> str:
        return f"{self.source_topic}[{self.partition}]@{self.offset}"

    def carrying(self, payload: bytes) -> tuple[DeadLetter, bytes]:
        """(this record with the payload's size, the value to publish: the payload, cut to
        MAX_PAYLOAD so any producer can send it)."""
        letter = self.model_copy(update={"payload_size": len(payload),
                                         "payload_truncated": len(payload) > self.MAX_PAYLOAD})
        return letter, payload[: self.MAX_PAYLOAD]
