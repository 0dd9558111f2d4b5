"""`vigil worker`: the inference agent. Thin: consume a frame batch, run the pure processor
off the event loop, publish observations and dead letters, then let Faust commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import faust

from streams.app import bind_topic, create_app
from streams.schemas import DeadLetter
from streams.topics import DEAD_LETTERS, FRAMES, OBSERVATIONS
from workers.inference import InferenceProcessor, RawMessage
from workers.perception import open_perception
from workers.settings import PerceptionSettings

log = logging.getLogger(__name__)


def build_worker_app(bootstrap: str, known_drivers: frozenset[str] | None = None,
                     settings: PerceptionSettings | None = None,
                     app_id: str = "vigil-inference") -> tuple[faust.App, Callable[[], None]]:
    """The app and a function releasing the models once the worker has stopped."""
    settings = settings or PerceptionSettings()
    app = create_app(app_id, bootstrap)
    frames = bind_topic(app, FRAMES)
    observations = bind_topic(app, OBSERVATIONS)
    dead_letters = bind_topic(app, DEAD_LETTERS)

    processor = InferenceProcessor(partial(open_perception, settings), known_drivers)
    # One thread: perception state is per driver and MediaPipe graphs are not shared, and the
    # event loop must stay free for heartbeats and commits while a batch is inferred.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-infer")

    @app.agent(frames)
    async def infer(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            message = event.message
            raw = RawMessage(key=message.key, value=message.value or b"",
                             partition=message.partition, offset=message.offset,
                             topic=message.topic)
            result = await loop.run_in_executor(executor, processor.process_safely, raw)
            for obs in result.observations:
                await observations.send(key=obs.driver_id.encode(), value=obs.to_bytes())
            for letter, payload in result.dead_letters:
                letter, value = letter.carrying(payload)
                await dead_letters.send(key=(letter.key or "").encode(), value=value,
                                        headers={DeadLetter.HEADER: letter.to_bytes()})

    def close() -> None:
        executor.shutdown(wait=True)
        processor.close()

    return app, close
