"""What the store's read queries return: small frozen dataclasses (epoch-second floats)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streams.schemas import Alert, AlertReason, AlertState, Severity, WindowMetrics
from streams.store.models import AlertFlag, ApiScope, DeliveryStatus, OperatorRole


@dataclass(frozen=True)
class StoredAlert:
    """An alert with its lifecycle and the operator's latest flag."""

    alert_id: str
    driver_id: str
    vehicle_id: str
    reason: AlertReason
    severity: Severity
    started_at: float
    detected_at: float
    message: str
    evidence: dict[str, Any]
    state: AlertState
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    flag: AlertFlag | None
    flagged_at: float | None
    flagged_by: str | None

    def to_alert(self) -> Alert:
        """The record as it travelled on the alerts topic."""
        fields = ("alert_id", "driver_id", "vehicle_id", "reason", "severity",
                  "started_at", "detected_at", "message", "evidence")  # fmt: skip
        return Alert.model_validate({f: getattr(self, f) for f in fields})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FlagEntry:
    """One flag an operator set on an alert."""

    alert_id: str
    label: AlertFlag
    flagged_by: str
    note: str | None
    flagged_at: float


@dataclass(frozen=True)
class FleetEntry:
    """One driver in the fleet overview."""

    driver_id: str
    name: str | None
    vehicle_id: str
    first_seen: float
    last_seen: float
    last_state: str | None
    latest: WindowMetrics | None  # the driver's most recent window, if any
    open_alerts: int

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "latest"}
        out["latest"] = None if self.latest is None else self.latest.model_dump()
        return out


@dataclass(frozen=True)
class Delivery:
    """One alert's webhook delivery to one endpoint."""

    alert_id: str
    endpoint: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None
    next_attempt_at: float | None = None  # when a pending one is due


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery a dispatcher has leased, with the body to send."""

    alert_id: str
    endpoint: str
    attempts: int  # made so far, across dispatchers and restarts
    retry_from: float  # the retry horizon counts from here
    payload: bytes


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a webhook delivery."""

    alert_id: str
    endpoint: str
    attempt_no: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class StoredClip:
    """An event clip's row, with the latest flag of its alert (None: unflagged, or the alert
    is not stored yet). ``purged_at`` set: retention deleted the file (a tombstone)."""

    alert_id: str
    driver_id: str
    vehicle_id: str
    path: str
    sha256: str
    size_bytes: int
    frames: int
    fps: float
    started_at: float
    ended_at: float
    blurred: bool
    created_at: float
    recorded_at: float
    purged_at: float | None
    flag: AlertFlag | None

    @property
    def purged(self) -> bool:
        return self.purged_at is not None


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version without its weights (``Store.model_checkpoint`` has them)."""

    name: str
    version: str  # "v1", "v2", ...
    parent: str | None  # the version it was fine-tuned from ("shipped": the repo's weights)
    created_at: float
    data_hash: str
    metrics: dict[str, Any]
    sha256: str
    status: str  # streams.store.models.ModelStatus
    promoted_at: float | None
    note: str | None


@dataclass(frozen=True)
class Operator:
    """A local dashboard login, without its password hash."""

    name: str
    role: OperatorRole
    created_at: float
    last_login_at: float | None
    failed_logins: int  # consecutive, since the last successful login or lockout
    locked_until: float | None


@dataclass(frozen=True)
class ApiKey:
    """A read-API key as listed: never the key nor its hash."""

    key_id: str
    name: str
    scope: ApiScope
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scope": self.scope.value}
