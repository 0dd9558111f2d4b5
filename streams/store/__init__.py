"""The Vigil store: SQLite or PostgreSQL through SQLAlchemy 2, schema by Alembic migrations.

store = Store.from_settings()      # VIGIL_DATABASE__URL, default a SQLite file
store.migrate()                    # alembic upgrade head (a no-op when current)
store.series.upsert(windows)       # one repository per aggregate: series, alerts,
store.alerts.upsert(alert)         # model_versions, operators, deliveries, clips, dead_letters,
store.api_keys.verify(key)         # api_keys
"""

from streams.store.database import Database, alembic_config, head_revision
from streams.store.errors import (
    AlertNotFoundError,
    ApiKeyNotFoundError,
    DeliveryNotFoundError,
    LoginRefusedError,
    ModelVersionNotFoundError,
    StoreDataError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
)
from streams.store.models import AlertFlag, ApiScope, DeliveryStatus, ModelStatus, OperatorRole
from streams.store.results import (
    ApiKey,
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
from streams.store.settings import DatabaseSettings
from streams.store.store import Store

__all__ = [
    "AlertFlag",
    "AlertNotFoundError",
    "ApiKey",
    "ApiKeyNotFoundError",
    "ApiScope",
    "Attempt",
    "Database",
    "DatabaseSettings",
    "Delivery",
    "DeliveryNotFoundError",
    "DeliveryStatus",
    "DueDelivery",
    "FlagEntry",
    "FleetEntry",
    "LoginRefusedError",
    "ModelStatus",
    "ModelVersion",
    "ModelVersionNotFoundError",
    "Operator",
    "OperatorRole",
    "Store",
    "StoreDataError",
    "StoreError",
    "StoreNotMigratedError",
    "StoreUnavailableError",
    "StoredAlert",
    "StoredClip",
    "alembic_config",
    "head_revision",
]
