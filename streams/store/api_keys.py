"""Keys of the read API: ``vgl_<key_id>_<secret>``, stored as the id and the SHA-256 of the
secret, never the key itself.

The secret is 256 random bits, so a plain SHA-256 is enough (nothing to guess from a leaked
hash; a slow hash would only slow every request down); it is compared in constant time.
The id is not secret: it names the key in listings, logs and ``vigil api keys revoke``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from sqlalchemy import select, update

from streams.errors import InputError
from streams.store.database import Database, enum_value, now_or
from streams.store.errors import ApiKeyNotFoundError
from streams.store.models import API_KEYS, ApiScope
from streams.store.results import ApiKey

log = logging.getLogger(__name__)

PREFIX = "vgl"
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_KEY_NAME = re.compile(r"[\w.@+:-]{1,128}")
# A key's last use is written at most this often: one write per minute, not per request.
TOUCH_EVERY_S = 60.0
_DECOY = hashlib.sha256(b"no such key").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    prefix, _, rest = key.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not _KEY_ID.fullmatch(key_id) or not _SECRET.fullmatch(secret):
        return None
    return key_id, secret


class ApiKeyRepository:
    """Keys of the read API: create, list, revoke, verify."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, scope: ApiScope | str = ApiScope.READ,
               *, at: float | None = None) -> tuple[ApiKey, str]:
        """A new key -> (its listing, the key). The key is shown only here: the store keeps
        the SHA-256 of its secret."""
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise InputError("an API key name is 1 to 128 letters, digits or . _ @ + : - "
                             f"(got {name!r})")
        scope_value = enum_value(ApiScope, scope, "scope")
        when = now_or(at)
        with self.db.begin() as conn:
            while True:  # a 64-bit id collides practically never; then draw again
                key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
                taken = conn.execute(
                    select(API_KEYS.c.key_id).where(API_KEYS.c.key_id == key_id)).first()
                if taken is None:
                    break
            conn.execute(API_KEYS.insert().values(
                key_id=key_id, name=name, scope=scope_value, secret_sha256=_digest(secret),
                created_at=when, last_used_at=None, revoked_at=None))
        log.info("API key %s (%r, scope %s) created", key_id, name, scope_value)
        created = ApiKey(key_id, name, ApiScope(scope_value), when, None, None)
        return created, f"{PREFIX}_{key_id}_{secret}"

    def all(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        with self.db.begin() as conn:
            rows = conn.execute(
                select(API_KEYS).order_by(API_KEYS.c.created_at, API_KEYS.c.key_id)).all()
        return [_api_key(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self.db.begin() as conn:
            r = conn.execute(select(API_KEYS).where(API_KEYS.c.key_id == key_id)).first()
        return None if r is None else _api_key(r)

    def revoke(self, key_id: str, *, at: float | None = None) -> bool:
        """Revokes a key for good -> True; False when it was revoked already. Unknown id:
        ApiKeyNotFoundError."""
        stmt = (update(API_KEYS)
                .where(API_KEYS.c.key_id == key_id, API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=now_or(at)))
        with self.db.begin() as conn:
            if conn.execute(stmt).rowcount:
                log.info("API key %s revoked", key_id)
                return True
            if conn.execute(select(API_KEYS.c.key_id)
                            .where(API_KEYS.c.key_id == key_id)).first() is None:
                raise ApiKeyNotFoundError(key_id)
        return False

    def verify(self, key: str, *, at: float | None = None) -> ApiKey | None:
        """The key's listing when ``key`` is a key that exists and is not revoked, else None
        (malformed, unknown, wrong secret and revoked alike). Records its last use (at most
        every ``TOUCH_EVERY_S``)."""
        parsed = parse_key(key) if isinstance(key, str) else None
        key_id, secret = parsed if parsed is not None else ("", "")
        with self.db.begin() as conn:
            r = None if parsed is None else conn.execute(
                select(API_KEYS).where(API_KEYS.c.key_id == key_id)).first()
            # The digest is compared even when there is nothing to compare it with, in
            # constant time: how long a refusal takes says nothing about the key.
            matches = hmac.compare_digest(_digest(secret),
                                          _DECOY if r is None else r.secret_sha256)
            if r is None or not matches or r.revoked_at is not None:
                return None
            found = _api_key(r)
            now = now_or(at)
            if r.last_used_at is None or now - r.last_used_at >= TOUCH_EVERY_S:
                conn.execute(update(API_KEYS).where(API_KEYS.c.key_id == key_id)
                             .values(last_used_at=now))
                found = ApiKey(found.key_id, found.name, found.scope, found.created_at, now,
                               None)
        return found


def _api_key(r: Any) -> ApiKey:
    return ApiKey(key_id=r.key_id, name=r.name, scope=ApiScope(r.scope),
                  created_at=r.created_at, last_used_at=r.last_used_at,
                  revoked_at=r.revoked_at)
