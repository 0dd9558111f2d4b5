"""Every Kafka topic Vigil uses: one module, no topic-name strings elsewhere.

All topics are keyed by driver id, so one driver's messages stay ordered on one partition and
per-driver state lives with one worker. The topics keyed by driver all have the fleet's
partition count, ``VIGIL_KAFKA__PARTITIONS`` (default 8): the most workers, and aggregators,
that can share the load (see README, "Scaling out"); the dead-letter topic has its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.partitioner.default import murmur2


@dataclass(frozen=True)
class TopicSpec:
    name: str
    # None: keyed by driver, with the fleet's count (VIGIL_KAFKA__PARTITIONS); a number: the
    # topic's own count, whatever the fleet's. Read it through partition_count.
    partitions: int | None
    retention_ms: int
    description: str

    def partition_count(self, fleet_partitions: int) -> int:
        """The topic's partitions when the driver-keyed topics have ``fleet_partitions``."""
        return fleet_partitions if self.partitions is None else self.partitions


def driver_partition(driver_id: str, partitions: int) -> int:
    """The partition of a driver's records among ``partitions``: Kafka's default partitioner
    (murmur2 of the key), which every client Vigil uses applies."""
    return (murmur2(driver_id.encode()) & 0x7FFFFFFF) % partitions


HOUR_MS = 3_600_000

FRAMES = TopicSpec("vigil.frames.v1", None, 1 * HOUR_MS,
                   "camera frame batches (binary envelope)")
OBSERVATIONS = TopicSpec("vigil.observations.v1", None, 24 * HOUR_MS, "per-frame driver signals")
WINDOW_METRICS = TopicSpec("vigil.window-metrics.v1", None, 7 * 24 * HOUR_MS,
                           "per-driver windows")
ALERTS = TopicSpec("vigil.alerts.v1", None, 30 * 24 * HOUR_MS, "driver-state alerts")
DEAD_LETTERS = TopicSpec(
    "vigil.dead-letters.v1", 1, 30 * 24 * HOUR_MS, "messages set aside, with the reason"
)
# Same partition count as FRAMES and ALERTS (all three None: the fleet's): the worker that
# holds a driver's frames writes the clip behind the driver's alert (see workers.agent on
# co-partitioning).
EVENT_CLIPS = TopicSpec(
    "vigil.event-clips.v1", None, 7 * 24 * HOUR_MS, "clip files written behind alerts"
)

ALL_TOPICS = (FRAMES, OBSERVATIONS, WINDOW_METRICS, ALERTS, DEAD_LETTERS, EVENT_CLIPS)

# Consumer groups (the Faust app ids) and the topics each consumes, for lag monitoring.
WORKER_GROUP = "vigil-inference"
AGGREGATOR_GROUP = "vigil-aggregator"
CONSUMER_GROUPS: dict[str, tuple[TopicSpec, ...]] = {
    WORKER_GROUP: (FRAMES, ALERTS),
    AGGREGATOR_GROUP: (OBSERVATIONS, WINDOW_METRICS, ALERTS, DEAD_LETTERS, EVENT_CLIPS),
}
