"""Sinks: alerts, window metrics, event clips and dead letters into the store; alerts to the
webhooks; the event clips' retention purge (a timer on the group's leader).

Every write is an idempotent upsert (alert id, driver + window start, dead-letter position),
so the at-least-once streams never duplicate rows. A database outage is retried with backoff
before the message is acknowledged, so nothing is lost while the database is down. A record
that does not decode, or whose values the database refuses (StoreDataError), is set aside on
the dead-letter topic (and so counted in the store's dead letters) and the sink goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

import faust

from streams.app import bind_topic, set_aside
from streams.event_clips import ClipSettings, UnsafePathError, clip_path, purge_clips
from streams.observability import (
    ALERTS_TOTAL,
    STORE_ERRORS,
    STORE_WRITE,
    WEBHOOK_OLDEST,
    WEBHOOK_PENDING,
)
from streams.schemas import (
    Alert,
    DeadLetter,
    DeadLetterReason,
    EventClip,
    R,
    SchemaError,
    WindowMetrics,
    decode_record,
)
from streams.settings import load_settings
from streams.store import Store
from streams.store.errors import StoreDataError, StoreError, StoreUnavailableError
from streams.topics import ALERTS, DEAD_LETTERS, EVENT_CLIPS, WINDOW_METRICS
from streams.webhooks.errors import WebhookError
from streams.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 30.0
OUTBOX_GAUGE_EVERY_S = 15.0


async def _with_store(what: str, call: Callable[[], T], operation: str = "other") -> T:
    """Runs a store call off the event loop, retrying while the database is unreachable.
    ``operation`` labels its latency and errors (``vigil_store_write_*``)."""
    backoff = 0.5
    while True:
        start = time.perf_counter()
        try:
            result = await asyncio.to_thread(call)
        except StoreUnavailableError as exc:
            STORE_ERRORS.labels(operation, "unavailable").inc()
            log.warning("%s: %s; retrying in %.1f s", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        except StoreDataError:
            STORE_ERRORS.labels(operation, "refused").inc()
            raise
        STORE_WRITE.labels(operation).observe(time.perf_counter() - start)
        return result


async def _records(stream: faust.StreamT, cls: type[R],
                   dead_letters: faust.TopicT) -> AsyncIterator[tuple[Any, R]]:
    """(message, its value decoded as ``cls``); a record that does not decode is set aside."""
    async for event in stream.events():
        message = event.message
        try:
            record = decode_record(cls, message.value or b"")
        except SchemaError as exc:
            await set_aside(dead_letters, message, exc)
            continue
        yield message, record


def register_sinks(app: faust.App, store: Store, webhooks: WebhookSettings,
                   clips: ClipSettings | None = None) -> Callable[[], None]:
    alerts = bind_topic(app, ALERTS)
    windows = bind_topic(app, WINDOW_METRICS)
    dead_letters = bind_topic(app, DEAD_LETTERS)
    event_clips = bind_topic(app, EVENT_CLIPS)
    clip_settings = clips or load_settings(ClipSettings)
    dispatcher = webhooks.dispatcher(store.deliveries)

    @app.agent(alerts)
    async def store_alerts(stream: faust.StreamT) -> None:
        async for message, alert in _records(stream, Alert, dead_letters):
            try:
                new = await _with_store("storing alert", partial(store.alerts.upsert, alert),
                                        "alert")
            except StoreDataError as exc:
                await set_aside(dead_letters, message, exc, DeadLetterReason.PROCESSING_ERROR)
                continue
            # In the outbox before the alert is acknowledged: from here on no restart loses
            # its webhooks, and a replay adds nothing.
            try:
                await _with_store("queueing webhooks", partial(dispatcher.enqueue, alert),
                                  "webhook_outbox")
                dispatcher.wake()
            except WebhookError as exc:
                log.error("alert %s: no webhooks: %s", alert.alert_id, exc)
            if new:
                ALERTS_TOTAL.labels(alert.reason.value, alert.severity.value).inc()
            log.info("alert %s %s stored (%s)", alert.reason.value, alert.alert_id,
                     "new" if new else "replay", extra={"driver": alert.driver_id})

    @app.task
    async def deliver_webhooks() -> None:
        # Sends what the outbox holds, from before a restart too, until the app stops
        # (Faust cancels its tasks), then closes the dispatcher and its HTTP session.
        await dispatcher.run()

    @app.timer(OUTBOX_GAUGE_EVERY_S)
    async def measure_outbox() -> None:
        # Every aggregator reports the same outbox (it is shared): alert on the max.
        try:
            pending, oldest = await asyncio.to_thread(store.deliveries.pending_summary)
        except StoreError as exc:
            log.debug("webhook outbox not measured: %s", exc)
            return
        WEBHOOK_PENDING.set(pending)
        WEBHOOK_OLDEST.set(0.0 if oldest is None else max(time.time() - oldest, 0.0))

    @app.agent(windows)
    async def store_windows(stream: faust.StreamT) -> None:
        async for message, metrics in _records(stream, WindowMetrics, dead_letters):
            try:
                await _with_store("storing window",
                                  partial(store.series.upsert, [metrics]), "window")
            except StoreDataError as exc:
                await set_aside(dead_letters, message, exc, DeadLetterReason.PROCESSING_ERROR)

    @app.agent(event_clips)
    async def store_clips(stream: faust.StreamT) -> None:
        async for message, clip in _records(stream, EventClip, dead_letters):
            try:  # a row is what the purge deletes and the dashboard serves: ours only
                clip_path(clip_settings.directory, clip.alert_id, clip.path)
            except UnsafePathError as exc:
                await set_aside(dead_letters, message, exc)
                continue
            try:
                new = await _with_store("storing clip", partial(store.clips.record, clip),
                                        "clip")
            except StoreDataError as exc:
                await set_aside(dead_letters, message, exc, DeadLetterReason.PROCESSING_ERROR)
                continue
            log.info("clip of alert %s stored (%s)", clip.alert_id, "new" if new else "replay")

    @app.timer(clip_settings.purge_every_s, on_leader=True)
    async def purge_expired_clips() -> None:
        try:
            await asyncio.to_thread(purge_clips, store, clip_settings)
        except StoreUnavailableError as exc:
            log.warning("clip purge skipped: %s; next in %.0f s", exc,
                        clip_settings.purge_every_s)

    @app.agent(dead_letters)
    async def store_dead_letters(stream: faust.StreamT) -> None:
        async for event in stream.events():
            header = dict(event.message.headers or {}).get(DeadLetter.HEADER)
            if header is None:
                log.error("dead letter without %s header at offset %d", DeadLetter.HEADER,
                          event.message.offset)
                continue
            # Never set aside again (that could loop): logged, and the sink goes on.
            try:
                letter = decode_record(DeadLetter, header)
                await _with_store("storing dead letter",
                                  partial(store.dead_letters.record, letter), "dead_letter")
            except (SchemaError, StoreDataError) as exc:
                log.error("dead letter at offset %d not stored: %s", event.message.offset, exc)

    def close() -> None:
        store.close()

    return close
