"""The read API's alerts: keyset pages over more alerts than a page, filters, one alert, and
the write actions (acknowledge, flag) as the store and the dashboard then see them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api_helpers import PAGE, Seeded, auth
from fastapi.testclient import TestClient

from dashboard import queries
from streams.schemas import AlertState, Severity
from streams.store import AlertFlag, Store, StoredAlert


def walk(client: TestClient, key: str, **params: Any) -> tuple[list[str], int]:
    """Every alert id the pages give, following next_cursor -> (ids, pages)."""
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/alerts", params=query, headers=auth(key))
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        assert len(body["items"]) <= body["limit"]
        ids += [a["alert_id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages
        assert pages < 100, "next_cursor never ends"


def test_pages_give_every_alert_once_newest_first(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    everything = [a.alert_id for a in api_store.alerts.find(limit=None)]
    assert len(everything) == seeded.old_alerts + 1 > 2 * PAGE
    ids, pages = walk(client, keys["read"], limit=4)
    assert ids == everything  # no duplicate, no gap, the store's order (ties by id)
    assert pages == -(-len(everything) // 4)
    # Asking for more than a page allows gets a full page of the cap, and a cursor.
    r = client.get("/v1/alerts", params={"limit": 1000}, headers=auth(keys["read"]))
    body = r.json()
    assert body["limit"] == PAGE and len(body["items"]) == PAGE
    assert body["next_cursor"] is not None
    first = body["items"][0]
    assert first["alert_id"] == seeded.drowsy_alert
    assert first["status"] == "open" and first["reason"] == "drowsiness"
    assert "perclos" in first["evidence_summary"]  # the dashboard's reading of the evidence


def test_filters_select_what_the_store_holds(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    everything = api_store.alerts.find(limit=None)

    def expect(keep: Any) -> list[str]:
        return [a.alert_id for a in everything if keep(a)]

    def got(**params: Any) -> list[str]:
        return walk(client, keys["read"], limit=3, **params)[0]

    assert got(driver_id="d-ben") == expect(lambda a: a.driver_id == "d-ben")
    assert got(vehicle_id="v-3") == expect(lambda a: a.vehicle_id == "v-3")
    assert got(severity="critical", reason="microsleep") == expect(
        lambda a: a.severity is Severity.CRITICAL and a.reason.value == "microsleep")
    assert got(status="acked") == expect(lambda a: a.state is AlertState.ACKED)
    assert len(got(status="acked")) == 4
    assert got(status="unresolved") == expect(lambda a: a.state is not AlertState.RESOLVED)
    assert len(got(status="resolved")) == 3
    lo, hi = seeded.now - 3600 - 5 * 60, seeded.now - 3600 - 60
    in_range = expect(lambda a: lo <= a.detected_at < hi)
    assert len(in_range) == 8
    assert got(since=lo, until=hi) == in_range  # epoch seconds
    # ISO 8601 has microseconds: bounds between alerts, with and without a zone (UTC)
    iso = {"since": datetime.fromtimestamp(lo - 30, UTC).isoformat(),
           "until": datetime.fromtimestamp(hi - 30, UTC).replace(tzinfo=None).isoformat()}
    assert got(**iso) == in_range
    assert got(driver_id="nobody") == []


def test_malformed_cursors_and_filters_are_refused_clearly(
    client: TestClient, seeded: Seeded, keys: dict[str, str]
) -> None:
    headers = auth(keys["read"])
    for cursor in ["not-a-cursor", "W10", "eyJhIjoxfQ", "x" * 600]:
        r = client.get("/v1/alerts", params={"cursor": cursor}, headers=headers)
        assert r.status_code == 400, cursor
        assert "malformed cursor" in r.json()["detail"]
    r = client.get("/v1/alerts", params={"severity": "loud"}, headers=headers)
    assert r.status_code == 422 and "severity" in r.text and "critical" in r.text
    r = client.get("/v1/alerts", params={"status": "gone"}, headers=headers)
    assert r.status_code == 422 and "unresolved" in r.text
    r = client.get("/v1/alerts", params={"since": "yesterday"}, headers=headers)
    assert r.status_code == 422 and "since" in r.text
    r = client.get("/v1/alerts", params={"since": 2000, "until": 1000}, headers=headers)
    assert r.status_code == 400 and r.json()["detail"] == "since must be before until"
    r = client.get("/v1/alerts", params={"limit": 0}, headers=headers)
    assert r.status_code == 422


def test_one_alert_and_unknown_ones(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    r = client.get(f"/v1/alerts/{seeded.drowsy_alert}", headers=auth(keys["read"]))
    assert r.status_code == 200
    stored = api_store.alerts.get(seeded.drowsy_alert)
    assert stored is not None
    body = r.json()
    assert body["detected_at"] == stored.detected_at  # exact epoch seconds
    assert body["evidence"] == stored.evidence and body["driver_id"] == "d-ben"
    r = client.get("/v1/alerts/no-such-alert", headers=auth(keys["read"]))
    assert r.status_code == 404 and "no-such-alert" in r.json()["detail"]


def _dashboard_row(store: Store, alert_id: str) -> dict[str, Any]:
    frame = queries.alerts(store, state=None, limit=1000)
    return frame[frame["alert_id"] == alert_id].iloc[0].to_dict()


def test_acknowledge_is_recorded_once_under_the_key_name(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    url = f"/v1/alerts/{seeded.drowsy_alert}/acknowledge"
    r = client.post(url, headers=auth(keys["write"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["result"], body["changed"]) == ("acknowledged", True)
    assert body["alert"]["status"] == "acked" and body["alert"]["acked_by"] == "api:tms-write"
    stored = api_store.alerts.get(seeded.drowsy_alert)
    assert stored is not None and stored.state is AlertState.ACKED
    assert stored.acked_by == "api:tms-write"
    row = _dashboard_row(api_store, seeded.drowsy_alert)  # what the alerts page shows
    assert (row["state"], row["acked_by"]) == ("acked", "api:tms-write")
    # Again (a client's retry): nothing changes.
    again = client.post(url, headers=auth(keys["write"])).json()
    assert again["changed"] is False and again["alert"]["acked_at"] == stored.acked_at
    assert client.post("/v1/alerts/nope/acknowledge",
                       headers=auth(keys["write"])).status_code == 404


def test_flags_feed_retraining_and_a_retry_records_nothing(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    url = f"/v1/alerts/{seeded.drowsy_alert}/flag"
    verdict = {"label": "false_positive", "note": "  driver was reading a map  "}
    r = client.post(url, json=verdict, headers=auth(keys["write"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True and body["result"] == "flagged false positive"
    assert body["alert"]["flag"] == "false_positive"
    history = api_store.alerts.flag_history(seeded.drowsy_alert)
    assert [(h.label, h.flagged_by, h.note) for h in history] == [
        (AlertFlag.FALSE_POSITIVE, "api:tms-write", "driver was reading a map")]
    flagged: list[StoredAlert] = api_store.alerts.flagged()  # what `vigil retrain` reads
    assert [a.alert_id for a in flagged] == [seeded.drowsy_alert]
    assert _dashboard_row(api_store, seeded.drowsy_alert)["flag"] == "false_positive"

    retry = client.post(url, json=verdict, headers=auth(keys["write"])).json()
    assert retry["changed"] is False
    assert len(api_store.alerts.flag_history(seeded.drowsy_alert)) == 1
    changed = client.post(url, json={"label": "true_positive"}, headers=auth(keys["write"]))
    assert changed.json()["changed"] is True
    stored = api_store.alerts.get(seeded.drowsy_alert)
    assert stored is not None and stored.flag is AlertFlag.TRUE_POSITIVE
    assert len(api_store.alerts.flag_history(seeded.drowsy_alert)) == 2

    r = client.post(url, json={"label": "maybe"}, headers=auth(keys["write"]))
    assert r.status_code == 422 and "true_positive" in r.text
    r = client.post("/v1/alerts/nope/flag", json=verdict, headers=auth(keys["write"]))
    assert r.status_code == 404
