"""Drivers, vehicles and their window time series.

Window writes are idempotent upserts keyed by (driver, window start): the stream workers
run at-least-once, so a replayed topic updates rows and never duplicates them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from streams.schemas import AlertState, WindowMetrics
from streams.store.database import Database, chunks, json_safe, required_text, row_values
from streams.store.models import ALERTS, DRIVERS, METRICS, VEHICLES
from streams.store.results import FleetEntry

log = logging.getLogger(__name__)

METRIC_FIELDS = tuple(c.name for c in METRICS.columns)
_METRIC_KEY = ("driver_id", "window_start")


class Seen:
    """A driver seen in a vehicle between ``first`` and ``last``."""

    __slots__ = ("driver_id", "first", "last", "name", "state", "vehicle_id")

    def __init__(
        self,
        driver_id: str,
        vehicle_id: str,
        first: float,
        last: float,
        state: str | None = None,
        name: str | None = None,
    ) -> None:
        self.driver_id = driver_id
        self.vehicle_id = vehicle_id
        self.first = float(first)
        self.last = float(last)
        self.state = state
        self.name = name

    def merge(self, other: Seen) -> Seen:
        newer, older = (other, self) if other.last >= self.last else (self, other)
        return Seen(
            self.driver_id,
            newer.vehicle_id,
            min(self.first, other.first),
            newer.last,
            newer.state if newer.state is not None else older.state,
            newer.name if newer.name is not None else older.name,
        )

    def row(self) -> dict[str, Any]:
        return {
            "driver_id": self.driver_id,
            "vehicle_id": self.vehicle_id,
            "first_seen": self.first,
            "last_seen": self.last,
            "last_state": self.state,
            "name": self.name,
        }


def record_seen(db: Database, conn: Connection, seen: Iterable[Seen]) -> None:
    """Widens the drivers' and vehicles' first/last seen in the open transaction ``conn``."""
    drivers: dict[str, Seen] = {}
    vehicles: dict[str, tuple[float, float]] = {}
    for s in seen:
        drivers[s.driver_id] = drivers[s.driver_id].merge(s) if s.driver_id in drivers else s
        lo, hi = vehicles.get(s.vehicle_id, (s.first, s.last))
        vehicles[s.vehicle_id] = (min(lo, s.first), max(hi, s.last))
    if not drivers:
        return
    # Sorted keys: concurrent writers lock rows in the same order (no deadlocks).
    ins = db.insert(VEHICLES)
    ex = ins.excluded
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["vehicle_id"],
            set_={
                "first_seen": case(
                    (ex.first_seen < VEHICLES.c.first_seen, ex.first_seen),
                    else_=VEHICLES.c.first_seen,
                ),
                "last_seen": case(
                    (ex.last_seen > VEHICLES.c.last_seen, ex.last_seen),
                    else_=VEHICLES.c.last_seen,
                ),
            },
        ),
        [
            {"vehicle_id": v, "first_seen": lo, "last_seen": hi}
            for v, (lo, hi) in sorted(vehicles.items())
        ],
    )
    ins = db.insert(DRIVERS)
    ex = ins.excluded
    newer = ex.last_seen >= DRIVERS.c.last_seen
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["driver_id"],
            set_={
                "first_seen": case(
                    (ex.first_seen < DRIVERS.c.first_seen, ex.first_seen),
                    else_=DRIVERS.c.first_seen,
                ),
                "last_seen": case(
                    (ex.last_seen > DRIVERS.c.last_seen, ex.last_seen),
                    else_=DRIVERS.c.last_seen,
                ),
                "vehicle_id": case((newer, ex.vehicle_id), else_=DRIVERS.c.vehicle_id),
                "last_state": case(
                    (and_(newer, ex.last_state.is_not(None)), ex.last_state),
                    else_=DRIVERS.c.last_state,
                ),
                "name": func.coalesce(ex.name, DRIVERS.c.name),
            },
        ),
        [drivers[d].row() for d in sorted(drivers)],
    )


class SeriesRepository:
    """Drivers, vehicles and per-driver windows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def touch_driver(
        self,
        driver_id: str,
        vehicle_id: str,
        at: float,
        state: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Records that ``driver_id`` was seen in ``vehicle_id`` at ``at``.

        Out-of-order calls are safe: ``first_seen``/``last_seen`` only widen, and the vehicle
        and ``state`` change only when ``at`` is not older than what is stored. ``state``
        None keeps the stored state; ``name`` None keeps the stored name.
        """
        required_text("driver_id", driver_id)
        required_text("vehicle_id", vehicle_id)
        entry = Seen(driver_id, vehicle_id, float(at), float(at), state, name)
        with self.db.begin() as conn:
            record_seen(self.db, conn, [entry])

    def upsert(self, items: Iterable[WindowMetrics]) -> int:
        """Writes windows; the same (driver, window_start) again updates the row to the
        latest values, never a second row. Also records the drivers and vehicles as seen
        (until each window's end). Returns how many distinct windows were written."""
        rows: dict[tuple[str, float], dict[str, Any]] = {}
        seen: list[Seen] = []
        for m in items:
            row = row_values(METRICS, m, METRIC_FIELDS)
            row["au_rates"] = {k: float(v) for k, v in m.au_rates.items() if math.isfinite(v)}
            row["drowsiness_probabilities"] = json_safe(m.drowsiness_probabilities) or None
            row["state_reasons"] = None if m.state is None else [r.value for r in m.state_reasons]
            rows[(m.driver_id, row["window_start"])] = row  # the last of duplicates wins
            seen.append(Seen(m.driver_id, m.vehicle_id, m.window_start, m.window_end))
        if not rows:
            return 0
        ordered = [rows[k] for k in sorted(rows)]
        ins = self.db.insert(METRICS)
        stmt = ins.on_conflict_do_update(
            index_elements=list(_METRIC_KEY),
            set_={c: ins.excluded[c] for c in METRIC_FIELDS if c not in _METRIC_KEY},
        )
        with self.db.begin() as conn:
            for chunk in chunks(ordered):
                conn.execute(stmt, list(chunk))
            record_seen(self.db, conn, seen)
        log.debug("upserted %d window(s)", len(ordered))
        return len(ordered)

    def of_driver(
        self, driver_id: str, since: float | None = None, until: float | None = None,
        after: float | None = None, limit: int | None = None,
    ) -> list[WindowMetrics]:
        """A driver's windows with ``since <= window_start < until``, oldest first; with
        ``after``, only those starting after it (a keyset page: a driver has one window per
        start), at most ``limit``."""
        q = select(METRICS).where(METRICS.c.driver_id == driver_id)
        if since is not None:
            q = q.where(METRICS.c.window_start >= since)
        if until is not None:
            q = q.where(METRICS.c.window_start < until)
        if after is not None:
            q = q.where(METRICS.c.window_start > after)
        with self.db.begin() as conn:
            rows = conn.execute(q.order_by(METRICS.c.window_start).limit(limit)).all()
        return [_metrics(r._mapping) for r in rows]

    def has_driver(self, driver_id: str) -> bool:
        """Whether the store has ever seen ``driver_id``."""
        q = select(DRIVERS.c.driver_id).where(DRIVERS.c.driver_id == driver_id)
        with self.db.begin() as conn:
            return conn.execute(q).first() is not None

    def fleet_overview(self) -> list[FleetEntry]:
        """Every driver with vehicle, last seen, latest window and number of open alerts."""
        latest = (
            select(METRICS.c.driver_id, func.max(METRICS.c.window_start).label("ws"))
            .group_by(METRICS.c.driver_id)
            .subquery("latest")
        )
        window = METRICS.alias("w")
        open_alerts = (
            select(ALERTS.c.driver_id, func.count().label("n"))
            .where(ALERTS.c.state == AlertState.OPEN.value)
            .group_by(ALERTS.c.driver_id)
            .subquery("open_alerts")
        )
        q = (
            select(
                DRIVERS,
                func.coalesce(open_alerts.c.n, 0).label("open_alerts"),
                *(window.c[c].label(f"w_{c}") for c in METRIC_FIELDS),
            )
            .select_from(
                DRIVERS.outerjoin(latest, latest.c.driver_id == DRIVERS.c.driver_id)
                .outerjoin(
                    window,
                    and_(
                        window.c.driver_id == latest.c.driver_id,
                        window.c.window_start == latest.c.ws,
                    ),
                )
                .outerjoin(open_alerts, open_alerts.c.driver_id == DRIVERS.c.driver_id)
            )
            .order_by(DRIVERS.c.driver_id)
        )
        with self.db.begin() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            m = r._mapping
            latest_window = (
                None
                if m["w_driver_id"] is None
                else _metrics({c: m[f"w_{c}"] for c in METRIC_FIELDS})
            )
            out.append(
                FleetEntry(
                    driver_id=m["driver_id"],
                    name=m["name"],
                    vehicle_id=m["vehicle_id"],
                    first_seen=m["first_seen"],
                    last_seen=m["last_seen"],
                    last_state=m["last_state"],
                    latest=latest_window,
                    open_alerts=int(m["open_alerts"]),
                )
            )
        return out


def _metrics(m: Mapping[Any, Any]) -> WindowMetrics:
    values = {c: m[c] for c in METRIC_FIELDS}
    values["drowsiness_probabilities"] = values["drowsiness_probabilities"] or {}
    values["state_reasons"] = values["state_reasons"] or []
    return WindowMetrics.model_validate(values)
