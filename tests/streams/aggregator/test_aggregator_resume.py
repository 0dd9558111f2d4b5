"""A camera that falls silent just before its aggregator goes (a crash, a restart, a partition
moving) is still reported: whoever holds the driver next restores it from the table and raises
CAMERA_BLOCKED from the last frame. A camera that streams on through the same handover is not
reported: its backlog reaches the new aggregator before its grace runs out."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from stream_helpers import TopicFollower, running_app

from streams.aggregator.agent import build_aggregator_app
from streams.broker import EmbeddedBroker
from streams.schemas import Alert, AlertReason, Observation, decode_record
from streams.store import Store
from streams.topics import ALERTS, OBSERVATIONS

APP_ID = "vigil-test-resume"
CHANGELOG = f"{APP_ID}-aggregator-state-changelog"


def observation(driver: str, seq: int, captured_at: float) -> Observation:
    return Observation(driver_id=driver, vehicle_id="van", seq=seq, captured_at=captured_at,
                       processed_at=captured_at, face_present=True, closure=0.1,
                       gaze_off_road=False)


def saved_until(records: list, driver: str) -> float | None:
    """The newest capture time the changelog holds for ``driver`` (None: nothing saved)."""
    times = [json.loads(r.value)["prev_t"] for r in records
             if r.value and json.loads(r.key) == driver]
    return max(times, default=None)


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        while topic not in consumer.topics():
            assert time.monotonic() < deadline, f"{topic} was never created"
            time.sleep(0.2)
    finally:
        consumer.close()


def test_a_camera_silent_across_an_aggregator_restart_is_reported_once(tmp_path: Path) -> None:
    silent, streaming = "d-silent", "d-streaming"
    store = Store(f"sqlite:///{tmp_path / 'vigil.db'}")
    store.migrate()
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        broker.create_topics()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        start = time.time()

        def send(obs: Observation) -> None:
            producer.send(OBSERVATIONS.name, key=obs.driver_id.encode(), value=obs.to_bytes())

        for k in range(30):  # 3 s of both drivers, then the silent camera stops
            send(observation(silent, k, start + k / 10))
            send(observation(streaming, k, start + k / 10))
        producer.flush(30)
        last_frame = start + 29 / 10

        stop_streaming = threading.Event()

        def stream_on() -> None:  # 10 fps in real time, through the restart
            seq = 30
            while not stop_streaming.is_set():
                send(observation(streaming, seq, time.time()))
                seq += 1
                time.sleep(0.1)

        streamer = threading.Thread(target=stream_on, daemon=True)
        streamer.start()
        try:
            first, close_first = build_aggregator_app(broker.bootstrap, store, app_id=APP_ID)
            with running_app(first):
                wait_for_topic(broker.bootstrap, CHANGELOG)  # the app makes it as it starts
                with TopicFollower(broker.bootstrap, CHANGELOG) as changelog:
                    changelog.wait_for(lambda rs: abs((saved_until(rs, silent) or 0)
                                                      - last_frame) < 1e-6, 60)
            close_first()
            # Stopped well inside the 10 s the first aggregator needed to see the silence.
            assert time.time() - last_frame < 10, "the first aggregator saw the silence itself"

            second, close_second = build_aggregator_app(broker.bootstrap, store, app_id=APP_ID)
            with running_app(second), TopicFollower(broker.bootstrap, ALERTS.name) as alerts:
                def blocked(records: list) -> list[Alert]:
                    return [a for a in (decode_record(Alert, r.value) for r in records)
                            if a.reason is AlertReason.CAMERA_BLOCKED]

                alerts.wait_for(lambda rs: blocked(rs), 90)
                time.sleep(3.0)  # ticks enough to raise it twice, or the streaming camera's
                reported = blocked(alerts.records)
            close_second()
        finally:
            stop_streaming.set()
            streamer.join(5)
            producer.close()
    stored = [a for a in store.alerts.find() if a.reason is AlertReason.CAMERA_BLOCKED]
    store.close()
    assert [a.driver_id for a in reported] == [silent], [(a.driver_id, a.evidence)
                                                        for a in reported]
    alert = reported[0]
    assert abs(alert.started_at - last_frame) < 1e-3  # from the last frame, not the restart
    assert alert.evidence["silence_s"] >= 10
    assert [a.driver_id for a in stored] == [silent]
