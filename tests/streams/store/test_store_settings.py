"""Database settings: VIGIL_DATABASE__URL, the SQLite default, psycopg 3 for PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.errors import ConfigurationError
from streams.store import DatabaseSettings, Store, head_revision


def test_url_comes_from_vigil_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE__URL", "postgresql://fleet@db.internal:5432/vigil")
    settings = DatabaseSettings()
    assert settings.url.get_secret_value() == "postgresql+psycopg://fleet@db.internal:5432/vigil"
    assert "fleet" not in repr(settings)  # the URL may carry a password
    assert Store.from_settings(settings).dialect == "postgresql"


def test_postgres_scheme_and_explicit_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_DATABASE__URL", raising=False)
    assert DatabaseSettings.model_validate({"url": "postgres://u@h/db"}).url.get_secret_value() == (
        "postgresql+psycopg://u@h/db"
    )
    explicit = "postgresql+psycopg://u@h/db"
    assert DatabaseSettings.model_validate({"url": explicit}).url.get_secret_value() == explicit
    assert Store("postgresql://u@h/db").url == explicit


def test_default_is_a_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VIGIL_DATABASE__URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = DatabaseSettings().url.get_secret_value()
    assert url == f"sqlite:///{tmp_path / 'data' / 'vigil' / 'vigil.db'}"
    assert (tmp_path / "data" / "vigil").is_dir()
    with Store(url) as store:
        assert store.migrate() == head_revision()


def test_bad_urls_are_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE__URL", "not a url")
    with pytest.raises(ValidationError, match="VIGIL_DATABASE__URL is not a database URL"):
        DatabaseSettings()
    with pytest.raises(ConfigurationError, match="not a database URL"):
        Store("::")
    with pytest.raises(ConfigurationError, match="runs on SQLite or PostgreSQL"):
        Store("mysql://u@h/db")
