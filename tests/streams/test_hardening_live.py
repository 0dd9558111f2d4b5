"""Bad records against the running worker and aggregator on the real broker (Tansu) and the
real PostgreSQL store: a short end-to-end fuzz, and the audit's defects.

- The worker, fed an oversized malformed record and a few hundred bad ones between good
  frame batches: every good frame gets its observation, every bad record its dead letter
  (each small enough for any broker), and its offsets are committed to the end.
- The aggregator, fed bad observations (deep nesting, NaN, extreme and far-future capture
  times, NUL ids) between good ones, and NUL ids on the sinks' topics: all dead-lettered into
  the store, good alerts stored; and after a restart a driver whose stream carried a record
  dated 10 years ahead still gets its alerts and windows."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fuzzing import mutate_bytes, mutate_json
from kafka import KafkaAdminClient, KafkaProducer
from kafka.structs import TopicPartition
from stream_helpers import TopicFollower, running_app, spawn

from streams.aggregator import DriverAggregator
from streams.broker import EmbeddedBroker
from streams.processes import stop_child
from streams.schemas import (
    Alert,
    AlertReason,
    DeadLetter,
    FrameBatchHeader,
    FrameInfo,
    Observation,
    SchemaError,
    Severity,
    alert_id,
    decode_frame_batch,
    decode_record,
    encode_frame_batch,
)
from streams.store import Store
from streams.topics import ALERTS, DEAD_LETTERS, FRAMES, OBSERVATIONS, WINDOW_METRICS
from workers.agent import build_worker_app
from workers.face.engine import FaceDetection
from workers.inference import InferenceProcessor
from workers.perception import DriverPerception
from workers.settings import WorkerSettings

Position = tuple[str, int, int]  # topic, partition, offset


class NoFaces:
    name = "none"

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        return []

    def close(self) -> None:
        pass


def committed_to_end(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    """Has ``group`` committed every partition of ``topic`` in ``ends`` up to its end?"""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return all(offsets.get(TopicPartition(topic, p)) is not None
               and offsets[TopicPartition(topic, p)].offset >= end for p, end in ends.items())


def wait(predicate: Any, timeout_s: float, what: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what()
        time.sleep(0.5)


# --- the worker ---------------------------------------------------------------------------


def frame_batch(driver: str, first_seq: int, jpeg: bytes, now: float) -> bytes:
    infos = [FrameInfo(seq=first_seq + i, captured_at=now + i / 10, width=64, height=48,
                       size=len(jpeg)) for i in range(2)]
    return encode_frame_batch(FrameBatchHeader(driver_id=driver, vehicle_id="van-1",
                                               batch_seq=first_seq, fps=10, sent_at=now,
                                               frames=infos), [jpeg] * 2)


def test_worker_sets_aside_bad_frames_and_observes_every_good_one(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    jpeg, now, rng = buf.tobytes(), time.time(), random.Random(13)
    drivers = ["ann", "bob", "cid"]
    # A ~4 MB header of escaped control characters: its schema error once quoted it whole.
    header = b'{"schema": "' + b"\\u0001" * 680_000 + b'"}'
    oversized = b"VGF1" + len(header).to_bytes(4, "big") + header
    sends: list[tuple[bytes, bytes, bool]] = [(b"ann", oversized, False)]
    good = {d: 0 for d in drivers}
    while len(sends) < 400:
        driver = rng.choice(drivers)
        if rng.random() < 0.25:
            sends.append((driver.encode(), frame_batch(driver, good[driver], jpeg, now), True))
            good[driver] += 2
            continue
        base = frame_batch(driver, 10_000, jpeg, now)
        header = json.loads(base[8:8 + int.from_bytes(base[4:8], "big")])
        bad = (mutate_bytes(base, rng) if rng.random() < 0.5
               else b"VGF1" + (h := mutate_json(header, rng)).__len__().to_bytes(4, "big") + h)
        try:
            decode_frame_batch(bad)
        except SchemaError:
            sends.append((driver.encode(), bad, False))

    processor = InferenceProcessor(lambda fps: DriverPerception(NoFaces(), fps=fps))
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app, close = build_worker_app(
            broker.bootstrap, app_id="vigil-test-hardening", processor=processor,
            worker=WorkerSettings(inference_threads=2, replay_warmup_s=0))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                 max_request_size=8 * 1024 * 1024)
        bad_positions: set[Position] = set()
        ends: dict[int, int] = {}
        try:
            for key, value, is_good in sends:
                meta = producer.send(FRAMES.name, key=key, value=value).get(timeout=30)
                ends[meta.partition] = meta.offset + 1
                if not is_good:
                    bad_positions.add((meta.topic, meta.partition, meta.offset))
            with running_app(app), TopicFollower(broker.bootstrap, OBSERVATIONS.name) as obs, \
                    TopicFollower(broker.bootstrap, DEAD_LETTERS.name) as letters:

                def seqs() -> dict[str, list[int]]:
                    out: dict[str, list[int]] = {d: [] for d in drivers}
                    for r in obs.records:
                        o = decode_record(Observation, r.value)
                        out[o.driver_id].append(o.seq)
                    return {d: sorted(s) for d, s in out.items()}

                def set_aside() -> dict[Position, tuple[DeadLetter, int]]:
                    out = {}
                    for r in letters.records:
                        letter = decode_record(DeadLetter, dict(r.headers)[DeadLetter.HEADER])
                        size = len(r.value) + len(dict(r.headers)[DeadLetter.HEADER])
                        out[(letter.source_topic, letter.partition, letter.offset)] = (letter,
                                                                                      size)
                    return out

                expected = {d: list(range(n)) for d, n in good.items()}
                wait(lambda: seqs() == expected and bad_positions <= set_aside().keys(), 120,
                     lambda: f"observed {seqs()}; {len(set_aside())}/{len(bad_positions)} set "
                             "aside")
                # Nothing stuck: the group's offsets reach the end of every partition.
                wait(lambda: committed_to_end(broker.bootstrap, "vigil-test-hardening",
                                              FRAMES.name, ends), 60,
                     lambda: f"offsets not committed to {ends}")
                letters_by_position = set_aside()
        finally:
            producer.close()
            close()
    assert len(bad_positions) > 250
    assert set(letters_by_position) == bad_positions  # good batches set nothing aside
    assert all(size < 1024 * 1024 for _, size in letters_by_position.values())
    letter = next(letter for letter, _ in letters_by_position.values()
                  if letter.payload_size == len(oversized))
    assert letter.key == "ann" and letter.payload_truncated and letter.payload_sha256


# --- the aggregator -----------------------------------------------------------------------

FRAME_REASONS = {"microsleep", "sleep", "distraction", "unresponsive", "no_face"}


def drowsy(driver: str, start: float, seconds: int, fps: int = 5) -> list[Observation]:
    """Eyes open, but closed for 4 s every 30 s (a SLEEP each time)."""
    out = []
    for k in range(seconds * fps):
        t = start + k / fps
        closed_for = (t - start) % 30 - 20 if 20 <= (t - start) % 30 < 24 else 0.0
        out.append(Observation(
            driver_id=driver, vehicle_id="van-2", seq=k, captured_at=t, processed_at=t,
            face_present=True, closure=0.95 if closed_for else 0.1, gaze_off_road=False,
            closed_for_s=closed_for + 1 / fps if closed_for else 0.0))
    return out


def bad_observations(good: list[Observation], rng: random.Random, n: int
                     ) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs the aggregator must set aside."""
    out: list[tuple[bytes, bytes]] = [
        (b"fz1", b'{"schema": "vigil.observation.v1", "au": ' + b"[" * 50_000 + b"]" * 50_000
         + b"}"),
        (b"fz1", good[0].to_bytes().replace(b'"captured_at":', b'"captured_at":NaN,"x":')),
        (b"fz1", json.dumps({**json.loads(good[0].to_bytes()), "captured_at": 6e17}).encode()),
        (b"d\x00", good[0].to_bytes()),  # a key the store cannot hold, and not the driver
    ]
    while len(out) < n:
        base = json.loads(rng.choice(good).to_bytes())
        value = mutate_json(base, rng)
        try:
            decode_record(Observation, value)
        except SchemaError:
            out.append((base["driver_id"].encode(), value))
    return out


