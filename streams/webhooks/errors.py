"""Errors of the webhook package; all derive from :class:`streams.errors.VigilError`."""

from __future__ import annotations

from streams.errors import ConfigurationError, VigilError


class WebhookError(VigilError):
    """Root of the webhook errors."""


class WebhookSecretError(WebhookError, ConfigurationError):
    """A signing secret is unusable: not ``whsec_`` + base64, or too short. Never names it."""


class WebhookVerificationError(WebhookError):
    """A received webhook is not authentic or not fresh; the message says why."""


class WebhookDeliveryError(WebhookError):
    """Delivery bookkeeping failed (the delivery log raised); the HTTP outcome is unknown."""
