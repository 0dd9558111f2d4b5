"""Tables of the Vigil store (SQLAlchemy 2 typed declarative models).

Conventions:

- Every timestamp is a float, seconds since the Unix epoch (UTC), in a DOUBLE PRECISION
  column. The records on the topics carry epoch floats, alert ids are derived from them, and a
  double round-trips them exactly on SQLite and PostgreSQL alike, with no time-zone handling
  (SQLite has no time-zone-aware DATETIME). In SQL, ``to_timestamp(detected_at)``
  (PostgreSQL) or ``datetime(detected_at, 'unixepoch')`` (SQLite) gives a readable time.
- JSON payloads (AU rates, alert evidence) are ``JSON`` on SQLite and ``JSONB`` on PostgreSQL.
- Lifecycle columns hold the string values of the enums below, guarded by CHECK constraints.
  Alert reason and severity are the values of ``streams.schemas`` enums without a CHECK, so a
  new reason in the schemas needs no migration.
- Constraint names follow ``NAMING_CONVENTION`` so migrations can address them (SQLite batch
  mode needs named constraints).

The schema is created and changed only by the Alembic migrations in ``migrations/``; a test
checks that the migrations and these models agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streams.schemas import AlertState

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")
# 64-bit surrogate keys; SQLite only auto-increments an "INTEGER PRIMARY KEY".
BigId = BigInteger().with_variant(Integer(), "sqlite")

ID_LEN = 128  # driver and vehicle ids are at most 128 characters (FrameBatchHeader)


class AlertFlag(StrEnum):
    """An operator's verdict on an alert (feeds retraining)."""

    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"


class ModelStatus(StrEnum):
    """Where a registered model version stands; one version per model is PROMOTED (served)."""

    CANDIDATE = "candidate"  # registered, never served
    PROMOTED = "promoted"  # served now
    RETIRED = "retired"  # served before; ``rollback`` returns to the latest of these
    ROLLED_BACK = "rolled_back"  # taken out of service by a rollback


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ApiScope(StrEnum):
    """What a read-API key may do; ``write`` includes ``read``."""

    READ = "read"  # every GET
    WRITE = "write"  # also acknowledge and flag alerts

    def allows(self, needed: ApiScope | str) -> bool:
        order = list(ApiScope)
        return order.index(self) >= order.index(ApiScope(needed))


class OperatorRole(StrEnum):
    """What a dashboard login may do; each role may do everything of the ones before it."""

    VIEWER = "viewer"  # read every page
    OPERATOR = "operator"  # acknowledge, resolve and flag alerts
    ADMIN = "admin"  # webhooks, models, users, and the health page's details


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class VehicleRow(Base):
    __tablename__ = "vehicles"

    vehicle_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Double)
    last_seen: Mapped[float] = mapped_column(Double)


class DriverRow(Base):
    __tablename__ = "drivers"

    driver_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    # The vehicle the driver was last seen in (no FK: a driver row may be written first).
    vehicle_id: Mapped[str] = mapped_column(String(ID_LEN))
    first_seen: Mapped[float] = mapped_column(Double)
    last_seen: Mapped[float] = mapped_column(Double)
    # Free-form state for the fleet overview (e.g. "ok", "drowsy", "no_face").
    last_state: Mapped[str | None] = mapped_column(Text)


