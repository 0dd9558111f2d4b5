"""`vigil retrain`: the drowsiness network fine-tuned on what operators flagged.

The loop: a DROWSINESS alert raised while the learnt estimator ran carries, in its evidence,
the blink window the network saw (``blink_window``, (30, 4) normalised features) and the
window's KSS (:mod:`streams.aggregator.drowsiness`). An operator's flag makes it a labelled
example:

- ``false_positive``: the driver was alert -> class ``alert``;
- ``true_positive``: the driver was drowsy -> ``drowsy`` when the alert's KSS was >= 8, else
  ``low_vigilant`` (the KSS bands that defined the dataset's classes: 6–7 and 8–9).

Flagged alerts without a blink window (raised by the rules alone, before the driver's baseline
was complete) are counted and left out. The examples are split, stratified and seeded, into a
training part and a held-out part (``holdout_fraction``). The served version (the registry's
promoted one, else the shipped weights) is fine-tuned on the training part — optionally mixed
with a replay set such as the UTA-RLDD windows it was first trained on, so that it does not
forget what the flags do not show — with, by default, synthetic windows from the
class-balancing GAN topping up the sparse classes (:func:`gan_top_up`). Candidate and served
version are both evaluated on the held-out part; the candidate is registered (parent = the
served version, data hash, both reports) only if its macro-F1 is not below the served
version's. Registering does not serve it: ``vigil models promote VERSION`` does, and every
aggregator picks it up within ``VIGIL_AGGREGATOR__MODEL_REFRESH_S`` seconds.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.drowsiness import (
    CLASSES,
    SHIPPED_CHECKPOINT,
    SHIPPED_VERSION,
    WINDOW_BLINKS,
    BlinkWindowNet,
)
from models.gan import GanBalancer, GanOptimisers
from streams.errors import InputError
from streams.schemas import AlertReason
from streams.store import ModelVersion, Store, StoredAlert
from training.drowsiness import (
    MODEL,
    BlinkWindows,
    DrowsinessConfig,
    evaluate,
    save_model,
    train_drowsiness,
)
from training.loop import torch_threads

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RetrainConfig:
    """How the flags become a candidate; ``training`` is the fine-tuning recipe."""

    holdout_fraction: float = 0.3
    min_examples: int = 10
    # Synthetic windows for the sparse classes from the class-balancing GAN (G and D trained
    # on the flagged windows, the served network frozen in C's slot judging their class).
    gan: bool = True
    gan_epochs: int = 200
    training: DrowsinessConfig = field(default_factory=lambda: DrowsinessConfig(epochs=30))
    seed: int = 0


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain did: the examples, both held-out reports, and the version registered
    (None when the candidate was worse than the served version)."""

    examples: dict[str, int]
    skipped: int
    data_hash: str
    parent: str
    candidate: dict[str, Any]
    current: dict[str, Any]
    registered: ModelVersion | None

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["registered"] = None if self.registered is None else self.registered.version
        return out


def flag_label(alert: StoredAlert) -> int | None:
    """The class index an operator's flag gives a drowsiness alert (see module docstring)."""
    if alert.flag is None or alert.reason != AlertReason.DROWSINESS:
        return None
    if alert.flag.value == "false_positive":
        return CLASSES.index("alert")
    kss = alert.evidence.get("kss")
    drowsy = isinstance(kss, (int, float)) and kss >= 8
    return CLASSES.index("drowsy" if drowsy else "low_vigilant")


def flagged_examples(alerts: list[StoredAlert]) -> tuple[BlinkWindows, int]:
    """Flagged drowsiness alerts -> (their labelled blink windows, how many were left out).
    ``run`` numbers the drivers, so an example's origin stays known."""
    xs, ys, drivers = [], [], []
    skipped = 0
    driver_ids: dict[str, int] = {}
    for alert in alerts:
        label = flag_label(alert)
        window = np.asarray(alert.evidence.get("blink_window", []), dtype=np.float32)
        if label is None or window.shape != (WINDOW_BLINKS, 4) or not np.isfinite(window).all():
            skipped += 1
            continue
        xs.append(window)
        ys.append(label)
        drivers.append(driver_ids.setdefault(alert.driver_id, len(driver_ids)))
    x = np.stack(xs) if xs else np.zeros((0, WINDOW_BLINKS, 4), np.float32)
    y = np.asarray(ys, dtype=np.int64)
    return BlinkWindows(x, y, np.zeros(len(y), np.int64), np.asarray(drivers, np.int64)), skipped


def data_hash(*parts: BlinkWindows) -> str:
    """sha256 over the windows and labels, in order: the same data gives the same hash."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part.x, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(part.y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def holdout_split(data: BlinkWindows, fraction: float, seed: int
                  ) -> tuple[BlinkWindows, BlinkWindows]:
    """(train, held out), stratified: ``fraction`` of each class (at least one example of a
    class with two or more) is held out."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data), dtype=bool)
    for c in np.unique(data.y):
        index = rng.permutation(np.flatnonzero(data.y == c))
        if len(index) >= 2:
            held[index[:max(1, round(fraction * len(index)))]] = True
    return data.where(~held), data.where(held)


