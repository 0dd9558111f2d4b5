"""The labelled driver simulator: drowsiness and distraction rendered onto real face photos.

``simulate_set`` writes, per driver, an mp4 that the real face engine reads and a truth JSON
(schema ``vigil.sim.truth/1``) saying exactly what was rendered: eyelid closure, yawns, head
pose, visibility, and the blinks, long closures, glances, absences and occlusions derived
from them. See :mod:`training.simulator.timeline` for the physiology and its sources and
:mod:`training.simulator.render` for how the face is deformed.
"""

from training.simulator.generate import SCHEMA, live_frames, simulate_set
from training.simulator.timeline import PROFILES

__all__ = ["PROFILES", "SCHEMA", "live_frames", "simulate_set"]
