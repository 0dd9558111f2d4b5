"""`vigil worker` as a real process against the real broker: observations out, every kind of
bad input set aside on the dead-letter topic, and the stream keeps flowing. And the worker's
app in this process: a driver whose inference blocks stalls no other driver; a camera that
restarts (its seq from 0 again) is observed, not skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from kafka import KafkaProducer
from skimage import data
from stream_helpers import TopicFollower, running_app

from streams.broker import EmbeddedBroker
from streams.camera import CameraAgent, open_source
from streams.readback import read_topic
from streams.schemas import DeadLetter, FrameBatchHeader, FrameInfo, encode_frame_batch
from streams.topics import DEAD_LETTERS, FRAMES, OBSERVATIONS
from workers.agent import build_worker_app
from workers.face.backends import create_backend
from workers.face.engine import FaceDetection
from workers.inference import InferenceProcessor, ProcessResult, RawMessage
from workers.perception import DriverPerception
from workers.settings import WorkerSettings


def frame_batch(driver: str, first_seq: int, jpegs: list[bytes]) -> bytes:
    now = time.time()
    infos = [FrameInfo(seq=first_seq + i, captured_at=now + i / 10, width=512, height=512,
                       size=len(j)) for i, j in enumerate(jpegs)]
    return encode_frame_batch(
        FrameBatchHeader(driver_id=driver, vehicle_id="van-1", batch_seq=first_seq, fps=10,
                         sent_at=now, frames=infos), jpegs)


@pytest.fixture(scope="module")
def own_broker():
    """This module's own broker: the worker reads its topic from the start, and frames other
    tests published must not reach it."""
    with EmbeddedBroker() as broker:
        broker.create_topics()
        yield broker


@pytest.fixture(scope="module")
def worker(own_broker, tmp_path_factory):
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil", "worker", "--bootstrap",
             own_broker.bootstrap, "--drivers", "ann,bob"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    yield proc, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for_records(bootstrap: str, topic: str, predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    records: list = []
    while time.monotonic() < deadline:
        records = read_topic(bootstrap, topic, idle_s=1.0, max_s=10)
        if predicate(records):
            return records
        time.sleep(1)
    raise AssertionError(f"{topic}: condition not met; {len(records)} records")


def test_worker_observes_frames_and_dead_letters_bad_input(own_broker, worker) -> None:
    proc, log = worker
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    face = buf.tobytes()
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all",
                             max_request_size=8 * 1024 * 1024)
    sends = [
        (b"ann", frame_batch("ann", 0, [face] * 3)),
        (b"ann", frame_batch("ann", 3, [face, b"\xff\xd8 broken jpeg", face])),  # corrupt
        (b"ann", json.dumps({"schema": "vigil.observation.v1"}).encode()),  # wrong schema
        (b"eve", frame_batch("eve", 0, [face])),  # unknown driver
        (b"ann", b"VGF1" + b"\x00" * (4 * 1024 * 1024 + 16)),  # oversized
        (b"ann", frame_batch("ann", 6, [face] * 2)),  # the stream goes on
    ]
    for key, value in sends:
        producer.send(FRAMES.name, key=key, value=value).get(timeout=30)
    producer.close()

    def ann_seqs(records) -> list[int]:
        return sorted(json.loads(r.value)["seq"] for r in records if r.key == b"ann")

    observations = wait_for_records(own_broker.bootstrap, OBSERVATIONS.name,
                                    lambda rs: 7 in ann_seqs(rs))
    # Good frames of the corrupt batch count; frame 4 does not; nothing is duplicated.
    assert ann_seqs(observations) == [0, 1, 2, 3, 5, 6, 7]
    assert all(json.loads(r.value)["face_present"] for r in observations[-2:])

    letters = wait_for_records(own_broker.bootstrap, DEAD_LETTERS.name,
                               lambda rs: len(rs) >= 4)
    reasons = {}
    for r in letters:
        header = dict(r.headers)[DeadLetter.HEADER]
        letter = DeadLetter.model_validate_json(header)
        reasons[letter.reason.value] = (letter, r.value)
    assert set(reasons) == {"corrupt_frame", "bad_schema", "unknown_driver", "oversized"}
    assert reasons["unknown_driver"][0].key == "eve"
    assert reasons["bad_schema"][1] == sends[2][1]  # original payload kept
    assert reasons["corrupt_frame"][0].source_topic == FRAMES.name
    oversized, prefix = reasons["oversized"]
    assert oversized.payload_truncated and oversized.payload_size == len(sends[4][1])
    assert prefix == sends[4][1][: DeadLetter.MAX_PAYLOAD]
    assert "Crashed" not in Path(log).read_text()
    assert proc.poll() is None, Path(log).read_text()[-2000:]


class NoFaces:
    """A face engine that sees nobody: the test is about scheduling, not faces."""

    name = "none"

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        return []

    def close(self) -> None:
        pass


class GatedProcessor(InferenceProcessor):
    """Driver "slow" blocks in inference until ``gate`` is set."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(lambda fps: DriverPerception(NoFaces(), fps=fps))
        self.gate, self.slow_started = gate, threading.Event()

    def process(self, msg: RawMessage) -> ProcessResult:
        if msg.key == b"slow":
            self.slow_started.set()
            self.gate.wait(120)  # reached only if the fast driver's frames never got through
        return super().process(msg)


