"""Alerts with their lifecycle (open -> acked -> resolved) and operators' flags.

A stored alert is written once: a replayed record changes nothing, so what operators did to
it (ack, resolve, flag) is never reset by the streams' at-least-once delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from streams.errors import InputError
from streams.schemas import Alert, AlertReason, AlertState, Severity
from streams.store.database import (
    Database,
    enum_value,
    json_safe,
    now_or,
    required_text,
    row_values,
)
from streams.store.errors import AlertNotFoundError
from streams.store.models import ALERTS, FLAGS, AlertFlag
from streams.store.results import FlagEntry, StoredAlert
from streams.store.series import Seen, record_seen

log = logging.getLogger(__name__)

ALERT_FIELDS = (
    "alert_id", "driver_id", "vehicle_id", "reason", "severity",
    "started_at", "detected_at", "message", "evidence",
)  # fmt: skip


class AlertRepository:
    """Alerts, their lifecycle and flag history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(self, alert: Alert) -> bool:
        """Stores a new alert (state open) -> True. A replay of a stored alert id changes
        nothing -> False: its lifecycle and flags are kept."""
        return bool(self.upsert_many([alert]))

    def upsert_many(self, alerts: Iterable[Alert]) -> list[str]:
        """Like :meth:`upsert` for many; returns the ids that were new."""
        rows: dict[str, dict[str, Any]] = {}
        seen: list[Seen] = []
        for a in alerts:
            row = row_values(ALERTS, a, ALERT_FIELDS)
            evidence = a.model_dump(mode="json", include={"evidence"})["evidence"]
            row["evidence"] = json_safe(evidence)
            row["state"] = AlertState.OPEN.value
            rows.setdefault(a.alert_id, row)
            seen.append(Seen(a.driver_id, a.vehicle_id, a.detected_at, a.detected_at))
        if not rows:
            return []
        stmt = (
            self.db.insert(ALERTS)
            .on_conflict_do_nothing(index_elements=["alert_id"])
            .returning(ALERTS.c.alert_id)
        )
        new: list[str] = []
        with self.db.begin() as conn:
            for key in sorted(rows):  # one statement each: RETURNING tells new from replayed
                inserted = conn.execute(stmt, rows[key]).scalar_one_or_none()
                if inserted is not None:
                    new.append(inserted)
            record_seen(self.db, conn, seen)
        log.debug("alerts: %d new, %d replayed", len(new), len(rows) - len(new))
        return new

    def get(self, alert_id: str) -> StoredAlert | None:
        with self.db.begin() as conn:
            row = conn.execute(select(ALERTS).where(ALERTS.c.alert_id == alert_id)).first()
        return None if row is None else _stored_alert(row)

    def ack(self, alert_id: str, by: str, *, at: float | None = None) -> bool:
        """open -> acked, recording who and when. True if this call acked it; False if it
        was acked or resolved already (nothing changes). Unknown id: AlertNotFoundError."""
        required_text("by", by)
        stmt = (
            update(ALERTS)
            .where(ALERTS.c.alert_id == alert_id, ALERTS.c.state == AlertState.OPEN.value)
            .values(state=AlertState.ACKED.value, acked_at=now_or(at), acked_by=by)
        )
        with self.db.begin() as conn:
            if conn.execute(stmt).rowcount:
                return True
            _require_alert(conn, alert_id)
        return False

    def resolve(self, alert_id: str, by: str | None = None, *, at: float | None = None) -> bool:
        """open or acked -> resolved; ``by`` None means the system resolved it (the
        condition cleared). True if this call resolved it; False if it was resolved
        already. Unknown id: AlertNotFoundError."""
        if by is not None:
            required_text("by", by)
        stmt = (
            update(ALERTS)
            .where(
                ALERTS.c.alert_id == alert_id,
                ALERTS.c.state != AlertState.RESOLVED.value,
            )
            .values(state=AlertState.RESOLVED.value, resolved_at=now_or(at), resolved_by=by)
        )
        with self.db.begin() as conn:
            if conn.execute(stmt).rowcount:
                return True
            _require_alert(conn, alert_id)
        return False

    def flag(
        self,
        alert_id: str,
        label: AlertFlag | str,
        by: str,
        note: str | None = None,
        *,
        at: float | None = None,
    ) -> FlagEntry:
        """Records an operator's verdict (true_positive / false_positive). Every call is
        kept in the flag history; the alert shows the latest one (greatest ``at``).
        Bad label: InputError; unknown alert: AlertNotFoundError."""
        try:
            flag = AlertFlag(label)
        except ValueError:
            valid = ", ".join(f.value for f in AlertFlag)
            raise InputError(f"unknown flag label {label!r}; valid labels: {valid}") from None
        required_text("by", by)
        when = now_or(at)
        with self.db.begin() as conn:
            _require_alert(conn, alert_id, lock=True)
            conn.execute(
                FLAGS.insert().values(
                    alert_id=alert_id, label=flag.value, flagged_by=by, note=note, flagged_at=when
                )
            )
            conn.execute(
                update(ALERTS)
                .where(
                    ALERTS.c.alert_id == alert_id,
                    or_(ALERTS.c.flagged_at.is_(None), ALERTS.c.flagged_at <= when),
                )
                .values(flag=flag.value, flagged_at=when, flagged_by=by)
            )
        return FlagEntry(alert_id, flag, by, note, when)

    def flag_history(self, alert_id: str) -> list[FlagEntry]:
        """Every flag set on an alert, oldest first."""
        q = (
            select(FLAGS)
            .where(FLAGS.c.alert_id == alert_id)
            .order_by(FLAGS.c.flagged_at, FLAGS.c.id)
        )
        with self.db.begin() as conn:
            rows = conn.execute(q).all()
        return [
            FlagEntry(r.alert_id, AlertFlag(r.label), r.flagged_by, r.note, r.flagged_at)
            for r in rows
        ]

    def find(
        self,
        *,
        state: AlertState | str | None = None,
        reason: AlertReason | str | None = None,
        driver_id: str | None = None,
        vehicle_id: str | None = None,
        since: float | None = None,
        limit: int | None = 100,
    ) -> list[StoredAlert]:
        """Alerts matching every filter given (``since``: detected at or after), newest
        first, at most ``limit`` (None: all)."""
        return self.page(states=None if state is None else [state], reason=reason,
                         driver_id=driver_id, vehicle_id=vehicle_id, since=since, limit=limit)

    def page(
        self,
        *,
        states: Iterable[AlertState | str] | None = None,
        reason: AlertReason | str | None = None,
        severity: Severity | str | None = None,
        driver_id: str | None = None,
        vehicle_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: tuple[float, str] | None = None,
        limit: int | None = 100,
    ) -> list[StoredAlert]:
        """One page of the alerts matching every filter given (``states``: any of them;
        ``since <= detected_at < until``), in :meth:`find`'s order (newest first, then by
        id), at most ``limit``. ``after``: the (detected_at, alert_id) of the previous page's
        last alert; the page starts right after it (keyset pagination: pages neither repeat
        nor skip an alert while new ones arrive). ``limit`` None: all."""
        if limit is not None and limit < 1:
            raise InputError(f"limit must be at least 1 (got {limit})")
        q = select(ALERTS)
        if states is not None:
            values = sorted({enum_value(AlertState, s, "state") for s in states})
            q = q.where(ALERTS.c.state.in_(values))
        if reason is not None:
            q = q.where(ALERTS.c.reason == enum_value(AlertReason, reason, "reason"))
        if severity is not None:
            q = q.where(ALERTS.c.severity == enum_value(Severity, severity, "severity"))
        if driver_id is not None:
            q = q.where(ALERTS.c.driver_id == driver_id)
        if vehicle_id is not None:
            q = q.where(ALERTS.c.vehicle_id == vehicle_id)
        if since is not None:
            q = q.where(ALERTS.c.detected_at >= since)
        if until is not None:
            q = q.where(ALERTS.c.detected_at < until)
        if after is not None:
            at, last_id = after
            q = q.where(or_(ALERTS.c.detected_at < at,
                            and_(ALERTS.c.detected_at == at, ALERTS.c.alert_id > last_id)))
        q = q.order_by(ALERTS.c.detected_at.desc(), ALERTS.c.alert_id).limit(limit)
        with self.db.begin() as conn:
            return [_stored_alert(r) for r in conn.execute(q).all()]

    def flagged(
        self, label: AlertFlag | str | None = None, since: float | None = None
    ) -> list[StoredAlert]:
        """Alerts an operator flagged (for retraining), by when they were flagged."""
        q = select(ALERTS).where(ALERTS.c.flag.is_not(None))
        if label is not None:
            q = q.where(ALERTS.c.flag == enum_value(AlertFlag, label, "label"))
        if since is not None:
            q = q.where(ALERTS.c.flagged_at >= since)
        q = q.order_by(ALERTS.c.flagged_at, ALERTS.c.alert_id)
        with self.db.begin() as conn:
            return [_stored_alert(r) for r in conn.execute(q).all()]


def _require_alert(conn: Connection, alert_id: str, lock: bool = False) -> None:
    q = select(ALERTS.c.alert_id).where(ALERTS.c.alert_id == alert_id)
    if lock:
        q = q.with_for_update()  # PostgreSQL row lock; SQLite locks the whole file anyway
    if conn.execute(q).first() is None:
        raise AlertNotFoundError(alert_id)


def _stored_alert(r: Any) -> StoredAlert:
    return StoredAlert(
        alert_id=r.alert_id,
        driver_id=r.driver_id,
        vehicle_id=r.vehicle_id,
        reason=AlertReason(r.reason),
        severity=Severity(r.severity),
        started_at=r.started_at,
        detected_at=r.detected_at,
        message=r.message,
        evidence=r.evidence,
        state=AlertState(r.state),
        acked_at=r.acked_at,
        acked_by=r.acked_by,
        resolved_at=r.resolved_at,
        resolved_by=r.resolved_by,
        flag=None if r.flag is None else AlertFlag(r.flag),
        flagged_at=r.flagged_at,
        flagged_by=r.flagged_by,
    )
