"""Eye state from one eye crop: how closed the eye is, and whether an eye can be seen at all.

The person-independent eye-state estimate of DESIGN §3: a small CNN on a grey, contrast-
normalised crop of one eye (the crop is cut by ``workers.signals.eyes``: centred on the eye,
levelled on the line through both eyes, sized by the inter-eye distance, the second eye mirrored
so both look alike). Grey because near-infrared cabin cameras have no colour; contrast-
normalised because their gain and the sun vary more than eyes do. Like the blink paper's
shallow CNN (eyeblink-intrinsic-motion.md, §III-B: Conv–BN–ReLU–max-pool stages on the eye
region), but for one frame, since the stream's blink detector does the timing.

Two outputs per crop:
- ``closure``: 0 open .. 1 closed (the lids' share of the open eye that they cover), trained
  as a soft target with binary cross-entropy;
- ``visible``: the crop shows an eye whose lids can be judged (not sunglasses, a hand, hair, a
  crop that missed the eye, a blur without detail); the degraded-sensing signal.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.predictor import to_channels_last
from models.registry import register_model

NAME = "eyestate"
# Trained on real faces with rendered lids; how, and how well: models/cards/eyestate.md
SHIPPED_CHECKPOINT = Path(__file__).parent / "weights" / "eyestate.pt"
CROP_SIZE = (32, 48)  # (height, width) of one eye crop


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )


class EyeStateNet(nn.Module):
    """Three Conv–BN–ReLU–pool stages, a fourth convolution, global average and max pooling,
    and a linear layer to two logits (closure, visible)."""

    def __init__(self, channels: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        stages, c_in = [], 1
        for c in channels[:-1]:
            stages.append(_stage(c_in, c))
            c_in = c
        self.features = nn.Sequential(
            *stages,
            nn.Conv2d(c_in, channels[-1], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels[-1], 2)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: (B, 1, H, W) float, each crop zero-mean and unit-variance -> (B, 2) logits
        (closure, visible)."""
        f = self.features(crops)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def for_inference(model: EyeStateNet) -> EyeStateNet:
    """An eval-mode copy for serving: each batch norm folded into the convolution before it,
    and the weights channels-last (feed it channels-last crops). The same outputs to float
    rounding, in under half the CPU time of the trained layout (one tiny forward a frame is
    mostly per-layer overhead, and channels-last takes oneDNN's fast path)."""

    def fold(seq: nn.Sequential) -> nn.Sequential:
        layers: list[nn.Module] = []
        for layer in seq:
            if isinstance(layer, nn.Sequential):
                layers.append(fold(layer))
            elif isinstance(layer, nn.BatchNorm2d) and isinstance(conv := layers[-1], nn.Conv2d):
                layers[-1] = fuse_conv_bn_eval(conv, layer)
            else:
                layers.append(layer)
        return nn.Sequential(*layers)

    served = copy.deepcopy(model).eval()
    served.features = fold(served.features)
    to_channels_last(served)
    return served


def eyestate_loss(logits: torch.Tensor, closure: torch.Tensor, visible: torch.Tensor
                  ) -> torch.Tensor:
    """BCE on visibility for every crop, plus BCE on closure (a soft target) for the crops
    that show an eye: an occluded eye has no closure to learn.

    logits (B, 2); closure (B,) in [0, 1]; visible (B,) in {0, 1}."""
    vis_loss = F.binary_cross_entropy_with_logits(logits[:, 1], visible)
    per_crop = F.binary_cross_entropy_with_logits(logits[:, 0], closure, reduction="none")
    closure_loss = (per_crop * visible).sum() / visible.sum().clamp(min=1.0)
    return closure_loss + vis_loss


def normalise_crops(crops: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey values in any range -> each crop zero-mean, unit-variance (a floor on
    the deviation keeps a flat black crop flat rather than amplifying its noise)."""
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    std = crops.std(dim=(1, 2, 3), keepdim=True).clamp(min=4.0 / 255.0)
    return (crops - mean) / std


@register_model(NAME, example=lambda batch: (torch.randn(batch, 1, *CROP_SIZE),))
def eyestate(channels: tuple[int, ...] = (16, 32, 48, 64), dropout: float = 0.1
             ) -> EyeStateNet:
    """Eye closure and visibility from one grey eye crop (a small CNN, 47 k parameters)."""
    return EyeStateNet(tuple(channels), dropout)
