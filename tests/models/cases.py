"""Tiny cases of every registered network and variant, for the registry-wide tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TinyCase:
    """``create_model(name, **overrides)`` on ``inputs(batch)``; ``trained(model)`` is the part
    that ``forward`` runs (and so must get gradients)."""

    name: str
    inputs: Callable[[int], tuple[torch.Tensor, ...]]
    overrides: dict[str, Any] = field(default_factory=dict)
    trained: Callable[[nn.Module], nn.Module] = lambda model: model

    @property
    def id(self) -> str:
        return self.name + "".join(f"-{v}" for v in self.overrides.values())


def _blink_inputs(batch: int) -> tuple[torch.Tensor, ...]:
    faces = torch.randn(batch, 4, 3, 64, 48)  # (B, T, 3, H, W)
    centres = torch.tensor([[14.0, 24.0], [34.0, 24.0]]).expand(batch, 4, 2, 2)  # (x, y)
    return faces, centres.clone()


TINY_CASES = [
    TinyCase("fatigue-nonlocal-r3d18", lambda b: (torch.randn(b, 3, 16, 32, 32),)),
    *(TinyCase("satnet", lambda b: (torch.randn(b, 2, 3, 32, 32),), {"variant": v})
      for v in ("resnet", "t-net", "sa-net", "sat-net")),
    *(TinyCase("blink-eyelid-motion", _blink_inputs, {"eyes": e, "region_size": 24})
      for e in ("both", "per-eye")),
    *(TinyCase("drowsiness-blinks", lambda b: (torch.randn(b, 30, 4),), {"core": c})
      for c in ("tcn", "stats")),
    TinyCase("eyestate", lambda b: (torch.randn(b, 1, 16, 24),)),
    TinyCase("gan-balancer", lambda b: (torch.randn(b, 18, 100),),
             trained=lambda model: model.classifier),
    TinyCase("gan-balancer", lambda b: (torch.randn(b, 30, 4),), {"seq_len": 30, "features": 4},
             trained=lambda model: model.classifier),
]
