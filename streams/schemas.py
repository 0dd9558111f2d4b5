"""Every record Vigil puts on a topic or in the store: one module, versioned names.

Records are pydantic models serialised as JSON, each carrying ``schema`` = "vigil.<kind>.vN";
a new incompatible shape gets a new N (and a new topic), never a silent change. Frame batches
are the exception: JPEG bytes travel raw in a binary envelope (a JSON header plus the images
back to back), never base64 inside JSON.

Envelope layout (big-endian): b"VGF1" | u32 header length | header JSON | image bytes...
The header lists each frame's byte length, so the images are sliced without copying.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.errors import InputError


class SchemaError(InputError):
    """A message is not what its topic promises: bad envelope, wrong schema, invalid fields."""


class Record(BaseModel):
    """Base of all JSON records: strict (unknown fields are errors), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    SCHEMA: ClassVar[str]
    # Older versions of the record this one still reads (each a subset of its fields).
    FORMER_SCHEMAS: ClassVar[tuple[str, ...]] = ()

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


R = TypeVar("R", bound=Record)


# Bounds of every JSON record on a topic: what a decoder accepts before validating fields.
MAX_RECORD_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
# Errors and log lines quote at most this much of a record, escaped: a bad value never blows
# up a dead letter or a log.
MAX_ERROR_CHARS = 500


