"""Metrics and health of the real services, read the way an operator reads them: a real
Prometheus server (Debian's ``prometheus``) scrapes a real `vigil worker` and `vigil
aggregator` (embedded Kafka, PostgreSQL, a signed-webhook receiver) while a simulated camera
streams 12 s of a drowsy driver; the assertions are PromQL queries through Prometheus' HTTP
API, with deploy/prometheus/alerts.yml loaded and every Grafana panel's query evaluated."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import http_get, spawn

from streams.broker import EmbeddedBroker
from streams.camera import CameraAgent, open_source
from streams.processes import free_port, start_child, stop_child
from streams.webhooks.receiver import BackgroundReceiver
from streams.webhooks.signing import generate_secret
from vigil.sources import SOURCES

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
FPS, FRAMES, DRIVER = 15, 180, "cam-drowsy"  # 12 s; seed 3's first microsleep is at 8.5 s


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, (path, params, status, body)
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query -> {labels (without __name__): value}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        log.debug("%s -> %s", expr, json.dumps(data["result"]))
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")):
                float(r["value"][1]) for r in data["result"]}

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return next(iter(result.values()), None)

    def wait(self, expr: str, ok: Callable[[float | None], bool], timeout_s: float,
             why: Callable[[], str]) -> float | None:
        deadline = time.monotonic() + timeout_s
        while not ok(value := self.value(expr)):
            assert time.monotonic() < deadline, f"{expr} = {value}; {why()}"
            time.sleep(1)
        return value


def test_prometheus_scrapes_the_worker_and_aggregator_and_their_health(
        pg_schema_url: str, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Prometheus is required (Debian package `prometheus`; scripts/install.sh "
                    "--test installs it)")
    secret = generate_secret()
    worker_port, aggregator_port, prom_port = free_port(), free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "vigil-worker",
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "vigil-aggregator",
             "static_configs": [{"targets": [f"127.0.0.1:{aggregator_port}"]}]},
        ]}))
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "aggregator", "prometheus")}

    def tails() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in logs.values()
                         if p.exists())

    with EmbeddedBroker() as broker, BackgroundReceiver([secret]) as receiver:
        broker.create_topics()
        env = {"VIGIL_DATABASE__URL": pg_schema_url, "VIGIL_LOG__FORMAT": "json",
               "VIGIL_WEBHOOKS__ENDPOINTS": json.dumps(
                   [{"name": "fleet", "url": receiver.url, "secrets": [secret]}])}
        procs: list[subprocess.Popen[bytes]] = [
            spawn(["worker", "--bootstrap", broker.bootstrap],
                  {**env, "VIGIL_METRICS__PORT": str(worker_port)}, logs["worker"]),
            spawn(["aggregator", "--bootstrap", broker.bootstrap],
                  {**env, "VIGIL_METRICS__PORT": str(aggregator_port)}, logs["aggregator"]),
            start_child([binary, f"--config.file={config}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address=127.0.0.1:{prom_port}"], logs["prometheus"]),
        ]
        try:
            # Both services ready: in their consumer groups, the aggregator's store reachable.
            deadline = time.monotonic() + 180
            ready: dict[int, tuple[int | None, str]] = {}
            while not all(r[0] == 200 for r in ready.values()) or len(ready) < 2:
                assert time.monotonic() < deadline, f"not ready: {ready}\n{tails()}"
                assert all(p.poll() is None for p in procs), tails()
                ready = {port: http_get(f"http://127.0.0.1:{port}/readyz")
                         for port in (worker_port, aggregator_port)}
                time.sleep(1)
            assert json.loads(ready[aggregator_port][1])["checks"] == {
                "event_loop": "ok", "consumer": "ok", "store": "ok"}

            source, _ = open_source("sim:drowsy:3", fps=FPS, schemes=SOURCES)
            camera = CameraAgent(broker.bootstrap, DRIVER, "van-9", fps=FPS, batch=8)
            streaming = threading.Thread(target=camera.run, args=(source, False, FRAMES),
                                         kwargs={"nominal_times": True})
            streaming.start()
            prom = Prometheus(f"http://127.0.0.1:{prom_port}")
            # Every frame in, observed, and taken in by the aggregator, as Prometheus saw it.
            prom.wait('vigil_observations_consumed_total{job="vigil-aggregator"}',
                      lambda v: v == FRAMES, 240, tails)
            streaming.join(60)
            assert camera.stats.frames_sent == FRAMES
            # Each target is scraped on its own schedule: the worker's latest sample may
            # predate the aggregator's.
            prom.wait('vigil_observations_published_total{job="vigil-worker"}',
                      lambda v: v == FRAMES, 60, tails)

            assert prom.value('vigil_frames_received_total{job="vigil-worker"}') == FRAMES
            # observations out = frames in, as one query
            assert prom.value('vigil_observations_published_total{job="vigil-worker"} - '
                              'vigil_frames_received_total{job="vigil-worker"}') == 0
            for expr in ('up{job=~"vigil-.*"}', "vigil_ready"):  # scraped, and ready
                assert sorted(prom.query(expr).values()) == [1.0, 1.0], expr
            stages = prom.query('vigil_inference_stage_seconds_count{job="vigil-worker"}')
            assert {dict(k)["stage"]: v for k, v in stages.items()} == {
                "decode": FRAMES, "face": FRAMES, "signals": FRAMES}
            p99 = prom.query('histogram_quantile(0.99, sum by (le, stage) '
                             '(rate(vigil_inference_stage_seconds_bucket[1m])))')
            assert len(p99) == 3 and all(0 < v < 10 for v in p99.values()), p99
            models = {dict(k)["model"]: dict(k)["version"] for k in prom.query("vigil_model_info")}
            assert models == {"eyestate": "shipped", "drowsiness-blinks": "shipped"}
            silence = prom.query("vigil_driver_seconds_since_observation")
            assert [dict(k)["driver"] for k in silence] == [DRIVER]
            assert all(0 <= v < 60 for v in silence.values())
            assert prom.value('count(vigil_consumer_lag{topic="vigil.frames.v1"})') == 8
            prom.wait('sum(vigil_consumer_lag{group="vigil-inference"})', lambda v: v == 0, 60,
                      tails)
            assert not prom.query("vigil_dead_letters_total")

            # The drowsy driver's microsleep: stored once, and its webhook delivered.
            alerts = prom.wait('sum(vigil_alerts_total{reason=~"microsleep|sleep"})',
                               lambda v: bool(v), 60, tails)
            assert alerts is not None and alerts >= 1
            prom.wait('sum(vigil_webhook_attempts_total{endpoint="fleet",outcome="delivered"})'
                      ' - sum(vigil_alerts_total)', lambda v: v == 0, 60, tails)
            assert prom.value("vigil_webhook_outbox_pending") == 0
            assert prom.value('sum(vigil_store_write_seconds_count{operation="alert"})') == \
                prom.value("sum(vigil_alerts_total)")

            # The alert rules load and evaluate on these series; every dashboard query runs.
            rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            assert len(rules) >= 9 and {r["health"] for r in rules} == {"ok"}, rules
            firing = {r["name"] for r in rules if r["state"] == "firing"}
            assert not firing, firing
            dashboard = json.loads((ROOT / "deploy" / "grafana" / "vigil.json").read_text())
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    prom.api("query", query=target["expr"])  # asserts success

            # /livez over HTTP, and the logs: JSON lines, INFO from inside Faust's loop kept.
            assert http_get(f"http://127.0.0.1:{worker_port}/livez")[0] == 200
        finally:
            for p in procs:
                stop_child(p)
    lines = [json.loads(line) for line in logs["worker"].read_text().splitlines()
             if line.startswith("{")]
    assert lines and all({"timestamp", "level", "logger", "service", "message"} <= set(line)
                         for line in lines)
    # logged from a signal handler on Faust's loop: Faust left the log's level and format be
    assert any(line["level"] == "INFO" and line["logger"] == "streams.observability"
               and "partitions of Vigil's topics assigned" in line["message"]
               and line["service"] == "worker" for line in lines), lines[-20:]
    aggregator = [json.loads(line) for line in logs["aggregator"].read_text().splitlines()
                  if line.startswith("{")]
    stored = [line for line in aggregator if " stored (new)" in line["message"]]
    assert stored and all(line.get("driver") == DRIVER for line in stored)
    assert secret.removeprefix("whsec_") not in logs["aggregator"].read_text()
