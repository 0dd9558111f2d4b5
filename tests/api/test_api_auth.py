"""API keys on the read API: no key, a wrong or revoked key -> 401; a read key on a write
route -> 403 (and nothing changes); both ways of sending a key work; keys never reach the
table or the logs."""

from __future__ import annotations

import logging

import pytest
from api_helpers import Seeded, auth
from fastapi.testclient import TestClient
from sqlalchemy import text

from streams.schemas import AlertState
from streams.store import Store
from streams.store.api_keys import parse_key

READS = ["/v1/alerts", "/v1/fleet", "/v1/drivers/d-ana/series", "/v1/export/alerts"]


def test_every_v1_route_needs_a_valid_key(
    client: TestClient, seeded: Seeded, keys: dict[str, str]
) -> None:
    key_id, secret = parse_key(keys["read"])  # type: ignore[misc]
    wrong = f"vgl_{key_id}_{secret[::-1]}"
    for path in [*READS, f"/v1/alerts/{seeded.drowsy_alert}"]:
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert "X-API-Key" in r.json()["detail"]
        for bad in [wrong, "vgl_nonsense", secret]:
            r = client.get(path, headers=auth(bad))
            assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"
        assert client.get(path, headers={"Authorization": f"Basic {secret}"}
                          ).status_code == 401
        assert client.get(path, headers=auth(keys["read"])).status_code == 200, path
        assert client.get(path, headers={"X-API-Key": keys["read"]}).status_code == 200
        assert client.get(path, headers=auth(keys["write"])).status_code == 200  # includes


def test_a_read_key_cannot_write(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    for action, body in [("acknowledge", None), ("flag", {"label": "true_positive"})]:
        r = client.post(f"/v1/alerts/{seeded.drowsy_alert}/{action}", json=body,
                        headers=auth(keys["read"]))
        assert r.status_code == 403, action
        assert "scope is read" in r.json()["detail"] and "write" in r.json()["detail"]
        assert client.post(f"/v1/alerts/{seeded.drowsy_alert}/{action}", json=body
                           ).status_code == 401
    stored = api_store.alerts.get(seeded.drowsy_alert)
    assert stored is not None and stored.state is AlertState.OPEN and stored.flag is None


def test_a_revoked_key_is_refused_at_once(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    assert client.get("/v1/fleet", headers=auth(keys["write"])).status_code == 200
    key_id = parse_key(keys["write"])[0]  # type: ignore[index]
    assert api_store.api_keys.revoke(key_id)
    r = client.get("/v1/fleet", headers=auth(keys["write"]))
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"
    assert client.post(f"/v1/alerts/{seeded.drowsy_alert}/acknowledge",
                       headers=auth(keys["write"])).status_code == 401
    assert client.get("/v1/fleet", headers=auth(keys["read"])).status_code == 200  # others
    listed = api_store.api_keys.get(key_id)
    assert listed is not None and listed.last_used_at is not None  # its use was recorded


def test_keys_never_reach_the_table_or_the_logs(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str],
    caplog: pytest.LogCaptureFixture
) -> None:
    secrets = [parse_key(k)[1] for k in keys.values()]  # type: ignore[index]
    with caplog.at_level(logging.DEBUG):
        client.get("/v1/fleet", headers=auth(keys["read"]))
        client.get("/v1/fleet", headers=auth(keys["read"] + "x"))  # refused, logged
        client.post(f"/v1/alerts/{seeded.drowsy_alert}/acknowledge",
                    headers=auth(keys["read"]))  # 403, logged
        client.post(f"/v1/alerts/{seeded.drowsy_alert}/acknowledge",
                    headers={"X-API-Key": keys["write"]})
    assert "refused API key" in caplog.text and "lacks scope write" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
    with api_store.db.engine.connect() as conn:
        cells = [str(v) for row in conn.execute(text("SELECT * FROM api_keys")).all()
                 for v in row]
    assert len(cells) == 2 * 7
    for key, secret in zip(keys.values(), secrets, strict=True):
        assert not any(key in c or secret in c for c in cells)
