"""The camera sources beyond OpenCV's, wired here on the top floor: ``sim:PROFILE[:SEED]``,
the driver simulator of :mod:`training` rendering a live camera, for `vigil camera`, the demo
and the pipeline bench. The camera agent (:mod:`streams.camera`) gets them injected.

Nothing heavy is imported up front (the command line imports this module for `--help` too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.camera import FrameSource, SourceOpener


def _simulated(spec: str, fps: float, seed: int) -> FrameSource:
    from training.simulator.live import sim_source  # renders faces: only when asked for

    return sim_source(spec, fps, seed)


SOURCES: Mapping[str, SourceOpener] = {"sim": _simulated}


def open_source(spec: str, fps: float, seed: int = 0, reconnect_for_s: float | None = None
                ) -> tuple[FrameSource, bool]:
    """:func:`streams.camera.open_source` with the simulator: spec -> (frames, is_live);
    ``reconnect_for_s`` None: the camera settings' default."""
    from streams.camera import open_source as open_camera_source
    from streams.settings import CameraSettings

    if reconnect_for_s is None:
        reconnect_for_s = CameraSettings().reconnect_for_s
    return open_camera_source(spec, fps, seed, reconnect_for_s, schemes=SOURCES)
