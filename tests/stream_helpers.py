"""Stream test helpers: following a topic with a real consumer (aiokafka) as records arrive
(``streams.readback.read_topic`` reads one back once); running `vigil` subcommands as real
processes, or a Faust app in this process; blink events with features of a given spread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faust
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams.processes import start_child
from streams.schemas import EyeEventRecord


class TopicFollower:
    """Every record of a topic, from the start, read by a background consumer as they arrive.
    It joins no group (it assigns itself every partition), so there is no join to wait for."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._records: list[ConsumerRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True,
                                        name=f"follow-{topic}")

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            await consumer.topics()  # fetches the metadata partitions_for_topic reads
            partitions = consumer.partitions_for_topic(self.topic) or set()
            consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                with self._lock:
                    for messages in batch.values():
                        self._records.extend(messages)
        finally:
            await consumer.stop()

    @property
    def records(self) -> list[ConsumerRecord]:
        """What has arrived so far, in order per partition."""
        with self._lock:
            return list(self._records)

    def wait_for(self, predicate: Callable[[list[ConsumerRecord]], bool], timeout_s: float,
                 what: Callable[[], str] = lambda: "") -> list[ConsumerRecord]:
        """The records once ``predicate`` holds for them; AssertionError (with ``what()``)
        when it does not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate(records := self.records):
            assert time.monotonic() < deadline, f"{self.topic}: {len(records)} records; {what()}"
            time.sleep(0.1)
        return records

    def __enter__(self) -> TopicFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Starts `vigil ARGS` with extra environment, output to ``log``; its metrics and health
    endpoints on a free port (tests run several workers at once)."""
    return start_child([sys.executable, "-m", "vigil", *args], log,
                       {**os.environ, "VIGIL_METRICS__PORT": "0", **env})


@contextmanager
def running_app(app: faust.App) -> Iterator[None]:
    """Runs ``app`` against its broker in a thread with its own event loop, so a test can
    reach into what the app calls; stops it on exit and re-raises what crashed it."""
    stop, failures = threading.Event(), []

    async def main() -> None:
        await app.start()
        try:
            while not stop.is_set() and not app.should_stop:
                await asyncio.sleep(0.1)
        finally:
            await app.stop()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name=f"faust-{app.conf.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
    if failures:
        raise failures[0]


def blink(t: float, features: tuple[float, float, float, float], kind: str = "blink"
          ) -> EyeEventRecord:
    frequency, amplitude, duration, velocity = features
    return EyeEventRecord(kind=kind, start_seq=0, end_seq=1, start_at=t - duration, end_at=t,
                          duration_s=duration, amplitude=amplitude, peak_closure=0.9,
                          opening_velocity=velocity, closed_duration_s=duration / 2,
                          frequency_per_min=frequency)


def random_features(rng: np.random.Generator) -> tuple[float, float, float, float]:
    return (float(rng.uniform(10, 20)), float(rng.uniform(0.5, 0.9)),
            float(rng.uniform(0.1, 0.3)), float(rng.uniform(3, 6)))


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(status, body) of a GET, also for an HTTP error's status; (None, why) while nothing
    answers at ``url`` yet."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return None, str(exc)
