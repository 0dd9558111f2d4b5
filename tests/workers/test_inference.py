"""The inference processor without Kafka: frames in, observations or dead letters out."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import cv2
import numpy as np
import pytest
from skimage import data

from streams.schemas import (
    DeadLetterReason,
    FrameBatchHeader,
    FrameInfo,
    Observation,
    encode_frame_batch,
)
from workers.face.backends import create_backend
from workers.inference import SKIP_LOG_EVERY_S, InferenceProcessor, RawMessage
from workers.perception import DriverPerception


def jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return jpeg(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))


def batch(driver: str, first_seq: int, images: list[bytes], batch_seq: int = 0) -> bytes:
    now = time.time()
    frames = [FrameInfo(seq=first_seq + i, captured_at=now + i / 10, width=512, height=512,
                        size=len(b)) for i, b in enumerate(images)]
    header = FrameBatchHeader(driver_id=driver, vehicle_id="van-9", batch_seq=batch_seq,
                              fps=10, sent_at=now, frames=frames)
    return encode_frame_batch(header, images)


@pytest.fixture
def processor():
    p = InferenceProcessor(
        lambda fps: DriverPerception(create_backend("mediapipe"), fps=fps),
        known_drivers=frozenset({"ann", "bob"}),
    )
    yield p
    p.close()


def msg(value: bytes, key: bytes | None = b"ann", offset: int = 0) -> RawMessage:
    return RawMessage(key=key, value=value, partition=0, offset=offset)


def test_good_batch_gives_one_observation_per_frame(processor, face_jpeg) -> None:
    result = processor.process(msg(batch("ann", 0, [face_jpeg] * 4)))
    assert result.dead_letters == []
    assert [o.seq for o in result.observations] == [0, 1, 2, 3]
    last = result.observations[-1]
    assert isinstance(last, Observation) and last.driver_id == "ann"
    assert last.vehicle_id == "van-9" and last.face_present


def test_replayed_frames_are_not_observed_twice(processor, face_jpeg) -> None:
    value = batch("ann", 0, [face_jpeg] * 3)
    assert len(processor.process(msg(value)).observations) == 3
    assert processor.process(msg(value, offset=1)).observations == []


def session_batch(session: str | None, seqs: range, image: bytes, t0: float) -> bytes:
    frames = [FrameInfo(seq=s, captured_at=t0 + k / 10, width=512, height=512, size=len(image))
              for k, s in enumerate(seqs)]
    return encode_frame_batch(FrameBatchHeader(driver_id="ann", vehicle_id="van-9",
                                               session=session, batch_seq=0, fps=10,
                                               sent_at=t0, frames=frames),
                              [image] * len(frames))


def test_a_restarted_camera_is_processed_logged_and_counted(processor, face_jpeg,
                                                            caplog) -> None:
    """The camera starts again at seq 0 in a new session: its frames are observed, not taken
    for a replay of the frames before the restart."""
    t0 = time.time() - 60
    first = processor.process(msg(session_batch("boot-a", range(0, 8), face_jpeg, t0)))
    with caplog.at_level(logging.WARNING, logger="workers.inference"):
        second = processor.process(msg(session_batch("boot-b", range(0, 5), face_jpeg, t0 + 5),
                                       offset=1))
    assert [o.seq for o in first.observations] == list(range(8))
    assert [o.seq for o in second.observations] == list(range(5))
    assert second.dead_letters == []
    assert processor.stats.camera_restarts == 1 and processor.stats.skipped_frames == 0
    assert "camera restarted" in caplog.text and "boot-b" in caplog.text
    # Records of cameras older than the session field still decode and are still deduplicated.
    old = session_batch(None, range(0, 3), face_jpeg, t0 + 10)
    assert len(processor.process(msg(old, offset=2)).observations) == 3
    assert processor.process(msg(old, offset=3)).observations == []


def test_stale_frames_of_a_session_are_skipped_counted_and_logged_sparingly(face_jpeg,
                                                                            caplog) -> None:
    now = [1_000.0]
    processor = InferenceProcessor(
        lambda fps: DriverPerception(create_backend("mediapipe"), fps=fps), clock=lambda: now[0])
    t0 = time.time() - 60
    try:
        with caplog.at_level(logging.WARNING, logger="workers.inference"):
            assert len(processor.process(msg(session_batch("s1", range(0, 6), face_jpeg,
                                                               t0))).observations) == 6
            # A replay of the batch, then frames out of order: skipped, nothing observed twice.
            assert processor.process(msg(session_batch("s1", range(0, 6), face_jpeg, t0),
                                         offset=1)).observations == []
            mixed = processor.process(msg(session_batch("s1", range(4, 9), face_jpeg, t0 + 1),
                                          offset=2))
            assert [o.seq for o in mixed.observations] == [6, 7, 8]
            now[0] += 1  # soon after: counted, not logged again
            processor.process(msg(session_batch("s1", range(2, 4), face_jpeg, t0 + 2),
                                  offset=3))
        assert processor.stats.skipped_frames == 6 + 2 + 2
        assert processor.stats.camera_restarts == 0
        lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(lines) == 1 and "driver ann: 6 frames skipped" in lines[0]
        now[0] += SKIP_LOG_EVERY_S
        with caplog.at_level(logging.WARNING, logger="workers.inference"):
            processor.process(msg(session_batch("s1", range(8, 9), face_jpeg, t0 + 3),
                                  offset=4))
        lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(lines) == 2 and "driver ann: 5 frames skipped" in lines[1]
    finally:
        processor.close()


def test_corrupt_jpeg_is_dead_lettered_and_good_frames_still_count(processor, face_jpeg) -> None:
    value = batch("ann", 0, [face_jpeg, b"\xff\xd8 definitely not a jpeg", face_jpeg])
    result = processor.process(msg(value, offset=7))
    assert [o.seq for o in result.observations] == [0, 2]
    (letter, payload), = result.dead_letters
    assert letter.reason is DeadLetterReason.CORRUPT_FRAME and "[1]" in letter.error
    assert (letter.partition, letter.offset, letter.key) == (0, 7, "ann")
    assert payload == value  # the original bytes are kept for inspection


@pytest.mark.parametrize(
    ("value", "key", "reason", "text"),
    [
        (b'{"schema": "vigil.observation.v1"}', b"ann", DeadLetterReason.BAD_SCHEMA, "magic"),
        (b"VGF1\x00\x00\x00\x05{bad}", b"ann", DeadLetterReason.BAD_SCHEMA, "not JSON"),
        (b"VGF1" + b"\x00" * (5 * 1024 * 1024), b"ann", DeadLetterReason.OVERSIZED, "limit"),
    ],
    ids=["wrong-schema", "bad-header", "oversized"],
)
def test_unusable_messages_become_dead_letters(processor, value, key, reason, text) -> None:
    result = processor.process(msg(value, key))
    assert result.observations == []
    (letter, payload), = result.dead_letters
    assert letter.reason is reason and text in letter.error and payload == value


def test_unknown_driver_is_dead_lettered(processor, face_jpeg) -> None:
    result = processor.process(msg(batch("mallory", 0, [face_jpeg]), key=b"mallory"))
    (letter, _), = result.dead_letters
    assert letter.reason is DeadLetterReason.UNKNOWN_DRIVER and "mallory" in letter.error


@pytest.mark.parametrize("key", [b"bob", None], ids=["other-driver", "no-key"])
def test_key_must_match_the_driver(processor, face_jpeg, key) -> None:
    """The worker's lanes go by key: a batch under another key (or none) could be processed
    alongside its driver's own lane, so it is set aside before touching any state."""
    result = processor.process(msg(batch("ann", 0, [face_jpeg]), key=key))
    (letter, _), = result.dead_letters
    assert letter.reason is DeadLetterReason.BAD_SCHEMA and "differs" in letter.error
    assert result.driver_id is None