class WindowMetricsRow(Base):
    """One closed per-driver window (streams.schemas.WindowMetrics)."""

    __tablename__ = "window_metrics"

    driver_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    window_start: Mapped[float] = mapped_column(Double, primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(String(ID_LEN))
    window_end: Mapped[float] = mapped_column(Double)
    frames: Mapped[int] = mapped_column(Integer)
    face_frames: Mapped[int] = mapped_column(Integer)
    perclos: Mapped[float | None] = mapped_column(Double)
    blink_count: Mapped[int] = mapped_column(Integer)
    blink_rate_per_min: Mapped[float | None] = mapped_column(Double)
    blink_duration_mean_s: Mapped[float | None] = mapped_column(Double)
    blink_duration_max_s: Mapped[float | None] = mapped_column(Double)
    long_closures: Mapped[int] = mapped_column(Integer)
    yawns: Mapped[int] = mapped_column(Integer)
    off_road_s: Mapped[float] = mapped_column(Double)
    au_rates: Mapped[dict[str, float]] = mapped_column(JsonDoc)
    fatigue_score: Mapped[float | None] = mapped_column(Double)
    kss: Mapped[int | None] = mapped_column(Integer)
    # Where fatigue_score/kss and au_rates came from (WindowMetrics.fatigue_source, au_source);
    # NULL on windows stored before migration 0008.
    fatigue_source: Mapped[str | None] = mapped_column(String(96))
    au_source: Mapped[str | None] = mapped_column(String(96))
    drowsiness_state: Mapped[str | None] = mapped_column(String(16))
    drowsiness_score: Mapped[float | None] = mapped_column(Double)
    drowsiness_kss: Mapped[int | None] = mapped_column(Integer)
    drowsiness_probabilities: Mapped[dict[str, float] | None] = mapped_column(JsonDoc)
    drowsiness_model: Mapped[str | None] = mapped_column(String(64))
    degraded_s: Mapped[float] = mapped_column(Double, server_default=text("0"))
    sensing: Mapped[str | None] = mapped_column(String(32))
    # The aggregator's decision on the window (streams.aggregator.state): a DriverState value
    # and a list of StateReason values; NULL on windows stored before migration 0007 (unknown).
    state: Mapped[str | None] = mapped_column(String(16))
    state_reasons: Mapped[list[str] | None] = mapped_column(JsonDoc)


class AlertRow(Base):
    """An alert (streams.schemas.Alert) plus its lifecycle and the operator's latest flag."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in("state", AlertState), name="state"),
        CheckConstraint(_in("flag", AlertFlag), name="flag"),
        Index("ix_alerts_driver_id_detected_at", "driver_id", "detected_at"),
        Index("ix_alerts_state_detected_at", "state", "detected_at"),
        Index("ix_alerts_detected_at", "detected_at"),
        Index("ix_alerts_flag", "flag"),
    )

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver_id: Mapped[str] = mapped_column(String(ID_LEN))
    vehicle_id: Mapped[str] = mapped_column(String(ID_LEN))
    reason: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Double)
    detected_at: Mapped[float] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    state: Mapped[str] = mapped_column(String(16), default="open")
    acked_at: Mapped[float | None] = mapped_column(Double)
    acked_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[float | None] = mapped_column(Double)
    resolved_by: Mapped[str | None] = mapped_column(Text)
    flag: Mapped[str | None] = mapped_column(String(16))
    flagged_at: Mapped[float | None] = mapped_column(Double)
    flagged_by: Mapped[str | None] = mapped_column(Text)


class AlertFlagRow(Base):
    """Every flag an operator set; the alert row keeps the latest (greatest flagged_at)."""

    __tablename__ = "alert_flags"
    __table_args__ = (
        CheckConstraint(_in("label", AlertFlag), name="label"),
        Index("ix_alert_flags_alert_id_flagged_at", "alert_id", "flagged_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("alerts.alert_id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(String(16))
    flagged_by: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    flagged_at: Mapped[float] = mapped_column(Double)


class WebhookDeliveryRow(Base):
    """One alert to one endpoint: the webhook outbox. No FK to alerts: the dispatcher may see
    an alert on the topic before the alert sink has written it. A pending row is due at
    ``next_attempt_at``; ``claimed_until`` is the lease of the dispatcher sending it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_webhook_deliveries_status", "status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(512), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)
    delivered_at: Mapped[float | None] = mapped_column(Double)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)  # the exact body signed
    next_attempt_at: Mapped[float | None] = mapped_column(Double)
    retry_from: Mapped[float | None] = mapped_column(Double)  # the retry horizon starts here
    claimed_until: Mapped[float | None] = mapped_column(Double)


