"""The opaque cursor of keyset pages: where the previous page ended, as a time and an id
(an alert's detected_at and alert_id; a window's start and its driver) in URL-safe base64 of
JSON. Clients pass it back unchanged; its content is no contract."""

from __future__ import annotations

import base64
import binascii
import json
import math

from streams.errors import InputError

MAX_CURSOR_CHARS = 512


class CursorError(InputError):
    """A cursor this API did not hand out (or one damaged on the way)."""


def encode_cursor(at: float, key: str) -> str:
    raw = json.dumps([at, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(at, key) of a cursor from :func:`encode_cursor`; else CursorError."""
    problem = "malformed cursor: pass next_cursor of the previous page unchanged"
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError(problem)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise CursorError(problem) from None
    if (isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)
            or not isinstance(key, str) or not 0 < len(key) <= 64):
        raise CursorError(problem)
    return float(at), key
