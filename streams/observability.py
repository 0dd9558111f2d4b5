"""Metrics, liveness and readiness of Vigil's services (DESIGN §8).

- Every metric Vigil exports is declared here, in one registry (:data:`REGISTRY`, with the
  process, platform and garbage-collector metrics of ``prometheus_client``), so the names
  stay consistent and the README's list, the alert rules and the Grafana dashboard can be
  checked against it. Labels are few and bounded (reasons, stages, models, endpoints,
  topic-partitions); only ``vigil_driver_seconds_since_observation`` has a driver label, and
  a driver's series goes once it has been silent for ``driver_series_ttl_s``.
- :class:`Health`: named liveness and readiness checks; a check answers None when fine, else
  why not. :class:`Heartbeat` tells a responsive event loop from a stuck one.
- :class:`ObservabilityServer`: ``/metrics`` (Prometheus text format), ``/livez`` and
  ``/readyz`` (JSON; 200 or 503) over HTTP on a thread of its own, so a scrape still answers
  while the event loop is busy (and ``/livez`` says that it is).
- :class:`FaustProbe`: a Faust app's readiness (it joined its consumer group and the
  rebalance finished), event-loop heartbeat and consumer lag per topic-partition.
- The read API (service ``api``) has no side port: it serves its own families
  (:class:`ServiceMetrics`) at ``/metrics`` of its HTTP port (:mod:`api.app`).

Settings: :class:`MetricsSettings` (``VIGIL_METRICS__ENABLED``, ``HOST``, ``PORT``; each
service has its own default port, :data:`DEFAULT_PORTS`; port 0 picks a free one, logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streams.redaction import redact
from streams.settings import VigilSettings

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"worker": 9101, "aggregator": 9102, "camera": 9103, "dashboard": 9104}


class MetricsSettings(VigilSettings):
    """``VIGIL_METRICS__*``: the HTTP endpoints of a service (``/metrics``, ``/livez``,
    ``/readyz``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_METRICS__", extra="ignore")

    enabled: bool = True
    # 127.0.0.1 keeps the endpoints on the machine; containers set 0.0.0.0 to be scraped.
    host: str = "127.0.0.1"
    # None: the service's default (DEFAULT_PORTS); 0: any free port (logged at start).
    port: int | None = Field(default=None, ge=0, le=65535)
    # The event loop counts as stuck (liveness fails) after this long without a heartbeat.
    stall_s: float = Field(default=30.0, gt=0)
    # How often consumer lag is read from the consumer.
    lag_every_s: float = Field(default=5.0, gt=0)
    # A driver silent this long leaves vigil_driver_seconds_since_observation.
    driver_series_ttl_s: float = Field(default=900.0, gt=0)

    def port_for(self, service: str) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS.get(service, 0)


# --- the metrics -------------------------------------------------------------------------

disable_created_metrics()  # no *_created series: they double the counters for nothing
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds, from a JPEG decode (a millisecond) to a forward pass or a webhook (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)

# The read API serves /metrics on its own HTTP port (VIGIL_API__PORT), not on a side port.
ALL = frozenset({*DEFAULT_PORTS, "api"})
STREAM = frozenset({"worker", "aggregator"})  # the Faust services
WORKER, AGGREGATOR, API = frozenset({"worker"}), frozenset({"aggregator"}), frozenset({"api"})
# metric family (without a counter's _total) -> the services that export it; /metrics of a
# service shows only its own, so no service reports another's metrics as zeros.
SERVICES_OF: dict[str, frozenset[str]] = {}
M = TypeVar("M", Counter, Gauge, Histogram)


def _declare(cls: type[M], name: str, help_: str, services: frozenset[str],
             labels: Sequence[str] = (), **kwargs: Any) -> M:
    SERVICES_OF[name.removesuffix("_total") if cls is Counter else name] = services
    return cls(name, help_, list(labels), registry=REGISTRY, **kwargs)


def _latency(name: str, help_: str, services: frozenset[str],
             labels: Sequence[str] = ()) -> Histogram:
    return _declare(Histogram, name, help_, services, labels, buckets=LATENCY_BUCKETS)


BUILD_INFO = _declare(Gauge, "vigil_build_info", "Always 1: the service and Vigil's version",
                      ALL, ["service", "version"])
READY = _declare(Gauge, "vigil_ready", "1 when the service's readiness checks pass (as "
                 "/readyz)", ALL)
LOOP_HEARTBEAT_AGE = _declare(Gauge, "vigil_event_loop_heartbeat_age_seconds",
                              "Seconds since the event loop last ran its heartbeat timer",
                              STREAM)

# the stream services
DEAD_LETTERS_TOTAL = _declare(Counter, "vigil_dead_letters_total",
                              "Records set aside on the dead-letter topic, by reason and "
                              "source topic", STREAM, ["reason", "topic"])
CONSUMER_LAG = _declare(Gauge, "vigil_consumer_lag",
                        "Records in a partition after the consumer's position (highwater "
                        "minus position)", STREAM, ["group", "topic", "partition"])
CONSUMER_PARTITIONS = _declare(Gauge, "vigil_consumer_assigned_partitions",
                               "Partitions of Vigil's topics assigned to this consumer",
                               STREAM, ["group"])
MODEL_INFO = _declare(Gauge, "vigil_model_info", "1 for each model version this process serves",
                      STREAM, ["model", "version"])

# worker
FRAMES_RECEIVED = _declare(Counter, "vigil_frames_received_total",
                           "Frames in the frame batches the worker decoded", WORKER)
FRAMES_DROPPED = _declare(Counter, "vigil_frames_dropped_total",
                          "Frames the worker decoded but made no observation of, by reason "
                          "(skipped: already processed or out of order; corrupt: unusable)",
                          WORKER, ["reason"])
OBSERVATIONS_PUBLISHED = _declare(Counter, "vigil_observations_published_total",
                                  "Observations the worker published", WORKER)
INFERENCE_STAGE = _latency("vigil_inference_stage_seconds",
                           "Seconds per frame in each inference stage (decode: JPEG; face: "
                           "face engine and tracking; signals: eye state, blinks, yawns)",
                           WORKER, ["stage"])
BATCH_SECONDS = _latency("vigil_frame_batch_seconds",
                         "Seconds to process one frame-batch message (decode and inference)",
                         WORKER)
NETWORK_FORWARD = _latency("vigil_network_forward_seconds",
                           "Seconds per micro-batched forward pass of a served network",
                           WORKER, ["model"])
NETWORK_LATENCY = _latency("vigil_network_window_latency_seconds",
                           "Seconds from a due window's submission to its reading", WORKER,
                           ["model"])
NETWORK_WINDOWS = _declare(Counter, "vigil_network_windows_total",
                           "Windows of a served network by outcome (run, skipped, rejected)",
                           WORKER, ["model", "outcome"])

# aggregator and its sinks (store, webhooks)
OBSERVATIONS_CONSUMED = _declare(Counter, "vigil_observations_consumed_total",
                                 "Observations the aggregator took in (not dead-lettered)",
                                 AGGREGATOR)
WINDOWS_CLOSED = _declare(Counter, "vigil_windows_closed_total",
                          "Per-driver windows the aggregator closed", AGGREGATOR)
ALERTS_TOTAL = _declare(Counter, "vigil_alerts_total",
                        "Alerts stored for the first time (a replayed alert is not counted "
                        "again)", AGGREGATOR, ["reason", "severity"])
STORE_WRITE = _latency("vigil_store_write_seconds",
                       "Seconds per successful store write of the sinks", AGGREGATOR,
                       ["operation"])
STORE_ERRORS = _declare(Counter, "vigil_store_write_errors_total",
                        "Failed store writes (unavailable: retried; refused: dead-lettered)",
                        AGGREGATOR, ["operation", "error"])
WEBHOOK_ATTEMPTS = _declare(Counter, "vigil_webhook_attempts_total",
                            "Webhook HTTP attempts by endpoint and outcome (delivered, "
                            "retryable, permanent)", AGGREGATOR, ["endpoint", "outcome"])
WEBHOOK_ATTEMPT_SECONDS = _latency("vigil_webhook_attempt_seconds",
                                   "Seconds per webhook HTTP attempt", AGGREGATOR, ["endpoint"])
WEBHOOK_FAILED = _declare(Counter, "vigil_webhook_deliveries_failed_total",
                          "Webhook deliveries given up (permanent error or retry horizon)",
                          AGGREGATOR, ["endpoint"])
WEBHOOK_CIRCUIT_OPEN = _declare(Gauge, "vigil_webhook_circuit_open",
                                "1 while an endpoint's circuit breaker is open or probing",
                                AGGREGATOR, ["endpoint"])
WEBHOOK_PENDING = _declare(Gauge, "vigil_webhook_outbox_pending",
                           "Webhook deliveries pending in the outbox (every endpoint)",
                           AGGREGATOR)
WEBHOOK_OLDEST = _declare(Gauge, "vigil_webhook_outbox_oldest_pending_age_seconds",
                          "Age of the oldest pending webhook delivery (0 when none)",
                          AGGREGATOR)

# the read API (route: the route's template, e.g. /v1/alerts/{alert_id}, so ids never become
# label values; "unmatched" for a path no route has)
API_REQUESTS = _declare(Counter, "vigil_api_requests_total",
                        "Read-API requests by route template, method and response status",
                        API, ["route", "method", "status"])
API_REQUEST_SECONDS = _latency("vigil_api_request_seconds",
                               "Seconds per read-API request, until the response starts (an "
                               "export's streamed body is not included)", API,
                               ["route", "method"])


class ServiceMetrics:
    """What one service's ``/metrics`` shows: the process metrics and its own Vigil metrics
    (a registry-like view of :data:`REGISTRY`)."""

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.service, self.registry = service, registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            services = SERVICES_OF.get(family.name)
            if services is None or self.service in services:
                yield family


_served_lock = threading.Lock()
_served: dict[str, str] = {}


def model_served(model: str, version: str) -> None:
    """Records that ``version`` of ``model`` is served now (the previous one's series goes)."""
    with _served_lock:
        before = _served.get(model)
        if before is not None and before != version:
            MODEL_INFO.remove(model, before)
        MODEL_INFO.labels(model, version).set(1)
        _served[model] = version


def vigil_version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "unknown"


class DriverSilence(Collector):
    """``vigil_driver_seconds_since_observation{driver}``: how long ago each driver's last
    observation reached this aggregator (arrival time, so a camera or worker that stops is
    seen as silence). A driver is forgotten after ``ttl_s`` of silence, or when its
    partition moves to another aggregator, so the series stay bounded."""

    NAME = "vigil_driver_seconds_since_observation"
    HELP = "Seconds since the aggregator last received an observation of the driver"

    def __init__(self, ttl_s: float = 900.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._last: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def seen(self, driver: str, partition: int | None = None, age_s: float = 0.0) -> None:
        """The driver's observation arrived ``age_s`` ago (0: now)."""
        with self._lock:
            self._last[driver] = (self.clock() - age_s, partition)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        with self._lock:
            for driver in [d for d, (_, p) in self._last.items() if p in gone]:
                del self._last[driver]

    def ages(self) -> dict[str, float]:
        now = self.clock()
        with self._lock:
            for driver in [d for d, (t, _) in self._last.items() if now - t > self.ttl_s]:
                del self._last[driver]
            return {d: max(now - t, 0.0) for d, (t, _) in self._last.items()}

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["driver"])

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["driver"])
        for driver, age in sorted(self.ages().items()):
            family.add_metric([driver], round(age, 3))
        yield family


