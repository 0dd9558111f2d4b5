"""Stream test helpers: reading topics back with a real consumer (aiokafka), running
`vigil` subcommands as real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord


async def _read(bootstrap: str, topic: str, idle_s: float, max_s: float) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        loop = asyncio.get_running_loop()
        start = last = loop.time()
        while loop.time() - start < max_s and loop.time() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
                last = loop.time()
    finally:
        await consumer.stop()
    return records


def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0, max_s: float = 30.0):
    """Every record of ``topic`` (all partitions), reading until ``idle_s`` without news."""
    return asyncio.run(_read(bootstrap, topic, idle_s, max_s))


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Starts `vigil ARGS` with extra environment, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env})


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
