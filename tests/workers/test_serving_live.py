"""`vigil worker` serving a learnt network from the registry, against the real broker and
PostgreSQL: a version registered and promoted with `vigil models` while frames stream is
served from then on, without a restart and without losing or repeating a frame."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from kafka import KafkaProducer
from skimage import data
from stream_helpers import TopicFollower, spawn
from test_serving import tiny_checkpoint

from streams.broker import EmbeddedBroker
from streams.commands import register_checkpoint
from streams.schemas import FrameBatchHeader, FrameInfo, NetworkRole, encode_frame_batch
from streams.store import Store
from streams.topics import FRAMES, OBSERVATIONS

MODEL = "fatigue-nonlocal-r3d18"
FPS = 10.0


def vigil(args: list[str], env: dict[str, str]) -> str:
    import os

    done = subprocess.run([sys.executable, "-m", "vigil", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_a_network_version_promoted_mid_stream_is_served_and_no_frame_is_lost(
        pg_schema_url: str, tmp_path: Path) -> None:
    env = {"VIGIL_DATABASE__URL": pg_schema_url}
    first = tiny_checkpoint(NetworkRole.FATIGUE, tmp_path / "fatigue-a.pt", seed=0)
    second = tiny_checkpoint(NetworkRole.FATIGUE, tmp_path / "fatigue-b.pt", seed=1)
    with Store(pg_schema_url) as store:
        store.migrate()
        register_checkpoint(store, MODEL, first)
        store.model_versions.promote(MODEL, "v1")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    jpeg = buf.tobytes()

    with EmbeddedBroker() as broker:
        broker.create_topics()
        log = tmp_path / "worker.log"
        worker = spawn(["worker", "--bootstrap", broker.bootstrap, "--drivers", "ann"],
                       {**env, "VIGIL_SERVING__NETWORKS": "fatigue",
                        "VIGIL_SERVING__FATIGUE_STRIDE_S": "0.5",
                        "VIGIL_SERVING__REFRESH_S": "1"}, log)
        follower = TopicFollower(broker.bootstrap, OBSERVATIONS.name)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        t0 = time.time()
        sent = 0

        def send(batches: int | None = None, until: threading.Event | None = None) -> None:
            """Batches of 5 frames in real time: ``batches`` of them, or until ``until``."""
            nonlocal sent
            while (batches is None or sent < batches * 5) and not (until and until.is_set()):
                seqs = range(sent, sent + 5)
                infos = [FrameInfo(seq=s, captured_at=t0 + s / FPS, width=512, height=512,
                                   size=len(jpeg)) for s in seqs]
                header = FrameBatchHeader(driver_id="ann", vehicle_id="van-1",
                                          batch_seq=sent // 5, fps=FPS, sent_at=time.time(),
                                          frames=infos)
                producer.send(FRAMES.name, key=b"ann",
                              value=encode_frame_batch(header, [jpeg] * 5))
                producer.flush()
                sent += 5
                time.sleep(5 / FPS)

        def observed() -> list[dict[str, object]]:
            return [json.loads(r.value) for r in follower.records]

        try:
            follower.__enter__()
            send(2)
            deadline = time.monotonic() + 120
            while len(observed()) < 10 and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            # The stream goes on while v2 is registered and promoted, and until the worker
            # has served v2 for a few seconds.
            stop = threading.Event()
            streaming = threading.Thread(target=send, kwargs={"until": stop})
            streaming.start()
            try:
                time.sleep(0.5)
                registered = vigil(["models", "register", str(second), "--model", MODEL], env)
                assert "v2 registered as a candidate" in registered
                vigil(["models", "promote", "v2", "--model", MODEL], env)
                deadline = time.monotonic() + 60
                while not any(r["version"] == "v2" for o in observed()
                              for r in o["networks"]) and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(1.0)
            finally:
                stop.set()
                streaming.join()
            deadline = time.monotonic() + 120
            while len(observed()) < sent and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            follower.__exit__()
            producer.close()
            worker.terminate()
            worker.wait(60)
    text = log.read_text()
    observations = observed()
    assert sorted(o["seq"] for o in observations) == list(range(sent)), text[-3000:]
    readings = [r for o in observations for r in o["networks"] if r["skipped"] is None]
    versions = [r["version"] for r in sorted(readings, key=lambda r: r["window_end_seq"])]
    assert versions[0] == "v1" and versions[-1] == "v2", versions
    # One swap: v1 until it, v2 after it, never back.
    assert versions == sorted(versions), versions
    if "Traceback" in text:
        pytest.fail(text[-3000:])
