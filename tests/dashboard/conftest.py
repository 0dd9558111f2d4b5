"""Fixtures of the dashboard tests: a PostgreSQL schema per test, migrated, with one login per
role (``dash_helpers.LOGINS``) and seeded with a small fleet (see ``dash_helpers.seed``), and
the environment pointing the dashboard at it."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import psycopg
import pytest
from dash_helpers import Fleet, add_logins, seed
from psycopg import sql

from streams.store import Store


@pytest.fixture
def schema_url(pg_url: str, pg_conn: psycopg.Connection) -> str:
    """A fresh, empty PostgreSQL schema of the run's database, as a URL."""
    schema = f"dash_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{pg_url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Kafka and default dashboard settings, whatever the caller's environment says."""
    monkeypatch.delenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("VIGIL_DASHBOARD__ADMIN_PASSWORD", raising=False)
    for key in [k for k in os.environ if k.startswith("VIGIL_DASHBOARD__")]:
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def empty_store(schema_url: str, dashboard_env: pytest.MonkeyPatch) -> Iterator[Store]:
    """A migrated store with the test logins and nothing else; VIGIL_DATABASE__URL points at
    it."""
    store = Store(schema_url)
    store.migrate()
    add_logins(store)
    dashboard_env.setenv("VIGIL_DATABASE__URL", schema_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def fleet(empty_store: Store) -> Fleet:
    """The seeded fleet; VIGIL_DATABASE__URL points at it."""
    return seed(empty_store, time.time())
