"""Read-API keys in the store (SQLite and PostgreSQL): only a hash of the secret is kept,
verification refuses anything but an active key's exact secret, revoking is for good, and the
last use is recorded without a write per request."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from streams.errors import InputError
from streams.store import ApiKeyNotFoundError, ApiScope, Store
from streams.store.api_keys import TOUCH_EVERY_S, parse_key

T0 = 1_800_000_000.0


def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        created, key = store.api_keys.create("fleet-tms", ApiScope.WRITE, at=T0)
    parsed = parse_key(key)
    assert parsed is not None and parsed[0] == created.key_id
    secret = parsed[1]
    assert key.startswith(f"vgl_{created.key_id}_") and len(secret) >= 43
    with store.db.engine.connect() as conn:
        stored = [str(v) for row in conn.execute(text("SELECT * FROM api_keys")).all()
                  for v in row]
    assert not any(key in v or secret in v for v in stored)
    assert key not in caplog.text and secret not in caplog.text
    found = store.api_keys.verify(key, at=T0 + 5)
    assert found is not None
    assert (found.key_id, found.name, found.scope) == (created.key_id, "fleet-tms",
                                                       ApiScope.WRITE)
    # A second key of the same name is another key with another secret.
    other, other_key = store.api_keys.create("fleet-tms", "read", at=T0 + 1)
    assert other.key_id != created.key_id and other_key != key
    assert [k.key_id for k in store.api_keys.all()] == [created.key_id, other.key_id]


def test_only_the_exact_key_of_an_active_key_verifies(store: Store) -> None:
    created, key = store.api_keys.create("fleet-tms", "read", at=T0)
    other, other_key = store.api_keys.create("billing", "read", at=T0)
    _, secret = parse_key(key)  # type: ignore[misc]
    _, other_secret = parse_key(other_key)  # type: ignore[misc]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in [
        "",
        "vgl_",
        secret,
        key + "x",
        key.replace("vgl_", "vgk_"),
        f"vgl_{created.key_id}_{wrong_secret}",
        f"vgl_{created.key_id}_{other_secret}",  # another key's secret under this id
        f"vgl_{'0' * 16}_{secret}",  # an id that does not exist
    ]:
        assert store.api_keys.verify(bad, at=T0) is None, bad
    assert store.api_keys.verify(f"  {key}\n", at=T0) is not None  # pasted with blanks
    assert store.api_keys.get(created.key_id).last_used_at == T0  # type: ignore[union-attr]
    assert store.api_keys.get(other.key_id).last_used_at is None  # type: ignore[union-attr]


def test_a_revoked_key_is_refused_for_good(store: Store) -> None:
    created, key = store.api_keys.create("fleet-tms", "write", at=T0)
    assert store.api_keys.verify(key, at=T0 + 1) is not None
    assert store.api_keys.revoke(created.key_id, at=T0 + 2) is True
    assert store.api_keys.revoke(created.key_id, at=T0 + 3) is False  # already
    assert store.api_keys.verify(key, at=T0 + 4) is None
    listed = store.api_keys.get(created.key_id)
    assert listed is not None and not listed.active and listed.revoked_at == T0 + 2
    with pytest.raises(ApiKeyNotFoundError, match="no API key with id 'nope'"):
        store.api_keys.revoke("nope")


def test_the_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    created, key = store.api_keys.create("fleet-tms", "read", at=T0)
    assert store.api_keys.get(created.key_id).last_used_at is None  # type: ignore[union-attr]
    assert store.api_keys.verify(key, at=T0 + 10).last_used_at == T0 + 10  # type: ignore[union-attr]
    store.api_keys.verify(key, at=T0 + 10 + TOUCH_EVERY_S / 2)
    assert store.api_keys.get(created.key_id).last_used_at == T0 + 10  # type: ignore[union-attr]
    store.api_keys.verify(key, at=T0 + 10 + TOUCH_EVERY_S)
    assert (store.api_keys.get(created.key_id).last_used_at  # type: ignore[union-attr]
            == T0 + 10 + TOUCH_EVERY_S)


@pytest.mark.parametrize(("name", "scope", "says"), [
    ("", "read", "API key name"),
    ("two words", "read", "API key name"),
    ("x" * 129, "read", "API key name"),
    ("fleet-tms", "admin", "unknown scope"),
])
def test_bad_names_and_scopes_are_refused(store: Store, name: str, scope: str, says: str
                                          ) -> None:
    with pytest.raises(InputError, match=says):
        store.api_keys.create(name, scope)
    assert store.api_keys.all() == []


def test_write_scope_includes_read() -> None:
    assert ApiScope.WRITE.allows(ApiScope.READ) and ApiScope.WRITE.allows("write")
    assert ApiScope.READ.allows("read") and not ApiScope.READ.allows(ApiScope.WRITE)
