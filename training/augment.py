"""Clip-level photometric augmentation: the fatigue paper's six (§2.5, §3.1.1), drawn once per
clip and applied alike to every frame.

The paper composes "random horizontal flipping, gaussian blur as well as random changes on
image lightness, contrast and saturation" (§2.5); §3.1.1 counts them as six: horizontal flip,
brightness increase, brightness reduction, Gaussian blur, saturation and contrast. Each occurs
with probability 0.5, and "above augmentations were fixed and remained the same in one tensor,
which was one 32-frame clip from a video, while randomized and varied among different clips".
The paper gives no magnitudes; ours (:data:`RANGES`) follow torchvision's ColorJitter-style
factors: brightness ×1.1–1.4 up or ×0.6–0.9 down, contrast and saturation ×0.7–1.3 (about
the clip's mean grey, so every frame gets the very same affine map), blur σ 0.5–1.5 pixels at
112 pixels, scaled with the frame. SAT-Net (the AU paper) uses the flip alone
(``ops=("flip",)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

SIX = ("flip", "brighten", "darken", "blur", "saturation", "contrast")
RANGES = {"brighten": (1.1, 1.4), "darken": (0.6, 0.9), "blur": (0.5, 1.5),
          "saturation": (0.7, 1.3), "contrast": (0.7, 1.3)}
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class PhotoAugment:
    """One clip's draw: mirror, brightness factor (brighten × darken), blur σ in pixels at a
    112-pixel frame (0: none), saturation and contrast factors (1: unchanged)."""

    flip: bool = False
    brightness: float = 1.0
    blur: float = 0.0
    saturation: float = 1.0
    contrast: float = 1.0


def sample_photo_augment(ops: tuple[str, ...] = SIX, p: float = 0.5,
                         generator: torch.Generator | None = None) -> PhotoAugment:
    """A random :class:`PhotoAugment`: each op of ``ops`` (see :data:`SIX`) on with
    probability ``p``, its magnitude uniform in :data:`RANGES` (torch's RNG)."""
    u = torch.rand(len(SIX), 2, generator=generator).tolist()
    draw = {op: (u[k][0] < p and op in ops, u[k][1]) for k, op in enumerate(SIX)}

    def factor(op: str) -> float:
        on, v = draw[op]
        lo, hi = RANGES[op]
        return lo + (hi - lo) * v if on else (0.0 if op == "blur" else 1.0)

    return PhotoAugment(flip=draw["flip"][0], brightness=factor("brighten") * factor("darken"),
                        blur=factor("blur"), saturation=factor("saturation"),
                        contrast=factor("contrast"))


def _gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """(T, 3, H, W) blurred by a separable Gaussian of ``sigma`` pixels (reflected edges)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(frames.device)
    c = frames.shape[1]
    out = F.pad(frames, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def apply_photo_augment(frames: torch.Tensor, aug: PhotoAugment) -> torch.Tensor:
    """frames (T, 3, H, W) RGB in [0, 1] -> the same clip with ``aug`` applied to every frame
    alike (flip, brightness, saturation, contrast, then blur), clamped to [0, 1]."""
    out = frames.flip(-1) if aug.flip else frames
    grey_w = torch.tensor(GREY, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    if aug.brightness != 1.0:
        out = (out * aug.brightness).clamp(0, 1)
    if aug.saturation != 1.0:
        grey = (out * grey_w).sum(dim=1, keepdim=True)
        out = (grey + aug.saturation * (out - grey)).clamp(0, 1)
    if aug.contrast != 1.0:
        mean = (out * grey_w).sum(dim=1).mean()  # one number for the whole clip
        out = (mean + aug.contrast * (out - mean)).clamp(0, 1)
    if aug.blur > 0:
        sigma = aug.blur * min(frames.shape[-2:]) / 112
        if sigma >= 0.2:  # below that the kernel is a no-op at this size
            out = _gaussian_blur(out, sigma)
    return out