def test_a_blocked_driver_does_not_stall_another() -> None:
    """Both drivers on one partition, the slow one first: the fast one's observations must
    reach the broker while the slow one is still blocked (the test releases it only once it
    has read them), then the slow one's follow. A worker inferring one message at a time
    would wait on the gate."""
    gate = threading.Event()
    processor = GatedProcessor(gate)
    _, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    jpeg = buf.tobytes()
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app, close = build_worker_app(broker.bootstrap, app_id="vigil-test-lanes",
                                      worker=WorkerSettings(inference_threads=2),
                                      processor=processor)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

        def send(driver: str, first_seq: int) -> None:
            producer.send(FRAMES.name, key=driver.encode(), partition=0,
                          value=frame_batch(driver, first_seq, [jpeg] * 2)).get(timeout=30)

        def seqs(records, driver: str) -> list[int]:
            return sorted(json.loads(r.value)["seq"] for r in records
                          if r.key == driver.encode())

        try:
            with running_app(app), TopicFollower(broker.bootstrap,
                                                 OBSERVATIONS.name) as observations:
                send("slow", 0)
                assert processor.slow_started.wait(120), "the worker never took the slow batch"
                for first in (0, 2, 4):
                    send("fast", first)
                observed = observations.wait_for(lambda rs: len(seqs(rs, "fast")) == 6, 90)
                assert seqs(observed, "slow") == []  # still blocked
                gate.set()
                observed = observations.wait_for(lambda rs: seqs(rs, "slow") == [0, 1], 90)
            assert seqs(observed, "fast") == list(range(6))
        finally:
            gate.set()
            producer.close()
            close()


def test_a_restarted_camera_gets_every_frame_observed(video_dir: Path) -> None:
    """A camera agent publishes 60 frames, stops, and starts again (a new agent: seq from 0,
    a new session) with 50 more, through the real broker to the worker app: every frame of
    both sessions becomes exactly one observation, and the restart is counted."""
    source, _ = open_source(str(video_dir / "single_face.mp4"), fps=10)
    frames = list(source)
    processor = InferenceProcessor(
        lambda fps: DriverPerception(create_backend("opencv"), fps=fps))
    driver = "restarts"
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app, close = build_worker_app(broker.bootstrap, app_id="vigil-test-restart",
                                      processor=processor)
        try:
            with running_app(app), TopicFollower(broker.bootstrap,
                                                 OBSERVATIONS.name) as observations:
                first = CameraAgent(broker.bootstrap, driver, "van-1", fps=10, batch=8)
                assert first.run(iter(frames[:60]), paced=False).frames_sent == 60
                restarted = time.time()
                second = CameraAgent(broker.bootstrap, driver, "van-1", fps=10, batch=8)
                assert second.run(iter(frames[:50]), paced=False).frames_sent == 50
                assert first.session != second.session
                observed = observations.wait_for(
                    lambda rs: len(rs) >= 110, 120,
                    lambda: f"worker stats {processor.stats}")
        finally:
            close()
    obs = [json.loads(r.value) for r in observed if r.key == driver.encode()]
    after = [o["seq"] for o in obs if o["captured_at"] >= restarted]
    before = [o["seq"] for o in obs if o["captured_at"] < restarted]
    assert before == list(range(60)) and after == list(range(50))
    assert processor.stats.camera_restarts == 1 and processor.stats.skipped_frames == 0
