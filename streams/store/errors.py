"""Errors of the store. All derive from :class:`models.errors.VigilError`.

Retry policy for callers:

- :class:`StoreUnavailableError` (``retryable`` is True): the database could not be reached or
  the connection broke (server down, connection refused, SQLite file locked or unopenable).
  Nothing was committed by the failed call. Stream sinks should retry with backoff and must
  not commit their Kafka offsets until the write succeeds; every write is an idempotent
  upsert, so retrying (or replaying the topic) never duplicates rows.
- :class:`StoreDataError`: the database refused this record's values; set it aside.
- :class:`StoreNotMigratedError`: the schema is missing or outdated; run ``Store.migrate()``.
- :class:`AlertNotFoundError`, :class:`DeliveryNotFoundError` and invalid arguments
  (:class:`streams.errors.InputError`): the request itself is wrong; retrying will not help.
"""

from __future__ import annotations

from models.errors import VigilError
from streams.errors import ConfigurationError, InputError


class StoreError(VigilError):
    """Something went wrong in the store. ``retryable`` says whether trying again may help."""

    retryable: bool = False


class StoreUnavailableError(StoreError):
    """The database is unreachable or the connection failed (an outage); retry later."""

    retryable = True


class StoreDataError(StoreError, InputError):
    """The database refused the values of one record (a NUL character, a number out of a
    column's range): retrying cannot help; a sink sets the record aside and goes on."""


class StoreNotMigratedError(StoreError, ConfigurationError):
    """The database lacks the Vigil tables or has an older schema: run ``Store.migrate()``."""


class AlertNotFoundError(StoreError, InputError):
    """An operation names an alert id the store does not hold."""

    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r} in the store")
        self.alert_id = alert_id


class DeliveryNotFoundError(StoreError, InputError):
    """A webhook operation names an (alert, endpoint) pair that is not in the outbox."""

    def __init__(self, alert_id: str, endpoint: str) -> None:
        super().__init__(
            f"no webhook delivery of alert {alert_id!r} to {endpoint!r} "
            "(enqueue it first)"
        )
        self.alert_id = alert_id
        self.endpoint = endpoint


class ModelVersionNotFoundError(StoreError, InputError):
    """A registry operation names a model version that was never registered."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"no version {version!r} of model {name!r} in the registry")


class ApiKeyNotFoundError(StoreError, InputError):
    """An operation names a read-API key id that was never created."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r} (`vigil api keys list` lists them)")
        self.key_id = key_id


class LoginRefusedError(StoreError, InputError):
    """A dashboard login was refused: unknown name, wrong password (one message for both),
    or a login locked after too many failed attempts (``locked`` is True)."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked
