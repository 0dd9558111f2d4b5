"""Driver videos plus ground-truth JSON: a timeline rendered frame by frame onto a real face.

Truth schema ``vigil.sim.truth/1`` (frames 0-based into the written video):

- ``frames``: columnar per-frame arrays closure_left/right (0 open .. 1 closed, image order),
  mouth_open, yaw/pitch/roll (degrees applied; yaw > 0 towards the image's right, pitch > 0
  up), face_visible, eyes_visible;
- ``blinks``: eyelid events whose closure never stays >= 0.8 for 1 s; start/end = first/last
  frame with closure > 0.05 (mean of both eyes), amplitude = peak closure;
- ``long_closures``: closure >= 0.8 held >= 1 s (microsleep < 3 s, sleep >= 3 s);
- ``yawns`` (mouth_open > 0.05), ``distractions`` (glance at >= half its angle; direction in
  image terms), ``absences`` (face not visible), ``occlusions`` (occluder at least half in);
- ``perclos``: share of face-visible frames with mean closure >= 0.8.

Every event list is derived from the rounded arrays written to the JSON, so a reader who
recomputes them from ``frames`` gets the same answer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.errors import ConfigurationError, InputError
from training.simulator.faces import SourceFace, load_faces
from training.simulator.render import (
    EYE_LIDS,
    FACE_OVAL,
    EyeRig,
    MouthRig,
    Pose,
    PoseWarp,
    empty_seat,
    person_mask,
)
from training.simulator.timeline import (
    CLOSED_LEVEL,
    LONG_CLOSURE_S,
    OCCLUSION_REGIONS,
    PROFILES,
    Timeline,
    make_timeline,
)

log = logging.getLogger(__name__)

SCHEMA = "vigil.sim.truth/1"
EVENT_LEVEL = 0.05  # closure / mouth opening above which an event is running
SLEEP_S = 3.0
NOISE_MARGIN = 32
FOURCCS = ("mp4v",)  # MPEG-4 part 2: always in OpenCV's bundled FFmpeg; H.264 often is not


@lru_cache(maxsize=4)
def _faces(size: tuple[int, int], shared_dir: Path | None) -> tuple[SourceFace, ...]:
    return tuple(load_faces(size, shared_dir))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive [start, end] frame runs where ``mask`` (n,) is true."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class DriverRenderer:
    """Renders the frames of one timeline onto one source face."""

    def __init__(self, face: SourceFace, size: tuple[int, int], rng: np.random.Generator
                 ) -> None:
        self.face = face
        self.size = size
        self.eyes = [EyeRig(face, 0), EyeRig(face, 1)]
        self.mouth = MouthRig(face)
        self.pose = PoseWarp(face, size)
        self.rng = rng
        w, h = size
        box = face.face_box
        self.face_w, self.face_h = float(box[2] - box[0]), float(box[3] - box[1])
        # Leaving the frame: the person layer slides out over an empty seat, far enough for
        # head and shoulders to be gone.
        self.person = person_mask(face.landmarks, size)
        cols = np.flatnonzero(self.person.max(axis=0) > 0.02)
        self.exit_right = float(w - cols[0] + 2)
        self.exit_left = float(cols[-1] + 2)
        self._seat: np.ndarray | None = None
        gy, gx = np.mgrid[0:h:4, 0:w:4].astype(np.float32)
        self._gx, self._gy = gx / w * 2 - 1, gy / h * 2 - 1
        self._hand = self._hand_geometry()
        self._hand_tone = np.array(self._skin() * rng.uniform(0.85, 1.05, 3), np.float32)
        self._dark = np.array(rng.uniform(6, 22) * rng.uniform(0.8, 1.2, 3), np.float32)
        self._noise_bank = [
            rng.standard_normal((h + NOISE_MARGIN, w + NOISE_MARGIN, 3), dtype=np.float32)
            for _ in range(4)
        ]
        # Checks for visibility: the face outline and the eye corners.
        self._outline = face.landmarks[list(FACE_OVAL), :2].astype(np.float64)
        self._eye_corners = face.landmarks[
            [EYE_LIDS[0][0][0], EYE_LIDS[0][0][-1], EYE_LIDS[1][0][0], EYE_LIDS[1][0][-1]], :2
        ].astype(np.float64)

    def _skin(self) -> np.ndarray:
        lm = self.face.landmarks
        pts = lm[[50, 280, 205, 425], :2].astype(int)  # cheeks
        img = self.face.image
        samples = [img[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4].reshape(-1, 3)
                   for x, y in pts]
        return np.median(np.concatenate(samples), axis=0).astype(np.float32)

    def _hand_geometry(self) -> dict[str, tuple[np.ndarray, tuple[float, float], float,
                                                np.ndarray]]:
        """Per occlusion region: centre (2,), half axes, angle, slide-in vector (2,)."""
        lm = self.face.landmarks[:, :2].astype(np.float64)
        fw, fh = self.face_w, self.face_h
        mouth = (lm[13] + lm[14]) / 2
        side = 1 if self.rng.random() < 0.5 else 0
        # A hand resting on the lower cheek and jaw (chin on the hand), from below.
        cheek = (lm[(61, 291)[side]] + lm[(172, 397)[side]]) / 2
        out = np.array([(-1.0, 1.0)[side] * 0.04 * fw, 0.12 * fh])
        return {
            "mouth": (mouth + np.array([0.0, 0.04 * fh]), (0.4 * fw, 0.15 * fh),
                      self.rng.uniform(-12, 12), np.array([0.0, 0.7 * fh])),
            "chin": (lm[152] - np.array([0.0, 0.06 * fh]), (0.36 * fw, 0.14 * fh),
                     self.rng.uniform(-10, 10), np.array([0.0, 0.6 * fh])),
            "cheek": (cheek + out, (0.17 * fw, 0.3 * fh),
                      (-1.0, 1.0)[side] * self.rng.uniform(5, 20), np.array([0.0, 0.8 * fh])),
        }

    def _occlude(self, image: np.ndarray, region: str, amount: float) -> None:
        """Slides a hand over ``region`` (never above the lower eyelids) in place."""
        centre, axes, angle, slide = self._hand[region]
        c = centre + (1.0 - amount) * slide
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (round(c[0]), round(c[1])), (round(axes[0]), round(axes[1])),
                    angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        lids = self.face.landmarks[[145, 374], 1].max()
        mask[: int(lids + 0.1 * self.face_h)] = 0.0
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigmaX=1.5), dtype=np.float32)
        # Shading: rounder towards the middle, plus finger gaps along the long axis.
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = np.radians(angle)
        along = ((xx - c[0]) * np.cos(a) + (yy - c[1]) * np.sin(a)) / axes[0]
        across = (-(xx - c[0]) * np.sin(a) + (yy - c[1]) * np.cos(a)) / axes[1]
        shade = 1.0 - 0.3 * np.clip(along**2 + across**2, 0, 1)
        shade *= 1.0 - 0.18 * np.exp(-0.5 * ((np.mod(across * 2.2 + 0.5, 1.0) - 0.5) / 0.06) ** 2)
        hand = self._hand_tone * shade[..., None]
        out = image.astype(np.float32)
        # Contact shadow: the hand darkens the face just around it.
        shadow = np.clip(cv2.GaussianBlur(mask, (0, 0), sigmaX=0.04 * self.face_w) - mask, 0, 1)
        out *= 1.0 - 0.5 * shadow[..., None]
        out += mask[..., None] * (hand - out)
        image[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _leave(self, image: np.ndarray, shift: float) -> np.ndarray:
        """The person layer of ``image`` moved sideways by ``shift`` px over an empty seat."""
        if self._seat is None:
            self._seat = empty_seat(self.face.image, self.person)
        w, h = self.size
        move = np.array([[1.0, 0.0, shift], [0.0, 1.0, 0.0]])
        person = cv2.warpAffine(image, move, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(self.person, move, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)[..., None]
        out = alpha * person.astype(np.float32) + (1 - alpha) * self._seat.astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def shift(self, tl: Timeline, k: int) -> float:
        reach = self.exit_right if tl.exit_side > 0 else self.exit_left
        return float(tl.exit_side * reach * tl.exit[k])

    def pose_of(self, tl: Timeline, k: int) -> Pose:
        return Pose(float(tl.yaw[k]), float(tl.pitch[k]), float(tl.roll[k]), float(tl.tx[k]),
                    float(tl.ty[k]), float(tl.scale[k]))

    def visibility(self, tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
        """(n,) face_visible, eyes_visible from the warped face outline and eye corners."""
        w, h = self.size
        face = np.zeros(tl.n, dtype=bool)
        eyes = np.zeros(tl.n, dtype=bool)
        for k in range(tl.n):
            pose, shift = self.pose_of(tl, k), np.array([self.shift(tl, k), 0.0])
            outline = self.pose.landmarks(self._outline, pose) + shift
            (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
            area = max((x1 - x0) * (y1 - y0), 1e-6)
            inside = max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0))
            face[k] = inside / area >= 0.6 and tl.blocked[k] < 0.5
            corners = self.pose.landmarks(self._eye_corners, pose) + shift
            in_frame = bool(np.all((corners >= 2) & (corners <= (w - 3, h - 3))))
            eyes[k] = face[k] and in_frame
        return face, eyes

    def frame(self, tl: Timeline, k: int) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame k of ``tl``."""
        image = self.face.image.copy()
        for eye, rig in enumerate(self.eyes):
            rig.render(image, float(tl.closure[eye, k]))
        self.mouth.render(image, float(tl.mouth[k]))
        if tl.occluder[k] > 0 and tl.occluder_region[k] >= 0:
            self._occlude(image, OCCLUSION_REGIONS[tl.occluder_region[k]], float(tl.occluder[k]))
        image = self.pose.warp(image, self.pose_of(tl, k))
        shift = self.shift(tl, k)
        if shift != 0.0:
            image = self._leave(image, shift)
        # Light: global gain times a soft shadow edge sweeping across the frame.
        theta = float(tl.shadow_angle[k])
        proj = self._gx * np.cos(theta) + self._gy * np.sin(theta) - float(tl.shadow_pos[k])
        edge = 0.5 * (1 + np.tanh(proj / 0.25))
        light = float(tl.gain[k]) * (1.0 - float(tl.shadow_depth[k]) * edge)
        light_full = cv2.resize(light.astype(np.float32), self.size,
                                interpolation=cv2.INTER_LINEAR)
        out = image.astype(np.float32) * light_full[..., None]
        if tl.blocked[k] > 0:
            # A palm on the lens: near black, a little warm light leaking through.
            dark = self._dark * (1.0 + 0.3 * self._gy[..., None] ** 2)
            dark_full = cv2.resize(dark.astype(np.float32), self.size)
            out += float(tl.blocked[k]) * (dark_full - out)
        if tl.blur[k] > 0.15:
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(tl.blur[k]))
        out += self._noise() * float(tl.noise[k])
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _noise(self) -> np.ndarray:
        """(H, W, 3) unit sensor noise: a random window of a pre-drawn bank (drawing fresh
        Gaussian noise for every frame would cost as much as the rest of the frame)."""
        w, h = self.size
        frame = self._noise_bank[int(self.rng.integers(len(self._noise_bank)))]
        x, y = (int(v) for v in self.rng.integers(0, NOISE_MARGIN, size=2))
        return frame[y : y + h, x : x + w]


