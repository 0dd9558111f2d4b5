"""Degraded sensing in the store (SQLite and PostgreSQL): the window columns of migration 0004,
windows stored before it, and SENSING_DEGRADED alerts."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from test_store import T0, alert, window

from streams.schemas import AlertReason, Severity
from streams.store import Store
from streams.store.database import alembic_config

OLD_WINDOW = """
INSERT INTO window_metrics (driver_id, window_start, vehicle_id, window_end, frames,
    face_frames, blink_count, long_closures, yawns, off_road_s, au_rates)
VALUES ('d-old', :start, 'truck-1', :start + 60, 1800, 1800, 15, 0, 0, 0.0, '{}')
"""


def _migrate_to(s: Store, revision: str, downgrade: bool = False) -> None:
    cfg = alembic_config()
    with s.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if downgrade else command.upgrade)(cfg, revision)


def test_degraded_windows_and_alerts_round_trip(store: Store) -> None:
    w = window("d1", T0, degraded_s=42.5, sensing="eyes_hidden", perclos=None, kss=None)
    store.series.upsert([w, window("d2", T0)])
    assert store.series.of_driver("d1") == [w]
    (measured,) = store.series.of_driver("d2")
    assert (measured.degraded_s, measured.sensing) == (0.0, None)
    assert store.series.fleet_overview()[0].latest == w
    a = alert("d1", T0, reason=AlertReason.SENSING_DEGRADED, severity=Severity.WARNING,
              evidence={"sensing": "face_turned", "degraded_share": 0.9, "degraded_s": 5.0})
    store.alerts.upsert(a)
    stored = store.alerts.get(a.alert_id)
    assert stored is not None and stored.reason is AlertReason.SENSING_DEGRADED
    assert stored.evidence["sensing"] == "face_turned"
    assert [x.alert_id for x in store.alerts.find(reason="sensing_degraded")] == [a.alert_id]


def test_windows_stored_before_0004_read_back_as_measured(db_url: str) -> None:
    with Store(db_url) as s:
        _migrate_to(s, "0003")
        with s.db.engine.begin() as conn:
            conn.execute(text(OLD_WINDOW), {"start": T0})
        s.migrate()
        (old,) = s.series.of_driver("d-old")
        assert (old.degraded_s, old.sensing, old.blink_count) == (0.0, None, 15)
        # And back down: 0004 leaves the table as 0003 made it.
        _migrate_to(s, "0003", downgrade=True)
        with s.db.engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM window_metrics")).keys()
        assert "degraded_s" not in columns and "sensing" not in columns
