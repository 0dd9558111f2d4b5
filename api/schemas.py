"""What the read API answers: its response and request bodies (the OpenAPI document's
schemas). Times are epoch seconds (UTC), as in the store."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from streams.schemas import AlertReason, AlertState, DriverState, Severity, StateReason
from streams.store import AlertFlag

EPOCH = "epoch seconds (UTC)"


class Problem(BaseModel):
    """An error: what was wrong, in one line."""

    detail: str


class StatusFilter(StrEnum):
    """Alert statuses a list can ask for: the store's, or ``unresolved`` (open or acked)."""

    OPEN = AlertState.OPEN.value
    ACKED = AlertState.ACKED.value
    RESOLVED = AlertState.RESOLVED.value
    UNRESOLVED = "unresolved"

    def states(self) -> list[AlertState]:
        if self is StatusFilter.UNRESOLVED:
            return [AlertState.OPEN, AlertState.ACKED]
        return [AlertState(self.value)]


class ExportFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


class AlertOut(BaseModel):
    """An alert with its lifecycle (open -> acked -> resolved) and the latest flag."""

    alert_id: str = Field(description="stable under reprocessing")
    driver_id: str
    vehicle_id: str
    reason: AlertReason
    severity: Severity
    status: AlertState
    started_at: float = Field(description=f"onset of the condition, {EPOCH}")
    detected_at: float = Field(description=f"when the aggregator raised it, {EPOCH}")
    message: str
    evidence: dict[str, Any] = Field(description="the signal values and their window")
    evidence_summary: str = Field(description="the evidence in one line, as the dashboard "
                                  "shows it")
    acked_at: float | None = None
    acked_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = Field(None, description="None on a resolved alert: the "
                                    "condition cleared")
    flag: AlertFlag | None = Field(None, description="the latest operator verdict")
    flagged_at: float | None = None
    flagged_by: str | None = None


class AlertPage(BaseModel):
    """One page of alerts, newest first. Pass ``next_cursor`` as ``cursor`` (with the same
    filters) for the next page; None: this is the last one."""

    items: list[AlertOut]
    next_cursor: str | None
    limit: int = Field(description="the page size used (the one asked for, capped)")


class FlagIn(BaseModel):
    """An operator verdict on an alert; flagged alerts feed retraining."""

    label: AlertFlag
    note: str | None = Field(None, max_length=2000)


class ActionOut(BaseModel):
    """What an action did and the alert after it."""

    result: str = Field(description="what happened, in words (as the dashboard says it)")
    changed: bool = Field(description="False: the alert was that way already (a retry)")
    alert: AlertOut


class FleetDriver(BaseModel):
    """One driver as the dashboard's fleet page shows it."""

    driver_id: str
    name: str
    vehicle_id: str
    status: str = Field(description="unresponsive, asleep, drowsy, distracted, no_face, "
                        "cannot_monitor, offline, unknown or alert (awake)")
    status_label: str
    status_detail: str
    perclos: float | None
    fatigue_score: float | None
    fatigue_source: str
    kss: int | None
    drowsiness_state: str | None
    window_state: str | None = Field(description="the latest window's state (None: no "
                                     "window)")
    window_reasons: str
    blink_rate_per_min: float | None
    open_alerts: int
    active_reasons: list[AlertReason] = Field(description="reasons of its recent unresolved "
                                              "alerts")
    last_seen: float = Field(description=EPOCH)
    seen_ago_s: float


class Fleet(BaseModel):
    """Every driver, worst status first."""

    generated_at: float = Field(description=EPOCH)
    counts: dict[str, int] = Field(description="drivers per status")
    drivers: list[FleetDriver]


class SeriesWindow(BaseModel):
    """One closed window of a driver's metrics."""

    window_start: float = Field(description=EPOCH)
    window_end: float = Field(description=EPOCH)
    vehicle_id: str
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
    au_rates: dict[str, float]
    fatigue_score: float | None
    kss: int | None
    fatigue_source: str | None
    au_source: str | None
    drowsiness_state: str | None
    drowsiness_score: float | None
    drowsiness_kss: int | None
    drowsiness_probabilities: dict[str, float]
    drowsiness_model: str | None
    degraded_s: float
    sensing: str | None
    state: DriverState | None = Field(description="what the aggregator decided (None: "
                                      "stored before it decided states)")
    state_reasons: list[StateReason]


class Series(BaseModel):
    """A page of a driver's windows with ``since <= window_start < until``, oldest first.
    Pass ``next_cursor`` as ``cursor`` (with the same bounds) for the next page; None: this is
    the last one."""

    driver_id: str
    windows: list[SeriesWindow]
    next_cursor: str | None
    limit: int = Field(description="the page size used (the one asked for, capped)")


class Health(BaseModel):
    status: str
    schema_revision: str | None = None
