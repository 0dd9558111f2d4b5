"""Sinks: alerts, window metrics, event clips and dead letters into the store; alerts to the
webhooks; the event clips' retention purge (a timer on the group's leader).

Every write is an idempotent upsert (alert id, driver + window start, dead-letter position),
so the at-least-once streams never duplicate rows. A database outage is retried with backoff
before the message is acknowledged, so nothing is lost while the database is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TypeVar

import faust

from streams.app import bind_topic, set_aside
from streams.clips import ClipSettings, purge_clips
from streams.schemas import (
    Alert,
    DeadLetter,
    EventClip,
    R,
    SchemaError,
    WindowMetrics,
    decode_record,
)
from streams.store import Store
from streams.store.errors import StoreUnavailableError
from streams.topics import ALERTS, DEAD_LETTERS, EVENT_CLIPS, WINDOW_METRICS
from streams.webhooks.dispatcher import WebhookDispatcher
from streams.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 30.0


async def _with_store(what: str, call: Callable[[], T]) -> T:
    """Runs a store call off the event loop, retrying while the database is unreachable."""
    backoff = 0.5
    while True:
        try:
            return await asyncio.to_thread(call)
        except StoreUnavailableError as exc:
            log.warning("%s: %s; retrying in %.1f s", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


async def _records(stream: faust.StreamT, cls: type[R]) -> AsyncIterator[R]:
    """The stream's values decoded as ``cls``. These topics carry only what Vigil's own
    agents wrote; a record that does not decode is logged with its schema error and skipped."""
    async for value in stream:
        try:
            yield decode_record(cls, value)
        except SchemaError as exc:
            log.error("%s: unreadable record skipped: %s", cls.SCHEMA, exc)


def register_sinks(app: faust.App, store: Store, webhooks: WebhookSettings,
                   clips: ClipSettings | None = None) -> Callable[[], None]:
    alerts = bind_topic(app, ALERTS)
    windows = bind_topic(app, WINDOW_METRICS)
    dead_letters = bind_topic(app, DEAD_LETTERS)
    event_clips = bind_topic(app, EVENT_CLIPS)
    clip_settings = clips or ClipSettings()
    dispatcher: list[WebhookDispatcher] = []  # made on the running loop (aiohttp needs it)

    @app.agent(alerts)
    async def store_alerts(stream: faust.StreamT) -> None:
        async for alert in _records(stream, Alert):
            new = await _with_store("storing alert", partial(store.upsert_alert, alert))
            if not dispatcher:
                dispatcher.append(webhooks.dispatcher(store))
            # Claims in the store make delivery at most once per endpoint, replays included.
            dispatcher[0].submit(alert)
            log.info("alert %s %s stored (%s)", alert.reason.value, alert.alert_id,
                     "new" if new else "replay")

    @app.agent(windows)
    async def store_windows(stream: faust.StreamT) -> None:
        async for metrics in _records(stream, WindowMetrics):
            await _with_store("storing window", partial(store.upsert_window_metrics, [metrics]))

    @app.agent(event_clips)
    async def store_clips(stream: faust.StreamT) -> None:
        # Unlike the other sinks' topics, this one carries what another deployable (the
        # inference worker) wrote: a record that does not decode is set aside.
        async for event in stream.events():
            message = event.message
            try:
                clip = decode_record(EventClip, message.value or b"")
            except SchemaError as exc:
                await set_aside(dead_letters, message, exc)
                continue
            new = await _with_store("storing clip", partial(store.record_clip, clip))
            log.info("clip of alert %s stored (%s)", clip.alert_id, "new" if new else "replay")

    @app.timer(clip_settings.clip_purge_every_s, on_leader=True)
    async def purge_expired_clips() -> None:
        try:
            await asyncio.to_thread(purge_clips, store, clip_settings)
        except StoreUnavailableError as exc:
            log.warning("clip purge skipped: %s; next in %.0f s", exc,
                        clip_settings.clip_purge_every_s)

    @app.agent(dead_letters)
    async def store_dead_letters(stream: faust.StreamT) -> None:
        async for event in stream.events():
            header = dict(event.message.headers or {}).get(DeadLetter.HEADER)
            if header is None:
                log.error("dead letter without %s header at offset %d", DeadLetter.HEADER,
                          event.message.offset)
                continue
            try:
                letter = decode_record(DeadLetter, header)
            except SchemaError as exc:
                log.error("dead letter header unreadable: %s", exc)
                continue
            await _with_store("storing dead letter", partial(store.record_dead_letter, letter))

    def close() -> None:
        store.close()

    return close
