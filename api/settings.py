"""Settings of the read API (environment prefix ``VIGIL_API__``).

    VIGIL_API__HOST=127.0.0.1        # where `vigil api` listens (--host overrides)
    VIGIL_API__PORT=8600             # (--port overrides)
    VIGIL_API__MAX_PAGE_SIZE=500     # the most alerts one page of GET /v1/alerts holds

The database comes from ``VIGIL_DATABASE__URL`` (:class:`streams.store.DatabaseSettings`); the
fleet's statuses use the dashboard's thresholds (``VIGIL_DASHBOARD__OFFLINE_AFTER_S``,
``VIGIL_DASHBOARD__RECENT_ALERT_S``), so the API and the fleet page agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dashboard.settings import DashboardSettings
from streams.settings import DeployableSettings, VigilSettings
from streams.store import DatabaseSettings


class ApiSettings(VigilSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_API__", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    max_page_size: int = Field(default=500, ge=1, le=10_000)


@dataclass(frozen=True)
class ApiEnvironment(DeployableSettings):
    """Everything the API reads from its environment; `vigil api` checks it all before it
    starts serving."""

    api: ApiSettings
    database: DatabaseSettings
    dashboard: DashboardSettings  # the fleet statuses' thresholds