def _round(values: np.ndarray, digits: int) -> list[float]:
    return [float(v) for v in np.round(values.astype(np.float64), digits)]


def truth_record(tl: Timeline, face_visible: np.ndarray, eyes_visible: np.ndarray, *,
                 driver_id: str, profile: str, seed: int, size: tuple[int, int],
                 video: str, source_face: str) -> dict[str, Any]:
    """The truth JSON of one driver (see the module docstring); events from rounded arrays."""
    fps = tl.fps
    closure_l = np.round(tl.closure[0], 4)
    closure_r = np.round(tl.closure[1], 4)
    mouth = np.round(tl.mouth, 4)
    mean = (closure_l + closure_r) / 2
    blinks: list[dict[str, Any]] = []
    long_closures: list[dict[str, Any]] = []
    for s, e in _runs(mean > EVENT_LEVEL):
        longest = max(_runs(mean[s : e + 1] >= CLOSED_LEVEL), key=lambda r: r[1] - r[0],
                      default=None)
        if longest is not None and (longest[1] - longest[0] + 1) / fps >= LONG_CLOSURE_S - 1e-9:
            cs, ce = s + longest[0], s + longest[1]
            duration = (ce - cs + 1) / fps
            long_closures.append({
                "start_frame": s, "end_frame": e, "closed_start_frame": cs,
                "closed_end_frame": ce, "closed_duration_s": round(duration, 4),
                "kind": "microsleep" if duration < SLEEP_S else "sleep",
            })
        else:
            peak = s + int(np.argmax(mean[s : e + 1]))
            blinks.append({
                "start_frame": s, "peak_frame": peak, "end_frame": e,
                "duration_s": round((e - s + 1) / fps, 4),
                "amplitude": round(float(mean[peak]), 4),
            })
    visible = face_visible.astype(bool)
    perclos = float(np.mean(mean[visible] >= CLOSED_LEVEL)) if visible.any() else 0.0
    absences = []
    for s, e in _runs(~visible):
        cause = "camera_blocked" if float(np.max(tl.blocked[s : e + 1])) >= 0.5 else "left_frame"
        absences.append({"start_frame": s, "end_frame": e, "cause": cause})
    return {
        "schema": SCHEMA,
        "driver_id": driver_id,
        "profile": profile,
        "seed": seed,
        "fps": float(fps),
        "frame_count": int(tl.n),
        "width": int(size[0]),
        "height": int(size[1]),
        "video": video,
        "source_face": source_face,
        "frames": {
            "closure_left": [float(v) for v in closure_l],
            "closure_right": [float(v) for v in closure_r],
            "mouth_open": [float(v) for v in mouth],
            "yaw": _round(tl.yaw, 3),
            "pitch": _round(tl.pitch, 3),
            "roll": _round(tl.roll, 3),
            "face_visible": [bool(v) for v in face_visible],
            "eyes_visible": [bool(v) for v in eyes_visible],
        },
        "blinks": blinks,
        "long_closures": long_closures,
        "yawns": [{"start_frame": s, "end_frame": e} for s, e in _runs(mouth > EVENT_LEVEL)],
        "distractions": [
            {"start_frame": i.start, "end_frame": i.end, "direction": i.label}
            for i in tl.distractions
        ],
        "absences": absences,
        "occlusions": [
            {"start_frame": i.start, "end_frame": i.end, "region": i.label}
            for i in tl.occlusions
        ],
        "perclos": round(perclos, 4),
    }


