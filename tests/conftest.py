"""Fixtures shared by every test area: the real data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIDEO_DIR = SHARED / "data" / "video"


@pytest.fixture(scope="session")
def video_dir() -> Path:
    if not VIDEO_DIR.is_dir():
        pytest.fail(f"real test data missing: {VIDEO_DIR} (../shared must sit beside the repo)")
    return VIDEO_DIR


@pytest.fixture(scope="session")
def kafka_broker():
    """A real Kafka-compatible broker (Tansu) for the whole test session, topics created."""
    from streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        broker.create_topics()
        yield broker
