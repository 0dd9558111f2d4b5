"""Reading a topic back from the beginning, every partition, without joining a consumer group
(the pipeline bench and the tests check what was published with it)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams.kafka_clients import client_kwargs
from streams.settings import KafkaSettings, StreamSettings, load_settings


async def _read(bootstrap: str, topic: str, idle_s: float, max_s: float, kafka: KafkaSettings
                ) -> list[ConsumerRecord[Any, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024,
                                **client_kwargs(kafka, "aiokafka"))
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord[Any, Any]] = []
        loop = asyncio.get_running_loop()
        start = last = loop.time()
        while loop.time() - last < idle_s and loop.time() - start < max_s:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
                last = loop.time()
        return records
    finally:
        await consumer.stop()


def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0, max_s: float = 300.0,
               kafka: KafkaSettings | None = None) -> list[ConsumerRecord[Any, Any]]:
    """Every record of ``topic``, all partitions, from the beginning, reading until ``idle_s``
    pass without news (or ``max_s`` in all). Joins no consumer group, so nothing waits for a
    group join. ``kafka``: security settings (None: ``VIGIL_KAFKA__*``)."""
    kafka = kafka or load_settings(StreamSettings).kafka
    return asyncio.run(_read(bootstrap, topic, idle_s, max_s, kafka))
