"""The Vigil store: window metrics, alerts with lifecycle and flags, webhook bookkeeping and
dead letters in SQLite or PostgreSQL (SQLAlchemy 2 Core over the tables in ``models``).

Writes coming from the streams are idempotent upserts (``INSERT .. ON CONFLICT``), because
the stream workers run at-least-once: replaying a topic never duplicates rows, and an alert
replay never resets what operators did to it (ack, resolve, flag).

Every timestamp is float epoch seconds (UTC). Methods that record "when" take an optional
``at``; left out, it is the current time.

Errors: a database outage raises :class:`StoreUnavailableError` (retry later; nothing was
committed); a schema that was never migrated raises :class:`StoreNotMigratedError`;
unknown alerts or deliveries raise :class:`AlertNotFoundError` /
:class:`DeliveryNotFoundError`; invalid arguments raise :class:`streams.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    and_,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from streams.errors import ConfigurationError, InputError
from streams.redaction import redact
from streams.schemas import (
    Alert,
    AlertReason,
    AlertState,
    DeadLetter,
    DeadLetterReason,
    EventClip,
    Record,
    Severity,
    WindowMetrics,
)
from streams.store.errors import (
    AlertNotFoundError,
    DeliveryNotFoundError,
    LoginRefusedError,
    ModelVersionNotFoundError,
    StoreDataError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
)
from streams.store.models import (
    ALL_TABLES,
    AlertFlag,
    AlertFlagRow,
    AlertRow,
    DeadLetterRow,
    DeliveryStatus,
    DriverRow,
    EventClipRow,
    ModelStatus,
    ModelVersionRow,
    OperatorRole,
    OperatorRow,
    VehicleRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WindowMetricsRow,
)
from streams.store.passwords import MIN_LENGTH, burn_time, hash_password, verify_password
from streams.store.results import (
    Attempt,
    Delivery,
    DueDelivery,
    FlagEntry,
    FleetEntry,
    ModelVersion,
    Operator,
    StoredAlert,
    StoredClip,
)
from streams.store.settings import DatabaseSettings, normalize_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CHUNK_ROWS = 500  # rows per INSERT: far below SQLite's and PostgreSQL's parameter limits
_PG_MIGRATION_LOCK = 0x56494749  # "VIGI": serialises concurrent migrate() calls

VEHICLES: Table = VehicleRow.__table__  # type: ignore[assignment]
DRIVERS: Table = DriverRow.__table__  # type: ignore[assignment]
METRICS: Table = WindowMetricsRow.__table__  # type: ignore[assignment]
ALERTS: Table = AlertRow.__table__  # type: ignore[assignment]
FLAGS: Table = AlertFlagRow.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDeliveryRow.__table__  # type: ignore[assignment]
ATTEMPTS: Table = WebhookAttemptRow.__table__  # type: ignore[assignment]
DEAD_LETTERS: Table = DeadLetterRow.__table__  # type: ignore[assignment]
CLIPS: Table = EventClipRow.__table__  # type: ignore[assignment]
CLIP_FIELDS = tuple(EventClip.model_fields.keys() - {"schema_"})
MODELS: Table = ModelVersionRow.__table__  # type: ignore[assignment]
_MODEL_COLUMNS = tuple(c for c in MODELS.columns if c.name != "checkpoint")
_PG_REGISTRY_LOCK = 0x56494D52  # "VIMR": serialises version numbering
OPERATORS: Table = OperatorRow.__table__  # type: ignore[assignment]
_PG_OPERATORS_LOCK = 0x56494F50  # "VIOP": two first starts create one first admin
_OPERATOR_NAME = re.compile(r"[\w.@+-]{1,128}")
WRONG_LOGIN = "wrong name or password"

METRIC_FIELDS = tuple(c.name for c in METRICS.columns)
_METRIC_KEY = ("driver_id", "window_start")
ALERT_FIELDS = (
    "alert_id", "driver_id", "vehicle_id", "reason", "severity",
    "started_at", "detected_at", "message", "evidence",
)  # fmt: skip

T = TypeVar("T")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code: the scripts ship inside this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    """The newest migration this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _now(at: float | None) -> float:
    return time.time() if at is None else float(at)


