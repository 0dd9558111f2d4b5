"""Killing the aggregator mid-stream (SIGKILL) and starting it again loses no alert and
duplicates none: PostgreSQL ends up with exactly the frame-driven alerts that the pure
aggregator computes from the same observations in one uninterrupted pass."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from stream_helpers import read_topic, spawn, stop

from streams.aggregator import DriverAggregator
from streams.broker import EmbeddedBroker
from streams.camera import CameraAgent, open_source
from streams.schemas import Observation, decode_record
from streams.store import Store
from streams.topics import OBSERVATIONS

FRAME_REASONS = {"microsleep", "sleep", "distraction", "unresponsive", "no_face"}
FRAMES = 15 * 90


def stored_ids(store: Store) -> dict[str, str]:
    try:
        return {a.alert_id: a.reason.value for a in store.alerts(driver_id="d-restart",
                                                                  limit=500)}
    except Exception:  # not migrated yet
        return {}


def test_aggregator_killed_mid_stream_loses_and_duplicates_no_alert(
    pg_schema_url: str, tmp_path: Path
) -> None:
    env = {"VIGIL_DATABASE_URL": pg_schema_url}
    with EmbeddedBroker() as broker:
        broker.create_topics()
        worker = spawn(["worker", "--bootstrap", broker.bootstrap], env, tmp_path / "w.log")
        aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env,
                           tmp_path / "a1.log")
        store = Store(pg_schema_url)
        try:
            source, _ = open_source("sim:drowsy:3", fps=15)
            agent = CameraAgent(broker.bootstrap, "d-restart", "van-8", fps=15, batch=8)
            camera = threading.Thread(target=agent.run, args=(source, False, FRAMES),
                                      kwargs={"nominal_times": True})
            camera.start()
            deadline = time.monotonic() + 180
            while not stored_ids(store) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert stored_ids(store), (tmp_path / "a1.log").read_text()[-3000:]
            aggregator.send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown
            aggregator.wait()
            aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env,
                               tmp_path / "a2.log")
            camera.join(timeout=180)
            observations = read_topic(broker.bootstrap, OBSERVATIONS.name, idle_s=3, max_s=60)
            # Wait until the restarted aggregator has caught up (the stored set is stable).
            previous, stable_since = None, time.monotonic()
            while time.monotonic() - stable_since < 12 and time.monotonic() < deadline + 120:
                current = stored_ids(store)
                if current != previous:
                    previous, stable_since = current, time.monotonic()
                time.sleep(1)
        finally:
            stop(aggregator)
            stop(worker)
    obs = sorted((decode_record(Observation, r.value) for r in observations),
                 key=lambda o: o.seq)
    assert len({o.seq for o in obs}) == FRAMES
    reference = DriverAggregator("d-restart", "van-8")
    expected = {a.alert_id: a.reason.value for o in obs for a in reference.observe(o)
                if a.reason.value in FRAME_REASONS}
    got = {k: v for k, v in stored_ids(store).items() if v in FRAME_REASONS}
    store.close()
    assert expected, "the drowsy stream should raise frame-driven alerts"
    assert got == expected, json.dumps({"missing": sorted(set(expected) - set(got)),
                                        "extra": sorted(set(got) - set(expected))})