class WebhookAttemptRow(Base):
    """Every HTTP attempt of a delivery (append-only: each row is a real request)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["alert_id", "endpoint"],
            ["webhook_deliveries.alert_id", "webhook_deliveries.endpoint"],
            ondelete="CASCADE",
        ),
        Index("ix_webhook_attempts_alert_id_endpoint", "alert_id", "endpoint", "attempt_no"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(512))
    attempt_no: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Double)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Double)


class ModelVersionRow(Base):
    """One trained version of a model with its weights, lineage and evaluation. The weights
    live in the database so that every aggregator, wherever it runs, loads the promoted
    version from where it already reads (the served networks are kilobytes)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in("status", ModelStatus), name="status"),
        Index("ix_model_versions_name_status", "name", "status"),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    data_hash: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    checkpoint: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    promoted_at: Mapped[float | None] = mapped_column(Double)
    note: Mapped[str | None] = mapped_column(Text)


class DeadLetterRow(Base):
    """A message set aside (streams.schemas.DeadLetter); unique per source position and
    reason, so replaying the dead-letter topic never duplicates rows."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("source_topic", "partition", "offset", "reason"),
        Index("ix_dead_letters_failed_at", "failed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    source_topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[float] = mapped_column(Double)



class EventClipRow(Base):
    """The clip file behind an alert (streams.schemas.EventClip). No FK to alerts: the clip
    may be recorded before the alert sink has written its alert. When retention purges the
    file, ``purged_at`` is set and the row stays as a tombstone (no picture in it), so the
    dashboard can say the clip expired and a replay of the clip record cannot revive it."""

    __tablename__ = "event_clips"
    __table_args__ = (
        Index("ix_event_clips_created_at", "created_at"),
        Index("ix_event_clips_driver_id_started_at", "driver_id", "started_at"),
    )

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver_id: Mapped[str] = mapped_column(String(ID_LEN))
    vehicle_id: Mapped[str] = mapped_column(String(ID_LEN))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    frames: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float] = mapped_column(Double)
    blurred: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Double)
    recorded_at: Mapped[float] = mapped_column(Double)
    purged_at: Mapped[float | None] = mapped_column(Double)


class OperatorRow(Base):
    """A local dashboard login (logins through OIDC are not stored). ``password_hash`` is
    ``scrypt$N$r$p$salt$hash`` (streams.store.passwords); consecutive failed logins lock the
    login until ``locked_until``."""

    __tablename__ = "operators"
    __table_args__ = (CheckConstraint(_in("role", OperatorRole), name="role"),)

    name: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)
    last_login_at: Mapped[float | None] = mapped_column(Double)
    failed_logins: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    locked_until: Mapped[float | None] = mapped_column(Double)


class ApiKeyRow(Base):
    """A key of the read API (``vgl_<key_id>_<secret>``). Only the SHA-256 of the secret is
    stored, never the key; a revoked key stays as a row (``revoked_at``) so its id is never
    reused and the listing shows who had access."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_in("scope", ApiScope), name="scope"),)

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_LEN))
    scope: Mapped[str] = mapped_column(String(8))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    last_used_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)


ALL_TABLES = tuple(Base.metadata.sorted_tables)

# The Core tables the repositories query (the typed declarative classes above define them).
VEHICLES: Table = VehicleRow.__table__  # type: ignore[assignment]
DRIVERS: Table = DriverRow.__table__  # type: ignore[assignment]
METRICS: Table = WindowMetricsRow.__table__  # type: ignore[assignment]
ALERTS: Table = AlertRow.__table__  # type: ignore[assignment]
FLAGS: Table = AlertFlagRow.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDeliveryRow.__table__  # type: ignore[assignment]
ATTEMPTS: Table = WebhookAttemptRow.__table__  # type: ignore[assignment]
DEAD_LETTERS: Table = DeadLetterRow.__table__  # type: ignore[assignment]
CLIPS: Table = EventClipRow.__table__  # type: ignore[assignment]
MODELS: Table = ModelVersionRow.__table__  # type: ignore[assignment]
OPERATORS: Table = OperatorRow.__table__  # type: ignore[assignment]
API_KEYS: Table = ApiKeyRow.__table__  # type: ignore[assignment]
