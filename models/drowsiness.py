"""Drowsiness from blink windows (UTA-RLDD layout, DESIGN §6): a window of consecutive blinks,
each [frequency, amplitude, duration, eye-opening velocity] z-normalised against the driver's
own alert baseline, to three classes (alert, low vigilant, drowsy) and a continuous 0-1 score,
the expectation of the class probabilities over the levels 0, 0.5, 1.

The features are heavy-tailed (a blink frequency reaches hundreds of baseline deviations), so
the network first maps them with a signed logarithm, sign(x)·log(1 + |x|): :meth:`transform`,
kept apart from :attr:`core` so that the class-balancing GAN (``models/gan.py``) generates
and is judged in the same bounded space the classifier learns in.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.registry import ModelError, register_model

NAME = "drowsiness-blinks"
CLASSES = ("alert", "low_vigilant", "drowsy")
# Trained on all four UTA-RLDD folds; how, and how well: models/cards/drowsiness-blinks.md
SHIPPED_CHECKPOINT = Path(__file__).parent / "weights" / "drowsiness-blinks.pt"
SHIPPED_VERSION = "shipped"  # how the model-version registry names these weights
WINDOW_BLINKS = 30
BLINK_FEATURES = 4


def class_levels(classes: int = len(CLASSES)) -> torch.Tensor:
    """(K,) the ordinal level of each class, evenly spread over [0, 1] (0, 0.5, 1 for three)."""
    return torch.linspace(0.0, 1.0, classes)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def drowsiness_loss(logits: torch.Tensor, labels: torch.Tensor,
                    class_weights: torch.Tensor | None = None, mse_weight: float = 1.0
                    ) -> torch.Tensor:
    """CE(logits, labels) (class-weighted if given) + mse_weight · MSE(E[level], level): the
    class and, through the expectation over the ordered levels, how far off it is.

    logits (B, K), labels (B,) class indices."""
    levels = class_levels(logits.shape[-1]).to(logits)
    score = torch.softmax(logits, dim=-1) @ levels
    return (F.cross_entropy(logits, labels, weight=class_weights)
            + mse_weight * F.mse_loss(score, levels[labels]))


class BlinkTCN(nn.Module):
    """A temporal convolution network over the blinks of a window: ``layers`` 1D convolutions
    (BatchNorm, ReLU) of ``channels`` with kernel ``kernel``, dilations 1, 2, 4, ..., mean and
    max pooled over the blinks, dropout, one linear layer to the class logits."""

    def __init__(self, features: int, classes: int, channels: int, kernel: int, layers: int,
                 dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = features
        for i in range(layers):
            dilation = 2 ** i
            blocks += [nn.Conv1d(cin, channels, kernel, padding=dilation * (kernel // 2),
                                 dilation=dilation), nn.BatchNorm1d(channels), nn.ReLU()]
            cin = channels
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, blinks, features) transformed windows -> (B, K) logits."""
        h = self.convs(x.transpose(1, 2))  # (B, channels, blinks)
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


class BlinkStatistics(nn.Module):
    """Order-free summary of the window: per feature the mean, standard deviation, minimum,
    maximum, mean absolute value and the 10/25/50/75/90 % quantiles (10 × features values),
    standardised by a batch norm (running statistics of the training windows), dropout, then
    a hidden ReLU layer of ``hidden`` units (none: a multinomial logistic regression)."""

    QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

    def __init__(self, features: int, classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        width = features * (5 + len(self.QUANTILES))
        self.norm = nn.BatchNorm1d(width, affine=False)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*layers, nn.Linear(hidden or width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, blinks, features) transformed windows -> (B, K) logits."""
        q = torch.quantile(x, x.new_tensor(self.QUANTILES), dim=1)  # (Q, B, features)
        summary = [x.mean(dim=1), x.std(dim=1), x.amin(dim=1), x.amax(dim=1),
                   x.abs().mean(dim=1), *q.unbind(0)]
        return self.head(self.norm(torch.cat(summary, dim=1)))


class BlinkWindowNet(nn.Module):
    """The fixed signed-log transform, then :attr:`core` (the GAN's classifier slot)."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    @staticmethod
    def transform(windows: torch.Tensor) -> torch.Tensor:
        """(B, blinks, features) normalised blink features -> the same, signed-log mapped."""
        return signed_log(windows)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, blinks, features) blink windows -> (B, K) class logits."""
        return self.core(self.transform(windows))

    @staticmethod
    def readout(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, K) logits -> ``probabilities`` (B, K) and ``score`` (B,) in [0, 1]."""
        probabilities = torch.softmax(logits, dim=-1)
        return {"probabilities": probabilities,
                "score": probabilities @ class_levels(logits.shape[-1]).to(probabilities)}


CORES = ("tcn", "stats")


@register_model(NAME,
                example=lambda batch: (torch.randn(batch, WINDOW_BLINKS, BLINK_FEATURES),))
def drowsiness_blinks(core: str = "stats", features: int = BLINK_FEATURES,
                      classes: int = len(CLASSES), channels: int = 32, kernel: int = 5,
                      layers: int = 2, hidden: int = 0, dropout: float = 0.3) -> BlinkWindowNet:
    """Drowsiness: a window of blinks -> 3 classes + a 0-1 score (core: tcn | stats)."""
    if core == "tcn":
        return BlinkWindowNet(BlinkTCN(features, classes, channels, kernel, layers, dropout))
    if core == "stats":
        return BlinkWindowNet(BlinkStatistics(features, classes, hidden, dropout))
    raise ModelError(f"unknown drowsiness core {core!r}; choose one of {CORES}")
