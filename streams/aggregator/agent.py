"""`vigil aggregator`: observations -> window metrics and alerts, then the sinks.

Thin over :class:`DriverAggregator`: per driver, observe each observation, send the alerts,
and save the aggregator's state in a Faust table (its changelog topic restores it after a
restart); a 1 s timer closes windows and notices silent cameras. Processing is at-least-once:
a replay after a crash re-emits the same alert ids and window keys, which the sinks dedupe.
A driver whose camera sends nothing after its partition came here (it fell silent under the
previous holder, or just before a restart) is restored from the table once a camera's silence
would show, and its silence reported from its last frame.

An observation is dead-lettered, never fed on, when it does not decode, its key is not its
driver, or its capture times are out of the tolerance of its broker timestamp
(:class:`streams.settings.RecordSettings`): one record dated years ahead would otherwise
become the driver's newest time, be saved, and hide every real frame after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from streams.aggregator.clock import CaptureClock
from streams.aggregator.config import AggregatorConfig
from streams.aggregator.driver import DriverAggregator
from streams.aggregator.drowsiness import MODEL_NAME, ServedDrowsinessModel
from streams.app import bind_table, bind_topic, create_app, kafka_of, set_aside
from streams.errors import InputError
from streams.event_clips import ClipSettings
from streams.logs import log_context, stream_position
from streams.observability import (
    DRIVER_SILENCE,
    OBSERVATIONS_CONSUMED,
    WINDOWS_CLOSED,
    MetricsSettings,
    model_served,
)
from streams.schemas import (
    Alert,
    DeadLetterReason,
    Observation,
    SchemaError,
    WindowMetrics,
    check_capture_times,
    decode_record,
)
from streams.settings import (
    AggregatorSettings,
    DeployableSettings,
    KafkaSettings,
    RecordSettings,
    StreamSettings,
    load_settings,
)
from streams.sinks import register_sinks
from streams.store import DatabaseSettings, Store, StoreError
from streams.topics import (
    AGGREGATOR_GROUP,
    ALERTS,
    DEAD_LETTERS,
    OBSERVATIONS,
    WINDOW_METRICS,
    driver_partition,
)
from streams.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)

TICK_S = 1.0


@dataclass(frozen=True)
class AggregatorEnvironment(DeployableSettings):
    """Everything `vigil aggregator` (aggregator, sinks, webhooks, clip purge) reads from
    its environment."""

    streams: StreamSettings
    database: DatabaseSettings
    webhooks: WebhookSettings
    clips: ClipSettings
    metrics: MetricsSettings


def build_aggregator_app(bootstrap: str, store: Store, webhooks: WebhookSettings | None = None,
                         app_id: str = AGGREGATOR_GROUP,
                         settings: AggregatorSettings | None = None,
                         records: RecordSettings | None = None,
                         clips: ClipSettings | None = None,
                         kafka: KafkaSettings | None = None,
                         ) -> tuple[faust.App, Callable[[], None]]:
    """The app (aggregator + store/webhook sinks) and a function to call after it stopped.

    Several aggregators with the same ``app_id`` share the drivers: each holds the state of
    the drivers on its partitions, and gives it up when a rebalance takes them away."""
    settings = settings or AggregatorSettings()
    records = records or load_settings(StreamSettings).records
    app = create_app(app_id, bootstrap, kafka)
    observations = bind_topic(app, OBSERVATIONS)
    alerts_topic = bind_topic(app, ALERTS)
    windows_topic = bind_topic(app, WINDOW_METRICS)
    dead_letters = bind_topic(app, DEAD_LETTERS)
    # driver id -> DriverAggregator.to_state() (JSON), restored from the changelog on restart.
    state_table = bind_table(app, "aggregator-state", OBSERVATIONS)
    aggregators: dict[str, DriverAggregator] = {}
    partition_of: dict[str, int] = {}  # driver id -> its observations' partition
    drowsiness = ServedDrowsinessModel(store.model_versions)
    model_served(MODEL_NAME, drowsiness.version)
    clocks: dict[str, CaptureClock] = {}

    def restored(driver_id: str, saved: Any, now: float) -> DriverAggregator | None:
        """The driver's aggregator from its saved state, or None where there is none, it is
        unusable, or it ends after ``now`` (epoch seconds) by more than records may."""
        if not saved:
            return None
        try:
            agg = DriverAggregator.from_state(saved, estimator=drowsiness)
        except InputError as exc:
            log.warning("driver %s: saved state unusable, starting afresh: %s", driver_id, exc)
            return None
        last = agg.last_observation_at
        if last is not None and last > now + records.max_ahead_s:
            # Saved by a version that let a far-future record in: it would ignore every real
            # frame until then.
            log.warning("driver %s: saved state ends %.0f s in the future; starting afresh",
                        driver_id, last - now)
            return None
        return agg

    def aggregator_for(obs: Observation, broker_time: float | None) -> DriverAggregator:
        agg = aggregators.get(obs.driver_id)
        if agg is None:
            agg = (restored(obs.driver_id, state_table.get(obs.driver_id),
                            broker_time or time.time())
                   or DriverAggregator(obs.driver_id, obs.vehicle_id, estimator=drowsiness))
            aggregators[obs.driver_id] = agg
            clocks[obs.driver_id] = CaptureClock()
            resuming.pop(obs.driver_id, None)
        return agg

    held: set[int] = set()  # the observations' partitions this aggregator holds
    partitions = OBSERVATIONS.partition_count(kafka_of(app).partitions)
    # Drivers with saved state on the partitions held and no frame since they came here ->
    # when they count as silent (monotonic): a camera's silence that began under the previous
    # holder (or before a restart) is still reported, and a camera that streams on has that
    # long to show it in the partition's backlog.
    resuming: dict[str, float] = {}

    def partition_for(driver_id: str) -> int:
        return driver_partition(driver_id, partitions)

    def note_resumable() -> None:
        grace = time.monotonic() + AggregatorConfig().camera_silence_s
        resuming.clear()
        resuming.update({d: grace for d in list(state_table.keys())
                         if d not in aggregators and partition_for(d) in held})

    def resume_silent_drivers() -> None:
        """Drivers that still sent nothing when their grace ran out: restored from the table
        and ticked on the wall clock from their last frame, as if the aggregator that saw it
        had lived. What it had raised already comes again with the same ids, and the sinks
        keep one of each. State older than records may be (``max_behind_s``) is left: no frame
        could continue it."""
        now, mono = time.time(), time.monotonic()
        for driver_id in [d for d, due in resuming.items() if due <= mono]:
            del resuming[driver_id]
            agg = restored(driver_id, state_table.get(driver_id), now)
            last = None if agg is None else agg.last_observation_at
            if agg is None or last is None or now - last > records.max_behind_s:
                continue
            silent_for = max(now - last, 0.0)
            aggregators[driver_id] = agg
            clocks[driver_id] = CaptureClock()
            clocks[driver_id].seen(last, mono - silent_for)
            partition_of[driver_id] = partition_for(driver_id)
            DRIVER_SILENCE.seen(driver_id, partition_of[driver_id], age_s=silent_for)
            log.info("driver %s: resumed from the table, silent for %.1f s", driver_id,
                     silent_for, extra={"driver": driver_id})

    async def publish(windows: list[WindowMetrics], alerts: list[Alert]) -> None:
        for w in windows:
            await windows_topic.send(key=w.driver_id.encode(), value=w.to_bytes())
            WINDOWS_CLOSED.inc()
        for a in alerts:
            log.info("alert %s %s driver=%s", a.reason.value, a.alert_id, a.driver_id,
                     extra={"driver": a.driver_id})
            await alerts_topic.send(key=a.driver_id.encode(), value=a.to_bytes())

    @app.agent(observations)
    async def aggregate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            key = (message.key or b"").decode(errors="replace") or None
            with log_context(driver=key, where=stream_position(message.topic, message.partition,
                                                               message.offset)):
                await take(message)

    async def take(message: Any) -> None:
        try:
            obs = decode_record(Observation, message.value or b"")
            if message.key != obs.driver_id.encode():
                raise SchemaError("message key differs from the observation's driver")
            check_capture_times(obs.capture_times, message.timestamp, records.max_ahead_s,
                                records.max_behind_s)
            agg = aggregator_for(obs, message.timestamp)
            partition_of[obs.driver_id] = message.partition
            alerts = agg.observe(obs)
        except InputError as exc:  # SchemaError included
            await set_aside(dead_letters, message, exc)
            return
        except Exception as exc:  # a fault on one record must not stop every driver
            log.exception("observation at %s[%d]@%d failed", message.topic,
                          message.partition, message.offset)
            await set_aside(dead_letters, message, exc, DeadLetterReason.PROCESSING_ERROR)
            return
        OBSERVATIONS_CONSUMED.inc()
        DRIVER_SILENCE.seen(obs.driver_id, message.partition)
        clocks[obs.driver_id].seen(obs.captured_at, time.monotonic())
        await publish([], alerts)
        # Saved after the sends: a crash in between replays the observation, which the
        # restored state (from before it) handles again, yielding the same alert ids.
        state_table[obs.driver_id] = agg.to_state()

    @app.timer(TICK_S)
    async def tick() -> None:
        resume_silent_drivers()
        for driver_id, agg in list(aggregators.items()):
            clock = clocks.get(driver_id)  # None: revoked while an earlier one was published
            now = None if clock is None else clock.now(time.monotonic())
            if now is None:
                continue
            with log_context(driver=driver_id):
                try:
                    windows, alerts = agg.tick(now)
                except Exception:  # one driver's broken state must not stop every driver
                    log.exception("tick of driver %s failed", driver_id)
                    continue
                await publish(windows, alerts)

    @app.timer(settings.model_refresh_s, on_leader=False)
    async def refresh_drowsiness_model() -> None:
        try:  # off the event loop: a database query, maybe a model load
            await asyncio.get_running_loop().run_in_executor(None, drowsiness.refresh)
        except StoreError as exc:
            log.warning("model registry unreachable, still serving %s %s: %s",
                        MODEL_NAME, drowsiness.version, exc)
        model_served(MODEL_NAME, drowsiness.version)

    async def forget_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        # Their drivers are another aggregator's now: no silence of theirs is ours to report.
        gone = {tp.partition for tp in revoked if tp.topic == OBSERVATIONS.name}
        DRIVER_SILENCE.forget_partitions(gone)
        # Nor their windows and alerts: a driver kept here would be ticked on a clock that no
        # frame moves any more (CAMERA_BLOCKED and UNRESPONSIVE for a driver still streaming),
        # and be stale if its partition came back. Whoever gets the partition (this
        # aggregator included, after an eager rebalance) restores it from the table.
        for driver_id in [d for d, p in partition_of.items() if p in gone]:
            aggregators.pop(driver_id, None)
            clocks.pop(driver_id, None)
            del partition_of[driver_id]
        for driver_id in [d for d in resuming if partition_for(d) in gone]:
            del resuming[driver_id]

    async def note_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        held.clear()
        held.update(tp.partition for tp in assigned if tp.topic == OBSERVATIONS.name)

    async def resume_after_recovery(sender: Any, **_: Any) -> None:
        note_resumable()  # the table holds the partitions' state only once recovered

    app.on_partitions_revoked.connect(forget_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(note_assigned)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(resume_after_recovery)  # type: ignore[arg-type]
    close_sinks = register_sinks(app, store, webhooks or load_settings(WebhookSettings), clips)
    return app, close_sinks
