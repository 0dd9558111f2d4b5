"""One database behind the store: the engine, its transactions and the schema.

:class:`Database` owns the SQLAlchemy engine (pooled connections, SQLite pragmas), turns
driver errors into the store's errors (an outage is :class:`StoreUnavailableError`, a schema
that was never migrated :class:`StoreNotMigratedError`, refused values
:class:`StoreDataError`) and migrates with Alembic. The repositories share one of it.

Every timestamp is float epoch seconds (UTC).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, text
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
from streams.schemas import Record
from streams.store.errors import (
    StoreDataError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
)
from streams.store.models import ALL_TABLES
from streams.store.settings import normalize_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CHUNK_ROWS = 500  # rows per INSERT: far below SQLite's and PostgreSQL's parameter limits
_PG_MIGRATION_LOCK = 0x56494749  # "VIGI": serialises concurrent migrate() calls

# SQLSTATE classes of outages rather than bad requests: connection exception (08),
# transaction rollback: serialization failure or deadlock (40), insufficient resources (53),
# operator intervention: shutdown, cancel (57), system error (58).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


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


class Database:
    """The engine behind one database URL (SQLite or PostgreSQL).

    Thread-safe as far as the SQLAlchemy engine is (one engine, pooled connections); each
    :meth:`begin` is one transaction.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
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

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.where!r})"

    def _translate(self, exc: Exception) -> StoreError:
        message = _one_line(exc)
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if sqlstate in ("42P01", "42703") or (
            isinstance(exc, OperationalError)
            and ("no such table" in message or "no such column" in message)
        ):
            return StoreNotMigratedError(
                f"database {self.where} has no Vigil schema or an outdated one ({message}); "
                "run `vigil db migrate`"
            )
        return StoreUnavailableError(f"database unavailable: {self.where}: {message} (retry later)")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
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

    def ping(self) -> None:
        """One round trip to the database (readiness probes); StoreUnavailableError if it is
        unreachable."""
        with self.begin() as conn:
            conn.execute(text("SELECT 1"))

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_update/do_nothing``."""
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    # --- schema -------------------------------------------------------------------------

    def migrate(self) -> str | None:
        """Brings the schema to the newest migration (``alembic upgrade head``); a no-op when
        it is there already. Returns the revision."""
        cfg = alembic_config()
        with self.begin() as conn:
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
        with self.begin() as conn:
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
        with self.begin() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in ALL_TABLES
            }


# --- helpers the repositories share ------------------------------------------------------


def now_or(at: float | None) -> float:
    """``at``, or the current time when it is None."""
    return time.time() if at is None else float(at)


def chunks(rows: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def json_safe(value: Any) -> Any:
    """JSON without NaN/Infinity (PostgreSQL's JSONB rejects them): non-finite -> null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def row_values(table: Table, record: Record, fields: Iterable[str]) -> dict[str, Any]:
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


def required_text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string")
    return value


def enum_value(enum: type[E], value: Any, what: str) -> Any:
    try:
        return enum(value).value
    except ValueError:
        valid = ", ".join(str(e.value) for e in enum)
        raise InputError(f"unknown {what} {value!r}; valid: {valid}") from None


def _transient_sqlstate(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL: the dashboard reads while a sink writes, without "database is locked".
        cur.execute("PRAGMA journal_mode=WAL")
    finally:
        cur.close()
