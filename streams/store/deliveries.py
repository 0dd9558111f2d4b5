"""The webhook outbox: one delivery per (alert, endpoint), leased to dispatchers, with every
HTTP attempt recorded. A delivered alert is never sent to that endpoint again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from streams.redaction import redact
from streams.store.database import Database, enum_value, now_or, required_text
from streams.store.errors import DeliveryNotFoundError
from streams.store.models import ATTEMPTS, DELIVERIES, DeliveryStatus
from streams.store.results import Attempt, Delivery, DueDelivery


class DeliveryRepository:
    """Webhook deliveries and their attempts (the dispatcher's ``DeliveryLog``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, alert_id: str, endpoints: Sequence[str], payload: bytes,
                *, at: float | None = None) -> int:
        """Puts the delivery of ``payload`` (the exact body to sign and send) for ``alert_id``
        to each endpoint in the outbox, due at once -> the number of rows added. A pair that
        is there already (a replayed alert) keeps its state: a delivered one is never sent
        again, a failed one waits for :meth:`redeliver`."""
        required_text("alert_id", alert_id)
        now, added = now_or(at), 0
        with self.db.begin() as conn:
            for endpoint in endpoints:
                stmt = (
                    self.db.insert(DELIVERIES)
                    .values(
                        alert_id=alert_id,
                        endpoint=required_text("endpoint", endpoint),
                        status=DeliveryStatus.PENDING.value,
                        attempts=0,
                        created_at=now,
                        payload=payload,
                        next_attempt_at=now,
                        retry_from=now,
                    )
                    .on_conflict_do_nothing(index_elements=["alert_id", "endpoint"])
                    .returning(DELIVERIES.c.endpoint)  # psycopg's rowcount is -1 here
                )
                added += len(conn.execute(stmt).all())
        return added

    def claim_due(self, endpoint: str, limit: int, *, lease_s: float,
                  at: float | None = None) -> list[DueDelivery]:
        """Leases up to ``limit`` pending deliveries to ``endpoint`` that are due, for
        ``lease_s`` seconds, oldest due first. Safe with several dispatchers on one database:
        PostgreSQL skips rows another transaction holds (``FOR UPDATE SKIP LOCKED``), and the
        lease is taken by a conditional UPDATE, so on SQLite (no row locks) a row leased in
        between is not taken twice. A dispatcher that dies leaves its lease to run out."""
        now = now_or(at)
        c = DELIVERIES.c
        due = and_(
            c.endpoint == endpoint,
            c.status == DeliveryStatus.PENDING.value,
            c.next_attempt_at <= now,
            c.payload.is_not(None),
            or_(c.claimed_until.is_(None), c.claimed_until < now),
        )
        pick = select(c.alert_id).where(due).order_by(c.next_attempt_at).limit(limit)
        if self.db.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        with self.db.begin() as conn:
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            rows = conn.execute(
                update(DELIVERIES)
                .where(due, c.alert_id.in_(ids))
                .values(claimed_until=now + lease_s)
                .returning(c.alert_id, c.endpoint, c.attempts, c.retry_from, c.created_at,
                           c.payload)
            ).all()
        return [
            DueDelivery(r.alert_id, r.endpoint, r.attempts,
                        r.created_at if r.retry_from is None else r.retry_from, r.payload)
            for r in rows
        ]

    def reschedule(self, alert_id: str, endpoint: str, next_attempt_at: float) -> None:
        """A pending delivery is due again at ``next_attempt_at``; its lease ends."""
        self._set_status(alert_id, endpoint, next_attempt_at=next_attempt_at,
                         claimed_until=None)

    def release(self, alert_id: str, endpoint: str) -> None:
        """Ends the lease on a pending delivery (a dispatcher stopping before its outcome),
        so the next dispatcher takes it up at once."""
        self._set_status(alert_id, endpoint, claimed_until=None)

    def redeliver(self, alert_id: str | None = None, endpoint: str | None = None,
                  *, at: float | None = None) -> int:
        """Failed deliveries (of ``alert_id``, to ``endpoint``; None: all) become pending and
        due now, with a fresh retry schedule -> how many. Delivered ones are left alone."""
        c = DELIVERIES.c
        stmt = update(DELIVERIES).where(c.status == DeliveryStatus.FAILED.value,
                                        c.payload.is_not(None))
        if alert_id is not None:
            stmt = stmt.where(c.alert_id == alert_id)
        if endpoint is not None:
            stmt = stmt.where(c.endpoint == endpoint)
        now = now_or(at)
        with self.db.begin() as conn:
            res = conn.execute(stmt.values(status=DeliveryStatus.PENDING.value,
                                           next_attempt_at=now, retry_from=now,
                                           claimed_until=None))
        return int(res.rowcount)

    def record_attempt(
        self,
        alert_id: str,
        endpoint: str,
        attempt_no: int,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        *,
        at: float | None = None,
    ) -> None:
        """Appends one HTTP attempt and updates the delivery's attempt count (all attempts
        ever made, across dispatcher runs) and last status/error (redacted: it may quote the
        URL). The delivery must be in the outbox (else DeliveryNotFoundError)."""
        error = None if error is None else redact(error)
        key = and_(DELIVERIES.c.alert_id == alert_id, DELIVERIES.c.endpoint == endpoint)
        with self.db.begin() as conn:
            res = conn.execute(
                update(DELIVERIES)
                .where(key)
                .values(
                    attempts=DELIVERIES.c.attempts + 1,
                    last_status_code=status_code,
                    last_error=error,
                )
            )
            if not res.rowcount:
                raise DeliveryNotFoundError(alert_id, endpoint)
            conn.execute(
                ATTEMPTS.insert().values(
                    alert_id=alert_id,
                    endpoint=endpoint,
                    attempt_no=attempt_no,
                    at=now_or(at),
                    status_code=status_code,
                    error=error,
                    duration_ms=float(duration_ms),
                )
            )

    def mark_delivered(self, alert_id: str, endpoint: str, *, at: float | None = None) -> None:
        """The endpoint accepted the alert; it is never sent there again."""
        self._set_status(
            alert_id, endpoint, status=DeliveryStatus.DELIVERED.value, delivered_at=now_or(at),
            next_attempt_at=None, claimed_until=None,
        )

    def mark_failed(self, alert_id: str, endpoint: str, error: str) -> None:
        """The dispatcher gave up on this delivery (a delivered one stays delivered)."""
        self._set_status(alert_id, endpoint, status=DeliveryStatus.FAILED.value,
                         last_error=redact(error), next_attempt_at=None, claimed_until=None)

    def _set_status(self, alert_id: str, endpoint: str, **values: Any) -> None:
        key = and_(DELIVERIES.c.alert_id == alert_id, DELIVERIES.c.endpoint == endpoint)
        with self.db.begin() as conn:
            res = conn.execute(
                update(DELIVERIES)
                .where(key, DELIVERIES.c.status != DeliveryStatus.DELIVERED.value)
                .values(**values)
            )
            missing = conn.execute(select(DELIVERIES.c.status).where(key)).first() is None
            if not res.rowcount and missing:
                raise DeliveryNotFoundError(alert_id, endpoint)

    def get(self, alert_id: str, endpoint: str) -> Delivery | None:
        key = and_(DELIVERIES.c.alert_id == alert_id, DELIVERIES.c.endpoint == endpoint)
        with self.db.begin() as conn:
            row = conn.execute(select(DELIVERIES).where(key)).first()
        return None if row is None else _delivery(row)

    def find(self, status: DeliveryStatus | str | None = None,
             limit: int | None = None) -> list[Delivery]:
        """Deliveries (of one ``status``; pending: still to be made, e.g. in flight when a
        dispatcher stopped), oldest first."""
        q = select(DELIVERIES)
        if status is not None:
            q = q.where(DELIVERIES.c.status == enum_value(DeliveryStatus, status, "status"))
        q = q.order_by(DELIVERIES.c.created_at, DELIVERIES.c.alert_id, DELIVERIES.c.endpoint)
        if limit is not None:
            q = q.limit(limit)
        with self.db.begin() as conn:
            return [_delivery(r) for r in conn.execute(q).all()]

    def counts(self) -> dict[str, int]:
        """Deliveries per status (every status, zero included)."""
        q = select(DELIVERIES.c.status, func.count()).group_by(DELIVERIES.c.status)
        with self.db.begin() as conn:
            counts: dict[str, int] = {status: n for status, n in conn.execute(q).all()}
        return {s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus}

    def pending_summary(self) -> tuple[int, float | None]:
        """(pending deliveries, when the oldest of them became pending: created, or sent again
        by ``redeliver``; None when there is none) for the outbox metrics."""
        c = DELIVERIES.c
        since = func.coalesce(c.retry_from, c.created_at)
        q = select(func.count(), func.min(since)).where(
            c.status == DeliveryStatus.PENDING.value)
        with self.db.begin() as conn:
            count, oldest = conn.execute(q).one()
        return int(count), None if oldest is None else float(oldest)

    def attempts(self, alert_id: str, endpoint: str) -> list[Attempt]:
        """A delivery's attempts in the order they were recorded (a replayed delivery's
        numbering starts again at 1 after the earlier run's attempts)."""
        q = (
            select(ATTEMPTS)
            .where(ATTEMPTS.c.alert_id == alert_id, ATTEMPTS.c.endpoint == endpoint)
            .order_by(ATTEMPTS.c.id)
        )
        with self.db.begin() as conn:
            rows = conn.execute(q).all()
        return [
            Attempt(
                r.alert_id, r.endpoint, r.attempt_no, r.at, r.status_code, r.error, r.duration_ms
            )
            for r in rows
        ]


def _delivery(r: Any) -> Delivery:
    return Delivery(
        alert_id=r.alert_id,
        endpoint=r.endpoint,
        status=DeliveryStatus(r.status),
        attempts=r.attempts,
        last_status_code=r.last_status_code,
        last_error=r.last_error,
        created_at=r.created_at,
        delivered_at=r.delivered_at,
        next_attempt_at=r.next_attempt_at,
    )