def served_model(store: Store) -> tuple[str, BlinkWindowNet]:
    """(version, network) the aggregators serve now."""
    promoted = store.model_versions.promoted(MODEL)
    source: Any = SHIPPED_CHECKPOINT if promoted is None else io.BytesIO(promoted[1])
    model, _ = load_checkpoint(source)
    assert isinstance(model, BlinkWindowNet)
    return (SHIPPED_VERSION if promoted is None else promoted[0]), model


def gan_top_up(train: BlinkWindows, model: BlinkWindowNet, config: RetrainConfig
               ) -> BlinkWindows:
    """Synthetic windows bringing every class present in ``train`` up to its majority class's
    count (none when already balanced). The GAN learns and generates in the network's
    signed-log space; its windows are mapped back to normalised features.

    A separate stage, not joint training: with tens of examples, a generator still learning
    inside the classifier's batches feeds it noise (measured: held-out macro-F1 fell from
    0.60 to 0.35 on 56 flagged RLDD windows); trained first, its windows only add."""
    training = config.training
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x, y = model.transform(torch.from_numpy(train.x)), torch.from_numpy(train.y)
    never = config.gan_epochs + 1  # C stays frozen: the served network only judges
    gan = GanBalancer(seq_len=x.shape[1], features=x.shape[2], n_classes=len(CLASSES),
                      regime="snapshot", unfreeze_after=never,
                      generator_channels=training.gan_generator_channels,
                      generator_hidden=training.gan_generator_hidden)
    gan.classifier = copy.deepcopy(model.core)
    optimisers = GanOptimisers(
        torch.optim.Adam(gan.generator.parameters(), lr=training.gan_lr),
        torch.optim.Adam(gan.discriminator.parameters(), lr=training.gan_lr),
        torch.optim.Adam(gan.classifier.parameters(), lr=0.0))
    gan.train()
    with torch_threads(training.threads):
        for epoch in range(config.gan_epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), training.batch_size):
                index = order[start:start + training.batch_size]
                if len(index) >= 2:
                    gan.train_step(x[index], y[index], optimisers, epoch)
        gan.eval()
        synthetic, labels = gan.balance(x, y, classes=sorted(set(train.y.tolist())))
    windows = torch.sign(synthetic) * torch.expm1(synthetic.abs())  # inverse signed log
    n = len(labels)
    return BlinkWindows(windows.numpy().astype(np.float32), labels.numpy().astype(np.int64),
                        np.full(n, -1), np.full(n, -1))


def _concat(a: BlinkWindows, b: BlinkWindows) -> BlinkWindows:
    return BlinkWindows(*(np.concatenate([getattr(a, f), getattr(b, f)])
                          for f in ("x", "y", "fold", "run")))


def retrain(store: Store, config: RetrainConfig | None = None,
            replay: BlinkWindows | None = None, note: str | None = None) -> RetrainResult:
    """Flags in ``store`` -> a fine-tuned candidate, registered if not worse (module doc).

    Raises InputError when fewer than ``min_examples`` flagged windows exist or the held-out
    part would be empty."""
    cfg = config or RetrainConfig()
    examples, skipped = flagged_examples(store.alerts.flagged())
    counts = Counter(CLASSES[c] for c in examples.y.tolist())
    if len(examples) < cfg.min_examples:
        raise InputError(
            f"{len(examples)} flagged drowsiness alert(s) with a blink window "
            f"({skipped} other flagged alert(s) left out); retraining needs at least "
            f"{cfg.min_examples}: flag more alerts on the dashboard")
    train, held_out = holdout_split(examples, cfg.holdout_fraction, cfg.seed)
    if len(held_out) == 0:
        raise InputError("no class has two flagged examples; nothing could be held out")
    parent, current = served_model(store)
    fit_on = train if replay is None else _concat(train, replay)
    synthetic = gan_top_up(fit_on, current, cfg) if cfg.gan else None
    if synthetic is not None and len(synthetic):
        log.info("GAN: %d synthetic window(s) for the sparse classes %s", len(synthetic),
                 dict(Counter(CLASSES[c] for c in synthetic.y.tolist())))
        fit_on = _concat(fit_on, synthetic)
    training = replace(cfg.training, seed=cfg.seed, gan=False)
    candidate, history = train_drowsiness(fit_on, training, init=current)
    current_report, candidate_report = evaluate(current, held_out), evaluate(candidate, held_out)
    digest = data_hash(examples) if replay is None else data_hash(examples, replay)
    log.info("held-out macro-F1: candidate %.3f, served %s %.3f (%d held out of %d)",
             candidate_report["macro_f1"], parent, current_report["macro_f1"], len(held_out),
             len(examples))
    registered = None
    if candidate_report["macro_f1"] >= current_report["macro_f1"]:
        metrics = {"held_out": candidate_report, "parent_held_out": current_report,
                   "examples": dict(counts), "held_out_size": len(held_out),
                   "synthetic": 0 if synthetic is None else len(synthetic),
                   "replay_size": 0 if replay is None else len(replay), "history": history}
        buffer = io.BytesIO()
        save_model(buffer, candidate, training, [], metrics)
        registered = store.model_versions.register(
            MODEL, buffer.getvalue(), data_hash=digest, metrics=metrics, parent=parent,
            note=note)
    else:
        log.warning("candidate is worse than the served %s on the held-out flags; not "
                    "registered", parent)
    return RetrainResult(dict(counts), skipped, digest, parent, candidate_report,
                         current_report, registered)
