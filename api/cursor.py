"""The opaque cursor of alert pages: where the previous page ended, as (detected_at, alert_id)
in URL-safe base64 of JSON. Clients pass it back unchanged; its content is no contract."""

from __future__ import annotations

import base64
import binascii
import json
import math

from streams.errors import InputError

MAX_CURSOR_CHARS = 512


class CursorError(InputError):
    """A cursor this API did not hand out (or one damaged on the way)."""


def encode_cursor(detected_at: float, alert_id: str) -> str:
    raw = json.dumps([detected_at, alert_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(detected_at, alert_id) of a cursor from :func:`encode_cursor`; else CursorError."""
    problem = "malformed cursor: pass next_cursor of the previous page unchanged"
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError(problem)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, alert_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise CursorError(problem) from None
    if (isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)
            or not isinstance(alert_id, str) or not 0 < len(alert_id) <= 64):
        raise CursorError(problem)
    return float(at), alert_id
