"""The read API's exports: alerts and a driver's series as CSV and Parquet files that parse
back to what the store holds, streamed in chunks."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from api_helpers import Seeded, auth
from fastapi.testclient import TestClient

import api.app
import api.export
from streams.store import Store


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 rows: the 26 seeded alerts, and a driver's 10 windows, take several database
    reads and row groups."""
    monkeypatch.setattr(api.app, "EXPORT_CHUNK", 4)


def test_alerts_as_csv(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    r = client.get("/v1/export/alerts", headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="vigil-alerts.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    stored = api_store.alerts.find(limit=None)
    assert [row["alert_id"] for row in rows] == [a.alert_id for a in stored]
    for row, a in zip(rows, stored, strict=True):
        assert float(row["detected_at"]) == a.detected_at  # exact
        assert json.loads(row["evidence"]) == a.evidence
        assert row["status"] == a.state.value and row["severity"] == a.severity.value
        assert row["acked_by"] == (a.acked_by or "")
    # The filters of GET /v1/alerts apply.
    r = client.get("/v1/export/alerts", params={"format": "csv", "driver_id": "d-cat",
                                                "status": "unresolved"},
                   headers=auth(keys["read"]))
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["alert_id"] for row in rows] == [
        a.alert_id for a in stored if a.driver_id == "d-cat" and a.state.value != "resolved"]
    empty = client.get("/v1/export/alerts", params={"driver_id": "nobody"},
                       headers=auth(keys["read"]))
    assert empty.text.splitlines() == [",".join(api.export.ALERT_COLUMNS)]


def test_alerts_as_parquet(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    r = client.get("/v1/export/alerts", params={"format": "parquet"},
                   headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.headers["content-disposition"].endswith('filename="vigil-alerts.parquet"')
    parquet = pq.ParquetFile(io.BytesIO(r.content))
    assert parquet.metadata.num_row_groups == 7  # 26 alerts, 4 a chunk
    table = parquet.read().to_pylist()
    stored = api_store.alerts.find(limit=None)
    assert [row["alert_id"] for row in table] == [a.alert_id for a in stored]
    assert [row["detected_at"] for row in table] == [a.detected_at for a in stored]
    assert json.loads(table[0]["evidence"]) == stored[0].evidence
    assert table[0]["acked_at"] is None  # missing stays missing
    r = client.get("/v1/export/alerts", params={"format": "parquet", "severity": "info"},
                   headers=auth(keys["read"]))
    assert {row["severity"] for row in pq.read_table(io.BytesIO(r.content)).to_pylist()} == {
        "info"}
    r = client.get("/v1/export/alerts", params={"format": "parquet", "driver_id": "nobody"},
                   headers=auth(keys["read"]))
    empty = pq.read_table(io.BytesIO(r.content))
    assert empty.num_rows == 0 and empty.column_names == list(api.export.ALERT_COLUMNS)


def test_a_drivers_series_as_csv_and_parquet(
    client: TestClient, api_store: Store, seeded: Seeded, keys: dict[str, str]
) -> None:
    stored = api_store.series.of_driver("d-ben")
    r = client.get("/v1/export/drivers/d-ben/series", headers=auth(keys["read"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="vigil-series-d-ben.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [float(row["window_start"]) for row in rows] == [w.window_start for w in stored]
    assert [float(row["perclos"]) for row in rows] == [w.perclos for w in stored]
    assert json.loads(rows[0]["au_rates"]) == stored[0].au_rates
    assert rows[-1]["state"] == "drowsy" and json.loads(rows[-1]["state_reasons"])

    lo = stored[4].window_start
    r = client.get("/v1/export/drivers/d-ben/series", params={"format": "parquet", "since": lo},
                   headers=auth(keys["read"]))
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.schema.field("kss").type == "int64"
    got = table.to_pylist()
    assert [row["window_start"] for row in got] == [w.window_start for w in stored[4:]]
    assert [row["kss"] for row in got] == [w.kss for w in stored[4:]]
    assert [row["fatigue_score"] for row in got] == [w.fatigue_score for w in stored[4:]]


def test_export_errors(client: TestClient, seeded: Seeded, keys: dict[str, str]) -> None:
    r = client.get("/v1/export/drivers/d-nobody/series", headers=auth(keys["read"]))
    assert r.status_code == 404
    r = client.get("/v1/export/alerts", params={"format": "xlsx"}, headers=auth(keys["read"]))
    assert r.status_code == 422 and "parquet" in r.text
