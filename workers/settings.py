"""Settings of the perception layer (``VIGIL_PERCEPTION__``) and of the inference worker
(``VIGIL_WORKER__``). The worker's event clips (directory, face blurring, pre/post seconds,
ring bounds) are :class:`streams.event_clips.ClipSettings` (``VIGIL_CLIPS__DIRECTORY``,
``VIGIL_CLIPS__BLUR_FACES``, ``VIGIL_CLIPS__PRE_S``, ...), shared with the aggregator's
retention purge and the dashboard so that one variable means the same everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streams.errors import ConfigurationError
from streams.schemas import NetworkRole
from streams.settings import VigilSettings


def _default_cache() -> Path:
    return Path.home() / ".cache" / "vigil"


class PerceptionSettings(VigilSettings):
    """Face engine and signal settings; every field can be set as VIGIL_PERCEPTION__<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_PERCEPTION__", extra="ignore")

    engine: str = "mediapipe"
    cache_dir: Path = Field(default_factory=_default_cache)
    # A face_landmarker.task the operator provides; default: provisioned from a wheel.
    face_landmarker_path: Path | None = None
    insightface_root: Path = Field(default_factory=lambda: Path.home() / ".insightface")
    insightface_pack: str = "buffalo_l"
    max_faces: int = 3
    # The mediapipe engine's detector fallback (YuNet, shipped in models/yunet/): where the mesh
    # finds no face, detected faces are meshed again on an upscaled crop, or reported from the
    # detector's box and 5 points (face present, head pose from those points, no eyelid
    # landmarks); small mesh faces are read again upscaled.
    face_detector_fallback: bool = True
    # YuNet's face score a fallback face needs, in [0, 1].
    face_detector_min_score: float = Field(default=0.6, ge=0.0, le=1.0)
    # Frames are shrunk to this longer side for the detector (its cost grows with the area).
    face_detector_side: int = Field(default=480, ge=64)
    # Eye-state network weights (models.eyestate); default: the shipped ones.
    eye_state_checkpoint: Path | None = None
    # torch's intra-op threads in a perception process. The eye network's work per frame is
    # tiny, and workers already run drivers in parallel: more threads only contend (pinned to
    # one core, two threads made a frame 100x slower).
    torch_threads: int = Field(default=1, ge=1)
    # Frames wider or taller than this are downscaled before the face engine sees them.
    max_frame_side: int = 1920
    # Video files larger than this are refused rather than read for minutes.
    max_file_bytes: int = 8 * 1024**3


def _default_threads() -> int:
    return min(os.cpu_count() or 1, 4)


class WorkerSettings(VigilSettings):
    """The inference worker's concurrency and restart behaviour; every field can be set as
    VIGIL_WORKER__<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_WORKER__", extra="ignore")

    # Threads running inference; lanes of different drivers use them concurrently (the face
    # engine's native code releases the GIL).
    inference_threads: int = Field(default_factory=_default_threads, ge=1)
    # Consumed messages not yet inferred and published; beyond it the agent stops taking
    # more, so memory stays bounded while the worker is behind.
    max_in_flight: int = Field(default=64, ge=1)
    # Messages of one driver inferred in one executor call when a backlog has built up.
    max_lane_batch: int = Field(default=16, ge=1)
    # Offsets are committed only this many seconds (capture time) behind each driver's newest
    # frame, so a restarted worker replays that much and rebuilds the perception state (eye
    # baseline, PERCLOS, a closure in progress: 60 s windows) before its first new frame. The
    # cost: after a crash, this much of every driver's video is inferred again.
    replay_warmup_s: float = Field(default=60.0, ge=0)


class ServingSettings(VigilSettings):
    """The learnt networks the worker serves (:mod:`workers.serving`); every field can be set
    as VIGIL_SERVING__<NAME>.

    Off by default: no shipped checkpoint of these networks beats the landmark and rule path
    on the labelled real clips yet (their model cards give the figures). ``networks`` turns
    them on, e.g. ``blink,fatigue``; each one's weights come from the registry's promoted
    version (``vigil models promote NAME VERSION``) or from ``<role>_checkpoint``.
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_SERVING__", extra="ignore")

    networks: str = ""
    blink_checkpoint: Path | None = None
    au_checkpoint: Path | None = None
    fatigue_checkpoint: Path | None = None
    # How often each network reads its driver's window (capture-time seconds). The clip
    # length and crop size are the checkpoint's (its training preprocessing).
    # The defaults fit a 2-core CPU worker (README); a GPU worker can read far more often.
    blink_stride_s: float = Field(default=1.0, gt=0)
    au_stride_s: float = Field(default=4.0, gt=0)
    fatigue_stride_s: float = Field(default=4.0, gt=0)
    # "cpu", "cuda" or "cuda:N": one code path serves both.
    device: str = "cpu"
    # fp32, or bf16 autocast (CUDA and CPU), or fp16 autocast (CUDA only).
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    # One forward pass runs at most this many drivers' windows, and waits at most this long
    # for more once the first is queued.
    max_batch: int = Field(default=16, ge=1)
    max_wait_ms: float = Field(default=20.0, ge=0)
    # torch's intra-op threads for the networks (the perception has its own).
    torch_threads: int = Field(default=1, ge=1)
    # Seconds between looks at the registry for newly promoted versions.
    refresh_s: float = Field(default=30.0, gt=0)

    @property
    def roles(self) -> list[NetworkRole]:
        """The enabled roles, in the order given (ConfigurationError for an unknown one)."""
        names = [n.strip() for n in self.networks.split(",") if n.strip()]
        known = {r.value: r for r in NetworkRole}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigurationError(f"VIGIL_SERVING__NETWORKS names {unknown}; choose from "
                                     f"{sorted(known)}")
        return list(dict.fromkeys(known[n] for n in names))

    def checkpoint(self, role: NetworkRole) -> Path | None:
        return cast(Path | None, getattr(self, f"{role.value}_checkpoint"))

    def stride_s(self, role: NetworkRole) -> float:
        return cast(float, getattr(self, f"{role.value}_stride_s"))
