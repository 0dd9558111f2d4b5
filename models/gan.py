"""Class balancing by a conditional GAN trained jointly with the drowsiness classifier
(``gan-feature-balancing-drowsiness.md``, "Synthesize & Learn").

Three networks work on feature sequences of one fixed shape, ``seq_len × features``:

- G: a 100-d Gaussian noise vector and the target class, embedded as a 100-d vector and
  concatenated with the noise channel-wise, through 2D convolutions and dense layers (leaky
  ReLU) to one synthetic sample;
- D: convolutions, then two dense heads: realness D_src (sigmoid) and class D_cls (softmax);
- C: convolutions, global average pooling, softmax over the classes. C is what is deployed;
  the registered module's ``forward`` is C's.

The paper's samples are 18×100 (18 Affdex descriptors resampled to 100 frames, kept in the
order the paper prints); ours are UTA-RLDD blink windows, 30 blinks × 4 features
(:data:`BLINK_SHAPE`). D and C see a sample as a one-channel 2D map, so both layouts work.

Losses are pure functions (eqs. 1-6); :class:`GanBalancer` holds G, D and C with one training
step each (:meth:`GanBalancer.train_step` runs D, G, then C) and the paper's two regimes:
``scratch`` (all three from random Glorot-uniform weights) and ``snapshot`` (C loaded from a
pre-trained state dict, frozen until epoch ``unfreeze_after``). :meth:`GanBalancer.balance`
returns the synthetic samples that bring every class up to the majority count. The loop over
data files, the cosine decay of C's learning rate and the choice of the best snapshot belong
to the training package.

Softmax and sigmoid live in the losses: the networks return logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.registry import ModelError, register_model

PAPER_SHAPE = (18, 100)  # the paper's sample: 1800 features reshaped to 18×100
BLINK_SHAPE = (30, 4)  # UTA-RLDD blink windows: 30 blinks × [freq, amplitude, duration, vel.]
REGIMES = ("scratch", "snapshot")


# ---------------------------------------------------------------------------------------------
# Losses (the paper writes sums over the batch; Keras, which the paper used, averages over the
# batch, and so do these by default: ``reduction="sum"`` gives the printed sums).


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ModelError(f"unknown reduction {reduction!r}; choose 'mean' or 'sum'")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """L_D = -Σ_i log D_src(x_i) - Σ_i log(1 - D_src(G(z_i, c)))  (eq. 1).

    real_logits (N,) D's realness logits on real samples, fake_logits (M,) on synthetic ones;
    D_src = sigmoid(logit). ``smoothing`` ε is one-sided label smoothing (the paper's [14]):
    real targets become 1 - ε, so the real term is -[(1-ε) log D + ε log(1 - D)]; ε = 0 is
    eq. 1 exactly. Scalar; each of the two sums is averaged over its batch by default."""
    real_target = torch.full_like(real_logits, 1.0 - smoothing)
    real = F.binary_cross_entropy_with_logits(real_logits, real_target, reduction="none")
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits),
                                              reduction="none")
    return _reduce(real, reduction) + _reduce(fake, reduction)


def generator_adversarial_loss(fake_logits: torch.Tensor, reduction: str = "mean"
                               ) -> torch.Tensor:
    """L_G = -Σ_i log D_src(G(z_i, c))  (eq. 2), the non-saturating GAN loss.

    fake_logits (N,) a (frozen) D's realness logits on synthetic samples. Scalar."""
    return _reduce(F.softplus(-fake_logits), reduction)  # -log sigmoid(l) = softplus(-l)


def classification_loss(class_logits: torch.Tensor, labels: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """L_cls = -Σ_i Σ_j (c_i)_j log D_cls(G(z_i, c))_j  (eq. 3).

    class_logits (N, n_classes) D's class logits on synthetic samples (D_cls = softmax),
    labels (N,) the target classes c_i as indices (the one-hot c_i of the paper). Scalar.
    D's own class head is trained with the same cross entropy on real and synthetic samples
    (the AC-GAN the paper conditions G after, its [16])."""
    return F.cross_entropy(class_logits, labels, reduction=reduction)


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(N, ...) and (N, ...) -> (N,) the Pearson correlation of each pair of samples a_i, b_i,
    over all of a sample's values (a (seq_len, features) sample is one vector of
    seq_len·features numbers). A constant sample correlates 0 with anything."""
    a = a.flatten(1)
    b = b.flatten(1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    norm = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt()
    return (a * b).sum(dim=1) / norm.clamp_min(eps)


def correlation_loss(fake: torch.Tensor, real: torch.Tensor, eps: float = 1e-8
                     ) -> torch.Tensor:
    """L_corr = 1 - (1/N) Σ_i Cov(G(z_i, c), x_i) / (σ_G(z_i, c) σ_x_i)  (eq. 4).

    fake (N, seq_len, features) synthetic samples, real (N, seq_len, features) real samples of
    the same classes, paired by index; the correlation of a pair is taken over the sample's
    seq_len·features values (:func:`pearson_correlation`). Scalar in [0, 2]: 0 when every pair
    is perfectly correlated, 1 when uncorrelated, 2 when perfectly anti-correlated."""
    return 1.0 - pearson_correlation(fake, real, eps).mean()


def joint_optimization_loss(logits: torch.Tensor, labels: torch.Tensor,
                            reduction: str = "mean") -> torch.Tensor:
    """L_opt = -Σ_i Σ_j (y_i)_j log C(x_i)_j  (eq. 5), C's categorical cross entropy.

    logits (N, n_classes) C's logits (C = softmax) on the augmented training batch (real
    samples plus synthetic ones); in G's objective, on G's samples, with their target class.
    labels (N,) class indices. Scalar."""
    return F.cross_entropy(logits, labels, reduction=reduction)


def generator_objective(l_g: torch.Tensor, l_cls: torch.Tensor, l_corr: torch.Tensor,
                        l_opt: torch.Tensor, lambda_cls: float = 1.0, lambda_corr: float = 1.0,
                        lambda_opt: float = 10.0) -> torch.Tensor:
    """L = L_G + λ1·L_cls + λ2·L_corr + λ3·L_opt  (eq. 6), with the paper's λ1, λ2, λ3 =
    1, 1, 10 as defaults. Scalars in, scalar out."""
    return l_g + lambda_cls * l_cls + lambda_corr * l_corr + lambda_opt * l_opt


def balance_counts(labels: torch.Tensor, n_classes: int,
                   classes: Sequence[int] | None = None) -> torch.Tensor:
    """(N,) class indices -> (n_classes,) how many samples each class lacks to match the
    majority class (0 for the majority). With ``classes``, only those are topped up."""
    counts = torch.bincount(labels.flatten().long(), minlength=n_classes)
    if counts.numel() > n_classes:
        raise ModelError(f"labels go up to {counts.numel() - 1}; expected {n_classes} classes")
    missing = counts.max() - counts
    if classes is not None:
        keep = torch.zeros_like(missing, dtype=torch.bool)
        keep[list(classes)] = True
        missing = missing * keep
    return missing


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """(n_classes,) counts -> (sum,) class indices, each class repeated its count, in order."""
    counts = counts.long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)


# ---------------------------------------------------------------------------------------------
# Networks


def _grid(n: int) -> tuple[int, int]:
    """The most nearly square h × w = n (10 × 10 for the paper's 100-d noise)."""
    h = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return h, n // h


def _as_map(x: torch.Tensor, seq_len: int, features: int) -> torch.Tensor:
    """(B, seq_len, features) or flat (B, seq_len·features) -> (B, 1, seq_len, features)."""
    if tuple(x.shape[1:]) not in ((seq_len, features), (seq_len * features,)):
        raise ModelError(f"expected samples of shape ({seq_len}, {features}) or "
                         f"({seq_len * features},), got {tuple(x.shape[1:])}")
    return x.reshape(x.shape[0], 1, seq_len, features)


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every convolution, dense layer and embedding
    (the paper's initialisation "from a uniform distribution", its [19])."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
            nn.init.xavier_uniform_(m.weight)
            bias = getattr(m, "bias", None)
            if bias is not None:
                nn.init.zeros_(bias)


class Generator(nn.Module):
    """G(z, c): the class embedded in latent_dim numbers, stacked with the noise as 2 channels
    of a (2, h, w) map (h·w = latent_dim), two 3×3 convolutions, two dense layers; leaky ReLU
    between, a linear output (the features are real-valued, z-normalised)."""

    def __init__(self, seq_len: int = PAPER_SHAPE[0], features: int = PAPER_SHAPE[1],
                 n_classes: int = 3, latent_dim: int = 100, channels: int = 64,
                 hidden: int = 256) -> None:
        super().__init__()
        self.seq_len, self.features, self.latent_dim = seq_len, features, latent_dim
        self.grid = _grid(latent_dim)
        self.embed = nn.Embedding(n_classes, latent_dim)
        self.conv = nn.Sequential(
            nn.Conv2d(2, channels, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2))
        self.dense = nn.Sequential(
            nn.Linear(channels * latent_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, seq_len * features))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) noise, (B,) class indices -> (B, seq_len, features) samples."""
        x = torch.stack([z, self.embed(labels)], dim=1)  # (B, 2, latent_dim): channel-wise
        x = self.conv(x.unflatten(2, self.grid))  # (B, channels, h, w)
        return self.dense(x.flatten(1)).unflatten(1, (self.seq_len, self.features))


class Discriminator(nn.Module):
    """D: two stride-2 3×3 convolutions (leaky ReLU, dropout) over the sample as a one-channel
    map, then two dense heads, realness and class."""

    def __init__(self, seq_len: int = PAPER_SHAPE[0], features: int = PAPER_SHAPE[1],
                 n_classes: int = 3, channels: tuple[int, int] = (32, 64),
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.seq_len, self.features = seq_len, features
        c1, c2 = channels
        self.trunk = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten())
        h, w = seq_len, features
        for _ in range(2):  # each stride-2, pad-1, 3×3 convolution: n -> ceil(n / 2)
            h, w = (h + 1) // 2, (w + 1) // 2
        self.src = nn.Linear(c2 * h * w, 1)
        self.cls = nn.Linear(c2 * h * w, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, seq_len, features) (or flat (B, seq_len·features)) -> ((B,) realness logits,
        (B, n_classes) class logits); D_src = sigmoid, D_cls = softmax of these."""
        h = self.trunk(_as_map(x, self.seq_len, self.features))
        return self.src(h).squeeze(1), self.cls(h)


class FeatureClassifier(nn.Module):
    """C: 3×3 convolutions (ReLU) over the sample as a one-channel map, a 2×2 max-pool after
    the second, global average pooling, dropout, one dense layer to the class logits."""

    def __init__(self, seq_len: int = PAPER_SHAPE[0], features: int = PAPER_SHAPE[1],
                 n_classes: int = 3, channels: tuple[int, int, int] = (32, 64, 128),
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.seq_len, self.features = seq_len, features
        c1, c2, c3 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c3, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, seq_len, features) (or flat (B, seq_len·features)) -> (B, n_classes) logits."""
        h = self.conv(_as_map(x, self.seq_len, self.features))
        return self.head(h.mean(dim=(2, 3)))  # global average pooling


# ---------------------------------------------------------------------------------------------
# The joint model


@dataclass
class GanOptimisers:
    """One optimiser per network."""

    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    classifier: torch.optim.Optimizer

    @classmethod
    def adam(cls, model: GanBalancer, lr: float = 1e-4) -> GanOptimisers:
        """The paper's Adam at a base rate of 1e-4 for all three (C's rate is cosine-decayed
        by the trainer, G's and D's stay constant)."""
        return cls(torch.optim.Adam(model.generator.parameters(), lr=lr),
                   torch.optim.Adam(model.discriminator.parameters(), lr=lr),
                   torch.optim.Adam(model.classifier.parameters(), lr=lr))


@contextmanager
def _no_param_grads(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` take no gradient inside (a frozen D and C while G learns)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


class GanBalancer(nn.Module):
    """G, D and C with the paper's joint training steps; ``forward`` is C (the deployed part).

    ``regime`` "scratch": all three train from the first step. "snapshot": C is loaded with
    :meth:`load_classifier_snapshot` and stays frozen (no updates, eval mode) for the epochs
    before ``unfreeze_after``, still steering G through L_opt."""

    def __init__(self, seq_len: int = PAPER_SHAPE[0], features: int = PAPER_SHAPE[1],
                 n_classes: int = 3, latent_dim: int = 100, regime: str = "scratch",
                 unfreeze_after: int = 50, lambda_cls: float = 1.0, lambda_corr: float = 1.0,
                 lambda_opt: float = 10.0, label_smoothing: float = 0.1, dropout: float = 0.3,
                 generator_channels: int = 64, generator_hidden: int = 256) -> None:
        super().__init__()
        if regime not in REGIMES:
            raise ModelError(f"unknown training regime {regime!r}; choose one of {REGIMES}")
        if unfreeze_after < 0:
            raise ModelError(f"unfreeze_after must be >= 0, got {unfreeze_after}")
        self.seq_len, self.features, self.n_classes = seq_len, features, n_classes
        self.latent_dim = latent_dim
        self.regime, self.unfreeze_after = regime, unfreeze_after
        self.lambdas = (lambda_cls, lambda_corr, lambda_opt)
        self.label_smoothing = label_smoothing
        self.generator = Generator(seq_len, features, n_classes, latent_dim, generator_channels,
                                   generator_hidden)
        self.discriminator = Discriminator(seq_len, features, n_classes, dropout=dropout)
        # any (B, seq_len, features) -> (B, n_classes) network may take this slot
        self.classifier: nn.Module = FeatureClassifier(seq_len, features, n_classes,
                                                       dropout=dropout)
        glorot_init(self)
        self.classifier_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, seq_len, features) feature sequences -> (B, n_classes) C's logits."""
        return self.classifier(x)

    @staticmethod
    def readout(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, n_classes) logits -> ``probabilities`` (B, n_classes) of each drowsiness class."""
        return {"probabilities": torch.softmax(logits, dim=-1)}

    # -- regimes --------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Self:
        """As nn.Module.train, but a frozen C stays in eval mode (no dropout)."""
        super().train(mode)
        if getattr(self, "classifier_frozen", False):
            self.classifier.eval()
        return self

    def set_classifier_frozen(self, frozen: bool) -> None:
        """Freezes (no gradients, eval mode) or unfreezes C."""
        self.classifier_frozen = frozen
        self.classifier.requires_grad_(not frozen)
        self.classifier.train(self.training and not frozen)

    def frozen_at(self, epoch: int) -> bool:
        """Whether C is frozen during ``epoch`` (0-based) under this model's regime."""
        return self.regime == "snapshot" and epoch < self.unfreeze_after

    def load_classifier_snapshot(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Loads C from a pre-trained snapshot (``FeatureClassifier.state_dict()``); in the
        "snapshot" regime C is then frozen until epoch ``unfreeze_after``."""
        self.classifier.load_state_dict(state_dict)
        self.set_classifier_frozen(self.frozen_at(0))

    # -- steps ----------------------------------------------------------------------------

    def noise(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) Gaussian noise z on ``like``'s device, in its dtype."""
        return torch.randn(n, self.latent_dim, device=like.device, dtype=like.dtype)

    def discriminator_step(self, real: torch.Tensor, labels: torch.Tensor,
                           optimiser: torch.optim.Optimizer) -> dict[str, float]:
        """One update of D on real (B, seq_len, features) samples with (B,) labels and as many
        synthetic samples of the same classes: L_D (eq. 1, one-sided label smoothing) plus the
        class cross entropy of D_cls on both."""
        with torch.no_grad():
            fake = self.generator(self.noise(len(labels), real), labels)
        src_real, cls_real = self.discriminator(real)
        src_fake, cls_fake = self.discriminator(fake)
        l_src = discriminator_loss(src_real, src_fake, self.label_smoothing)
        l_cls = classification_loss(cls_real, labels) + classification_loss(cls_fake, labels)
        optimiser.zero_grad(set_to_none=True)
        (l_src + l_cls).backward()
        optimiser.step()
        return {"d_src": l_src.item(), "d_cls": l_cls.item()}

    def generator_losses(self, real: torch.Tensor, labels: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """G's terms on B fresh samples G(z_i, c_i) with c_i = labels_i, paired with the real
        (B, seq_len, features) samples for L_corr: {"g_adv": L_G, "g_cls": L_cls, "g_corr":
        L_corr, "g_opt": L_opt on C, "g": eq. 6}, scalar tensors."""
        fake = self.generator(self.noise(len(labels), real), labels)
        src, cls = self.discriminator(fake)
        terms = {"g_adv": generator_adversarial_loss(src),
                 "g_cls": classification_loss(cls, labels),
                 "g_corr": correlation_loss(fake, real),
                 "g_opt": joint_optimization_loss(self.classifier(fake), labels)}
        terms["g"] = generator_objective(terms["g_adv"], terms["g_cls"], terms["g_corr"],
                                         terms["g_opt"], *self.lambdas)
        return terms

    def generator_step(self, real: torch.Tensor, labels: torch.Tensor,
                       optimiser: torch.optim.Optimizer) -> dict[str, float]:
        """One update of G on the full objective (eq. 6), D and C held fixed."""
        with _no_param_grads(self.discriminator, self.classifier):
            terms = self.generator_losses(real, labels)
            optimiser.zero_grad(set_to_none=True)
            terms["g"].backward()
        optimiser.step()
        return {k: v.item() for k, v in terms.items()}

    def classifier_step(self, real: torch.Tensor, labels: torch.Tensor,
                        optimiser: torch.optim.Optimizer,
                        synthetic_labels: torch.Tensor | None = None) -> dict[str, float]:
        """One update of C on the batch augmented with synthetic samples (L_opt, eq. 5). The
        synthetic classes default to those that balance the batch (:func:`balance_counts`);
        a trainer balancing against the whole data set passes its own. A frozen C is only
        evaluated."""
        if synthetic_labels is None:
            synthetic_labels = counts_to_labels(balance_counts(labels, self.n_classes))
        synthetic_labels = synthetic_labels.to(labels.device)
        x = torch.cat([real, self.synthesize(synthetic_labels, like=real)])
        y = torch.cat([labels, synthetic_labels])
        if self.classifier_frozen:
            with torch.no_grad():
                loss = joint_optimization_loss(self.classifier(x), y)
        else:
            loss = joint_optimization_loss(self.classifier(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return {"c_opt": loss.item(), "c_synthetic": float(len(synthetic_labels))}

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, optimisers: GanOptimisers,
                   epoch: int) -> dict[str, float]:
        """One iteration of joint training at ``epoch`` (0-based): C frozen or not as the regime
        says, then D, G and C steps. Returns every loss as a float, and "c_frozen" 0/1."""
        if self.frozen_at(epoch) != self.classifier_frozen:
            self.set_classifier_frozen(self.frozen_at(epoch))
        out = self.discriminator_step(real, labels, optimisers.discriminator)
        out |= self.generator_step(real, labels, optimisers.generator)
        out |= self.classifier_step(real, labels, optimisers.classifier)
        out["c_frozen"] = float(self.classifier_frozen)
        return out

    # -- synthesis ------------------------------------------------------------------------

    @torch.no_grad()
    def synthesize(self, labels: torch.Tensor, like: torch.Tensor | None = None,
                   chunk: int = 1024) -> torch.Tensor:
        """(N,) class indices -> (N, seq_len, features) synthetic samples (no gradient), on
        ``like``'s device and in its dtype (default G's)."""
        weight = self.generator.embed.weight
        labels = labels.to(weight.device).long()
        out = weight.new_zeros(0, self.seq_len, self.features) if len(labels) == 0 else \
            torch.cat([self.generator(self.noise(len(part), weight), part)
                       for part in labels.split(chunk)])
        return out if like is None else out.to(like)

    def synthesize_counts(self, counts: Sequence[int] | torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """counts[k] samples of class k -> ((N, seq_len, features) samples, (N,) labels)."""
        labels = counts_to_labels(torch.as_tensor(counts))
        return self.synthesize(labels), labels.to(self.generator.embed.weight.device)

    def balance(self, features: torch.Tensor, labels: torch.Tensor,
                classes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthetic samples that bring every class of a data set (features (N, seq_len,
        features), labels (N,) class indices) up to its majority class's count (only
        ``classes``, if given): ((M, seq_len, features), (M,) labels), in features' dtype."""
        if tuple(features.shape[1:]) != (self.seq_len, self.features):
            raise ModelError(f"expected features (N, {self.seq_len}, {self.features}), "
                             f"got {tuple(features.shape)}")
        synthetic = counts_to_labels(balance_counts(labels, self.n_classes, classes))
        return self.synthesize(synthetic, like=features), synthetic.to(features.device)


@register_model("gan-balancer", example=lambda batch: (torch.randn(batch, *PAPER_SHAPE),))
def gan_balancer(seq_len: int = PAPER_SHAPE[0], features: int = PAPER_SHAPE[1],
                 n_classes: int = 3, latent_dim: int = 100, regime: str = "scratch",
                 unfreeze_after: int = 50, lambda_cls: float = 1.0, lambda_corr: float = 1.0,
                 lambda_opt: float = 10.0, label_smoothing: float = 0.1, dropout: float = 0.3,
                 generator_channels: int = 64, generator_hidden: int = 256) -> GanBalancer:
    """Class-balancing conditional GAN trained jointly with its drowsiness classifier C."""
    return GanBalancer(seq_len, features, n_classes, latent_dim, regime, unfreeze_after,
                       lambda_cls, lambda_corr, lambda_opt, label_smoothing, dropout,
                       generator_channels, generator_hidden)
