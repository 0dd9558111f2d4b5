"""The Vigil store: one repository per aggregate over one shared database.

    store = Store.from_settings()       # VIGIL_DATABASE__URL, default a SQLite file
    store.migrate()                     # alembic upgrade head (a no-op when current)
    store.series.upsert(windows)        # drivers, vehicles, window time series
    store.alerts.upsert(alert)          # alerts, lifecycle, flags
    store.model_versions.promote(...)   # retrained models and the served one
    store.operators.authenticate(...)   # dashboard logins
    store.api_keys.verify(key)          # read-API keys (hashed)
    store.deliveries.claim_due(...)     # webhook outbox
    store.clips.expired(...)            # event clips and their retention
    store.dead_letters.find()           # records the streams could not process

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

from streams.settings import load_settings
from streams.store.alerts import AlertRepository
from streams.store.api_keys import ApiKeyRepository
from streams.store.database import Database
from streams.store.dead_letters import DeadLetterRepository
from streams.store.deliveries import DeliveryRepository
from streams.store.event_clips import EventClipRepository
from streams.store.model_versions import ModelVersionRepository
from streams.store.operators import OperatorRepository
from streams.store.series import SeriesRepository
from streams.store.settings import DatabaseSettings


class Store:
    """The repositories behind one database URL (SQLite or PostgreSQL), sharing its engine.

    Thread-safe as far as the SQLAlchemy engine is; each repository method is one
    transaction. Call :meth:`migrate` once at start-up; commands that only read call
    :meth:`check_migrated` instead.
    """

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.series = SeriesRepository(self.db)
        self.alerts = AlertRepository(self.db)
        self.model_versions = ModelVersionRepository(self.db)
        self.operators = OperatorRepository(self.db)
        self.deliveries = DeliveryRepository(self.db)
        self.clips = EventClipRepository(self.db)
        self.dead_letters = DeadLetterRepository(self.db)
        self.api_keys = ApiKeyRepository(self.db)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings | None = None) -> Store:
        settings = settings or load_settings(DatabaseSettings)
        return cls(settings.url.get_secret_value())

    @property
    def url(self) -> str:
        """The normalised URL, password included: pass it on, never print it."""
        return self.db.url

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def where(self) -> str:
        """The URL without its password, for messages."""
        return self.db.where

    def migrate(self) -> str | None:
        """Brings the schema to the newest migration; returns the revision."""
        return self.db.migrate()

    def check_migrated(self) -> str:
        """The revision when the schema is the newest, else StoreNotMigratedError; writes
        nothing."""
        return self.db.check_migrated()

    def row_counts(self) -> dict[str, int]:
        return self.db.row_counts()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"
