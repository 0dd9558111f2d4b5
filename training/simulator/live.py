"""The simulator as a live camera source: ``sim:PROFILE[:SEED]`` for `vigil camera`, the demo
and the pipeline bench.

The camera agent (:mod:`streams.camera`) knows nothing of the simulator; the `vigil` command
hands it :func:`sim_source` for the ``sim`` scheme of a source spec.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from streams.errors import ConfigurationError
from training.simulator.generate import live_frames

SEGMENT_S = 300.0


def sim_source(spec: str, fps: float, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless frames of a simulated driver; ``spec`` is ``PROFILE[:SEED]`` (the part after
    ``sim:``), ``seed`` the seed when the spec names none. Paced by the agent, not by itself.

    Endless: 5-minute timelines one after another (a whole shift up front would take long to
    plan); the seed also picks the face, so drivers look different.
    """
    parts = spec.split(":")
    profile = parts[0]
    try:
        sim_seed = int(parts[1]) if len(parts) > 1 else seed
    except ValueError:
        raise ConfigurationError(f"a simulated source is sim:PROFILE[:SEED], not "
                                 f"sim:{spec}") from None

    def frames() -> Iterator[np.ndarray]:
        for segment in itertools.count():
            yield from live_frames(profile, SEGMENT_S, sim_seed * 1000 + segment,
                                   index=sim_seed, fps=fps)

    return frames()
