"""Alembic environment of the Vigil store.

``Store.migrate()`` passes its open connection in ``config.attributes["connection"]``. Run
standalone (``alembic -x`` style tooling), the URL comes from the config's ``sqlalchemy.url``
or, failing that, from ``VIGIL_DATABASE__URL`` (DatabaseSettings).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from streams.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from streams.store.settings import DatabaseSettings

    return DatabaseSettings().url.get_secret_value()


if context.is_offline_mode():
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = create_engine(_url(), poolclass=pool.NullPool)
        try:
            with engine.begin() as conn:
                _run(conn)
        finally:
            engine.dispose()
