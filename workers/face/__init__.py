"""The face engine: backends behind one interface, tracking, driver selection, crops."""

from workers.face.engine import (
    DriverFaceTracker,
    FaceBackend,
    FaceDetection,
    TrackedFrame,
    backend_names,
    create_backend,
)

__all__ = [
    "DriverFaceTracker",
    "FaceBackend",
    "FaceDetection",
    "TrackedFrame",
    "backend_names",
    "create_backend",
]
