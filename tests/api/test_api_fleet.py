"""The read API's fleet (as the dashboard's fleet page says it), drivers' time series, health
checks and its OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api_helpers import NAMES, Seeded, auth
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from dashboard import queries
from dashboard.settings import DashboardSettings
from streams.store import Store, head_revision


def test_the_fleet_says_what_the_dashboard_says(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    r = client.get("/v1/fleet", headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    drivers = {d["driver_id"]: d for d in body["drivers"]}
    assert set(drivers) == set(NAMES)
    assert {k: d["status"] for k, d in drivers.items()} == {
        "d-ana": "alert", "d-ben": "drowsy", "d-cat": "offline"}
    assert [d["driver_id"] for d in body["drivers"]] == ["d-ben", "d-cat", "d-ana"]  # worst
    ben = drivers["d-ben"]
    assert ben["name"] == "Ben Ode" and ben["vehicle_id"] == "v-2"
    assert ben["active_reasons"] == ["drowsiness"] and ben["kss"] == 9
    assert ben["open_alerts"] >= 1 and ben["last_seen"] <= seeded.now
    assert body["counts"]["drowsy"] == 1 and body["counts"]["offline"] == 1
    assert sum(body["counts"].values()) == 3
    # The dashboard's own query on the same store agrees, driver by driver.
    page = queries.fleet_status(api_store, body["generated_at"])
    for row in page.to_dict("records"):
        d = drivers[row["driver_id"]]
        assert (d["status"], d["status_detail"], d["open_alerts"], d["perclos"]) == (
            row["status"], row["status_detail"], row["open_alerts"], row["perclos"])
        assert d["last_seen"] == row["last_seen"].timestamp()


def test_a_drivers_series_by_time_and_unknown_drivers(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    stored = api_store.series.of_driver("d-ben")
    r = client.get("/v1/drivers/d-ben/series", headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    assert [w["window_start"] for w in windows] == [w.window_start for w in stored]
    assert [w["perclos"] for w in windows] == [w.perclos for w in stored]
    assert windows[-1]["kss"] == 9 and windows[-1]["state"] == "drowsy"
    assert windows[0]["au_rates"] == {"AU43": 0.02}
    lo, hi = stored[2].window_start, stored[5].window_start
    r = client.get("/v1/drivers/d-ben/series", params={"since": lo, "until": hi},
                   headers=auth(keys["read"]))
    assert [w["window_start"] for w in r.json()["windows"]] == [
        w.window_start for w in stored[2:5]]
    r = client.get("/v1/drivers/d-nobody/series", headers=auth(keys["read"]))
    assert r.status_code == 404 and "d-nobody" in r.json()["detail"]
    r = client.get("/v1/drivers/d-ben/series", params={"since": hi, "until": lo},
                   headers=auth(keys["read"]))
    assert r.status_code == 400


def test_a_drivers_series_page_by_page(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    stored = [w.window_start for w in api_store.series.of_driver("d-ben")]
    lo = stored[1]
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4, "since": lo}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/v1/drivers/d-ben/series", params=params, headers=auth(keys["read"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["limit"] == 4 and len(body["windows"]) <= 4
        pages.append([w["window_start"] for w in body["windows"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Every window from `since` on exactly once, in order, and no empty last page.
    assert [t for page in pages for t in page] == stored[1:]
    assert [len(p) for p in pages] == [4, 4, 1]
    # A cursor is one driver's: another's, or a made-up one, is refused, not misread.
    first = client.get("/v1/drivers/d-ben/series", params={"limit": 2},
                       headers=auth(keys["read"])).json()["next_cursor"]
    r = client.get("/v1/drivers/d-ana/series", params={"cursor": first},
                   headers=auth(keys["read"]))
    assert r.status_code == 400 and "another driver" in r.json()["detail"]
    r = client.get("/v1/drivers/d-ben/series", params={"cursor": "not-a-cursor"},
                   headers=auth(keys["read"]))
    assert r.status_code == 400


def test_liveness_needs_nothing_and_readiness_needs_the_database(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "schema_revision": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "schema_revision": head_revision()}
    with Store(f"sqlite:///{tmp_path / 'never-migrated.db'}") as empty:
        bare = TestClient(create_app(empty, ApiSettings(), DashboardSettings()))
        assert bare.get("/healthz").status_code == 200
        r = bare.get("/readyz")
        assert r.status_code == 503 and "vigil db migrate" in r.json()["detail"]


def test_the_openapi_document_lists_every_path_and_the_key_schemes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {
        "/v1/alerts", "/v1/alerts/{alert_id}", "/v1/alerts/{alert_id}/acknowledge",
        "/v1/alerts/{alert_id}/flag", "/v1/fleet", "/v1/drivers/{driver_id}/series",
        "/v1/export/alerts", "/v1/export/drivers/{driver_id}/series", "/healthz", "/readyz"}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "bearerFormat": "vgl_<id>_<secret>",
                                 "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == (
        "apiKey", "header", "X-API-Key")
    listing = doc["paths"]["/v1/alerts"]["get"]
    assert {next(iter(s)) for s in listing["security"]} == {"bearer", "apiKey"}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AlertPage"}
    assert {"401", "403", "400"} <= set(listing["responses"])
    assert {p["name"] for p in listing["parameters"]} >= {
        "driver_id", "vehicle_id", "reason", "severity", "status", "since", "until", "cursor",
        "limit"}
    assert "security" not in doc["paths"]["/healthz"]["get"]
    export = doc["paths"]["/v1/export/alerts"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv", "application/vnd.apache.parquet"}
    assert client.get("/docs").status_code == 200
