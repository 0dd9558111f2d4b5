"""Dead letters: records the streams could not process, kept for operators to inspect."""

from __future__ import annotations

from sqlalchemy import func, select

from streams.schemas import DeadLetter, DeadLetterReason
from streams.store.database import Database, row_values
from streams.store.models import DEAD_LETTERS

_FIELDS = ("reason", "error", "source_topic", "partition", "offset", "key", "failed_at")


class DeadLetterRepository:
    """Stored dead letters, one per (topic, partition, offset, reason)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, dl: DeadLetter) -> bool:
        """Stores a dead letter -> True; the same (topic, partition, offset, reason) again
        -> False (a replay)."""
        stmt = (
            self.db.insert(DEAD_LETTERS)
            .values(**row_values(DEAD_LETTERS, dl, _FIELDS))
            .on_conflict_do_nothing(
                index_elements=["source_topic", "partition", "offset", "reason"]
            )
            .returning(DEAD_LETTERS.c.id)
        )
        with self.db.begin() as conn:
            return conn.execute(stmt).first() is not None

    def counts(self, since: float | None = None) -> dict[str, int]:
        """Dead letters per reason (failed at or after ``since``)."""
        q = select(DEAD_LETTERS.c.reason, func.count()).group_by(DEAD_LETTERS.c.reason)
        if since is not None:
            q = q.where(DEAD_LETTERS.c.failed_at >= since)
        with self.db.begin() as conn:
            return {reason: int(n) for reason, n in conn.execute(q).all()}

    def find(self, since: float | None = None, limit: int | None = 100) -> list[DeadLetter]:
        """Dead letters, newest first."""
        q = select(DEAD_LETTERS)
        if since is not None:
            q = q.where(DEAD_LETTERS.c.failed_at >= since)
        q = q.order_by(DEAD_LETTERS.c.failed_at.desc(), DEAD_LETTERS.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.db.begin() as conn:
            rows = conn.execute(q).all()
        return [
            DeadLetter.model_validate({**{f: getattr(r, f) for f in _FIELDS},
                                       "reason": DeadLetterReason(r.reason)})
            for r in rows
        ]
