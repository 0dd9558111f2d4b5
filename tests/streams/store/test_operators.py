"""The dashboard's local logins in the store (SQLite and PostgreSQL) and `vigil users` as an
administrator runs it: salted scrypt hashes, never the password; lockout after repeated
wrong passwords; one first admin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from streams.errors import InputError
from streams.store import LoginRefusedError, OperatorRole, Store

T0 = 1_800_000_000.0


def test_passwords_are_stored_salted_and_hashed(store: Store) -> None:
    assert store.operators.set("ana", OperatorRole.OPERATOR, "same-password") is True
    assert store.operators.set("ben", "viewer", "same-password") is True
    with store.db.engine.connect() as conn:
        hashes = dict(conn.execute(text("SELECT name, password_hash FROM operators")).all())
    assert all(h.startswith("scrypt$") and "same-password" not in h for h in hashes.values())
    assert hashes["ana"] != hashes["ben"]  # a salt per password
    assert store.operators.authenticate("ana", "same-password").role == OperatorRole.OPERATOR
    assert [(o.name, o.role) for o in store.operators.all()] == [
        ("ana", OperatorRole.OPERATOR), ("ben", OperatorRole.VIEWER)]
    # Adding again changes role and password.
    assert store.operators.set("ana", OperatorRole.ADMIN, "another-password") is False
    with pytest.raises(LoginRefusedError, match="wrong name or password"):
        store.operators.authenticate("ana", "same-password")
    assert store.operators.authenticate("ana", "another-password").role == OperatorRole.ADMIN
    assert store.operators.remove("ana") is True and store.operators.remove("ana") is False
    with pytest.raises(LoginRefusedError, match="wrong name or password"):
        store.operators.authenticate("ana", "another-password")


@pytest.mark.parametrize(("name", "password", "says"), [
    ("", "long-enough", "login name"),
    ("two words", "long-enough", "login name"),
    ("x" * 129, "long-enough", "login name"),
    ("ana", "short", "at least 8"),
])
def test_bad_names_and_short_passwords_are_refused(
    store: Store, name: str, password: str, says: str
) -> None:
    with pytest.raises(InputError, match=says):
        store.operators.set(name, OperatorRole.VIEWER, password)
    with pytest.raises(InputError, match="unknown role"):
        store.operators.set("ana", "root", "long-enough")
    assert store.operators.all() == []


def test_repeated_wrong_passwords_lock_the_login_for_a_while(store: Store) -> None:
    store.operators.set("ana", OperatorRole.OPERATOR, "right-password")
    for i in range(2):
        with pytest.raises(LoginRefusedError) as caught:
            store.operators.authenticate("ana", f"guess-{i}", max_failures=3, lockout_s=300,
                                         at=T0 + i)
        assert not caught.value.locked
    assert store.operators.get("ana").failed_logins == 2  # type: ignore[union-attr]
    with pytest.raises(LoginRefusedError, match="locked") as caught:
        store.operators.authenticate("ana", "guess-2", max_failures=3, lockout_s=300, at=T0 + 2)
    assert caught.value.locked
    # Locked: even the right password is refused until the lockout ends.
    with pytest.raises(LoginRefusedError, match="try again in 5 min"):
        store.operators.authenticate("ana", "right-password", max_failures=3, lockout_s=300,
                                     at=T0 + 3)
    ok = store.operators.authenticate("ana", "right-password", max_failures=3, lockout_s=300,
                                      at=T0 + 303)
    assert (ok.failed_logins, ok.locked_until, ok.last_login_at) == (0, None, T0 + 303)
    # A success resets the count: two more failures do not lock it.
    for i in range(2):
        with pytest.raises(LoginRefusedError):
            store.operators.authenticate("ana", "nope-nope", max_failures=3, at=T0 + 310 + i)
    ok = store.operators.authenticate("ana", "right-password", max_failures=3, at=T0 + 320)
    assert ok.name == "ana"


def test_one_first_admin_only(store: Store) -> None:
    assert store.operators.create_first_admin("admin", "first-password") is True
    assert store.operators.create_first_admin("admin", "second-password") is False
    assert store.operators.create_first_admin("other", "second-password") is False
    assert [(o.name, o.role) for o in store.operators.all()] == [("admin", OperatorRole.ADMIN)]
    assert store.operators.authenticate("admin", "first-password").role == OperatorRole.ADMIN


def vigil(*args: str, stdin: str = "", env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil", *args], input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_vigil_users_add_list_remove(pg_schema_url: str) -> None:
    env = {"VIGIL_DATABASE__URL": pg_schema_url}
    env_no_password = {**env, "VIGIL_USER_PASSWORD": ""}
    added = vigil("users", "add", "ana", "--role", "operator", "--password-stdin",
                  stdin="piped-password\n", env=env_no_password)
    assert added.returncode == 0, added.stderr
    added = vigil("users", "add", "ben", "--role", "admin",
                  env={**env, "VIGIL_USER_PASSWORD": "env-password"})
    assert added.returncode == 0, added.stderr
    # No terminal, no stdin flag, no variable: refused, nothing created.
    refused = vigil("users", "add", "cy", "--role", "viewer", env=env_no_password)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    listed = vigil("users", "list", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["role"]) for r in rows] == [("ana", "operator"), ("ben", "admin")]
    everything = "".join(p.stdout + p.stderr for p in (added, refused, listed))
    assert "piped-password" not in everything and "env-password" not in everything
    assert not any("hash" in key for key in rows[0])
    with Store(pg_schema_url) as store:
        assert store.operators.authenticate("ana", "piped-password").role == OperatorRole.OPERATOR
        assert store.operators.authenticate("ben", "env-password").role == OperatorRole.ADMIN
    assert vigil("users", "remove", "ana", env=env).returncode == 0
    gone = vigil("users", "remove", "ana", env=env)
    assert gone.returncode == 2 and "no dashboard login 'ana'" in gone.stderr
    assert [ln.split()[0] for ln in vigil("users", "list", env=env).stdout.splitlines()] == ["ben"]
