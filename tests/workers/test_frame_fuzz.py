"""Fuzzing the frames topic's decoder and the worker's pure frame handling
(:meth:`InferenceProcessor.process`) with generated and mutated frame batches: envelope,
header JSON and JPEG damage, oversized values, ids and capture times out of bounds.

For every record: process() never raises; a record it cannot use becomes a dead letter that
fits any broker (short printable error, bounded payload); a good frame is observed."""

from __future__ import annotations

import json
import logging
import random
import struct
from collections import Counter
from typing import Any

import cv2
import numpy as np
from fuzzing import FUZZ, MUTANTS, NOW_S, RECORDS_PER_TOPIC, mutate_bytes, mutate_json
from hypothesis import given
from hypothesis import strategies as st

from streams.schemas import (
    FRAME_MAGIC,
    MAX_ERROR_CHARS,
    DeadLetter,
    FrameBatchHeader,
    FrameInfo,
    SchemaError,
    decode_frame_batch,
)
from workers.face.engine import FaceDetection
from workers.inference import InferenceProcessor, RawMessage
from workers.perception import DriverPerception

log = logging.getLogger(__name__)


class NoFaces:
    """A face engine that sees nobody: the fuzz is about records, not faces."""

    name = "none"

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        return []

    def close(self) -> None:
        pass


def tiny_jpeg(level: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), level, np.uint8))
    assert ok
    return buf.tobytes()


JPEGS = [tiny_jpeg(v) for v in (0, 128, 255)]


def envelope(header: bytes, jpegs: list[bytes]) -> bytes:
    return b"".join([FRAME_MAGIC, struct.pack(">I", len(header)), header, *jpegs])


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    n = draw(st.integers(1, 3))
    jpegs = [draw(st.sampled_from(JPEGS)) for _ in range(n)]
    t = NOW_S + draw(st.floats(0, 60))
    header = FrameBatchHeader(
        driver_id=draw(st.sampled_from(["ann", "bob"])), vehicle_id="van-1",
        batch_seq=draw(st.integers(0, 100)), fps=10.0, sent_at=t,
        frames=[FrameInfo(seq=i, captured_at=t + i / 10, width=64, height=48, size=len(j))
                for i, j in enumerate(jpegs)])
    return header.model_dump(mode="json", by_alias=True), jpegs


def mutant(header: dict[str, Any], jpegs: list[bytes], rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind <= 1:  # a damaged header in a well-formed envelope: reaches the JSON decoder
        return envelope(mutate_json(header, rng), jpegs)
    good = envelope(json.dumps(header).encode(), jpegs)
    if kind == 2:
        return mutate_bytes(good, rng)
    if kind == 3:  # a damaged JPEG: that frame is dead-lettered, the others observed
        broken = [*jpegs]
        broken[rng.randrange(len(broken))] = b"\xff\xd8" + rng.randbytes(len(jpegs[0]) - 2)
        return envelope(json.dumps(header).encode(), broken)
    return good  # good as it is (the key or the broker time may still be wrong)


def test_frame_handling_fuzz() -> None:
    processor = InferenceProcessor(lambda fps: DriverPerception(NoFaces(), fps=fps),
                                   known_drivers=frozenset({"ann", "bob"}))
    counts: Counter[str] = Counter()

    @FUZZ
    @given(batches(), st.integers(0, 2**32))
    def run(batch: tuple[dict[str, Any], list[bytes]], seed: int) -> None:
        header, jpegs = batch
        rng = random.Random(seed)
        for _ in range(MUTANTS):
            counts["records"] += 1
            offset = counts["records"]
            # Each driver's frames go on in sequence and time, as a camera's would: frames
            # already observed are skipped, and the fuzz is after what happens to new ones.
            now = NOW_S + offset * 0.4
            frames = [{**f, "seq": offset * 4 + i, "captured_at": now + i / 10}
                      for i, f in enumerate(header["frames"])]
            value = mutant({**header, "frames": frames}, jpegs, rng)
            key = header["driver_id"].encode() if rng.random() > 0.05 else b"mallory\x00"
            broker_time = now if rng.random() > 0.05 else now - 10 * 365 * 86_400
            try:
                decode_frame_batch(value)
                decodes = True
            except SchemaError:
                decodes = False
            try:
                result = processor.process(RawMessage(key, value, 0, offset,
                                                      timestamp=broker_time))
            except Exception:
                counts["crashes"] += 1
                raise
            if result.dead_letters:
                counts["dead_letters"] += 1
            if result.observations:
                counts["observed"] += 1
            if not decodes:  # every record that does not decode is set aside
                assert result.dead_letters and not result.observations
            for letter, payload in result.dead_letters:
                assert len(letter.error) <= MAX_ERROR_CHARS and letter.error.isprintable()
                letter, carried = letter.carrying(payload)
                assert len(carried) <= DeadLetter.MAX_PAYLOAD and len(letter.to_bytes()) < 4096

    try:
        run()
    finally:
        processor.close()
    log.warning("fuzz frames: %s", dict(counts))
    assert counts["records"] >= RECORDS_PER_TOPIC and counts["crashes"] == 0
    assert counts["observed"] > 0 and counts["dead_letters"] > counts["records"] // 2


def test_an_oversized_malformed_header_is_a_small_dead_letter() -> None:
    """A ~4 MB header whose schema string is 700,000 escaped control characters: the schema
    error quoted its repr whole, and the dead letter (21 MiB) was refused by the producer."""
    header = b'{"schema": "' + b"\\u0001" * 680_000 + b'"}'
    value = envelope(header, [])
    processor = InferenceProcessor(lambda fps: DriverPerception(NoFaces(), fps=fps))
    try:
        result = processor.process(RawMessage(b"ann", value, 0, 0, timestamp=NOW_S))
    finally:
        processor.close()
    (letter, payload), = result.dead_letters
    letter, carried = letter.carrying(payload)
    assert len(letter.to_bytes()) + len(carried) < 1024 * 1024
    assert letter.payload_size == len(value) and letter.payload_truncated
