"""Redaction of secrets in text meant for logs, pages and stored error messages.

:func:`redact` is the one function every log line, page and stored error that may carry a
URL goes through. In each URL it finds, it replaces user info (``user:password@``) and the
query string and fragment with ``***``; web URLs (http, https, ws, wss) keep only their
origin, because webhook services put their tokens in the path too (``/services/T0/B0/XXXX``).
Other URLs (database URLs) keep their path: a database name is no secret. Outside URLs it
masks ``password=...``-style pairs (libpq DSNs, stray query strings) and ``whsec_`` signing secrets.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
_WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>(){}]+")
_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?token|auth)"
    r"(\s*=\s*)([^\s&,;'\"]+)"
)
_SIGNING_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed host or port: show nothing of it
        return url.split("://", 1)[0] + "://" + MASK
    netloc = ("[" + host + "]" if ":" in host else host) + (f":{port}" if port else "")
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    out = f"{parts.scheme}://{netloc}"
    if parts.scheme.lower() in _WEB_SCHEMES:
        hidden = parts.path.strip("/") or parts.query or parts.fragment
        return out + ("/" + MASK if hidden else parts.path)
    out += parts.path
    if parts.query:
        out += "?" + MASK
    if parts.fragment:
        out += "#" + MASK
    return out


def redact(text: str) -> str:
    """``text`` with the secrets of URLs, ``key=value`` pairs and signing secrets masked."""
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _SIGNING_SECRET.sub("whsec_" + MASK, text)