def _open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    for code in FOURCCS:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*code), fps, size)
        if writer.isOpened():
            return writer
        writer.release()
    raise ConfigurationError(
        f"OpenCV cannot write {path.suffix} video here (tried {', '.join(FOURCCS)})"
    )


def count_frames(path: Path) -> int:
    """Frames OpenCV actually decodes from ``path``."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


@dataclass(frozen=True, slots=True)
class DriverJob:
    """Everything one worker needs to simulate one driver."""

    out_dir: Path
    index: int
    seconds: float
    seed: int
    profile: str
    fps: float
    size: tuple[int, int]
    face: SourceFace


def driver_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (timeline, rendering) generators for driver ``index`` of a set."""
    children = np.random.SeedSequence([seed, index]).spawn(2)
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigurationError(
            f"unknown simulator profile {profile!r}; choose one of: {', '.join(PROFILES)}"
        )


def _plan(face: SourceFace, profile: str, seconds: float, seed: int, index: int, fps: float,
          size: tuple[int, int]) -> tuple[Timeline, DriverRenderer]:
    """Driver ``index``'s timeline and renderer: the same for files and live frames."""
    timeline_rng, render_rng = driver_rngs(seed, index)
    return (make_timeline(profile, seconds, fps, timeline_rng),
            DriverRenderer(face, size, render_rng))


