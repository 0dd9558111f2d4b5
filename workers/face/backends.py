"""The face backends by name (DESIGN §3): the one module that knows them all.

:mod:`workers.face.engine` holds the interface (:class:`~workers.face.engine.FaceBackend`,
:class:`~workers.face.engine.FaceDetection`) and imports no backend; each backend module
implements it and imports nothing from here. Importing a backend module is cheap: each one
imports its heavy runtime (MediaPipe, insightface) only when it is built.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.errors import ConfigurationError
from workers.face.engine import FaceBackend
from workers.face.insightface_backend import InsightFaceBackend
from workers.face.mediapipe_backend import MediaPipeBackend
from workers.face.opencv_backend import OpenCVBackend

BackendFactory = Callable[..., FaceBackend]

BACKENDS: dict[str, BackendFactory] = {
    "insightface": InsightFaceBackend,
    "mediapipe": MediaPipeBackend,
    "opencv": OpenCVBackend,
}


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def create_backend(name: str, **options: object) -> FaceBackend:
    """Build the backend called ``name``; unknown names raise a ConfigurationError."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown face engine {name!r}; choose one of: {', '.join(backend_names())}"
        ) from None
    return factory(**options)
