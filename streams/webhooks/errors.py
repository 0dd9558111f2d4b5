"""Errors of the webhook package; all derive from :class:`models.errors.VigilError`."""

from __future__ import annotations

from models.errors import VigilError
from streams.errors import ConfigurationError


class WebhookError(VigilError):
    """Root of the webhook errors."""


class WebhookSecretError(WebhookError, ConfigurationError):
    """A signing secret is unusable: not ``whsec_`` + base64, or too short. Never names it."""


class WebhookVerificationError(WebhookError):
    """A received webhook is not authentic or not fresh; the message says why."""


class WebhookDeliveryError(WebhookError):
    """Delivery bookkeeping failed (the delivery log raised); the HTTP outcome is unknown."""