def simulate_driver(job: DriverJob) -> Path:
    """Writes driver-XXX.mp4 and driver-XXX.json; returns the JSON path."""
    driver_id = f"driver-{job.index:03d}"
    tl, renderer = _plan(job.face, job.profile, job.seconds, job.seed, job.index, job.fps,
                         job.size)
    face_visible, eyes_visible = renderer.visibility(tl)
    video = job.out_dir / f"{driver_id}.mp4"
    writer = _open_writer(video, job.fps, job.size)
    try:
        for k in range(tl.n):
            writer.write(renderer.frame(tl, k))
    finally:
        writer.release()
    frames = count_frames(video)
    if frames != tl.n:
        raise InputError(f"{video} reads back with {frames} frames, expected {tl.n}")
    record = truth_record(tl, face_visible, eyes_visible, driver_id=driver_id,
                          profile=job.profile, seed=job.seed, size=job.size, video=video.name,
                          source_face=job.face.name)
    path = job.out_dir / f"{driver_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":")))
    tmp.replace(path)
    log.info("%s: %s, %d frames, %d blinks, %d long closures, perclos %.3f", driver_id,
             job.face.name, tl.n, len(record["blinks"]), len(record["long_closures"]),
             record["perclos"])
    return path


def simulate_set(out_dir: Path, drivers: int, seconds: float, seed: int, profile: str,
                 fps: float = 30.0, size: tuple[int, int] = (640, 360), *,
                 shared_dir: Path | None = None, workers: int | None = None) -> list[Path]:
    """Writes driver-000.mp4 + driver-000.json, ... into out_dir; returns the JSON paths.

    profile in PROFILES ("alert", "drowsy", "distracted", "mixed"); unknown profiles raise a
    ConfigurationError listing the valid ones. Deterministic for a given seed (same seed ->
    identical truth JSON). Driver k draws from SeedSequence([seed, k]) and uses real source
    face k modulo the number of usable faces. shared_dir: where ``data/video`` lives
    (default: ../shared next to the repository); workers: processes (default: one per CPU,
    at most one per driver).
    """
    _check_profile(profile)
    if drivers < 1 or seconds <= 0 or fps <= 0:
        raise ConfigurationError(
            f"need drivers >= 1, seconds > 0 and fps > 0 (got {drivers}, {seconds}, {fps})"
        )
    if size[0] < 160 or size[1] < 90 or size[0] % 2 or size[1] % 2:
        raise ConfigurationError(f"frame size {size} must be even and at least 160x90")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = _faces((int(size[0]), int(size[1])), shared_dir)
    jobs = [
        DriverJob(out_dir, k, float(seconds), int(seed), profile, float(fps),
                  (int(size[0]), int(size[1])), faces[k % len(faces)])
        for k in range(drivers)
    ]
    n_workers = min(drivers, workers if workers is not None else (os.cpu_count() or 1))
    if n_workers <= 1:
        return [simulate_driver(job) for job in jobs]
    # Threads, not processes: OpenCV and numpy release the GIL for the heavy work, and every
    # driver draws from its own generator, so the output does not depend on scheduling.
    with ThreadPoolExecutor(n_workers, thread_name_prefix="vigil-sim") as pool:
        return list(pool.map(simulate_driver, jobs))


def video_of(truth_path: Path) -> Path:
    """The video next to a truth JSON."""
    record = json.loads(Path(truth_path).read_text())
    return Path(truth_path).parent / str(record["video"])



def live_frames(profile: str, seconds: float, seed: int, index: int = 0, fps: float = 30.0,
                size: tuple[int, int] = (640, 360), *,
                shared_dir: Path | None = None) -> Iterator[np.ndarray]:
    """Frames of one simulated driver, rendered as they are asked for (a live camera source).

    Same timeline and faces as driver ``index`` of ``simulate_set(..., seed, profile)``.
    Yields (H, W, 3) uint8 BGR frames.
    """
    _check_profile(profile)
    faces = _faces((int(size[0]), int(size[1])), shared_dir)
    tl, renderer = _plan(faces[index % len(faces)], profile, seconds, seed, index, fps, size)
    for k in range(tl.n):
        yield renderer.frame(tl, k)
