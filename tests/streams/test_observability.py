"""The services' health and metrics without Kafka: readiness and liveness as a probe or a
load balancer sees them over HTTP, the consumer-group readiness of a Faust app, the silent-
driver gauge and its bounded series, the served-model gauge. (Against real processes and a
real Prometheus: test_metrics_live.py.)"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from stream_helpers import http_get

from streams.observability import (
    DEFAULT_PORTS,
    MODEL_INFO,
    REGISTRY,
    CameraCollector,
    DriverSilence,
    FaustProbe,
    Health,
    Heartbeat,
    MetricsSettings,
    ObservabilityServer,
    cached,
    model_served,
    start_observability,
)
from streams.store import StoreUnavailableError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_readiness_over_http_says_which_check_fails_and_liveness_ignores_readiness() -> None:
    clock = Clock()
    beat = Heartbeat(stall_s=30, clock=clock, startup_s=300)
    clock.t += 200  # a slow start (joining the group) is not a stuck loop...
    assert beat.check() is None
    clock.t += 101  # ...up to a point
    assert "no first heartbeat (still starting) for 301 s" in (beat.check() or "")
    beat.beat()
    database_down = [True]

    def ping() -> None:
        if database_down[0]:
            raise StoreUnavailableError("database unavailable: postgresql://u:pw@db/vigil")

    health = Health("aggregator")
    health.live("event_loop", beat.check)
    health.ready("store", ping)
    with ObservabilityServer(health, port=0) as server:
        status, body = http_get(server.url + "/readyz")
        assert status == 503
        checks = json.loads(body)["checks"]
        assert checks["event_loop"] == "ok"
        assert checks["store"].startswith("StoreUnavailableError: database unavailable")
        assert "pw@" not in body  # redacted
        # A database outage is no reason to restart.
        assert http_get(server.url + "/livez")[0] == 200

        database_down[0] = False
        assert http_get(server.url + "/readyz") == (200, json.dumps(
            {"status": "ok", "checks": {"event_loop": "ok", "store": "ok"}}))

        clock.t += 31  # the event loop stopped beating
        status, body = http_get(server.url + "/livez")
        assert status == 503 and "event loop unresponsive" in json.loads(body)["checks"][
            "event_loop"]
        assert http_get(server.url + "/readyz")[0] == 503  # not live: not ready either
        beat.beat()
        assert http_get(server.url + "/livez")[0] == 200
        assert http_get(server.url + "/nope")[0] == 404


def test_each_service_serves_its_own_metrics_and_the_process_metrics() -> None:
    served = {}
    for service in ("worker", "aggregator"):
        with ObservabilityServer(Health(service), port=0) as server:
            status, body = http_get(server.url + "/metrics")
        assert status == 200
        served[service] = {f.name for f in text_string_to_metric_families(body)}
    shared = {"vigil_consumer_lag", "vigil_ready", "process_resident_memory_bytes"}
    assert {"vigil_frames_received", "vigil_inference_stage_seconds", *shared} <= \
        served["worker"]
    assert {"vigil_observations_consumed", "vigil_webhook_outbox_pending",
            "vigil_driver_seconds_since_observation", *shared} <= served["aggregator"]
    # no service reports another's metrics as zeros
    assert "vigil_webhook_outbox_pending" not in served["worker"]
    assert "vigil_frames_received" not in served["aggregator"]


def test_start_observability_logs_the_port_it_picked_and_survives_a_taken_port(
        caplog: pytest.LogCaptureFixture) -> None:
    health = Health("worker")
    caplog.set_level("INFO", logger="streams.observability")
    first = start_observability(health, MetricsSettings(port=0))
    assert first is not None
    try:
        assert f"metrics and health on http://127.0.0.1:{first.port}" in caplog.text
        assert http_get(first.url + "/livez")[0] == 200
        # Another process holds the port: the service runs on without its endpoints.
        assert start_observability(health, MetricsSettings(port=first.port)) is None
        assert "VIGIL_METRICS__PORT" in caplog.text
    finally:
        first.stop()
    assert start_observability(health, MetricsSettings(enabled=False)) is None
    assert MetricsSettings().port_for("aggregator") == DEFAULT_PORTS["aggregator"] == 9102
    assert MetricsSettings(port=0).port_for("worker") == 0


def test_a_slow_check_is_asked_at_most_once_per_interval() -> None:
    clock, calls = Clock(), []

    def ping() -> str | None:
        calls.append(clock.t)
        return None if len(calls) > 1 else "down"

    check = cached(ping, 5.0, clock=clock)
    assert [check(), check()] == ["down", "down"] and len(calls) == 1
    clock.t += 5.1
    assert check() is None and len(calls) == 2


@dataclass
class FakeSignal:
    handlers: list[Any] = field(default_factory=list)

    def connect(self, fn: Any) -> Any:
        self.handlers.append(fn)
        return fn

    def send(self, *args: Any, **kwargs: Any) -> None:
        for fn in self.handlers:
            asyncio.run(fn(None, *args, **kwargs))


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self) -> None:
        self.highwaters: dict[TP, int] = {}
        self.positions: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]

    async def position(self, tp: TP) -> int:
        return self.positions[tp]


class FakeApp:
    """The parts of a Faust app the probe uses."""

    def __init__(self) -> None:
        self.conf = type("Conf", (), {"id": "vigil-test-group"})()
        self.on_partitions_assigned = FakeSignal()
        self.on_partitions_revoked = FakeSignal()
        self.on_rebalance_complete = FakeSignal()
        self.rebalancing = False
        self.consumer = FakeConsumer()
        self.timers: list[Any] = []

    def timer(self, interval: float) -> Any:
        def register(fn: Any) -> Any:
            self.timers.append(fn)
            return fn
        return register


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("vigil_consumer_lag", {"group": group, "topic": topic,
                                                            "partition": str(partition)})


def test_a_faust_service_is_ready_once_in_its_group_and_not_while_rebalancing() -> None:
    app, health = FakeApp(), Health("worker")
    probe = FaustProbe(app, health)
    assert "joining consumer group vigil-test-group" in health.is_ready().checks["consumer"]

    frames = TP("vigil.frames.v1", 3)
    app.on_partitions_assigned.send({frames, TP("vigil-test-group-state-changelog", 3)})
    assert not health.is_ready().ok  # assigned, rebalance (recovery) not finished
    app.on_rebalance_complete.send()
    assert health.is_ready().ok
    assert REGISTRY.get_sample_value("vigil_consumer_assigned_partitions",
                                     {"group": "vigil-test-group"}) == 1  # not the changelog

    app.on_partitions_revoked.send({frames})
    assert health.is_ready().checks["consumer"] == "consumer group vigil-test-group is " \
                                                   "rebalancing"
    app.on_partitions_assigned.send({frames})
    app.on_rebalance_complete.send()
    assert health.is_ready().ok
    app.rebalancing = True  # Faust's own flag, between revocation and assignment
    assert not health.is_ready().ok

    # Lag: highwater minus position, per partition; Faust's own topics are left out.
    changelog = TP("vigil-test-group-state-changelog", 3)
    app.consumer.highwaters = {frames: 120, changelog: 50}
    app.consumer.positions = {frames: 100, changelog: 0}
    asyncio.run(probe.update_lag())
    assert _lag("vigil-test-group", "vigil.frames.v1", 3) == 20
    assert _lag("vigil-test-group", changelog.topic, 3) is None
    app.consumer.highwaters, app.consumer.positions = {}, {}  # the partition went elsewhere
    asyncio.run(probe.update_lag())
    assert _lag("vigil-test-group", "vigil.frames.v1", 3) is None

    assert app.timers and all(asyncio.iscoroutinefunction(t) for t in app.timers)


def test_silent_drivers_are_reported_and_forgotten_after_the_ttl_or_a_revocation() -> None:
    clock = Clock()
    silence = DriverSilence(ttl_s=900, clock=clock)
    silence.seen("d-talking", partition=1)
    silence.seen("d-quiet", partition=2)
    silence.seen("d-moved", partition=5)
    clock.t += 70
    silence.seen("d-talking", partition=1)
    assert silence.ages() == {"d-talking": 0.0, "d-quiet": 70.0, "d-moved": 70.0}
    silence.forget_partitions([5])  # another aggregator has its drivers now
    clock.t += 900
    (family,) = silence.collect()
    assert [(s.labels, s.value) for s in family.samples] == [({"driver": "d-talking"}, 900.0)]


def test_the_served_model_gauge_names_only_the_current_version() -> None:
    model_served("test-model", "v1")
    model_served("test-model", "v2")
    served = {s.labels["version"]: s.value for metric in MODEL_INFO.collect()
              for s in metric.samples if s.labels["model"] == "test-model"}
    assert served == {"v2": 1.0}


def test_a_camera_agents_counters_are_read_at_scrape_time() -> None:
    @dataclass
    class Stats:
        frames_captured: int = 0
        frames_sent: int = 0
        frames_dropped: int = 0
        send_failures: int = 0

    class Agent:
        driver_id, vehicle_id = "drv-7", "van-3"
        stats = Stats()
        buffered_frames = 0

    agent = Agent()
    collector = CameraCollector(agent)
    agent.stats.frames_captured, agent.stats.frames_sent, agent.buffered_frames = 40, 32, 8
    samples = {s.name: s for family in collector.collect() for s in family.samples}
    assert samples["vigil_camera_frames_captured_total"].value == 40
    assert samples["vigil_camera_frames_sent_total"].value == 32
    assert samples["vigil_camera_buffered_frames"].value == 8
    assert samples["vigil_camera_info"].labels == {"driver": "drv-7", "vehicle": "van-3"}
