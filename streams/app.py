"""The Faust app: broker, tables and topics are bound here and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.schemas import MAX_BATCH_BYTES, DeadLetter, DeadLetterReason
from streams.topics import TopicSpec

# How long a consumer's fetch may wait at the broker for new records. Faust fixes it at
# 1500 ms, and brokers that do not answer a waiting fetch when records arrive (Tansu among
# them) then add up to that much latency per hop; 100 ms keeps capture -> alert in seconds.
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :data:`FETCH_MAX_WAIT_MS`; registered as the
    ``vigil-kafka://`` scheme (pyproject's ``faust.transports`` entry point)."""

    Consumer = _Consumer


def create_app(app_id: str, bootstrap: str) -> faust.App:
    """At-least-once processing (DESIGN §7: exactly-once is unreliable in Faust); sinks are
    idempotent instead. No web server: the workers expose nothing over HTTP."""
    return faust.App(
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
    )


def bind_topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    """The app's handle on a declared topic; keys and values stay raw bytes (the schemas
    module decodes them, so bad messages reach the dead-letter path instead of crashing)."""
    return app.topic(
        spec.name, partitions=spec.partitions, key_serializer="raw", value_serializer="raw",
        retention=spec.retention_ms / 1000.0,
    )


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
                                        letter.error)
    letter, value = letter.carrying(message.value or b"")
    await dead_letters.send(key=key, value=value, headers={DeadLetter.HEADER: letter.to_bytes()})
