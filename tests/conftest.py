"""Fixtures shared by every test area: the real data beside the repository, the Kafka broker,
and real databases (SQLite files and the PostgreSQL server on 127.0.0.1:5432, user postgres,
trust auth). Each test run creates its own PostgreSQL database and drops it at the end; each
test gets its own schema in it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from streams.store import Store

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIDEO_DIR = SHARED / "data" / "video"


@pytest.fixture(scope="session")
def video_dir() -> Path:
    if not VIDEO_DIR.is_dir():
        pytest.fail(f"real test data missing: {VIDEO_DIR} (../shared must sit beside the repo)")
    return VIDEO_DIR


@pytest.fixture(scope="session")
def kafka_broker():
    """A real Kafka-compatible broker (Tansu) for the whole test session, topics created."""
    from streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        broker.create_topics()
        yield broker


PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PG_ADMIN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=5"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test run (dropped at the end)."""
    name = f"vigil_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
        problem = ""
    except psycopg.OperationalError as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem:  # outside the except block: one clear line, no chained traceback
        pytest.fail(
            f"PostgreSQL is required for the store tests and is unreachable at "
            f"{PG_HOST}:{PG_PORT} as user {PG_USER!r}: {problem}",
            pytrace=False,
        )
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the run's database (to create per-test schemas)."""
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname}", autocommit=True
    ) as conn:
        yield conn


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (never migrated): a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vigil.db'}"
    pg_url: str = request.getfixturevalue("pg_url")
    conn: psycopg.Connection = request.getfixturevalue("pg_conn")
    schema = f"t_{secrets.token_hex(6)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{pg_url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A freshly migrated store on each backend."""
    s = Store(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def pg_schema_url(pg_url: str, pg_conn: psycopg.Connection) -> str:
    """The run's PostgreSQL database with a fresh, empty schema first on the search path, as
    a URL a `vigil` subprocess can use (VIGIL_DATABASE__URL)."""
    schema = f"e2e_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{pg_url}?options=-csearch_path%3D{schema}"