def test_drivers_processed_in_parallel_threads_match_one_at_a_time(face_jpeg) -> None:
    """Two drivers' lanes in two threads: each driver's observations are what a processor
    running one message at a time gives (per-driver state and face engines are separate)."""
    flipped = jpeg(cv2.flip(cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), 1), 1))
    lanes = {
        driver: [msg(batch(driver, 3 * k, [image] * 3, batch_seq=k), key=driver.encode(),
                     offset=k) for k in range(3)]
        for driver, image in (("ann", face_jpeg), ("bob", flipped))
    }

    def run(processor: InferenceProcessor, driver: str) -> list[dict]:
        results = processor.process_batch(lanes[driver])
        assert all(r.driver_id == driver and r.seconds > 0 for r in results)
        return [o.model_dump(exclude={"processed_at"}) for r in results for o in r.observations]

    def make(fps: float) -> DriverPerception:
        return DriverPerception(create_backend("mediapipe"), fps=fps)

    one_at_a_time, parallel = InferenceProcessor(make), InferenceProcessor(make)
    try:
        expected = {driver: run(one_at_a_time, driver) for driver in lanes}
        with ThreadPoolExecutor(2) as pool:
            got = dict(zip(lanes, pool.map(partial(run, parallel), lanes), strict=True))
    finally:
        one_at_a_time.close()
        parallel.close()
    assert got == expected
    assert all(len(obs) == 9 and obs[-1]["face_present"] for obs in got.values())


def test_unexpected_failure_is_a_processing_error_not_a_crash(face_jpeg) -> None:
    def broken(fps: float) -> DriverPerception:
        raise RuntimeError("model failed to load")

    processor = InferenceProcessor(broken)
    result = processor.process_safely(msg(batch("ann", 0, [face_jpeg])))
    (letter, _), = result.dead_letters
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert "model failed to load" in letter.error
