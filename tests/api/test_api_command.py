"""`vigil api keys` as an administrator runs it, and `vigil api` as a real server answering an
authenticated request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from api_helpers import Seeded, seed
from stream_helpers import http_get, spawn

from streams.processes import free_port, stop_child
from streams.store import Store
from streams.store.api_keys import parse_key
from vigil.cli import main


def test_keys_are_created_listed_and_revoked_from_the_command_line(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIL_DATABASE__URL", pg_schema_url)
    assert main(["api", "keys", "list"]) == 2  # never migrated: a listing creates nothing
    assert "vigil db migrate" in capsys.readouterr().err

    assert main(["api", "keys", "create", "fleet-tms", "--scope", "write"]) == 0
    key = capsys.readouterr().out.strip()  # the key alone on stdout
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed

    assert main(["api", "keys", "list"]) == 0
    out = capsys.readouterr().out
    assert out.split() == [key_id, "write", "active", "-", "fleet-tms"]  # never used yet
    assert main(["api", "keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["key_id"], listed["scope"], listed["revoked_at"]) == (key_id, "write", None)
    assert secret not in json.dumps(listed)

    with Store(pg_schema_url) as store:
        assert store.api_keys.verify(key) is not None
        assert main(["api", "keys", "revoke", key_id]) == 0
        assert store.api_keys.verify(key) is None
    capsys.readouterr()
    assert main(["api", "keys", "list"]) == 0
    _, _, state, used, _ = capsys.readouterr().out.split()
    assert state == "revoked" and used.endswith("Z")  # the use verify() recorded
    assert main(["api", "keys", "revoke", "0123456789abcdef"]) == 2
    assert "no API key with id" in capsys.readouterr().err
    assert main(["api", "keys", "create", "two words"]) == 2


def test_vigil_api_serves_authenticated_requests(
    pg_schema_url: str, tmp_path: Path
) -> None:
    with Store(pg_schema_url) as store:
        store.migrate()
        seeded: Seeded = seed(store, time.time())
        _, key = store.api_keys.create("fleet-tms", "read")
    port = free_port()
    log = tmp_path / "api.log"
    proc = spawn(["api", "--port", str(port)], {"VIGIL_DATABASE__URL": pg_schema_url}, log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"vigil api exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"vigil api never answered: {log.read_text()}"
            if http_get(base + "/readyz")[0] == 200:  # None: not listening yet
                break
            time.sleep(0.2)
        assert http_get(base + "/v1/fleet")[0] == 401
        status, body = http_get(base + "/v1/fleet", {"X-API-Key": key})
        assert status == 200
        assert {d["driver_id"] for d in json.loads(body)["drivers"]} == {
            "d-ana", "d-ben", "d-cat"}
        status, body = http_get(f"{base}/v1/alerts/{seeded.drowsy_alert}", {"X-API-Key": key})
        assert status == 200 and json.loads(body)["reason"] == "drowsiness"
    finally:
        stop_child(proc)
    assert proc.returncode is not None
    text = log.read_text()
    assert f"read API on http://127.0.0.1:{port}" in text
    assert "GET /v1/fleet" in text  # uvicorn's access lines go through Vigil's logging
    assert parse_key(key)[1] not in text  # type: ignore[index]
