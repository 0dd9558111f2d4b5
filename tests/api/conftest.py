"""Fixtures of the read-API tests: a migrated PostgreSQL schema per test with the seeded
fleet (``api_helpers.seed``), a read and a write key, and the app on it through FastAPI's
TestClient (a page holds at most ``api_helpers.PAGE`` alerts)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from api_helpers import PAGE, Seeded, seed
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from dashboard.settings import DashboardSettings
from streams.store import Store


@pytest.fixture
def api_store(pg_schema_url: str) -> Iterator[Store]:
    store = Store(pg_schema_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def seeded(api_store: Store) -> Seeded:
    return seed(api_store, time.time())


@pytest.fixture
def keys(api_store: Store) -> dict[str, str]:
    """scope -> a key of it: {"read": ..., "write": ...}."""
    return {scope: api_store.api_keys.create(f"tms-{scope}", scope)[1]
            for scope in ("read", "write")}


@pytest.fixture
def client(api_store: Store) -> Iterator[TestClient]:
    app = create_app(api_store, ApiSettings(max_page_size=PAGE),
                     DashboardSettings(offline_after_s=180, recent_alert_s=300))
    with TestClient(app) as c:
        yield c
