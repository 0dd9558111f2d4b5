"""The Faust app: broker, tables and topics are bound here and nowhere else."""

from __future__ import annotations

import faust

from streams.schemas import MAX_BATCH_BYTES
from streams.topics import TopicSpec


def create_app(app_id: str, bootstrap: str) -> faust.App:
    """At-least-once processing (DESIGN §7: exactly-once is unreliable in Faust); sinks are
    idempotent instead. No web server: the workers expose nothing over HTTP."""
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
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
