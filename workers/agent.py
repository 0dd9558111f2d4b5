"""`vigil worker`: the inference agent. Thin: it only dispatches each consumed frame batch to
its driver's lane (:mod:`workers.lanes`), where the pure processor runs off the event loop in
a thread pool, micro-batched per driver; a lane publishes observations and dead letters as
its batch finishes, and its offsets are committed once the ledger releases them.

The same app consumes the alerts topic for event clips (:mod:`workers.clip_recorder`): the processor
feeds each processed frame to a per-driver ring, and an alert for a driver whose frames this
worker holds becomes a clip, written in its own one-thread executor, announced on the
event-clips topic.

Co-partitioning (why the worker that gets a driver's alert is the one holding its frames):
faust-streaming 0.15's ``PartitionAssignor`` puts the topics that the group's members
subscribe to into copartitioned groups by partition count and by which members subscribe
(``_get_copartitioned_groups``), and gives every member the same partition numbers of all
topics in a group (``CopartitionedAssignor``). FRAMES and ALERTS both have
``VIGIL_KAFKA__PARTITIONS`` partitions, every worker subscribes to both, and both are keyed
by driver id with Kafka's default murmur2 partitioner (kafka-python's camera producer,
aiokafka under Faust), so partition p of both goes to one worker. Faust uses that assignor
only when the app has changelog tables or ``table_standby_replicas`` > 0 (else aiokafka's
round robin, which ignores co-partitioning: ``faust/transport/drivers/aiokafka.py``); the
worker has no tables, so it pins the setting to at least 1 (it has no other effect without
tables). During a rolling upgrade, members that do not yet subscribe to ALERTS split the
group, and an alert may reach a worker without the frames: that alert gets no clip (counted
as ``no_frames``), nothing else is lost."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import cv2
import faust
import torch
from faust.types import TP
from faust.types.tuples import Message

from streams.app import bind_topic, create_app
from streams.event_clips import ClipSettings
from streams.observability import DEAD_LETTERS_TOTAL, OBSERVATIONS_PUBLISHED, MetricsSettings
from streams.schemas import Alert, DeadLetter, SchemaError, decode_record
from streams.settings import (
    DeployableSettings,
    KafkaSettings,
    RecordSettings,
    StreamSettings,
    load_settings,
)
from streams.store.settings import DatabaseSettings
from streams.topics import ALERTS, DEAD_LETTERS, EVENT_CLIPS, FRAMES, OBSERVATIONS, WORKER_GROUP
from workers.clip_recorder import ClipJob, ClipRecorder
from workers.inference import InferenceProcessor, ProcessResult, RawMessage
from workers.lanes import LaneDispatcher
from workers.perception import open_perception
from workers.serving import MicroBatcher, NetworkSet, PromotedModelSource
from workers.settings import PerceptionSettings, ServingSettings, WorkerSettings

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 1.0
CLIPS_DUE_EVERY_S = 0.5


@dataclass(frozen=True)
class WorkerEnvironment(DeployableSettings):
    """Everything `vigil worker` reads from its environment."""

    streams: StreamSettings
    worker: WorkerSettings
    perception: PerceptionSettings
    clips: ClipSettings
    serving: ServingSettings
    database: DatabaseSettings
    metrics: MetricsSettings


def build_worker_app(
    bootstrap: str, known_drivers: frozenset[str] | None = None,
    settings: PerceptionSettings | None = None, app_id: str = WORKER_GROUP, *,
    worker: WorkerSettings | None = None, processor: InferenceProcessor | None = None,
    clips: ClipSettings | None = None, records: RecordSettings | None = None,
    serving: ServingSettings | None = None, registry: PromotedModelSource | None = None,
    kafka: KafkaSettings | None = None,
) -> tuple[faust.App, Callable[[], None]]:
    """The app and a function releasing the models once the worker has stopped.

    processor: replaces the MediaPipe-backed one (tests); it is closed with the app, and its
    processed frames feed the event clips unless it has an ``on_frame`` already. The app's
    clip recorder is ``app.vigil_clips`` (its counters: ``.stats``). serving: the learnt
    networks to serve (none by default); registry: where their promoted versions are looked
    up every ``serving.refresh_s`` (``store.model_versions``)."""
    settings = settings or load_settings(PerceptionSettings)
    worker = worker or load_settings(WorkerSettings)
    serving = serving or load_settings(ServingSettings)
    app = create_app(app_id, bootstrap, kafka)
    # Faust's co-partitioning assignor (FRAMES with ALERTS); see the module docstring.
    if app.conf.table_standby_replicas < 1:
        app.conf.table_standby_replicas = 1
    # Faust's wait for unacked events before a rebalance or shutdown cannot end while the
    # ledger holds offsets for the replay warm-up; the lanes need no wait (at-least-once:
    # what they had not finished is not acked, and is replayed, with downstream deduping).
    app.conf.stream_wait_empty = False
    frames = bind_topic(app, FRAMES)
    observations = bind_topic(app, OBSERVATIONS)
    dead_letters = bind_topic(app, DEAD_LETTERS)
    alerts = bind_topic(app, ALERTS)
    event_clips = bind_topic(app, EVENT_CLIPS)

    recorder = ClipRecorder(clips or load_settings(ClipSettings))
    app.vigil_clips = recorder  # type: ignore[attr-defined]
    records = records or load_settings(StreamSettings).records
    batcher = None
    if processor is None and serving.roles:
        torch.set_num_threads(serving.torch_threads)
        batcher = MicroBatcher(NetworkSet(serving, registry), serving.max_batch,
                               serving.max_wait_ms)
    processor = processor or InferenceProcessor(partial(open_perception, settings),
                                                known_drivers, records=records,
                                                serving=batcher)
    if processor.on_frame is None:
        processor.on_frame = recorder.add_frame
    # The lanes already run drivers in parallel: OpenCV's own threads (YuNet, warps) would only
    # contend with them (measured: YuNet at 480 px costs 15 CPU ms a frame on two threads,
    # 12 on one).
    cv2.setNumThreads(1)
    executor = ThreadPoolExecutor(max_workers=worker.inference_threads,
                                  thread_name_prefix="vigil-infer")
    # Clips are encoded one at a time, beside the inference threads, never on them.
    clip_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-clips")

    async def publish(result: ProcessResult) -> None:
        for obs in result.observations:
            await observations.send(key=obs.driver_id.encode(), value=obs.to_bytes())
            OBSERVATIONS_PUBLISHED.inc()
        for letter, payload in result.dead_letters:
            letter, value = letter.carrying(payload)
            await dead_letters.send(key=(letter.key or "").encode(), value=value,
                                    headers={DeadLetter.HEADER: letter.to_bytes()})
            DEAD_LETTERS_TOTAL.labels(letter.reason.value, letter.source_topic).inc()

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
                             topic=message.topic, timestamp=message.timestamp)
            # What the ledger keeps to ack later: the position only, not the frames.
            position = Message(message.topic, message.partition, message.offset,
                               message.timestamp, message.timestamp_type, None, None, None,
                               None, tp=message.tp)
            await lanes.submit(raw, position)

    @app.timer(RELEASE_EVERY_S)
    async def release_quiet_drivers() -> None:
        lanes.release()

    if processor.serving is not None and registry is not None:
        networks = processor.serving.networks

        @app.timer(serving.refresh_s, on_leader=False)
        async def refresh_networks() -> None:
            # Off the event loop: a registry query, maybe a model load. The swap itself is
            # one assignment between two forward passes.
            await asyncio.get_running_loop().run_in_executor(None, networks.refresh)

    async def write_clip(job: ClipJob) -> None:
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(clip_executor, recorder.write, job)
        if record is not None:
            await event_clips.send(key=record.driver_id.encode(), value=record.to_bytes())

    @app.agent(alerts)
    async def clip_alerts(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                alert = decode_record(Alert, message.value or b"")
            except SchemaError as exc:  # the aggregator's sink reports unreadable alerts
                log.debug("%s[%d]@%d: no clip for an unreadable alert: %s", message.topic,
                          message.partition, message.offset, exc)
                continue
            job = recorder.on_alert(alert)
            if job is not None:
                await write_clip(job)

    @app.timer(CLIPS_DUE_EVERY_S)
    async def write_due_clips() -> None:
        for job in recorder.due():
            await write_clip(job)

    async def forget_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        lanes.forget({(tp.topic, tp.partition) for tp in revoked})

    async def stop_lanes(sender: Any, **_: Any) -> None:
        await lanes.stop()  # before the producer stops under sends still in progress

    # mode's handler type (mypy_extensions NamedArg) matches no function at all.
    app.on_partitions_revoked.connect(forget_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stop_lanes)  # type: ignore[arg-type]

    def close() -> None:
        executor.shutdown(wait=True)
        clip_executor.shutdown(wait=True)
        processor.close()
        log.info("inference: %s; event clips: %s", processor.stats, recorder.stats)
        if processor.serving is not None:
            log.info("networks: %s", json.dumps(processor.serving.stats.summary()))

    return app, close
