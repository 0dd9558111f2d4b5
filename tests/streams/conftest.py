"""Fixtures of the streams tests. The database fixtures every area shares (``pg_url``,
``pg_conn``, ``db_url``, ``store``) live in ``tests/conftest.py``."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql


@pytest.fixture
def pg_schema_url(pg_url: str, pg_conn: psycopg.Connection) -> str:
    """The run's PostgreSQL database with a fresh, empty schema first on the search path, as
    a URL a `vigil` subprocess can use (VIGIL_DATABASE_URL)."""
    schema = f"e2e_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{pg_url}?options=-csearch_path%3D{schema}"
