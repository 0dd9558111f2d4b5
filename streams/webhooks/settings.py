"""Webhook settings (environment prefix ``VIGIL_WEBHOOKS__``, nested with ``__``).

    VIGIL_WEBHOOKS__ENDPOINTS='[{"name": "fleet-ops", "url": "https://ops.example/hooks",
                                "secrets": ["whsec_..."]}]'
    VIGIL_WEBHOOKS__RETRY__HORIZON_S=259200        # retry for 72 h (the default)
    VIGIL_WEBHOOKS__RETRY__REQUEST_TIMEOUT_S=20
    VIGIL_WEBHOOKS__RETRY__BREAKER_FAILURES=5       # then leave the endpoint alone for
    VIGIL_WEBHOOKS__RETRY__BREAKER_COOLDOWN_S=60    # this long, and probe it once
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from streams.settings import VigilSettings
from streams.webhooks.dispatcher import DeliveryLog, RetryPolicy, WebhookDispatcher, WebhookEndpoint


class WebhookSettings(VigilSettings):
    """Endpoints (a JSON list in the environment) and the retry policy."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_WEBHOOKS__",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # validation errors must not echo secrets
    )

    enabled: bool = True
    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    retry: RetryPolicy = RetryPolicy()
    # Receivers (``streams.webhooks.receiver``) accept timestamps this far from their clock.
    verify_tolerance_s: float = Field(default=300.0, gt=0)

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [e.name for e in endpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"endpoint names must be unique: {duplicates}")
        return endpoints

    def dispatcher(self, log: DeliveryLog) -> WebhookDispatcher:
        """A dispatcher over the enabled endpoints (none when webhooks are disabled)."""
        return WebhookDispatcher(self.endpoints if self.enabled else [], log, self.retry)
