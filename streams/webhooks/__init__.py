"""Alert webhooks: Standard Webhooks signing, a retrying dispatcher, a verifying receiver."""

from streams.webhooks.dispatcher import (
    DeliveryLog,
    DeliveryOutcome,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
)
from streams.webhooks.errors import (
    WebhookDeliveryError,
    WebhookError,
    WebhookSecretError,
    WebhookVerificationError,
)
from streams.webhooks.signing import generate_secret, sign, sign_headers, signature_header, verify

__all__ = [
    "DeliveryLog",
    "DeliveryOutcome",
    "RetryPolicy",
    "WebhookDeliveryError",
    "WebhookDispatcher",
    "WebhookEndpoint",
    "WebhookError",
    "WebhookSecretError",
    "WebhookVerificationError",
    "generate_secret",
    "sign",
    "sign_headers",
    "signature_header",
    "verify",
]
