"""Password hashes of local dashboard logins: scrypt (standard library) with a random salt
per password, stored as ``scrypt$N$r$p$SALT$HASH`` (base64) so that stronger parameters can
come later without breaking stored hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# 16 MiB and a few tens of milliseconds per check: cheap for a login, costly for guessing.
N, R, P, KEY_BYTES = 2**14, 8, 1, 32
MIN_LENGTH = 8


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * n * r + 2**20, dklen=KEY_BYTES)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, N, R, P))}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (compared in constant time); False for a
    malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _decoy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time(password: str) -> None:
    """The cost of one check, for unknown names: a login's duration does not tell whether
    the name exists."""
    verify_password(password, _decoy())


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits
