"""`vigil bench perception`: frames/s of the face engine plus signals, pinned to N cores."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.errors import InputError
from streams.settings import load_settings
from workers.perception import open_perception
from workers.settings import PerceptionSettings
from workers.video import VideoReader

BENCH_SIZE = (640, 360)


def bench_clip() -> Path:
    """The real face clip the benchmark loops over (shared/data/video/single_face.mp4)."""
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    path = shared / "data" / "video" / "single_face.mp4"
    if not path.is_file():
        raise InputError(f"benchmark clip not found: {path} (needs ../shared beside the repo)")
    return path


def bench_perception(
    frames: int = 900, engine: str | None = None, cores: int = 1, clip: Path | None = None
) -> dict[str, Any]:
    """Runs DriverPerception over a real clip resized to 640x360, looped to ``frames`` frames,
    with this process pinned to ``cores`` CPU cores. Timestamps advance at 30 fps so the
    engine's tracking behaves as on a live stream."""
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[: max(1, cores)])
    with VideoReader(clip or bench_clip()) as video:
        images = [cv2.resize(f.image, BENCH_SIZE, interpolation=cv2.INTER_AREA) for f in video]
    settings = load_settings(PerceptionSettings)
    name = engine or settings.engine
    perception = open_perception(settings, 30.0, name)
    try:
        # Warm-up: model load and first-frame detection are not steady-state costs.
        for i in range(10):
            perception.process_prepared(images[i % len(images)], i * 33)
        times, found = [], 0
        start = time.perf_counter()
        for i in range(frames):
            # Ping-pong through the clip so there is no jump back to the first frame.
            k = i % (2 * len(images) - 2)
            image = images[k if k < len(images) else 2 * len(images) - 2 - k]
            t0 = time.perf_counter()
            result = perception.process_prepared(image, (i + 10) * 33)
            times.append(time.perf_counter() - t0)
            found += result.signals.face_present
        elapsed = time.perf_counter() - start
    finally:
        perception.close()
    ms = np.array(times) * 1000
    return {
        "engine": name,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "width": BENCH_SIZE[0],
        "height": BENCH_SIZE[1],
        "frames": frames,
        "fps": frames / elapsed,
        "ms_p50": float(np.percentile(ms, 50)),
        "ms_p99": float(np.percentile(ms, 99)),
        "face_rate": found / frames,
    }
