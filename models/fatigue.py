"""The fatigue network (``fatigue-nonlocal-3d-resnet.md``): a 3D ResNet-18 with one
embedded-Gaussian non-local block after stage 3, two fully connected layers, and k fatigue
bins whose softmax gives both a class and, by the expectation transform, a 0-1 score."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.layers import NonLocalBlock3d
from models.registry import register_model
from models.resnet import ResNet18


def bin_midpoints(bins: int) -> torch.Tensor:
    """(k,) the midpoints (2i+1)/(2k) of k equal bins of [0, 1]. The paper's eq. 2.5.1 prints
    (2i+1)/k, which would leave [0, 1]; the text says midpoints, which is what this is."""
    return (2 * torch.arange(bins, dtype=torch.float32) + 1) / (2 * bins)


def expectation(logits: torch.Tensor) -> torch.Tensor:
    """(B, k) logits -> (B,) E(q) = sum_i softmax(logits)_i · midpoint_i, in [0, 1]."""
    q = torch.softmax(logits, dim=-1)
    return q @ bin_midpoints(logits.shape[-1]).to(q)


def score_bins(scores: torch.Tensor, bins: int) -> torch.Tensor:
    """(B,) scores in [0, 1] -> (B,) bin index (1.0 falls in the last bin)."""
    return (scores * bins).long().clamp(0, bins - 1)


def fatigue_loss(logits: torch.Tensor, scores: torch.Tensor, alpha: float = 0.1
                 ) -> torch.Tensor:
    """L = alpha · CE(logits, bin of the score) + MSE(E(q), score)  (paper eq. 2.5.2-3).

    logits (B, k), scores (B,) continuous labels in [0, 1]."""
    ce = F.cross_entropy(logits, score_bins(scores, logits.shape[-1]))
    return alpha * ce + F.mse_loss(expectation(logits), scores)


class FatigueNet(nn.Module):
    """3D ResNet-18 trunk, non-local block after stage 3, two FC layers to k bin logits."""

    def __init__(self, bins: int = 10, hidden: int = 256, dropout: float = 0.5,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.backbone = ResNet18(dims=3, in_channels=in_channels)
        self.nonlocal_block = NonLocalBlock3d(256)
        self.head = nn.Sequential(nn.Linear(512, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, bins))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, k) logits; T×H×W = 32×224×224 in the paper, which
        the non-local block sees as (B, 256, 4, 14, 14)."""
        x = self.nonlocal_block(self.backbone.forward_to(clips, 3))
        x = self.backbone.stage(4)(x)
        return self.head(x.mean(dim=(2, 3, 4)))

    @staticmethod
    def readout(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, k) logits -> ``score`` (B,) in [0, 1] and ``bin_probabilities`` (B, k)."""
        return {"score": expectation(logits), "bin_probabilities": torch.softmax(logits, -1)}


@register_model("fatigue-nonlocal-r3d18",
                example=lambda batch: (torch.randn(batch, 3, 32, 224, 224),))
def fatigue_nonlocal_r3d18(bins: int = 10, hidden: int = 256, dropout: float = 0.5,
                           in_channels: int = 3) -> FatigueNet:
    """Fatigue: 3D ResNet-18 + non-local attention, k-bin softmax + expectation score."""
    return FatigueNet(bins, hidden, dropout, in_channels)
