"""`vigil worker`: the inference agent. Thin: it only dispatches each consumed frame batch to
its driver's lane (:mod:`workers.lanes`), where the pure processor runs off the event loop in
a thread pool, micro-batched per driver; a lane publishes observations and dead letters as
its batch finishes, and its offsets are committed once the ledger releases them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, cast

import faust
from faust.types import TP
from faust.types.tuples import Message

from streams.app import bind_topic, create_app
from streams.schemas import DeadLetter
from streams.topics import DEAD_LETTERS, FRAMES, OBSERVATIONS, WORKER_GROUP
from workers.inference import InferenceProcessor, ProcessResult, RawMessage
from workers.lanes import LaneDispatcher
from workers.perception import open_perception
from workers.settings import PerceptionSettings, WorkerSettings

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 1.0


def build_worker_app(
    bootstrap: str, known_drivers: frozenset[str] | None = None,
    settings: PerceptionSettings | None = None, app_id: str = WORKER_GROUP, *,
    worker: WorkerSettings | None = None, processor: InferenceProcessor | None = None,
) -> tuple[faust.App, Callable[[], None]]:
    """The app and a function releasing the models once the worker has stopped.

    processor: replaces the MediaPipe-backed one (tests); it is closed with the app."""
    settings = settings or PerceptionSettings()
    worker = worker or WorkerSettings()
    app = create_app(app_id, bootstrap)
    # Faust's wait for unacked events before a rebalance or shutdown cannot end while the
    # ledger holds offsets for the replay warm-up; the lanes need no wait (at-least-once:
    # what they had not finished is not acked, and is replayed, with downstream deduping).
    app.conf.stream_wait_empty = False
    frames = bind_topic(app, FRAMES)
    observations = bind_topic(app, OBSERVATIONS)
    dead_letters = bind_topic(app, DEAD_LETTERS)

    processor = processor or InferenceProcessor(partial(open_perception, settings),
                                                known_drivers)
    executor = ThreadPoolExecutor(max_workers=worker.inference_threads,
                                  thread_name_prefix="vigil-infer")

    async def publish(result: ProcessResult) -> None:
        for obs in result.observations:
            await observations.send(key=obs.driver_id.encode(), value=obs.to_bytes())
        for letter, payload in result.dead_letters:
            letter, value = letter.carrying(payload)
            await dead_letters.send(key=(letter.key or "").encode(), value=value,
                                    headers={DeadLetter.HEADER: letter.to_bytes()})

    def ack(positions: list[Message]) -> None:
        for position in positions:
            app.consumer.ack(position)

    lanes: LaneDispatcher[Message] = LaneDispatcher(
        processor.process_batch, publish, ack, executor, max_in_flight=worker.max_in_flight,
        max_batch=worker.max_lane_batch, hold_s=worker.replay_warmup_s)

    @app.agent(frames)
    async def infer(stream: faust.StreamT) -> None:
        async for event in cast(faust.Stream, stream).noack().events():
            message = event.message
            raw = RawMessage(key=message.key, value=message.value or b"",
                             partition=message.partition, offset=message.offset,
                             topic=message.topic)
            # What the ledger keeps to ack later: the position only, not the frames.
            position = Message(message.topic, message.partition, message.offset,
                               message.timestamp, message.timestamp_type, None, None, None,
                               None, tp=message.tp)
            await lanes.submit(raw, position)

    @app.timer(RELEASE_EVERY_S)
    async def release_quiet_drivers() -> None:
        lanes.release()

    async def forget_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        lanes.forget({(tp.topic, tp.partition) for tp in revoked})

    async def stop_lanes(sender: Any, **_: Any) -> None:
        await lanes.stop()  # before the producer stops under sends still in progress

    # mode's handler type (mypy_extensions NamedArg) matches no function at all.
    app.on_partitions_revoked.connect(forget_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stop_lanes)  # type: ignore[arg-type]

    def close() -> None:
        executor.shutdown(wait=True)
        processor.close()

    return app, close
