"""SAT-Net for facial action units (``satnet-au-detection.md``): a ResNet-18 whose stage-2
features pass through a ConvLSTM, the current frame's hidden state continuing through stages
3-4, and a per-AU self-attention head. The paper's ablation variants are selectable:

- ``resnet``: ResNet-18, global average pooling, one linear layer (the baseline);
- ``t-net``: + ConvLSTM temporal fusion;
- ``sa-net``: + self-attention head;
- ``sat-net``: both.

Every frame of a sequence is labelled (AU detection is frame-based), so a sequence of T frames
gives T rows of AU logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.layers import ConvLSTMCell
from models.registry import ModelError, register_model
from models.resnet import ResNet18

# The 12 BP4D AUs the paper evaluates.
BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
VARIANTS = ("resnet", "t-net", "sa-net", "sat-net")


class AUSelfAttention(nn.Module):
    """Two 1×1 convolution streams from the trunk's C channels to one map per AU: features,
    and a sigmoid attention mask; their product, averaged over space, is the AU's logit."""

    def __init__(self, channels: int, aus: int) -> None:
        super().__init__()
        self.features = nn.Conv2d(channels, aus, 1)
        self.mask = nn.Conv2d(channels, aus, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, K) logits."""
        return (self.features(x) * torch.sigmoid(self.mask(x))).mean(dim=(2, 3))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, K, h, w) masks in [0, 1] (where each AU looks)."""
        return torch.sigmoid(self.mask(x))


class SATNet(nn.Module):
    def __init__(self, variant: str = "sat-net", aus: int = len(BP4D_AUS),
                 lstm_kernel: int = 3) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(f"unknown SAT-Net variant {variant!r}; choose one of {VARIANTS}")
        self.variant = variant
        self.backbone = ResNet18(dims=2)
        temporal = variant in ("t-net", "sat-net")
        self.temporal = ConvLSTMCell(128, 128, lstm_kernel) if temporal else None
        self.head: nn.Module = (AUSelfAttention(512, aus) if variant in ("sa-net", "sat-net")
                                else nn.Linear(512, aus))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) sequences -> (B, T, K) per-frame AU logits."""
        b, t = frames.shape[:2]
        m1 = self.backbone.forward_to(frames.flatten(0, 1), 2)  # (B*T, 128, H/8, W/8)
        if self.temporal is not None:
            steps = m1.unflatten(0, (b, t)).unbind(1)
            state = None
            hidden = []
            for x in steps:  # the hidden state of each frame goes on through stages 3-4
                state = self.temporal(x, state)
                hidden.append(state[0])
            m1 = torch.stack(hidden, dim=1).flatten(0, 1)
        x = self.backbone.stage(4)(self.backbone.stage(3)(m1))  # (B*T, 512, H/32, W/32)
        logits = self.head(x) if isinstance(self.head, AUSelfAttention) \
            else self.head(x.mean(dim=(2, 3)))
        return logits.unflatten(0, (b, t))

    @staticmethod
    def readout(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, K) logits -> ``probabilities`` (B, T, K) that each AU occurs in each frame."""
        return {"probabilities": torch.sigmoid(logits)}


def occurrence_weights(labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(N, K) 0/1 training labels -> (K,) w_c ∝ 1 / occurrence rate, scaled so they average
    1: rare AUs weigh more (the paper's eq. 4 weights from occurrence rates)."""
    inverse = 1.0 / (labels.float().mean(dim=0) + eps)
    return inverse * len(inverse) / inverse.sum()


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
                 ) -> torch.Tensor:
    """Mean over samples of sum over AUs of w_c · BCE(sigma(x), y) (paper eq. 4).

    logits, labels (..., K); weights (K,)."""
    per = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    return (per * weights).sum(dim=-1).mean()


@register_model("satnet", example=lambda batch: (torch.randn(batch, 16, 3, 224, 224),))
def satnet(variant: str = "sat-net", aus: int = len(BP4D_AUS), lstm_kernel: int = 3
           ) -> SATNet:
    """AUs: ResNet-18 + ConvLSTM after stage 2 + per-AU self-attention (T/SA/SAT-Net)."""
    return SATNet(variant, aus, lstm_kernel)