def _chunks(rows: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _json_safe(value: Any) -> Any:
    """JSON without NaN/Infinity (PostgreSQL's JSONB rejects them): non-finite -> null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _row_values(table: Table, record: Record, fields: Iterable[str]) -> dict[str, Any]:
    """Column values of ``record``: enums as their values; a non-finite float becomes NULL
    where the column allows it and is refused where it does not (SQLite would store NaN as
    NULL, PostgreSQL as NaN: both backends must read back the same thing)."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(record, name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, float) and not math.isfinite(value):
            if not table.c[name].nullable:
                raise StoreDataError(f"{record.SCHEMA}: {name} is {value}, not a finite number")
            value = None
        out[name] = value
    return out


def _required_text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string")
    return value


# SQLSTATE classes of outages rather than bad requests: connection exception (08),
# transaction rollback: serialization failure or deadlock (40), insufficient resources (53),
# operator intervention: shutdown, cancel (57), system error (58).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def _transient_sqlstate(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


class Store:
    """The store behind one database URL (SQLite or PostgreSQL).

    Thread-safe as far as the SQLAlchemy engine is (one engine, pooled connections); each
    method is one transaction. Call :meth:`migrate` once at start-up.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"unsupported database {self.dialect!r}: the store runs on SQLite or PostgreSQL"
            )
        self.where = redact(self.url)  # user info and query string may carry a password
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            # pre_ping replaces connections a server restart broke; connect_timeout keeps an
            # unreachable host from hanging a sink forever.
            kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        else:
            kwargs = {"connect_args": {"timeout": 30}}  # wait on a locked file, then fail
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ConfigurationError(f"cannot use database {self.where}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings | None = None) -> Store:
        settings = settings or DatabaseSettings()
        return cls(settings.url.get_secret_value())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"

    # --- plumbing -----------------------------------------------------------------------

    def _translate(self, exc: Exception) -> StoreError:
        message = _one_line(exc)
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if sqlstate in ("42P01", "42703") or (
            isinstance(exc, OperationalError)
            and ("no such table" in message or "no such column" in message)
        ):
            return StoreNotMigratedError(
                f"database {self.where} has no Vigil schema or an outdated one ({message}); "
                "run Store.migrate()"
            )
        return StoreUnavailableError(f"database unavailable: {self.where}: {message} (retry later)")

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One transaction; outages become StoreUnavailableError (nothing committed)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError, PoolTimeoutError, DisconnectionError) as exc:
            raise self._translate(exc) from exc
        except DBAPIError as exc:
            # A broken connection surfaces as whatever the driver raised when it noticed
            # (InternalError, DatabaseError...): SQLAlchemy flags those as invalidated.
            # Connection-class SQLSTATEs are outages too. Data errors are not, and propagate.
            if exc.connection_invalidated or _transient_sqlstate(exc):
                raise self._translate(exc) from exc
            if isinstance(exc, DataError):
                raise StoreDataError(
                    f"database {self.where} refused the values: {_one_line(exc)}") from exc
            if isinstance(exc, ProgrammingError):
                error = self._translate(exc)
                if isinstance(error, StoreNotMigratedError):
                    raise error from exc
            raise
        except psycopg.Error as exc:  # raised past SQLAlchemy (e.g. while resetting a
            # pooled connection): the driver's own outage classes
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise StoreUnavailableError(
                    f"database unavailable: {self.where}: {_one_line(exc)} (retry later)"
                ) from exc
            raise

    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_update/do_nothing``."""
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    # --- schema -------------------------------------------------------------------------

    def migrate(self) -> str | None:
        """Brings the schema to the newest migration (``alembic upgrade head``); a no-op when
        it is there already. Returns the revision."""
        cfg = alembic_config()
        with self._begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(conn).get_current_revision()
        if before != after:
            log.info("migrated %s from %s to %s", self.where, before or "empty", after)
        return after

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated)."""
        with self._begin() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def check_migrated(self) -> str:
        """The revision, when the schema is the newest; else StoreNotMigratedError. Creates
        and writes nothing (opening a SQLite file that is not there would create it): what
        commands that only read call instead of :meth:`migrate`."""
        file = make_url(self.url).database if self.dialect == "sqlite" else None
        if file and file != ":memory:" and not file.startswith("file:") \
                and not Path(file).is_file():
            raise StoreNotMigratedError(f"database {self.where} does not exist; "
                                        "`vigil db migrate` creates it")
        revision, head = self.current_revision(), head_revision()
        if revision is None or revision != head:
            raise StoreNotMigratedError(
                f"database {self.where} is at schema revision {revision or 'none'}, not "
                f"{head}; run `vigil db migrate`")
        return revision

    def row_counts(self) -> dict[str, int]:
        """Rows per table (for status pages and tests)."""
        with self._begin() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in ALL_TABLES
            }

    # --- drivers and vehicles -----------------------------------------------------------

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
        _required_text("driver_id", driver_id)
        _required_text("vehicle_id", vehicle_id)
        entry = _Seen(driver_id, vehicle_id, float(at), float(at), state, name)
        with self._begin() as conn:
            self._touch(conn, [entry])

    def _touch(self, conn: Connection, seen: Iterable[_Seen]) -> None:
        drivers: dict[str, _Seen] = {}
        vehicles: dict[str, tuple[float, float]] = {}
        for s in seen:
            drivers[s.driver_id] = drivers[s.driver_id].merge(s) if s.driver_id in drivers else s
            lo, hi = vehicles.get(s.vehicle_id, (s.first, s.last))
            vehicles[s.vehicle_id] = (min(lo, s.first), max(hi, s.last))
        if not drivers:
            return
        # Sorted keys: concurrent writers lock rows in the same order (no deadlocks).
        ins = self._insert(VEHICLES)
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
        ins = self._insert(DRIVERS)
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

    # --- window metrics -----------------------------------------------------------------

    def upsert_window_metrics(self, items: Iterable[WindowMetrics]) -> int:
        """Writes windows; the same (driver, window_start) again updates the row to the
        latest values, never a second row. Also records the drivers and vehicles as seen
        (until each window's end). Returns how many distinct windows were written."""
        rows: dict[tuple[str, float], dict[str, Any]] = {}
        seen: list[_Seen] = []
        for m in items:
            row = _row_values(METRICS, m, METRIC_FIELDS)
            row["au_rates"] = {k: float(v) for k, v in m.au_rates.items() if math.isfinite(v)}
            row["drowsiness_probabilities"] = _json_safe(m.drowsiness_probabilities) or None
            row["state_reasons"] = None if m.state is None else [r.value for r in m.state_reasons]
            rows[(m.driver_id, row["window_start"])] = row  # the last of duplicates wins
            seen.append(_Seen(m.driver_id, m.vehicle_id, m.window_start, m.window_end))
        if not rows:
            return 0
        ordered = [rows[k] for k in sorted(rows)]
        ins = self._insert(METRICS)
        stmt = ins.on_conflict_do_update(
            index_elements=list(_METRIC_KEY),
            set_={c: ins.excluded[c] for c in METRIC_FIELDS if c not in _METRIC_KEY},
        )
        with self._begin() as conn:
            for chunk in _chunks(ordered):
                conn.execute(stmt, list(chunk))
            self._touch(conn, seen)
        log.debug("upserted %d window(s)", len(ordered))
        return len(ordered)

    def driver_series(
        self, driver_id: str, since: float | None = None, until: float | None = None
    ) -> list[WindowMetrics]:
        """A driver's windows with ``since <= window_start < until``, oldest first."""
        q = select(METRICS).where(METRICS.c.driver_id == driver_id)
        if since is not None:
            q = q.where(METRICS.c.window_start >= since)
        if until is not None:
            q = q.where(METRICS.c.window_start < until)
        with self._begin() as conn:
            rows = conn.execute(q.order_by(METRICS.c.window_start)).all()
        return [_metrics(r._mapping) for r in rows]

    # --- alerts -------------------------------------------------------------------------

    def upsert_alert(self, alert: Alert) -> bool:
        """Stores a new alert (state open) -> True. A replay of a stored alert id changes
        nothing -> False: its lifecycle and flags are kept."""
        return bool(self.upsert_alerts([alert]))

    def upsert_alerts(self, alerts: Iterable[Alert]) -> list[str]:
        """Like :meth:`upsert_alert` for many; returns the ids that were new."""
        rows: dict[str, dict[str, Any]] = {}
        seen: list[_Seen] = []
        for a in alerts:
            row = _row_values(ALERTS, a, ALERT_FIELDS)
            evidence = a.model_dump(mode="json", include={"evidence"})["evidence"]
            row["evidence"] = _json_safe(evidence)
            row["state"] = AlertState.OPEN.value
            rows.setdefault(a.alert_id, row)
            seen.append(_Seen(a.driver_id, a.vehicle_id, a.detected_at, a.detected_at))
        if not rows:
            return []
        stmt = (
            self._insert(ALERTS)
            .on_conflict_do_nothing(index_elements=["alert_id"])
            .returning(ALERTS.c.alert_id)
        )
        new: list[str] = []
        with self._begin() as conn:
            for key in sorted(rows):  # one statement each: RETURNING tells new from replayed
                inserted = conn.execute(stmt, rows[key]).scalar_one_or_none()
                if inserted is not None:
                    new.append(inserted)
            self._touch(conn, seen)
        log.debug("alerts: %d new, %d replayed", len(new), len(rows) - len(new))
        return new

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        with self._begin() as conn:
            row = conn.execute(select(ALERTS).where(ALERTS.c.alert_id == alert_id)).first()
        return None if row is None else _stored_alert(row)

    def _require_alert(self, conn: Connection, alert_id: str, lock: bool = False) -> None:
        q = select(ALERTS.c.alert_id).where(ALERTS.c.alert_id == alert_id)
        if lock:
            q = q.with_for_update()  # PostgreSQL row lock; SQLite locks the whole file anyway
        if conn.execute(q).first() is None:
            raise AlertNotFoundError(alert_id)

    def ack_alert(self, alert_id: str, by: str, *, at: float | None = None) -> bool:
        """open -> acked, recording who and when. True if this call acked it; False if it
        was acked or resolved already (nothing changes). Unknown id: AlertNotFoundError."""
        _required_text("by", by)
        stmt = (
            update(ALERTS)
            .where(ALERTS.c.alert_id == alert_id, ALERTS.c.state == AlertState.OPEN.value)
            .values(state=AlertState.ACKED.value, acked_at=_now(at), acked_by=by)
        )
        with self._begin() as conn:
            if conn.execute(stmt).rowcount:
                return True
            self._require_alert(conn, alert_id)
        return False

    def resolve_alert(
        self, alert_id: str, by: str | None = None, *, at: float | None = None
    ) -> bool:
        """open or acked -> resolved; ``by`` None means the system resolved it (the
        condition cleared). True if this call resolved it; False if it was resolved
        already. Unknown id: AlertNotFoundError."""
        if by is not None:
            _required_text("by", by)
        stmt = (
            update(ALERTS)
            .where(
                ALERTS.c.alert_id == alert_id,
                ALERTS.c.state != AlertState.RESOLVED.value,
            )
            .values(state=AlertState.RESOLVED.value, resolved_at=_now(at), resolved_by=by)
        )
        with self._begin() as conn:
            if conn.execute(stmt).rowcount:
                return True
            self._require_alert(conn, alert_id)
        return False

    def flag_alert(
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
        _required_text("by", by)
        when = _now(at)
        with self._begin() as conn:
            self._require_alert(conn, alert_id, lock=True)
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
        with self._begin() as conn:
            rows = conn.execute(q).all()
        return [
            FlagEntry(r.alert_id, AlertFlag(r.label), r.flagged_by, r.note, r.flagged_at)
            for r in rows
        ]

    def alerts(
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
        q = select(ALERTS)
        if state is not None:
            q = q.where(ALERTS.c.state == _enum_value(AlertState, state, "state"))
        if reason is not None:
            q = q.where(ALERTS.c.reason == _enum_value(AlertReason, reason, "reason"))
        if driver_id is not None:
            q = q.where(ALERTS.c.driver_id == driver_id)
        if vehicle_id is not None:
            q = q.where(ALERTS.c.vehicle_id == vehicle_id)
        if since is not None:
            q = q.where(ALERTS.c.detected_at >= since)
        q = q.order_by(ALERTS.c.detected_at.desc(), ALERTS.c.alert_id)
        if limit is not None:
            q = q.limit(limit)
        with self._begin() as conn:
            return [_stored_alert(r) for r in conn.execute(q).all()]

    def flagged_alerts(
        self, label: AlertFlag | str | None = None, since: float | None = None
    ) -> list[StoredAlert]:
        """Alerts an operator flagged (for retraining), by when they were flagged."""
        q = select(ALERTS).where(ALERTS.c.flag.is_not(None))
        if label is not None:
            q = q.where(ALERTS.c.flag == _enum_value(AlertFlag, label, "label"))
        if since is not None:
            q = q.where(ALERTS.c.flagged_at >= since)
        q = q.order_by(ALERTS.c.flagged_at, ALERTS.c.alert_id)
        with self._begin() as conn:
            return [_stored_alert(r) for r in conn.execute(q).all()]

    # --- model-version registry ---------------------------------------------------------

    def register_model_version(
        self, name: str, checkpoint: bytes, *, data_hash: str, metrics: Mapping[str, Any],
        parent: str | None = None, note: str | None = None, at: float | None = None,
    ) -> ModelVersion:
        """Stores a new version (status candidate, numbered after the newest) -> it."""
        _required_text("model name", name)
        if not checkpoint:
            raise InputError("a model version needs its checkpoint bytes")
        row = {"name": name, "parent": parent, "created_at": _now(at), "data_hash": data_hash,
               "metrics": _json_safe(dict(metrics)), "checkpoint": checkpoint,
               "sha256": hashlib.sha256(checkpoint).hexdigest(),
               "status": ModelStatus.CANDIDATE.value, "note": note}
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":  # two registrations must not share a number
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _PG_REGISTRY_LOCK})
            newest = conn.execute(select(func.max(MODELS.c.version))
                                  .where(MODELS.c.name == name)).scalar()
            row["version"] = (newest or 0) + 1
            conn.execute(MODELS.insert().values(**row))
        log.info("registered %s %s (parent %s)", name, _version_label(row["version"]), parent)
        return self.model_version(name, _version_label(row["version"]))

    def model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        q = select(*_MODEL_COLUMNS).where(MODELS.c.name == name).order_by(MODELS.c.version)
        with self._begin() as conn:
            return [_model_version(r) for r in conn.execute(q).all()]

    def model_version(self, name: str, version: str) -> ModelVersion:
        """One version without its weights (ModelVersionNotFoundError if unknown)."""
        number = _version_number(name, version)
        q = select(*_MODEL_COLUMNS).where(MODELS.c.name == name, MODELS.c.version == number)
        with self._begin() as conn:
            r = conn.execute(q).first()
        if r is None:
            raise ModelVersionNotFoundError(name, version)
        return _model_version(r)

    def model_checkpoint(self, name: str, version: str) -> bytes:
        """The checkpoint bytes of one version (ModelVersionNotFoundError if unknown)."""
        q = select(MODELS.c.checkpoint).where(MODELS.c.name == name,
                                              MODELS.c.version == _version_number(name, version))
        with self._begin() as conn:
            blob = conn.execute(q).scalar()
        if blob is None:
            raise ModelVersionNotFoundError(name, version)
        return bytes(blob)

    def promoted_model(self, name: str) -> tuple[str, bytes] | None:
        """(version, checkpoint bytes) of the version of ``name`` served now, or None (the
        shipped weights are served)."""
        q = select(MODELS.c.version, MODELS.c.checkpoint).where(
            MODELS.c.name == name, MODELS.c.status == ModelStatus.PROMOTED.value)
        with self._begin() as conn:
            r = conn.execute(q).first()
        return None if r is None else (_version_label(r.version), bytes(r.checkpoint))

    def promote_model(self, name: str, version: str, *, at: float | None = None
                      ) -> ModelVersion:
        """Serves ``version`` from now on; the one served before is retired (rollback returns
        to it). Promoting the served version again changes nothing."""
        number = _version_number(name, version)
        with self._begin() as conn:
            current = self._lock_models(conn, name)
            if number not in current:
                raise ModelVersionNotFoundError(name, version)
            if current[number] != ModelStatus.PROMOTED.value:
                self._set_served(conn, name, number, ModelStatus.RETIRED, _now(at))
        return self.model_version(name, version)

    def rollback_model(self, name: str, *, at: float | None = None) -> ModelVersion | None:
        """Takes the served version out of service and serves the one promoted before it
        (-> that version), or the shipped weights when there is none (-> None). Raises
        InputError when no version is promoted."""
        with self._begin() as conn:
            current = self._lock_models(conn, name)
            if ModelStatus.PROMOTED.value not in current.values():
                raise InputError(f"no version of {name!r} is promoted; nothing to roll back")
            previous = conn.execute(
                select(MODELS.c.version).where(MODELS.c.name == name,
                                               MODELS.c.status == ModelStatus.RETIRED.value)
                .order_by(MODELS.c.promoted_at.desc(), MODELS.c.version.desc()).limit(1)
            ).scalar()
            self._set_served(conn, name, previous, ModelStatus.ROLLED_BACK, _now(at))
        return None if previous is None else self.model_version(name, _version_label(previous))

    def _lock_models(self, conn: Connection, name: str) -> dict[int, str]:
        """version -> status of ``name``, rows locked until the transaction ends."""
        q = select(MODELS.c.version, MODELS.c.status).where(MODELS.c.name == name)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        return {r.version: r.status for r in conn.execute(q).all()}

    def _set_served(self, conn: Connection, name: str, number: int | None,
                    former: ModelStatus, at: float) -> None:
        conn.execute(update(MODELS).where(MODELS.c.name == name,
                                          MODELS.c.status == ModelStatus.PROMOTED.value)
                     .values(status=former.value))
        if number is not None:
            conn.execute(update(MODELS).where(MODELS.c.name == name, MODELS.c.version == number)
                         .values(status=ModelStatus.PROMOTED.value, promoted_at=at))
        log.info("%s: now serving %s", name,
                 "the shipped weights" if number is None else _version_label(number))

    # --- dashboard logins ---------------------------------------------------------------

    def set_operator(self, name: str, role: OperatorRole | str, password: str,
                     *, at: float | None = None) -> bool:
        """Creates the login ``name`` or gives it a new role and password (which also lifts
        a lockout) -> True when it was created."""
        values = _operator_values(name, role, password)
        with self._begin() as conn:
            found = conn.execute(select(OPERATORS.c.name).where(OPERATORS.c.name == name)).first()
            if found is None:
                conn.execute(OPERATORS.insert().values(created_at=_now(at), **values))
            else:
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(**values))
        log.info("dashboard login %r %s (role %s)", name,
                 "created" if found is None else "updated", values["role"])
        return found is None

    def create_first_admin(self, name: str, password: str, *, at: float | None = None) -> bool:
        """Creates ``name`` as an admin when there is no login at all -> whether it did."""
        values = _operator_values(name, OperatorRole.ADMIN, password)
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_OPERATORS_LOCK})
            if conn.execute(select(func.count()).select_from(OPERATORS)).scalar_one():
                return False
            conn.execute(OPERATORS.insert().values(created_at=_now(at), **values))
        return True

    def operators(self) -> list[Operator]:
        """Every local login, by name."""
        with self._begin() as conn:
            rows = conn.execute(select(OPERATORS).order_by(OPERATORS.c.name)).all()
        return [_operator(r) for r in rows]

    def operator(self, name: str) -> Operator | None:
        with self._begin() as conn:
            r = conn.execute(select(OPERATORS).where(OPERATORS.c.name == name)).first()
        return None if r is None else _operator(r)

    def remove_operator(self, name: str) -> bool:
        """Deletes the login -> whether there was one."""
        with self._begin() as conn:
            gone = conn.execute(OPERATORS.delete().where(OPERATORS.c.name == name)).rowcount
        if gone:
            log.info("dashboard login %r removed", name)
        return bool(gone)

    def authenticate(self, name: str, password: str, *, max_failures: int = 5,
                     lockout_s: float = 300.0, at: float | None = None) -> Operator:
        """The login ``name`` if ``password`` is its password; else LoginRefusedError. After
        ``max_failures`` wrong passwords in a row the login is locked for ``lockout_s``
        (even the right password is refused then)."""
        now = _now(at)
        q = select(OPERATORS).where(OPERATORS.c.name == name)
        refused: LoginRefusedError | None = None
        with self._begin() as conn:
            r = conn.execute(q.with_for_update() if conn.dialect.name == "postgresql" else q
                             ).first()
            if r is None:
                burn_time(password)
                refused = LoginRefusedError(WRONG_LOGIN)
            elif r.locked_until is not None and r.locked_until > now:
                refused = LoginRefusedError(_locked(name, r.locked_until - now), locked=True)
            elif not verify_password(password, r.password_hash):
                failures = r.failed_logins + 1
                lock = failures >= max_failures
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(
                    failed_logins=0 if lock else failures,
                    locked_until=now + lockout_s if lock else None))
                refused = (LoginRefusedError(f"{WRONG_LOGIN}; {_locked(name, lockout_s)}",
                                             locked=True)
                           if lock else LoginRefusedError(WRONG_LOGIN))
            else:
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(
                    failed_logins=0, locked_until=None, last_login_at=now))
        if refused is not None:  # raised after the commit: the failure count must stick
            raise refused
        found = self.operator(name)
        assert found is not None
        return found

    # --- fleet overview -----------------------------------------------------------------

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
        with self._begin() as conn:
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

    # --- dead letters -------------------------------------------------------------------

    def record_dead_letter(self, dl: DeadLetter) -> bool:
        """Stores a dead letter -> True; the same (topic, partition, offset, reason) again
        -> False (a replay)."""
        row = _row_values(
            DEAD_LETTERS,
            dl,
            ("reason", "error", "source_topic", "partition", "offset", "key", "failed_at"),
        )
        stmt = (
            self._insert(DEAD_LETTERS)
            .values(**row)
            .on_conflict_do_nothing(
                index_elements=["source_topic", "partition", "offset", "reason"]
            )
            .returning(DEAD_LETTERS.c.id)
        )
        with self._begin() as conn:
            return conn.execute(stmt).first() is not None

    def dead_letter_counts(self, since: float | None = None) -> dict[str, int]:
        """Dead letters per reason (failed at or after ``since``)."""
        q = select(DEAD_LETTERS.c.reason, func.count()).group_by(DEAD_LETTERS.c.reason)
        if since is not None:
            q = q.where(DEAD_LETTERS.c.failed_at >= since)
        with self._begin() as conn:
            return {reason: int(n) for reason, n in conn.execute(q).all()}

    def dead_letters(self, since: float | None = None, limit: int | None = 100) -> list[DeadLetter]:
        """Dead letters, newest first."""
        q = select(DEAD_LETTERS)
        if since is not None:
            q = q.where(DEAD_LETTERS.c.failed_at >= since)
        q = q.order_by(DEAD_LETTERS.c.failed_at.desc(), DEAD_LETTERS.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._begin() as conn:
            rows = conn.execute(q).all()
        return [
            DeadLetter.model_validate(
                {
                    "reason": DeadLetterReason(r.reason),
                    "error": r.error,
                    "source_topic": r.source_topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key,
                    "failed_at": r.failed_at,
                }
            )
            for r in rows
        ]

    # --- webhook deliveries -------------------------------------------------------------

    def enqueue_deliveries(self, alert_id: str, endpoints: Sequence[str], payload: bytes,
                           *, at: float | None = None) -> int:
        """Puts the delivery of ``payload`` (the exact body to sign and send) for ``alert_id``
        to each endpoint in the outbox, due at once -> the number of rows added. A pair that
        is there already (a replayed alert) keeps its state: a delivered one is never sent
        again, a failed one waits for :meth:`redeliver`."""
        _required_text("alert_id", alert_id)
        now, added = _now(at), 0
        with self._begin() as conn:
            for endpoint in endpoints:
                stmt = (
                    self._insert(DELIVERIES)
                    .values(
                        alert_id=alert_id,
                        endpoint=_required_text("endpoint", endpoint),
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
        now = _now(at)
        c = DELIVERIES.c
        due = and_(
            c.endpoint == endpoint,
            c.status == DeliveryStatus.PENDING.value,
            c.next_attempt_at <= now,
            c.payload.is_not(None),
            or_(c.claimed_until.is_(None), c.claimed_until < now),
        )
        pick = select(c.alert_id).where(due).order_by(c.next_attempt_at).limit(limit)
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        with self._begin() as conn:
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
        now = _now(at)
        with self._begin() as conn:
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
        with self._begin() as conn:
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
                    at=_now(at),
                    status_code=status_code,
                    error=error,
                    duration_ms=float(duration_ms),
                )
            )

    def mark_delivered(self, alert_id: str, endpoint: str, *, at: float | None = None) -> None:
        """The endpoint accepted the alert; it is never sent there again."""
        self._set_status(
            alert_id, endpoint, status=DeliveryStatus.DELIVERED.value, delivered_at=_now(at),
            next_attempt_at=None, claimed_until=None,
        )

    def mark_failed(self, alert_id: str, endpoint: str, error: str) -> None:
        """The dispatcher gave up on this delivery (a delivered one stays delivered)."""
        self._set_status(alert_id, endpoint, status=DeliveryStatus.FAILED.value,
                         last_error=redact(error), next_attempt_at=None, claimed_until=None)

    def _set_status(self, alert_id: str, endpoint: str, **values: Any) -> None:
        key = and_(DELIVERIES.c.alert_id == alert_id, DELIVERIES.c.endpoint == endpoint)
        with self._begin() as conn:
            res = conn.execute(
                update(DELIVERIES)
                .where(key, DELIVERIES.c.status != DeliveryStatus.DELIVERED.value)
                .values(**values)
            )
            missing = conn.execute(select(DELIVERIES.c.status).where(key)).first() is None
            if not res.rowcount and missing:
                raise DeliveryNotFoundError(alert_id, endpoint)

    def delivery(self, alert_id: str, endpoint: str) -> Delivery | None:
        key = and_(DELIVERIES.c.alert_id == alert_id, DELIVERIES.c.endpoint == endpoint)
        with self._begin() as conn:
            row = conn.execute(select(DELIVERIES).where(key)).first()
        return None if row is None else _delivery(row)

    def deliveries(self, status: DeliveryStatus | str | None = None,
                   limit: int | None = None) -> list[Delivery]:
        """Deliveries (of one ``status``; pending: still to be made, e.g. in flight when a
        dispatcher stopped), oldest first."""
        q = select(DELIVERIES)
        if status is not None:
            q = q.where(DELIVERIES.c.status == _enum_value(DeliveryStatus, status, "status"))
        q = q.order_by(DELIVERIES.c.created_at, DELIVERIES.c.alert_id, DELIVERIES.c.endpoint)
        if limit is not None:
            q = q.limit(limit)
        with self._begin() as conn:
            return [_delivery(r) for r in conn.execute(q).all()]

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per status (every status, zero included)."""
        q = select(DELIVERIES.c.status, func.count()).group_by(DELIVERIES.c.status)
        with self._begin() as conn:
            counts: dict[str, int] = {status: n for status, n in conn.execute(q).all()}
        return {s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus}

    def delivery_attempts(self, alert_id: str, endpoint: str) -> list[Attempt]:
        """A delivery's attempts in the order they were recorded (a replayed delivery's
        numbering starts again at 1 after the earlier run's attempts)."""
        q = (
            select(ATTEMPTS)
            .where(ATTEMPTS.c.alert_id == alert_id, ATTEMPTS.c.endpoint == endpoint)
            .order_by(ATTEMPTS.c.id)
        )
        with self._begin() as conn:
            rows = conn.execute(q).all()
        return [
            Attempt(
                r.alert_id, r.endpoint, r.attempt_no, r.at, r.status_code, r.error, r.duration_ms
            )
            for r in rows
        ]


    # --- event clips --------------------------------------------------------------------

    def record_clip(self, clip: EventClip, *, at: float | None = None) -> bool:
        """Stores the clip behind an alert -> True. The same alert id again -> False and
        nothing changes (a replayed record; a purged clip's tombstone stays purged)."""
        row = _row_values(CLIPS, clip, CLIP_FIELDS)
        row["recorded_at"] = _now(at)
        stmt = (
            self._insert(CLIPS)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["alert_id"])
            .returning(CLIPS.c.alert_id)
        )
        with self._begin() as conn:
            return conn.execute(stmt).first() is not None

    def _clips(self) -> Any:
        """Clip rows with the latest flag of their alert (if the alert is stored)."""
        return select(CLIPS, ALERTS.c.flag).select_from(
            CLIPS.outerjoin(ALERTS, ALERTS.c.alert_id == CLIPS.c.alert_id)
        )

    def clip_for_alert(self, alert_id: str) -> StoredClip | None:
        """The alert's clip, purged ones included (None: no clip was ever recorded)."""
        with self._begin() as conn:
            row = conn.execute(self._clips().where(CLIPS.c.alert_id == alert_id)).first()
        return None if row is None else _stored_clip(row)

    def clips_for_alerts(self, alert_ids: Iterable[str]) -> dict[str, StoredClip]:
        """alert id -> its clip, for those of ``alert_ids`` that have one."""
        ids = sorted(set(alert_ids))
        out: dict[str, StoredClip] = {}
        with self._begin() as conn:
            for chunk in _chunks(ids):
                q = self._clips().where(CLIPS.c.alert_id.in_(list(chunk)))
                out.update((r.alert_id, _stored_clip(r)) for r in conn.execute(q).all())
        return out

    def expired_clips(self, unflagged_before: float, flagged_before: float,
                      limit: int | None = None) -> list[StoredClip]:
        """Clips not purged yet and created before ``unflagged_before`` (alert not flagged)
        or ``flagged_before`` (alert flagged true or false positive), oldest first."""
        q = self._clips().where(
            CLIPS.c.purged_at.is_(None),
            or_(
                and_(ALERTS.c.flag.is_(None), CLIPS.c.created_at < unflagged_before),
                and_(ALERTS.c.flag.is_not(None), CLIPS.c.created_at < flagged_before),
            ),
        ).order_by(CLIPS.c.created_at, CLIPS.c.alert_id)
        if limit is not None:
            q = q.limit(limit)
        with self._begin() as conn:
            return [_stored_clip(r) for r in conn.execute(q).all()]

    def purge_clips(self, alert_ids: Iterable[str], *, at: float | None = None) -> int:
        """Marks clips whose files were deleted as purged (tombstones); returns how many
        changed (already purged ones do not count)."""
        ids = sorted(set(alert_ids))
        when, n = _now(at), 0
        with self._begin() as conn:
            for chunk in _chunks(ids):
                n += conn.execute(
                    update(CLIPS)
                    .where(CLIPS.c.alert_id.in_(list(chunk)), CLIPS.c.purged_at.is_(None))
                    .values(purged_at=when)
                ).rowcount
        return n