def clip_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` fit for an error message or a log line: non-printable characters escaped, at
    most ``limit`` characters (cut with "…")."""
    head = text[:limit]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in head)
    if len(head) > limit or len(text) > limit:
        return head[: limit - 1] + "…"
    return head


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {clip_text(text, 40)} is out of range")
    return value


def _bounded_int(text: str) -> int:
    # Larger ones would turn into float infinities in a float field.
    value = int(text)
    if abs(value) > 2**63:
        raise ValueError(f"integer {clip_text(text, 40)} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _storable(text: str) -> bool:
    """No NUL and no unpaired surrogate: text every database (and UTF-8) can hold."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_problem(obj: Any) -> str | None:
    """What makes a parsed JSON document unacceptable as a record, or None."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                return "text with a NUL character or an unpaired surrogate"
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(value, dict):
                stack.extend((k, depth) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
    return None


def _quoted(value: Any) -> str:
    return clip_text(repr(value[:80]) if isinstance(value, str) else type(value).__name__, 100)


def decode_record(cls: type[R], data: bytes | str, max_bytes: int = MAX_RECORD_BYTES) -> R:
    """Parses ``data`` as ``cls``; anything else raises SchemaError naming what is wrong (in a
    bounded message). Beyond the fields' own rules a record is at most ``max_bytes`` long,
    nested at most MAX_JSON_DEPTH deep, has only finite numbers and no text a database
    refuses (NUL, unpaired surrogates)."""
    if len(data) > max_bytes:
        raise SchemaError(f"{cls.SCHEMA} record of {len(data)} bytes exceeds the {max_bytes} "
                          "byte limit")
    try:
        obj = json.loads(data, parse_float=_finite_float, parse_int=_bounded_int,
                         parse_constant=_no_constant)
    except RecursionError:
        raise SchemaError("not JSON this decoder accepts: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"not JSON: {clip_text(str(exc))}") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object for {cls.SCHEMA}")
    problem = _json_problem(obj)
    if problem is not None:
        raise SchemaError(f"invalid {cls.SCHEMA}: {problem}")
    found = obj.get("schema")
    if found != cls.SCHEMA and found not in cls.FORMER_SCHEMAS:
        raise SchemaError(f"schema {_quoted(found)} where {cls.SCHEMA!r} was expected")
    try:
        # Strict: a number must be a JSON number (lax mode reads "NaN" and "inf" strings).
        return cls.model_validate_json(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SchemaError(clip_text(f"invalid {cls.SCHEMA}: {where}: {first['msg']}")) from None


def _printable_id(value: str) -> str:
    if not value.isprintable() or not value.strip():
        raise ValueError("must be printable text, not blank")
    return value


# Driver, vehicle and camera ids: 1-128 printable characters (str.isprintable: no control
# characters, NUL, line breaks or unpaired surrogates), not all spaces. Every store column and
# log line can hold them.
Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable_id)]
# Epoch seconds from 1970 to 2100: finite, and far from where float seconds lose whole minutes
# (window arithmetic stays exact).
MAX_EPOCH_S = 4_102_444_800.0
Epoch = Annotated[float, Field(ge=0, le=MAX_EPOCH_S)]
# Any other measured quantity: finite and of a plausible size.
Measure = Annotated[float, Field(ge=-1e6, le=1e6)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]
MapKey = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_printable_id)]


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# An optional signal: unmeasured (None) where the producer computed no finite value, as JSON
# would carry it.
Signal = Annotated[Measure | None, BeforeValidator(_finite_or_none)]
SignalFraction = Annotated[Fraction | None, BeforeValidator(_finite_or_none)]


def check_capture_times(times: list[float], broker_time: float | None, max_ahead_s: float,
                        max_behind_s: float) -> None:
    """Raises SchemaError when a capture time in ``times`` is more than ``max_ahead_s`` after
    or ``max_behind_s`` before the record's broker timestamp (epoch seconds; None or 0: the
    broker gave none, nothing to check). One record dated far ahead would otherwise become
    its driver's newest time and hide every real frame after it."""
    if not broker_time or not times:
        return
    ahead, behind = max(times) - broker_time, broker_time - min(times)
    if ahead > max_ahead_s:
        raise SchemaError(f"captured {ahead:.0f} s after the broker's time of the record "
                          f"(at most {max_ahead_s:.0f} s accepted)")
    if behind > max_behind_s:
        raise SchemaError(f"captured {behind:.0f} s before the broker's time of the record "
                          f"(at most {max_behind_s:.0f} s accepted)")


# --- frames -----------------------------------------------------------------------------

FRAME_MAGIC = b"VGF1"
MAX_BATCH_BYTES = 4 * 1024 * 1024


class FrameInfo(BaseModel):
    """One frame of a batch: capture sequence number and time, JPEG size."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: int = Field(ge=0)
    captured_at: Epoch = Field(description="capture time, seconds since the Unix epoch")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    size: int = Field(gt=0, le=MAX_BATCH_BYTES, description="JPEG bytes")


class FrameBatchHeader(Record):
    SCHEMA: ClassVar[str] = "vigil.frames.v1"
    schema_: Literal["vigil.frames.v1"] = Field("vigil.frames.v1", alias="schema")
    driver_id: Id
    vehicle_id: Id
    camera_id: Id = "cabin"
    # Made afresh each time the camera agent starts (its seq starts again at 0), so the
    # worker tells a restart from a replay. None: a camera older than the field.
    session: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    batch_seq: int = Field(ge=0)
    fps: float = Field(gt=0, le=240)
    sent_at: Epoch
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


class NetworkRole(StrEnum):
    """What a learnt network served by the workers estimates (workers.serving)."""

    BLINK = "blink"  # blink-eyelid-motion: blink_probability of the window
    AU = "au"  # satnet: the probability of each BP4D action unit in the window's last frame
    FATIGUE = "fatigue"  # fatigue-nonlocal-r3d18: fatigue score 0..1 and its bin


class NetworkReading(BaseModel):
    """One learnt network's reading of one driver's window of frames.

    ``model``/``version``: what produced it (the registry's name and version). The window runs
    from frame ``window_start_seq`` (captured at ``window_start_at``) to ``window_end_seq``
    (``window_end_at``), so a blink reading is an event with its span. ``outputs``: the
    readout (``blink_probability``, ``blink`` 0/1 at the checkpoint's threshold; ``AU1``..
    ``AU24``; ``fatigue_score``, ``fatigue_bin``, ``fatigued`` 0/1), empty when the window was
    due but not run; ``skipped`` then says why (``no_face``, ``filling``, a sensing reason): a
    driver the network cannot see is never fed zeros."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: NetworkRole
    model: MapKey
    version: str = Field(min_length=1, max_length=32)
    window_start_seq: Seq
    window_start_at: Epoch
    window_end_seq: Seq
    window_end_at: Epoch
    outputs: dict[MapKey, Measure] = Field(default_factory=dict, max_length=32)
    skipped: str | None = Field(default=None, max_length=64)


class EyeEventRecord(BaseModel):
    """A blink or long closure as the perception layer reports it (workers.signals)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["blink", "microsleep", "sleep"]
    start_seq: Seq
    end_seq: Seq
    start_at: Epoch
    end_at: Epoch
    duration_s: Seconds
    amplitude: Measure
    peak_closure: Measure
    opening_velocity: Measure
    closed_duration_s: Seconds
    frequency_per_min: Measure


class YawnRecord(BaseModel):
    """A yawn as the perception layer reports it (workers.signals.yawns): the span the mouth
    was wide open, which the aggregator counts as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_seq: Seq
    end_seq: Seq
    start_at: Epoch
    end_at: Epoch
    duration_s: Seconds
    peak_jaw_open: Signal = None
    peak_mouth_open: Signal = None


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

    SCHEMA: ClassVar[str] = "vigil.observation.v2"
    FORMER_SCHEMAS: ClassVar[tuple[str, ...]] = ("vigil.observation.v1",)
    schema_: Literal["vigil.observation.v2", "vigil.observation.v1"] = Field(
        "vigil.observation.v2", alias="schema")
    driver_id: Id
    vehicle_id: Id
    seq: Seq
    captured_at: Epoch
    processed_at: Epoch
    face_present: bool
    faces: Count = 0
    closure: SignalFraction = None
    sensing: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    openness_left: Signal = None
    openness_right: Signal = None
    blink_score: Signal = None
    mouth_open: Signal = None
    jaw_open: Signal = None
    yaw: Signal = None
    pitch: Signal = None
    roll: Signal = None
    gaze_off_road: bool | None = None
    perclos: SignalFraction = None
    closed_for_s: Seconds = 0.0
    au: dict[MapKey, Measure] = Field(default_factory=dict, max_length=64)
    events: list[EyeEventRecord] = Field(default_factory=list, max_length=64)
    # Yawns finished on this frame; observations from producers that predate yawn events
    # simply carry none.
    yawns: list[YawnRecord] = Field(default_factory=list, max_length=64)
    # v2: the learnt networks' readings that finished since the driver's previous observation.
    networks: list[NetworkReading] = Field(default_factory=list, max_length=16)

    @property
    def capture_times(self) -> list[float]:
        """Every capture time the record carries (its own, its events', yawns' and network
        windows')."""
        return [self.captured_at, *(t for e in self.events for t in (e.start_at, e.end_at)),
                *(t for y in self.yawns for t in (y.start_at, y.end_at)),
                *(t for n in self.networks for t in (n.window_start_at, n.window_end_at))]


# --- windows and alerts -----------------------------------------------------------------


# PERCLOS (P80) at which a window reads drowsy (Wierwille et al. 1994; Dinges & Grace 1998): the
# aggregator's default criterion (AggregatorConfig.perclos_drowsy), a reference line on charts.
PERCLOS_DROWSY = 0.15


class DriverState(StrEnum):
    """What the aggregator decided a closed window says about its driver, worst first
    (``WindowMetrics.state``; streams.aggregator.state)."""

    DROWSY = "drowsy"
    NO_FACE = "no_face"  # frames arrived, none showed a face
    CANNOT_MONITOR = "cannot_monitor"  # eye state untrusted for much of the window
    AWAKE = "awake"  # none of the above: no sign of fatigue ("alert" on the KSS)


class StateReason(StrEnum):
    """A condition the aggregator found in a window, behind its ``state``."""

    KSS_WARNING = "kss_warning"  # KSS >= kss_warning: must warn (EU DDAW)
    KSS_INFO = "kss_info"  # KSS >= kss_info (and below kss_warning): may warn
    PERCLOS = "perclos"  # PERCLOS >= perclos_drowsy
    NO_FACE = "no_face"  # frames, none with a face
    SENSING_DEGRADED = "sensing_degraded"  # eye state untrusted for degraded_window_share of it


STATE_REASON_WORDS: dict[str, str] = {
    StateReason.KSS_WARNING: "KSS at the must-warn level",
    StateReason.KSS_INFO: "KSS at the may-warn level",
    StateReason.PERCLOS: "PERCLOS at the drowsy criterion",
    StateReason.NO_FACE: "no face in view",
    StateReason.SENSING_DEGRADED: "eyes not measurable for much of it",
}


def state_reason_words(code: str) -> str:
    """A window state reason in an operator's words (a code this version lacks: its words)."""
    return STATE_REASON_WORDS.get(code, code.replace("_", " "))


class WindowMetrics(Record):
    """Per-driver statistics of one closed time window."""

    SCHEMA: ClassVar[str] = "vigil.window-metrics.v2"
    FORMER_SCHEMAS: ClassVar[tuple[str, ...]] = ("vigil.window-metrics.v1",)
    schema_: Literal["vigil.window-metrics.v2", "vigil.window-metrics.v1"] = Field(
        "vigil.window-metrics.v2", alias="schema")
    driver_id: Id
    vehicle_id: Id
    window_start: Epoch
    window_end: Epoch
    frames: Count
    face_frames: Count
    perclos: SignalFraction
    blink_count: Count
    blink_rate_per_min: Signal
    blink_duration_mean_s: Signal
    blink_duration_max_s: Signal
    long_closures: Count
    yawns: Count
    off_road_s: float
    au_rates: dict[MapKey, float] = Field(default_factory=dict, max_length=64)
    fatigue_score: SignalFraction = None
    kss: int | None = Field(default=None, ge=1, le=9)
    # v2: where fatigue_score/kss and au_rates came from: "rules" (PERCLOS, closures, yawns)
    # or "blendshapes" (the face mesh's AU proxies), or "MODEL@VERSION" of the learnt network
    # the worker served (NetworkReading); None when there is no figure (or before v2).
    fatigue_source: str | None = Field(default=None, max_length=96)
    au_source: str | None = Field(default=None, max_length=96)
    # The learnt estimate on the driver's latest blinks (streams.aggregator.drowsiness); None
    # until the shift's baseline and a full blink window exist, or with no new blink.
    drowsiness_state: str | None = Field(default=None, max_length=16)
    drowsiness_score: float | None = Field(default=None, ge=0, le=1)
    drowsiness_kss: int | None = Field(default=None, ge=1, le=9)
    drowsiness_probabilities: dict[MapKey, float] = Field(default_factory=dict, max_length=64)
    drowsiness_model: str | None = Field(default=None, max_length=64)
    # Seconds with a face whose eye state could not be trusted (Observation.sensing), and the
    # most frequent reason; the window's eye statistics leave those seconds out.
    degraded_s: float = Field(default=0.0, ge=0)
    sensing: str | None = Field(default=None, max_length=32)
    # What the aggregator decided the window says about the driver, and why (every condition it
    # found; streams.aggregator.state). None: a window from before the aggregator decided it
    # (as stored before migration 0007), whose state is unknown.
    state: DriverState | None = None
    state_reasons: list[StateReason] = Field(default_factory=list, max_length=8)


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
    alert_id: str = Field(min_length=1, max_length=64)
    driver_id: Id
    vehicle_id: Id
    reason: AlertReason
    severity: Severity
    started_at: Epoch = Field(description="onset of the condition, epoch seconds")
    detected_at: Epoch
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


# --- event clips ------------------------------------------------------------------------


class EventClip(Record):
    """A video clip of the frames behind an alert, written by the inference worker that held
    the driver's frames (workers.clip_recorder). Faces are blurred unless ``blurred`` is False (an
    operator's explicit setting). ``started_at``/``ended_at``: capture times of the first and
    last frame; ``created_at``: when the file was written (retention counts from it)."""

    SCHEMA: ClassVar[str] = "vigil.event-clip.v1"
    schema_: Literal["vigil.event-clip.v1"] = Field("vigil.event-clip.v1", alias="schema")
    alert_id: str = Field(min_length=1, max_length=64)
    driver_id: Id
    vehicle_id: Id
    path: str = Field(min_length=1, max_length=4096)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0, le=2**63 - 1)
    frames: Count = Field(gt=0)
    fps: float = Field(gt=0, le=240)
    started_at: Epoch
    ended_at: Epoch
    blurred: bool
    created_at: Epoch


# --- dead letters -----------------------------------------------------------------------


class DeadLetterReason(StrEnum):
    BAD_SCHEMA = "bad_schema"
    CORRUPT_FRAME = "corrupt_frame"
    UNKNOWN_DRIVER = "unknown_driver"
    OVERSIZED = "oversized"
    PROCESSING_ERROR = "processing_error"


class DeadLetter(Record):
    """Why a message was set aside. On the dead-letter topic the original value travels as
    the message value (cut to MAX_PAYLOAD bytes, with the whole value's size and sha256) and
    this record as the ``vigil-dead-letter`` header. ``error`` and ``key`` are kept printable
    and short (:func:`clip_text`), so a dead letter always fits the broker's message limit and
    the store's columns, whatever the bad message held."""

    SCHEMA: ClassVar[str] = "vigil.dead-letter.v1"
    schema_: Literal["vigil.dead-letter.v1"] = Field("vigil.dead-letter.v1", alias="schema")
    reason: DeadLetterReason
    error: str
    source_topic: str = Field(max_length=255)
    partition: int = Field(ge=0, le=2**31 - 1)
    offset: int = Field(ge=0, le=2**63 - 1)
    key: str | None = None
    failed_at: Epoch = Field(default_factory=lambda: datetime.now(UTC).timestamp())
    payload_size: int | None = Field(default=None, description="bytes of the original value")
    payload_truncated: bool = Field(
        default=False, description="the value carried is a prefix; the whole message stays "
        "at source_topic[partition]@offset for the topic's retention")
    payload_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    HEADER: ClassVar[str] = "vigil-dead-letter"
    # Well inside a stock Kafka broker's 1 MiB message limit, header included.
    MAX_PAYLOAD: ClassVar[int] = 256 * 1024

    @field_validator("error", "key")
    @classmethod
    def _clipped(cls, value: str | None) -> str | None:
        return None if value is None else clip_text(value)

    @property
    def where(self) -> str:
        return f"{self.source_topic}[{self.partition}]@{self.offset}"

    def carrying(self, payload: bytes) -> tuple[DeadLetter, bytes]:
        """(this record with the payload's size and digest, the value to publish: the
        payload, cut to MAX_PAYLOAD so any producer can send it)."""
        letter = self.model_copy(update={"payload_size": len(payload),
                                         "payload_truncated": len(payload) > self.MAX_PAYLOAD,
                                         "payload_sha256": hashlib.sha256(payload).hexdigest()})
        return letter, payload[: self.MAX_PAYLOAD]
