"""ResNet-18 in plain torch (torchvision's state-dict layout: ``conv1``, ``bn1``,
``layerN.M.convK``, ``layerN.M.downsample.{0,1}``), in 2D and inflated to 3D.

The 3D network follows Hara et al.'s 3D-ResNet strides (conv1 stride (1, 2, 2); max-pool and
stages 2-4 stride 2 in time and space), so a 32×224×224 clip reaches stage 3's output as
(B, 256, 4, 14, 14), as in the fatigue paper. :func:`inflate_state_dict` turns a 2D ResNet-18
state dict into the 3D one: every temporal slice of a t×k×k kernel is the k×k kernel / t.
Time is padded by repeating the edge frames (not zeros), so a clip of identical frames gives
exactly the 2D network's features at every time step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

STAGE_WIDTHS = (64, 128, 256, 512)


class TimeReplicateConv3d(nn.Conv3d):
    """A Conv3d whose temporal padding repeats the edge frames; spatial padding is zeros."""

    def __init__(self, cin: int, cout: int, k: int, kt: int, stride: int, stride_t: int
                 ) -> None:
        super().__init__(cin, cout, (kt, k, k), stride=(stride_t, stride, stride),
                         padding=(0, k // 2, k // 2), bias=False)
        self.pad_t = kt // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C', T', H', W')."""
        if self.pad_t:
            x = F.pad(x, (0, 0, 0, 0, self.pad_t, self.pad_t), mode="replicate")
        return super().forward(x)


def _conv(dims: int, cin: int, cout: int, k: int, stride: int, stride_t: int | None = None
          ) -> nn.Module:
    """A k×k convolution, or in 3D k×k×k (7 for conv1, 3 in the blocks, 1 for shortcuts)
    with temporal stride ``stride_t`` (default: the spatial stride)."""
    if dims == 2:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    return TimeReplicateConv3d(cin, cout, k, k, stride, stride if stride_t is None else stride_t)


def _norm(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)


class BasicBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(dims, cin, cout, 3, stride)
        self.bn1 = _norm(dims, cout)
        self.conv2 = _conv(dims, cout, cout, 3, 1)
        self.bn2 = _norm(dims, cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(dims, cin, cout, 1, stride), _norm(dims, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, [T,] H, W) -> (B, C', [T',] H', W')."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class ResNet18(nn.Module):
    """The trunk of ResNet-18 (no classifier) in ``dims`` 2 or 3; ``forward_to(x, stage)``
    stops after a stage (1-4), as SAT-Net and the fatigue network need."""

    def __init__(self, dims: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {dims}")
        self.dims = dims
        self.conv1 = _conv(dims, in_channels, 64, 7, 2, stride_t=1)  # conv1 keeps time
        self.bn1 = _norm(dims, 64)
        self.relu = nn.ReLU(inplace=True)
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.maxpool = pool(3, stride=2, padding=1)
        cin = 64
        for n, width in enumerate(STAGE_WIDTHS, start=1):
            stride = 1 if n == 1 else 2
            self.add_module(f"layer{n}", nn.Sequential(BasicBlock(dims, cin, width, stride),
                                                       BasicBlock(dims, width, width, 1)))
            cin = width

    def stage(self, n: int) -> nn.Module:
        layer: nn.Module = getattr(self, f"layer{n}")
        return layer

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, [T,] H, W) -> (B, 64, [T/2,] H/4, W/4)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_to(self, x: torch.Tensor, last_stage: int = 4) -> torch.Tensor:
        x = self.stem(x)
        for n in range(1, last_stage + 1):
            x = self.stage(n)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, [T,] H, W) -> (B, 512, [T/16,] H/32, W/32)."""
        return self.forward_to(x, 4)


def inflate_state_dict(state_2d: Mapping[str, torch.Tensor], model_3d: nn.Module
                       ) -> dict[str, torch.Tensor]:
    """A 2D ResNet-18 state dict (torchvision's keys; extra keys such as ``fc.*`` are
    ignored) mapped onto ``model_3d``'s 3D keys: each conv weight (O, I, k, k) becomes
    (O, I, t, k, k) with every slice = weight / t; norms are copied."""
    target = model_3d.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in target.items():
        src = state_2d.get(key)
        if src is None:
            continue
        if value.dim() == 5 and src.dim() == 4:
            t = value.shape[2]
            src = src.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if src.shape != value.shape:
            raise ValueError(f"{key}: 2D weight {tuple(src.shape)} does not inflate to "
                             f"{tuple(value.shape)}")
        out[key] = src.clone()
    return out
