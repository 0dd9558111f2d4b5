"""An aggregator that loses a driver's partition in a rebalance (another aggregator joined,
or the group reshuffled) lets go of the driver: it no longer ticks it, so it raises no
CAMERA_BLOCKED for a camera that streams on to the other aggregator. (Whoever gets the
partition restores the driver from the table: tests/streams/test_scale_out.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from faust.types import TP
from kafka import KafkaProducer
from stream_helpers import TopicFollower, running_app

from streams.aggregator.agent import build_aggregator_app
from streams.broker import EmbeddedBroker
from streams.schemas import Alert, AlertReason, Observation, decode_record
from streams.store import Store
from streams.topics import ALERTS, OBSERVATIONS, driver_partition

PARTITIONS = 8  # the default VIGIL_KAFKA__PARTITIONS


def partition(driver: str) -> int:
    return driver_partition(driver, PARTITIONS)


def frames(driver: str, start: float, seconds: float, face: bool) -> list[Observation]:
    """10 fps; eyes open on the road when ``face``, else no face."""
    return [Observation(driver_id=driver, vehicle_id="van", seq=k, captured_at=start + k / 10,
                        processed_at=start + k / 10, face_present=face,
                        closure=0.1 if face else None, gaze_off_road=False if face else None)
            for k in range(round(seconds * 10))]


def test_a_driver_whose_partition_was_revoked_is_no_longer_ticked(tmp_path: Path) -> None:
    kept, moved = "d-kept", "d-moved-1"
    assert partition(kept) != partition(moved)
    store = Store(f"sqlite:///{tmp_path / 'vigil.db'}")
    store.migrate()
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        broker.create_topics()
        app, close = build_aggregator_app(broker.bootstrap, store, app_id="vigil-test-revoke")
        loops: list[asyncio.AbstractEventLoop] = []

        @app.task
        async def remember_loop() -> None:
            loops.append(asyncio.get_running_loop())

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        now = time.time()
        for obs in frames(kept, now - 6, 6, face=True) + frames(moved, now - 6, 6, face=False):
            producer.send(OBSERVATIONS.name, key=obs.driver_id.encode(), value=obs.to_bytes())
        producer.flush(30)
        producer.close()

        def reasons(records, driver: str) -> list[str]:
            return [a.reason.value for a in (decode_record(Alert, r.value) for r in records)
                    if a.driver_id == driver]

        try:
            with running_app(app), TopicFollower(broker.bootstrap, ALERTS.name) as alerts:
                # The moved driver's frames were aggregated: 5 s without a face.
                alerts.wait_for(lambda rs: AlertReason.NO_FACE in reasons(rs, moved), 60)
                assert loops, "the app's task did not run"
                revoked = {TP(OBSERVATIONS.name, partition(moved))}  # as a rebalance does
                asyncio.run_coroutine_threadsafe(app.on_partitions_revoked.send(revoked),
                                                 loops[0]).result(30)
                # Both cameras fell silent at once; only the driver still held is reported.
                records = alerts.wait_for(
                    lambda rs: AlertReason.CAMERA_BLOCKED in reasons(rs, kept), 60)
                time.sleep(2.5)  # more ticks than the moved driver's silence would need
                records = alerts.records
        finally:
            close()
            store.close()
    assert AlertReason.CAMERA_BLOCKED not in reasons(records, moved), reasons(records, moved)
