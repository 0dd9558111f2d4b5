"""Dashboard settings (environment prefix ``VIGIL_DASHBOARD__``).

    VIGIL_DASHBOARD__OPERATOR=alice          # default name on acks and flags
    VIGIL_DASHBOARD__REFRESH_S=5             # fleet page auto-refresh
    VIGIL_DASHBOARD__OFFLINE_AFTER_S=180     # no window or alert for this long: offline

The database comes from ``VIGIL_DATABASE_URL`` (:class:`streams.store.DatabaseSettings`) and
Kafka from ``VIGIL_KAFKA__BOOTSTRAP_SERVERS`` (:class:`streams.settings.StreamSettings`).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_DASHBOARD__", extra="ignore")

    operator: str = Field(default="operator", min_length=1)
    refresh_s: float = Field(default=5.0, gt=0)
    # Windows close every 60 s (plus grace), so a live driver is seen at least that often.
    offline_after_s: float = Field(default=180.0, gt=0)
    # Unresolved alerts this recent set a driver's current state (older ones only count).
    recent_alert_s: float = Field(default=300.0, gt=0)
    kafka_timeout_s: float = Field(default=3.0, gt=0)
