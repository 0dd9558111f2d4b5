"""Settings of the perception layer (environment prefix ``VIGIL_PERCEPTION__``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "vigil"


class PerceptionSettings(BaseSettings):
    """Face engine and signal settings; every field can be set as VIGIL_PERCEPTION__<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_PERCEPTION__", extra="ignore")

    engine: str = "mediapipe"
    cache_dir: Path = Field(default_factory=_default_cache)
    # A face_landmarker.task the operator provides; default: provisioned from a wheel.
    face_landmarker_path: Path | None = None
    insightface_root: Path = Field(default_factory=lambda: Path.home() / ".insightface")
    insightface_pack: str = "buffalo_l"
    max_faces: int = 3
    # Frames wider or taller than this are downscaled before the face engine sees them.
    max_frame_side: int = 1920
    # Video files larger than this are refused rather than read for minutes.
    max_file_bytes: int = 8 * 1024**3