# --- helpers ----------------------------------------------------------------------------


class _Seen:
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

    def merge(self, other: _Seen) -> _Seen:
        newer, older = (other, self) if other.last >= self.last else (self, other)
        return _Seen(
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL: the dashboard reads while a sink writes, without "database is locked".
        cur.execute("PRAGMA journal_mode=WAL")
    finally:
        cur.close()


E = TypeVar("E", bound=Enum)


def _operator_values(name: str, role: OperatorRole | str, password: str) -> dict[str, Any]:
    if not isinstance(name, str) or not _OPERATOR_NAME.fullmatch(name):
        raise InputError(f"a login name is 1 to 128 letters, digits or . _ @ + - (got {name!r})")
    if len(password) < MIN_LENGTH:
        raise InputError(f"a password needs at least {MIN_LENGTH} characters")
    return {"name": name, "role": _enum_value(OperatorRole, role, "role"),
            "password_hash": hash_password(password), "failed_logins": 0, "locked_until": None}


def _locked(name: str, seconds: float) -> str:
    return (f"login {name!r} is locked after too many failed attempts; try again in "
            f"{math.ceil(seconds / 60)} min")


def _operator(r: Row[Any]) -> Operator:
    return Operator(name=r.name, role=OperatorRole(r.role), created_at=r.created_at,
                    last_login_at=r.last_login_at, failed_logins=r.failed_logins,
                    locked_until=r.locked_until)


def _enum_value(enum: type[E], value: Any, what: str) -> Any:
    try:
        return enum(value).value
    except ValueError:
        valid = ", ".join(str(e.value) for e in enum)
        raise InputError(f"unknown {what} {value!r}; valid: {valid}") from None


def _metrics(m: Mapping[Any, Any]) -> WindowMetrics:
    values = {c: m[c] for c in METRIC_FIELDS}
    values["drowsiness_probabilities"] = values["drowsiness_probabilities"] or {}
    values["state_reasons"] = values["state_reasons"] or []
    return WindowMetrics.model_validate(values)


def _version_label(number: int) -> str:
    return f"v{number}"


def _version_number(name: str, version: str) -> int:
    """"v3" or "3" -> 3; anything else is a version that cannot exist."""
    digits = str(version).removeprefix("v")
    if not digits.isdigit():
        raise ModelVersionNotFoundError(name, version)
    return int(digits)


def _model_version(r: Row[Any]) -> ModelVersion:
    return ModelVersion(name=r.name, version=_version_label(r.version), parent=r.parent,
                        created_at=r.created_at, data_hash=r.data_hash, metrics=r.metrics,
                        sha256=r.sha256, status=r.status, promoted_at=r.promoted_at,
                        note=r.note)


def _stored_alert(r: Row[Any]) -> StoredAlert:
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


def _stored_clip(r: Row[Any]) -> StoredClip:
    return StoredClip(
        **{f: getattr(r, f) for f in CLIP_FIELDS},
        recorded_at=r.recorded_at,
        purged_at=r.purged_at,
        flag=None if r.flag is None else AlertFlag(r.flag),
    )


def _delivery(r: Row[Any]) -> Delivery:
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
