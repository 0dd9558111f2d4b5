"""Database settings (environment variable ``VIGIL_DATABASE__URL``).

Default: a SQLite file under ``$XDG_DATA_HOME/vigil`` (``~/.local/share/vigil/vigil.db``);
its directory is created when the default is used. PostgreSQL URLs use psycopg 3:
``postgresql://`` and ``postgres://`` are rewritten to ``postgresql+psycopg://``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from streams.errors import ConfigurationError
from streams.settings import VigilSettings

ENV_VAR = "VIGIL_DATABASE__URL"


def default_database_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vigil" / "vigil.db"


def _default_url() -> str:
    path = default_database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def normalize_url(url: str) -> str:
    """Checks a database URL and makes PostgreSQL URLs use psycopg 3.

    Raises ConfigurationError for anything SQLAlchemy cannot parse.
    """
    url = url.strip()
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain) :]
            break
    try:
        make_url(url)
    except ArgumentError:
        # Never echo the URL: it may carry a password.
        raise ConfigurationError(
            f"{ENV_VAR} is not a database URL (expected e.g. sqlite:///path/vigil.db or "
            "postgresql://user@host:5432/db)"
        ) from None
    return url


class DatabaseSettings(VigilSettings):
    """Where the store lives. ``url`` comes from ``VIGIL_DATABASE__URL``; it is a SecretStr
    because it may carry a password (``settings.url.get_secret_value()``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_DATABASE__", extra="ignore")
    former_env_names: ClassVar[Mapping[str, str]] = {"VIGIL_DATABASE_URL": "url"}

    url: SecretStr = Field(default_factory=lambda: SecretStr(_default_url()))

    @field_validator("url", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value
        try:
            return SecretStr(normalize_url(raw))
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
