"""Dashboard logins: local operators with scrypt password hashes, roles and lockout."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from sqlalchemy import func, select, text, update

from streams.errors import InputError
from streams.store.database import Database, enum_value, now_or
from streams.store.errors import LoginRefusedError
from streams.store.models import OPERATORS, OperatorRole
from streams.store.passwords import MIN_LENGTH, burn_time, hash_password, verify_password
from streams.store.results import Operator

log = logging.getLogger(__name__)

_PG_OPERATORS_LOCK = 0x56494F50  # "VIOP": two first starts create one first admin
_OPERATOR_NAME = re.compile(r"[\w.@+-]{1,128}")
WRONG_LOGIN = "wrong name or password"


class OperatorRepository:
    """Local dashboard logins."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, name: str, role: OperatorRole | str, password: str,
            *, at: float | None = None) -> bool:
        """Creates the login ``name`` or gives it a new role and password (which also lifts
        a lockout) -> True when it was created."""
        values = _operator_values(name, role, password)
        with self.db.begin() as conn:
            found = conn.execute(select(OPERATORS.c.name).where(OPERATORS.c.name == name)).first()
            if found is None:
                conn.execute(OPERATORS.insert().values(created_at=now_or(at), **values))
            else:
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(**values))
        log.info("dashboard login %r %s (role %s)", name,
                 "created" if found is None else "updated", values["role"])
        return found is None

    def create_first_admin(self, name: str, password: str, *, at: float | None = None) -> bool:
        """Creates ``name`` as an admin when there is no login at all -> whether it did."""
        values = _operator_values(name, OperatorRole.ADMIN, password)
        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_OPERATORS_LOCK})
            if conn.execute(select(func.count()).select_from(OPERATORS)).scalar_one():
                return False
            conn.execute(OPERATORS.insert().values(created_at=now_or(at), **values))
        return True

    def all(self) -> list[Operator]:
        """Every local login, by name."""
        with self.db.begin() as conn:
            rows = conn.execute(select(OPERATORS).order_by(OPERATORS.c.name)).all()
        return [_operator(r) for r in rows]

    def get(self, name: str) -> Operator | None:
        with self.db.begin() as conn:
            r = conn.execute(select(OPERATORS).where(OPERATORS.c.name == name)).first()
        return None if r is None else _operator(r)

    def remove(self, name: str) -> bool:
        """Deletes the login -> whether there was one."""
        with self.db.begin() as conn:
            gone = conn.execute(OPERATORS.delete().where(OPERATORS.c.name == name)).rowcount
        if gone:
            log.info("dashboard login %r removed", name)
        return bool(gone)

    def authenticate(self, name: str, password: str, *, max_failures: int = 5,
                     lockout_s: float = 300.0, at: float | None = None) -> Operator:
        """The login ``name`` if ``password`` is its password; else LoginRefusedError. After
        ``max_failures`` wrong passwords in a row the login is locked for ``lockout_s``
        (even the right password is refused then)."""
        now = now_or(at)
        q = select(OPERATORS).where(OPERATORS.c.name == name)
        refused: LoginRefusedError | None = None
        with self.db.begin() as conn:
            r = conn.execute(q.with_for_update() if conn.dialect.name == "postgresql" else q
                             ).first()
            if r is None:
                burn_time(password)
                refused = LoginRefusedError(WRONG_LOGIN)
            elif r.locked_until is not None and r.locked_until > now:
                refused = LoginRefusedError(_locked(name, r.locked_until - now), locked=True)
            elif not verify_password(password, r.password_hash):
                failures = r.failed_logins + 1
                lock = failures >= max_failures
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(
                    failed_logins=0 if lock else failures,
                    locked_until=now + lockout_s if lock else None))
                refused = (LoginRefusedError(f"{WRONG_LOGIN}; {_locked(name, lockout_s)}",
                                             locked=True)
                           if lock else LoginRefusedError(WRONG_LOGIN))
            else:
                conn.execute(update(OPERATORS).where(OPERATORS.c.name == name).values(
                    failed_logins=0, locked_until=None, last_login_at=now))
        if refused is not None:  # raised after the commit: the failure count must stick
            raise refused
        found = self.get(name)
        assert found is not None
        return found


def _operator_values(name: str, role: OperatorRole | str, password: str) -> dict[str, Any]:
    if not isinstance(name, str) or not _OPERATOR_NAME.fullmatch(name):
        raise InputError(f"a login name is 1 to 128 letters, digits or . _ @ + - (got {name!r})")
    if len(password) < MIN_LENGTH:
        raise InputError(f"a password needs at least {MIN_LENGTH} characters")
    return {"name": name, "role": enum_value(OperatorRole, role, "role"),
            "password_hash": hash_password(password), "failed_logins": 0, "locked_until": None}


def _locked(name: str, seconds: float) -> str:
    return (f"login {name!r} is locked after too many failed attempts; try again in "
            f"{math.ceil(seconds / 60)} min")


def _operator(r: Any) -> Operator:
    return Operator(name=r.name, role=OperatorRole(r.role), created_at=r.created_at,
                    last_login_at=r.last_login_at, failed_logins=r.failed_logins,
                    locked_until=r.locked_until)
