"""The Faust app: broker, tables and topics are bound here and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TableT

from streams.kafka_clients import client_kwargs, topic_configs
from streams.observability import DEAD_LETTERS_TOTAL
from streams.schemas import MAX_BATCH_BYTES, DeadLetter, DeadLetterReason
from streams.settings import KafkaSettings, StreamSettings, load_settings
from streams.topics import TopicSpec

log = logging.getLogger(__name__)

# How long a consumer's fetch may wait at the broker for new records. Faust fixes it at
# 1500 ms, and brokers that do not answer a waiting fetch when records arrive (Tansu among
# them) then add up to that much latency per hop; 100 ms keeps capture -> alert in seconds.
FETCH_MAX_WAIT_MS = 100


# Faust's services log under their class's module: these stay under faust's logger (quiet
# below WARNING, like the rest of Faust) rather than this module's.
_FAUST_LOG = logging.getLogger(faust_aiokafka.__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    logger = _FAUST_LOG

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    logger = _FAUST_LOG

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :data:`FETCH_MAX_WAIT_MS`; registered as the
    ``vigil-kafka://`` scheme (pyproject's ``faust.transports`` entry point)."""

    Consumer = _Consumer


def create_app(app_id: str, bootstrap: str, kafka: KafkaSettings | None = None) -> faust.App:
    """At-least-once processing (DESIGN §7: exactly-once is unreliable in Faust); sinks are
    idempotent instead. No web server: the workers expose nothing over HTTP.

    kafka: security (``broker_credentials``), partitions and replication of the topics and
    tables the app declares; None reads ``VIGIL_KAFKA__*``. Every app of one group must be
    started with the same ``app_id``: its members then share the partitions."""
    kafka = kafka or load_settings(StreamSettings).kafka
    app = faust.App(
        app_id,
        broker=f"vigil-kafka://{bootstrap}",
        store="memory://",
        processing_guarantee="at_least_once",
        web_enabled=False,
        topic_allow_declare=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # A group join completes only when the rebalance timeout expires on some brokers
        # (Tansu among them): short timeouts keep start-up and failover in seconds.
        broker_session_timeout=10.0,
        broker_rebalance_timeout=5.0,
        broker_heartbeat_interval=2.0,
        producer_max_request_size=MAX_BATCH_BYTES + 1024 * 1024,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        **client_kwargs(kafka, "faust"),
    )
    app.vigil_kafka = kafka  # type: ignore[attr-defined]  # read by bind_topic, bind_table

    async def log_assignment(sender: Any, assigned: set[Any], **_: Any) -> None:
        # Which process holds which partitions (so which drivers): brokers that answer
        # DescribeGroups without member assignments (Tansu) show it nowhere else.
        log.info("%s: partitions assigned: %s", app_id, describe_partitions(assigned))

    app.on_partitions_assigned.connect(log_assignment)  # type: ignore[arg-type]
    return app


def describe_partitions(tps: Any) -> str:
    """``topic p,p,p; topic p`` for a set of topic partitions (``-`` for none)."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{topic} {','.join(map(str, sorted(ps)))}"
                     for topic, ps in sorted(by_topic.items())) or "-"


def kafka_of(app: faust.App) -> KafkaSettings:
    kafka = getattr(app, "vigil_kafka", None)
    return kafka if isinstance(kafka, KafkaSettings) else KafkaSettings()


def bind_topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    """The app's handle on a declared topic; keys and values stay raw bytes (the schemas
    module decodes them, so bad messages reach the dead-letter path instead of crashing).
    Declared, if missing, with the app's partitions (driver-keyed topics), replication and
    ``min.insync.replicas``."""
    kafka = kafka_of(app)
    return app.topic(
        spec.name, partitions=spec.partition_count(kafka.partitions), key_serializer="raw",
        value_serializer="raw", retention=spec.retention_ms / 1000.0,
        replicas=kafka.replication_factor, config=topic_configs(kafka),
    )


def bind_table(app: faust.App, name: str, source: TopicSpec, default: Any = None) -> TableT:
    """A table keyed like ``source``: its changelog has ``source``'s partition count (Faust
    requires it) and the app's replication and ``min.insync.replicas``."""
    kafka = kafka_of(app)
    return app.Table(name, default=default, partitions=source.partition_count(kafka.partitions),
                     extra_topic_configs=topic_configs(kafka))


async def set_aside(dead_letters: faust.TopicT, message: Any, exc: Exception,
                    reason: DeadLetterReason = DeadLetterReason.BAD_SCHEMA) -> None:
    """Sends a consumed message that does not decode (or that the store refused) to the
    dead-letter topic: its bytes, with the reason and its ``topic[partition]@offset`` in the
    header."""
    key = message.key or b""
    letter = DeadLetter(reason=reason, error=f"{type(exc).__name__}: {exc}"
                        if reason is DeadLetterReason.PROCESSING_ERROR else str(exc),
                        source_topic=message.topic,
                        partition=message.partition, offset=message.offset,
                        key=key.decode(errors="replace") or None)
    logging.getLogger(__name__).warning("dead letter %s: %s: %s", letter.where, reason.value,
                                        letter.error, extra={"where": letter.where})
    letter, value = letter.carrying(message.value or b"")
    await dead_letters.send(key=key, value=value, headers={DeadLetter.HEADER: letter.to_bytes()})
    DEAD_LETTERS_TOTAL.labels(reason.value, message.topic).inc()
