"""The read API's /metrics: no key needed, Prometheus' content type, requests counted by route
template (never the raw path: ids are no label values), method and status, their latency, the
API's readiness, and no other service's metrics. The registry is the process's, shared with
every test before this one: the counts are checked as increases."""

from __future__ import annotations

from api_helpers import Seeded, auth
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.settings import ApiSettings
from dashboard.settings import DashboardSettings
from streams.store import Store

UNKNOWN = "no-such-alert-7f3a9c"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> tuple[str, Samples]:
    r = client.get("/metrics")  # no key: unauthenticated, as /healthz
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}
    return r.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_and_status(
    client: TestClient, seeded: Seeded, keys: dict[str, str]
) -> None:
    _, before = scrape(client)
    assert client.get("/v1/alerts", headers=auth(keys["read"])).status_code == 200
    assert client.get(f"/v1/alerts/{UNKNOWN}", headers=auth(keys["read"])).status_code == 404
    assert client.get("/v1/fleet").status_code == 401
    assert client.get(f"/nowhere/{UNKNOWN}").status_code == 404
    assert client.request("BREW", "/v1/alerts").status_code == 405  # a method of its own
    body, after = scrape(client)

    def increase(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "vigil_api_requests_total"
    assert increase(requests, route="/v1/alerts", method="GET", status="200") == 1
    assert increase(requests, route="/v1/alerts/{alert_id}", method="GET", status="404") == 1
    assert increase(requests, route="/v1/fleet", method="GET", status="401") == 1
    assert increase(requests, route="unmatched", method="GET", status="404") == 1
    assert increase(requests, route="/v1/alerts", method="other", status="405") == 1
    assert UNKNOWN not in body  # the raw path is never a label value
    assert increase("vigil_api_request_seconds_count", route="/v1/alerts", method="GET") == 1
    assert increase("vigil_api_request_seconds_count", route="/v1/alerts/{alert_id}",
                    method="GET") == 1
    assert value(after, "vigil_api_request_seconds_sum", route="/v1/alerts", method="GET") > 0
    # the first scrape was counted too (its own counts come in the next one)
    assert increase(requests, route="/metrics", method="GET", status="200") >= 1

    families = {f.name for f in text_string_to_metric_families(body)}
    assert {"vigil_api_requests", "vigil_api_request_seconds", "vigil_ready",
            "vigil_build_info", "process_resident_memory_bytes"} <= families
    # no other service's metrics, not even as zeros
    assert not families & {"vigil_frames_received", "vigil_consumer_lag",
                           "vigil_webhook_outbox_pending", "vigil_store_write_seconds"}
    assert value(after, "vigil_ready") == 1  # the database answers, its schema is current
    assert [labels for (name, labels) in after if name == "vigil_build_info"
            and ("service", "api") in labels]


def test_metrics_are_not_in_the_openapi_document(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_request_whose_handler_raised_counts_as_a_500(api_store: Store) -> None:
    app = create_app(api_store, ApiSettings(), DashboardSettings())

    @app.get("/v1/boom/{thing}")
    def boom(thing: str) -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        _, before = scrape(client)
        assert client.get("/v1/boom/x1").status_code == 500
        _, after = scrape(client)
    labels = {"route": "/v1/boom/{thing}", "method": "GET", "status": "500"}
    assert value(after, "vigil_api_requests_total", **labels) - \
        value(before, "vigil_api_requests_total", **labels) == 1