DRIVER_SILENCE = DriverSilence()
REGISTRY.register(DRIVER_SILENCE)
SERVICES_OF[DriverSilence.NAME] = AGGREGATOR


class CameraStatsSource(Protocol):
    """What :class:`CameraCollector` reads (``streams.camera.CameraAgent``)."""

    driver_id: str
    vehicle_id: str

    @property
    def stats(self) -> Any: ...

    @property
    def buffered_frames(self) -> int: ...


class CameraCollector(Collector):
    """A camera agent's counters (``CameraAgent.stats``), read at each scrape."""

    COUNTERS = (
        ("frames_captured", "vigil_camera_frames_captured", "Frames read from the source"),
        ("frames_sent", "vigil_camera_frames_sent", "Frames the broker acknowledged"),
        ("frames_dropped", "vigil_camera_frames_dropped",
         "Frames dropped from the outage buffer (broker unreachable too long)"),
        ("send_failures", "vigil_camera_send_failures", "Failed publish attempts"),
    )

    def __init__(self, agent: CameraStatsSource) -> None:
        self.agent = agent

    def describe(self) -> Iterable[Metric]:
        return self._families(describe=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(describe=False)

    def _families(self, describe: bool) -> Iterator[Metric]:
        stats = self.agent.stats
        for attr, name, help_ in self.COUNTERS:
            yield CounterMetricFamily(name, help_,
                                      value=None if describe else getattr(stats, attr))
        yield GaugeMetricFamily("vigil_camera_buffered_frames",
                                "Frames waiting in the outbox for the broker",
                                value=None if describe else self.agent.buffered_frames)
        info = GaugeMetricFamily("vigil_camera_info", "Always 1: the camera's driver and "
                                 "vehicle", labels=["driver", "vehicle"])
        if not describe:
            info.add_metric([self.agent.driver_id, self.agent.vehicle_id], 1)
        yield info


SERVICES_OF.update({name: frozenset({"camera"}) for name in (
    *(name for _, name, _ in CameraCollector.COUNTERS), "vigil_camera_buffered_frames",
    "vigil_camera_info")})


# --- liveness and readiness --------------------------------------------------------------

Check = Callable[[], "str | None"]  # None: fine; else why not


@dataclass(frozen=True)
class Report:
    """The outcome of a set of checks: each check's name -> "ok" or why not."""

    ok: bool
    checks: dict[str, str]

    def to_json(self) -> bytes:
        return json.dumps({"status": "ok" if self.ok else "failing",
                           "checks": self.checks}).encode()


def cached(check: Check, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> Check:
    """``check`` answered at most once every ``ttl_s`` (a database ping per probe is
    plenty)."""
    memo: list[tuple[float, str | None]] = []
    lock = threading.Lock()

    def run() -> str | None:
        with lock:
            if memo and clock() - memo[0][0] < ttl_s:
                return memo[0][1]
        answer = check()
        with lock:
            memo[:] = [(clock(), answer)]
        return answer

    return run


@dataclass
class Health:
    """A service's liveness checks (is it working at all) and readiness checks (can it do
    its job now: consumer group joined, store reachable). Readiness includes liveness."""

    service: str
    liveness: dict[str, Check] = field(default_factory=dict)
    readiness: dict[str, Check] = field(default_factory=dict)

    def live(self, name: str, check: Check) -> None:
        self.liveness[name] = check

    def ready(self, name: str, check: Check) -> None:
        self.readiness[name] = check

    @staticmethod
    def _run(checks: dict[str, Check]) -> Report:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                problem = check()
            except Exception as exc:  # a check that fails is a failing check, not a crash
                problem = redact(f"{type(exc).__name__}: {exc}")
            results[name] = "ok" if problem is None else problem
        return Report(all(v == "ok" for v in results.values()), results)

    def alive(self) -> Report:
        return self._run(self.liveness)

    def is_ready(self) -> Report:
        return self._run({**self.liveness, **self.readiness})


class Heartbeat:
    """Beaten by a timer on the event loop; older than ``stall_s`` means the loop is stuck
    (blocking code on it) and the process should be restarted. Until the first beat (Faust
    still starting: joining the group, creating topics) the limit is ``startup_s``."""

    def __init__(self, stall_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 startup_s: float = 300.0) -> None:
        self.stall_s = stall_s
        self.startup_s = max(startup_s, stall_s)
        self.clock = clock
        self._at = clock()
        self.beaten = False

    def beat(self) -> None:
        self._at = self.clock()
        self.beaten = True

    def age(self) -> float:
        return max(self.clock() - self._at, 0.0)

    def check(self) -> str | None:
        age = self.age()
        limit = self.stall_s if self.beaten else self.startup_s
        if age > limit:
            what = "heartbeat" if self.beaten else "first heartbeat (still starting)"
            return f"event loop unresponsive: no {what} for {age:.0f} s (limit {limit:g} s)"
        return None


# --- the HTTP endpoints ------------------------------------------------------------------


class ObservabilityServer:
    """``/metrics``, ``/livez`` and ``/readyz`` on ``host:port`` (port 0: any free one), on a
    daemon thread. :meth:`start` raises OSError when the port cannot be had."""

    def __init__(self, health: Health, host: str = "127.0.0.1", port: int = 0,
                 registry: Any = None) -> None:
        self.health = health
        self.host, self.port = host, port
        self.registry = registry or ServiceMetrics(health.service)  # has collect()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
                elif path in ("/livez", "/readyz"):
                    report = (server.health.alive() if path == "/livez"
                              else server.health.is_ready())
                    self._send(200 if report.ok else 503, "application/json",
                               report.to_json())
                elif path == "/":
                    self._send(200, "text/plain; charset=utf-8",
                               f"vigil {server.health.service}: /metrics /livez /readyz\n"
                               .encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        return Handler

    def start(self) -> ObservabilityServer:
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="vigil-observability")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ObservabilityServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_observability(health: Health, settings: MetricsSettings | None = None
                        ) -> ObservabilityServer | None:
    """Serves ``health``'s service's endpoints as ``settings`` say -> the server, or None when
    they are off or the port cannot be had (logged: a service never stops over its metrics)."""
    settings = settings or MetricsSettings()
    service = health.service
    BUILD_INFO.labels(service, vigil_version()).set(1)
    READY.set_function(lambda: float(health.is_ready().ok))
    if not settings.enabled:
        log.info("metrics and health endpoints off (VIGIL_METRICS__ENABLED=false)")
        return None
    port = settings.port_for(service)
    try:
        server = ObservabilityServer(health, settings.host, port).start()
    except OSError as exc:
        log.error("metrics and health endpoints not served: cannot listen on %s:%d (%s); set "
                  "VIGIL_METRICS__PORT to a free port (0: any)", settings.host, port,
                  exc.strerror or exc)
        return None
    log.info("metrics and health on %s (/metrics, /livez, /readyz)", server.url)
    return server


# --- Faust apps --------------------------------------------------------------------------


class FaustProbe:
    """Wires a Faust app (before it starts) to a :class:`Health`: the event-loop heartbeat
    (liveness), the consumer group (readiness: partitions assigned once, no rebalance in
    progress) and ``vigil_consumer_lag`` per assigned topic-partition."""

    HEARTBEAT_S = 1.0

    def __init__(self, app: Any, health: Health, settings: MetricsSettings | None = None,
                 on_revoked: Callable[[set[Any]], None] | None = None) -> None:
        settings = settings or MetricsSettings()
        self.app = app
        self.group = str(app.conf.id)
        self.internal = f"{self.group}-"  # Faust's own topics: table changelogs, the leader's
        self.heartbeat = Heartbeat(settings.stall_s)
        self.assigned: set[Any] | None = None  # None: never assigned yet
        self.settled = False
        self._lag_tps: set[tuple[str, int]] = set()
        self._on_revoked = on_revoked
        health.live("event_loop", self.heartbeat.check)
        health.ready("consumer", self.check)
        LOOP_HEARTBEAT_AGE.set_function(self.heartbeat.age)

        app.on_partitions_assigned.connect(self._assigned)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_rebalance_complete.connect(self._rebalanced)
        app.timer(self.HEARTBEAT_S)(self._beat)
        app.timer(settings.lag_every_s)(self.update_lag)

    def check(self) -> str | None:
        if self.assigned is None:
            return f"joining consumer group {self.group}"
        if not self.settled or getattr(self.app, "rebalancing", False):
            return f"consumer group {self.group} is rebalancing"
        return None

    async def _beat(self) -> None:
        self.heartbeat.beat()

    async def _assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        first = self.assigned is None
        self.assigned = set(assigned)
        ours = sum(1 for tp in self.assigned if not tp.topic.startswith(self.internal))
        CONSUMER_PARTITIONS.labels(self.group).set(ours)
        log.log(logging.INFO if first else logging.DEBUG,
                "consumer group %s: %d partitions of Vigil's topics assigned", self.group, ours)

    async def _revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        self.settled = False
        if self._on_revoked is not None and revoked:
            self._on_revoked(set(revoked))

    async def _rebalanced(self, sender: Any = None, **_: Any) -> None:
        if not self.settled:
            log.info("consumer group %s: rebalance complete, ready", self.group)
        self.settled = True

    async def update_lag(self) -> None:
        """``vigil_consumer_lag``: highwater minus position of each assigned partition; the
        series of partitions no longer assigned go."""
        consumer = self.app.consumer
        seen: set[tuple[str, int]] = set()
        try:
            assignment = consumer.assignment()
        except Exception:  # not started or stopping
            return
        for tp in assignment:
            if tp.topic.startswith(self.internal):  # changelogs (written, not read), leader
                continue
            try:
                highwater = consumer.highwater(tp)
                position = await asyncio.wait_for(consumer.position(tp), 2.0)
            except Exception as exc:  # a partition being reassigned; next time
                log.debug("lag of %s[%d] unknown: %s", tp.topic, tp.partition, exc)
                continue
            if highwater is None or position is None:
                continue
            key = (tp.topic, tp.partition)
            seen.add(key)
            CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                max(int(highwater) - int(position), 0))
        assigned = {(tp.topic, tp.partition) for tp in assignment}
        for topic, partition in self._lag_tps - seen:
            if (topic, partition) in assigned:  # still ours, unknown this time: kept
                seen.add((topic, partition))
                continue
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group, topic, str(partition))
        self._lag_tps = seen
