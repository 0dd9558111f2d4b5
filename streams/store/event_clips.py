"""Event clips: the short, face-blurred videos kept behind alerts, and their retention."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update

from streams.schemas import EventClip
from streams.store.database import Database, chunks, now_or, row_values
from streams.store.models import ALERTS, CLIPS, AlertFlag
from streams.store.results import StoredClip

CLIP_FIELDS = tuple(EventClip.model_fields.keys() - {"schema_"})


class EventClipRepository:
    """One clip per alert; a purged clip keeps its row as a tombstone."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, clip: EventClip, *, at: float | None = None) -> bool:
        """Stores the clip behind an alert -> True. The same alert id again -> False and
        nothing changes (a replayed record; a purged clip's tombstone stays purged)."""
        row = row_values(CLIPS, clip, CLIP_FIELDS)
        row["recorded_at"] = now_or(at)
        stmt = (
            self.db.insert(CLIPS)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["alert_id"])
            .returning(CLIPS.c.alert_id)
        )
        with self.db.begin() as conn:
            return conn.execute(stmt).first() is not None

    def for_alert(self, alert_id: str) -> StoredClip | None:
        """The alert's clip, purged ones included (None: no clip was ever recorded)."""
        with self.db.begin() as conn:
            row = conn.execute(_clips().where(CLIPS.c.alert_id == alert_id)).first()
        return None if row is None else _stored_clip(row)

    def for_alerts(self, alert_ids: Iterable[str]) -> dict[str, StoredClip]:
        """alert id -> its clip, for those of ``alert_ids`` that have one."""
        ids = sorted(set(alert_ids))
        out: dict[str, StoredClip] = {}
        with self.db.begin() as conn:
            for chunk in chunks(ids):
                q = _clips().where(CLIPS.c.alert_id.in_(list(chunk)))
                out.update((r.alert_id, _stored_clip(r)) for r in conn.execute(q).all())
        return out

    def expired(self, unflagged_before: float, flagged_before: float,
                limit: int | None = None) -> list[StoredClip]:
        """Clips not purged yet and created before ``unflagged_before`` (alert not flagged)
        or ``flagged_before`` (alert flagged true or false positive), oldest first."""
        q = _clips().where(
            CLIPS.c.purged_at.is_(None),
            or_(
                and_(ALERTS.c.flag.is_(None), CLIPS.c.created_at < unflagged_before),
                and_(ALERTS.c.flag.is_not(None), CLIPS.c.created_at < flagged_before),
            ),
        ).order_by(CLIPS.c.created_at, CLIPS.c.alert_id)
        if limit is not None:
            q = q.limit(limit)
        with self.db.begin() as conn:
            return [_stored_clip(r) for r in conn.execute(q).all()]

    def purge(self, alert_ids: Iterable[str], *, at: float | None = None) -> int:
        """Marks clips whose files were deleted as purged (tombstones); returns how many
        changed (already purged ones do not count)."""
        ids = sorted(set(alert_ids))
        when, n = now_or(at), 0
        with self.db.begin() as conn:
            for chunk in chunks(ids):
                n += conn.execute(
                    update(CLIPS)
                    .where(CLIPS.c.alert_id.in_(list(chunk)), CLIPS.c.purged_at.is_(None))
                    .values(purged_at=when)
                ).rowcount
        return n


def _clips() -> Any:
    """Clip rows with the latest flag of their alert (if the alert is stored)."""
    return select(CLIPS, ALERTS.c.flag).select_from(
        CLIPS.outerjoin(ALERTS, ALERTS.c.alert_id == CLIPS.c.alert_id)
    )


def _stored_clip(r: Any) -> StoredClip:
    return StoredClip(
        **{f: getattr(r, f) for f in CLIP_FIELDS},
        recorded_at=r.recorded_at,
        purged_at=r.purged_at,
        flag=None if r.flag is None else AlertFlag(r.flag),
    )
