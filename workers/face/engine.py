"""One interface over the face backends, plus tracking and driver selection.

A backend turns a BGR frame into :class:`FaceDetection` objects. :class:`DriverFaceTracker`
gives them stable track ids across frames and picks the driver: the largest, most central,
most persistent face. The backends themselves are listed by name, and built, in
:mod:`workers.face.backends`; nothing here imports one.

Coordinates are pixels of the frame the backend was given. "Image order" means the eye (or
mouth corner) on the image's left comes first: for an unmirrored camera that is the subject's
right eye. The 5 landmarks follow the ArcFace template order: eye, eye, nose tip, mouth corner,
mouth corner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

# Where a detection's landmarks come from: "mesh", a landmark model on the frame; "mesh-crop",
# the same model on an upscaled crop around a detector's face, mapped back to the frame;
# "detector", a face detector's box and 5 points only (no eyelid or dense landmarks).
LandmarkSource = Literal["mesh", "mesh-crop", "detector"]


@dataclass(frozen=True, slots=True)
class FaceDetection:
    """One face in one frame.

    box: (4,) x0, y0, x1, y1.
    landmarks5: (5, 2) eye, eye, nose tip, mouth corner, mouth corner, image order.
    eye_centres: (2, 2) image order.
    ear_points: (2, 6, 2) per eye the six eye-aspect-ratio points p1..p6: p1 the corner on
        the image's left, p2 and p3 upper-lid points, p4 the other corner, p5 and p6 lower-lid
        points (p6 below p2); eyes in image order; None without eyelid landmarks.
    mouth_points: (4, 2) inner upper lip, inner lower lip, left and right inner mouth corner.
    dense_landmarks: (N, 3) x, y, z (z in pixel scale, towards the camera negative) or None.
    blendshapes: ARKit-style blendshape scores in [0, 1] or None.
    pose_matrix: (4, 4) face-to-camera rigid transform (canonical face model) or None. For
        "mesh-crop" faces the rotation is right but the translation is that of the crop's view;
        for "detector" faces it is a rotation estimated from the 5 landmarks, translation zero.
    landmarks_source: see :data:`LandmarkSource`.
    """

    box: np.ndarray
    score: float
    landmarks5: np.ndarray
    eye_centres: np.ndarray
    ear_points: np.ndarray | None = None
    mouth_points: np.ndarray | None = None
    dense_landmarks: np.ndarray | None = None
    blendshapes: dict[str, float] | None = None
    pose_matrix: np.ndarray | None = None
    track_id: int = -1
    landmarks_source: LandmarkSource = "mesh"

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return float(max(0.0, x1 - x0) * max(0.0, y1 - y0))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


class FaceBackend(Protocol):
    """What every backend provides. Backends may keep temporal state (tracking), so use one
    instance per camera stream and feed it frames in capture order."""

    name: str

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceDetection]:
        """frame_bgr: (H, W, 3) uint8. Returns every face found, in no particular order."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Track:
    track_id: int
    box: np.ndarray
    born_early: bool = False
    age: int = 1
    missed: int = 0


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) x0, y0, x1, y1 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class TrackedFrame:
    """All faces of a frame with track ids, and which one is the driver (None: no face)."""

    faces: list[FaceDetection]
    driver: FaceDetection | None


@dataclass
class DriverFaceTracker:
    """Greedy IoU tracker with driver selection.

    The driver is the face maximising size x centrality x persistence; the current driver
    keeps the role unless another face scores ``switch_ratio`` times higher, so a passenger
    leaning in for a frame does not take over. A new track must be seen in ``min_hits``
    frames before it can be the driver: detectors fire for single frames on face-like
    patterns (posters, cartoons), and those must not read as a present driver. Tracks born in
    the stream's first ``min_hits`` frames are exempt (nothing earlier contradicts them, and a
    single still image must still show its face).
    """

    min_iou: float = 0.3
    min_hits: int = 3
    max_missed: int = 15
    persistence_frames: int = 30
    switch_ratio: float = 1.5
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0
    _driver_id: int | None = None
    _frames: int = 0

    def update(self, faces: list[FaceDetection], frame_shape: tuple[int, ...]) -> TrackedFrame:
        unmatched = list(range(len(faces)))
        pairs = sorted(
            (
                (box_iou(t.box, faces[i].box), ti, i)
                for ti, t in enumerate(self._tracks)
                for i in range(len(faces))
            ),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        assigned: dict[int, _Track] = {}
        for iou, ti, i in pairs:
            if iou < self.min_iou:
                break
            if ti in matched_tracks or i in assigned:
                continue
            track = self._tracks[ti]
            track.box, track.age, track.missed = faces[i].box, track.age + 1, 0
            matched_tracks.add(ti)
            assigned[i] = track
            unmatched.remove(i)
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for i in unmatched:
            track = _Track(self._next_id, faces[i].box, born_early=self._frames < self.min_hits)
            self._next_id += 1
            self._tracks.append(track)
            assigned[i] = track
        self._frames += 1
        tracked = [replace(f, track_id=assigned[i].track_id) for i, f in enumerate(faces)]
        return TrackedFrame(tracked, self._pick_driver(tracked, assigned, frame_shape))

    def _pick_driver(
        self,
        faces: list[FaceDetection],
        assigned: dict[int, _Track],
        frame_shape: tuple[int, ...],
    ) -> FaceDetection | None:
        if not faces:
            return None
        h, w = frame_shape[:2]
        half_diag = float(np.hypot(w, h)) / 2
        centre = np.array([w / 2, h / 2])

        def score(i: int) -> float:
            f = faces[i]
            size = np.sqrt(f.area / (w * h))
            centrality = 1.0 - 0.5 * float(np.linalg.norm(f.centre - centre)) / half_diag
            persistence = 0.5 + 0.5 * min(assigned[i].age, self.persistence_frames) / (
                self.persistence_frames
            )
            return float(size * centrality * persistence)

        scores = {
            i: score(i)
            for i in range(len(faces))
            if assigned[i].age >= self.min_hits or assigned[i].born_early
        }
        if not scores:
            return None
        best = max(scores, key=lambda i: scores[i])
        current = next((i for i, f in enumerate(faces) if f.track_id == self._driver_id), None)
        if current is not None and scores[best] < self.switch_ratio * scores[current]:
            best = current
        self._driver_id = faces[best].track_id
        return faces[best]