def sinks_nul_records() -> list[tuple[str, bytes]]:
    alert = Alert(alert_id=alert_id("good", AlertReason.NO_FACE, 1.0), driver_id="good",
                  vehicle_id="van-2", reason=AlertReason.NO_FACE, severity=Severity.WARNING,
                  started_at=time.time() - 60, detected_at=time.time() - 50, message="No face")
    nul = alert.to_bytes().replace(b'"driver_id":"good"', b'"driver_id":"d\\u0000"')
    window = (b'{"schema":"vigil.window-metrics.v1","driver_id":"d\\u0000","vehicle_id":"v",'
              b'"window_start":60.0,"window_end":120.0,"frames":1,"face_frames":1,'
              b'"perclos":null,"blink_count":0,"blink_rate_per_min":null,'
              b'"blink_duration_mean_s":null,"blink_duration_max_s":null,"long_closures":0,'
              b'"yawns":0,"off_road_s":0.0}')
    return [(ALERTS.name, nul), (WINDOW_METRICS.name, window), (ALERTS.name, alert.to_bytes())]


def test_aggregator_sets_aside_bad_observations_and_survives_a_future_record(
    pg_schema_url: str, tmp_path: Path
) -> None:
    rng = random.Random(5)
    now = time.time()
    start = (now // 60 - 10) * 60  # a whole minute 10 min ago: windows align
    fz = drowsy("fz1", start, 90) + drowsy("fz2", start, 90)
    fut_before = drowsy("fut", start - 60, 10)
    future = fut_before[-1].model_copy(update={"seq": 10_000,
                                               "captured_at": now + 10 * 365 * 86_400})
    fut_after = [o.model_copy(update={"seq": 100 + o.seq})
                 for o in drowsy("fut", start - 50, 180)]
    bad = bad_observations(fz, rng, 200)
    env = {"VIGIL_DATABASE__URL": pg_schema_url}
    store = Store(pg_schema_url)
    log1, log2 = tmp_path / "a1.log", tmp_path / "a2.log"

    with EmbeddedBroker() as broker:
        broker.create_topics()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        bad_positions: set[Position] = set()
        ends: dict[int, int] = {}

        def send(topic: str, key: bytes, value: bytes, is_bad: bool = False) -> None:
            meta = producer.send(topic, key=key, value=value).get(timeout=30)
            if topic == OBSERVATIONS.name:
                ends[meta.partition] = meta.offset + 1
            if is_bad:
                bad_positions.add((meta.topic, meta.partition, meta.offset))

        def stored_dead() -> set[Position]:
            try:
                return {(d.source_topic, d.partition, d.offset)
                        for d in store.dead_letters.find(limit=None)}
            except Exception:  # not migrated yet
                return set()

        def alerts(driver: str) -> set[str]:
            try:
                return {a.alert_id for a in store.alerts.find(driver_id=driver, limit=500)}
            except Exception:
                return set()

        aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env, log1)
        try:
            bad_iter = iter(bad)
            for i, obs in enumerate([*fut_before, *fz]):
                send(OBSERVATIONS.name, obs.driver_id.encode(), obs.to_bytes())
                if i % 4 == 0:
                    key, value = next(bad_iter, (b"", b""))
                    if value:
                        send(OBSERVATIONS.name, key, value, is_bad=True)
            for key, value in bad_iter:
                send(OBSERVATIONS.name, key, value, is_bad=True)
            send(OBSERVATIONS.name, b"fut", future.to_bytes(), is_bad=True)
            for topic, value in sinks_nul_records():
                send(topic, b"d", value, is_bad=b"\\u0000" in value)
            reference = DriverAggregator("fz1", "van-2")
            expected_fz = {a.alert_id for o in fz if o.driver_id == "fz1"
                           for a in reference.observe(o) if a.reason.value in FRAME_REASONS}
            assert expected_fz
            wait(lambda: bad_positions <= stored_dead() and expected_fz <= alerts("fz1")
                 and alerts("good"), 120,
                 lambda: f"{len(bad_positions - stored_dead())} bad records not set aside; "
                         f"{log1.read_text()[-3000:]}")
            wait(lambda: committed_to_end(broker.bootstrap, "vigil-aggregator",
                                          OBSERVATIONS.name, ends), 60,
                 lambda: f"observations not committed to {ends}")
            stop_child(aggregator)  # its state goes with its changelog

            aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env, log2)
            for obs in fut_after:
                send(OBSERVATIONS.name, b"fut", obs.to_bytes())
            reference = DriverAggregator("fut", "van-2")
            expected = {a.alert_id for o in [*fut_before, *fut_after]
                        for a in reference.observe(o) if a.reason is AlertReason.SLEEP}
            assert len(expected) >= 4
            wait(lambda: expected <= alerts("fut")
                 and len(store.series.of_driver("fut", since=start - 60, until=now)) >= 2, 120,
                 lambda: f"fut: {len(alerts('fut'))} alerts; {log2.read_text()[-3000:]}")
        finally:
            stop_child(aggregator)
            producer.close()
    letters = store.dead_letters.find(limit=None)
    store.close()
    nul_key = [d for d in letters if d.key is not None and d.key.startswith("d\\x00")]
    assert nul_key, "the NUL key was not stored, escaped"
    assert {d.source_topic for d in letters} >= {OBSERVATIONS.name, ALERTS.name,
                                                  WINDOW_METRICS.name}

