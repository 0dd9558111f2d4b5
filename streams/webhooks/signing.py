"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec v1.0.0, symmetric).

A delivery carries three headers:

- ``webhook-id``: the message id, stable across retries (Vigil uses the alert id), so a
  receiver can deduplicate;
- ``webhook-timestamp``: integer Unix seconds of this attempt (fresh on every retry);
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, one per
  signing secret (several during a secret rotation), over ``{id}.{timestamp}.{body}``.

Secrets are ``whsec_`` + base64 of at least 24 random bytes; the HMAC key is the decoded
part. Verification compares in constant time and rejects timestamps outside a tolerance
(replay protection).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from secrets import token_bytes

from pydantic import SecretStr

from streams.webhooks.errors import WebhookError, WebhookSecretError, WebhookVerificationError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300.0

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

# More entries than this in one signature header is abuse, not rotation.
MAX_SIGNATURES = 32
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")

SecretLike = str | SecretStr


def generate_secret(nbytes: int = 32) -> str:
    """A new signing secret: ``whsec_`` + base64 of ``nbytes`` (24-64) random bytes."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise WebhookSecretError(
            f"a webhook secret needs {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {nbytes}"
        )
    return SECRET_PREFIX + base64.b64encode(token_bytes(nbytes)).decode("ascii")


def secret_key(secret: SecretLike) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after ``whsec_`` (the prefix is
    optional, as in the reference libraries; missing base64 padding is tolerated)."""
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    raw = raw.strip()
    if raw.startswith(SECRET_PREFIX):
        raw = raw[len(SECRET_PREFIX) :]
    raw = raw.rstrip("=")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            "webhook secret is not 'whsec_' followed by base64"
        ) from None
    if len(key) < MIN_SECRET_BYTES:
        raise WebhookSecretError(
            f"webhook secret decodes to {len(key)} bytes; at least {MIN_SECRET_BYTES} are required"
        )
    return key


def valid_msg_id(msg_id: str) -> bool:
    """Whether ``msg_id`` can be a webhook-id: non-empty, no '.', no whitespace."""
    # The id must not be able to shift the '.'-delimited boundaries of the signed content.
    return bool(msg_id) and "." not in msg_id and not any(c.isspace() for c in msg_id)


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    content = b"".join([msg_id.encode(), b".", str(timestamp).encode(), b".", body])
    return hmac.new(key, content, hashlib.sha256).digest()


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def sign(secret: SecretLike, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` under one secret."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError("webhook timestamps are integer Unix seconds")
    if not valid_msg_id(msg_id):
        raise WebhookError(f"webhook id {msg_id!r} is empty or contains '.' or whitespace")
    mac = _digest(secret_key(secret), msg_id, timestamp, _as_bytes(body))
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}"


def _secret_list(secrets: SecretLike | Iterable[SecretLike]) -> list[SecretLike]:
    if isinstance(secrets, str | SecretStr):
        return [secrets]
    found = list(secrets)
    if not found:
        raise WebhookSecretError("no webhook secret configured")
    return found


def signature_header(
    secrets: SecretLike | Iterable[SecretLike], msg_id: str, timestamp: int, body: bytes | str
) -> str:
    """The ``webhook-signature`` value: one ``v1,...`` entry per secret, space-separated.

    During a rotation configure both the new and the old secret; receivers holding either
    verify the delivery.
    """
    return " ".join(sign(s, msg_id, timestamp, body) for s in _secret_list(secrets))


def sign_headers(
    secrets: SecretLike | Iterable[SecretLike],
    msg_id: str,
    body: bytes | str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """All three Standard Webhooks headers for one attempt (``timestamp`` default: now)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: signature_header(secrets, msg_id, ts, body),
    }


def _candidate_signatures(header: str) -> list[bytes]:
    entries = header.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookVerificationError(
            f"webhook-signature has {len(entries)} entries (at most {MAX_SIGNATURES} accepted)"
        )
    found = []
    for entry in entries:
        version, sep, value = entry.partition(",")
        if version != SIGNATURE_VERSION or not sep:
            continue  # other schemes (v1a, future versions) are not ours to check
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(
    secrets: SecretLike | Sequence[SecretLike],
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Checks a received webhook; returns None when authentic, else raises
    :class:`WebhookVerificationError` with the reason.

    ``secrets``: every secret currently accepted (old and new during a rotation).
    ``headers``: header names are matched case-insensitively. ``body``: the raw request
    body exactly as received (never re-serialised JSON). ``now`` defaults to the clock.
    """
    keys = [secret_key(s) for s in _secret_list(secrets)]
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not lowered.get(h)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    msg_id = lowered[HEADER_ID].strip()
    if not valid_msg_id(msg_id):
        raise WebhookVerificationError("webhook-id contains '.' or whitespace")
    ts_text = lowered[HEADER_TIMESTAMP].strip()
    if not _TIMESTAMP_RE.fullmatch(ts_text):
        raise WebhookVerificationError("webhook-timestamp is not integer Unix seconds")
    timestamp = int(ts_text)
    clock = time.time() if now is None else now
    if timestamp < clock - tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp too old: {clock - timestamp:.0f} s in the past "
            f"(tolerance {tolerance_s:g} s)"
        )
    if timestamp > clock + tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp too new: {timestamp - clock:.0f} s in the future "
            f"(tolerance {tolerance_s:g} s)"
        )
    candidates = _candidate_signatures(lowered[HEADER_SIGNATURE])
    if not candidates:
        raise WebhookVerificationError("webhook-signature holds no v1 signature")
    data = _as_bytes(body)
    matched = False
    for key in keys:
        expected = _digest(key, msg_id, timestamp, data)
        for candidate in candidates:
            # no early exit: the work done does not depend on which entry matches
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            f"no matching signature ({len(candidates)} signature(s) checked against "
            f"{len(keys)} secret(s))"
        )
