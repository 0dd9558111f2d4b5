"""What the workers call to run a network: per-driver clips in, per-driver outputs out.

A :class:`ClipPredictor` holds one network in eval mode on CPU or CUDA. :meth:`~ClipPredictor.
predict` stacks the drivers' clips into batches, runs them without autograd (optionally under
bf16/fp16 autocast, with channels-last weights, compiled) and splits the network's readout
back per driver. One driver's unusable clip is rejected with its reason; the others still get
their outputs, so a worker can dead-letter the one and carry on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import load_checkpoint
from models.registry import ModelError

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
# One driver's inputs to one forward call, without the batch dimension: a tensor, or a tuple
# of them for networks with several inputs (the blink net's faces and eye centres).
Clip = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@dataclass
class Predictions:
    """``outputs[driver][name]`` is that driver's readout (float32, on the CPU, no batch
    dimension); ``rejected[driver]`` says why a driver's clip was not run."""

    outputs: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Stores 2D convolution weights channels-last and 3D ones channels-last-3d, in place
    (``Module.to(memory_format=...)`` refuses a model that has both ranks)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for param in model.parameters():
        if param.dim() in formats:
            param.data = param.data.contiguous(memory_format=formats[param.dim()])
    return model


class ClipPredictor:
    """Runs ``model`` for inference on ``device``.

    precision: ``fp32``, ``bf16`` (autocast on CUDA or CPU) or ``fp16`` (autocast, CUDA only).
    channels_last: store convolution weights channels-last (faster tensor-core convolutions).
    compile: ``torch.compile`` the forward pass (worth it on GPU for long-running workers).
    max_batch: the most clips in one forward call; larger requests are split.
    preprocessing: what the checkpoint says the inputs must be (clip length, size, mean/std,
    labels, fps), kept for the caller that prepares the clips.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                 max_batch: int = 64, preprocessing: Mapping[str, Any] | None = None) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError("a CUDA device was asked for but torch sees none")
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose one of "
                             f"{sorted(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ModelError("fp16 autocast needs a CUDA device; use bf16 on the CPU")
        if max_batch < 1:
            raise ModelError(f"max_batch must be at least 1, not {max_batch}")
        self.precision = precision
        self.max_batch = max_batch
        self.preprocessing = dict(preprocessing or {})
        self.model = model.eval().to(self.device)
        if channels_last:
            to_channels_last(self.model)
        self.readout: Callable[[Any], dict[str, torch.Tensor]] = getattr(
            model, "readout", lambda output: {"output": output})
        self._forward: Callable[..., Any] = torch.compile(self.model) if compile else self.model

    @classmethod
    def from_checkpoint(cls, path: Path, **options: Any) -> ClipPredictor:
        """The checkpoint's model, with its preprocessing, under ``options`` (see class)."""
        model, meta = load_checkpoint(path)
        return cls(model, preprocessing=meta["preprocessing"], **options)

    def run_batch(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward call on batched inputs (each (B, ...)) -> the readout, each (B, ...),
        float32 on the CPU."""
        return self._run(self._forward, inputs)

    def _run(self, forward: Callable[..., Any], inputs: tuple[torch.Tensor, ...]
             ) -> dict[str, torch.Tensor]:
        dtype = PRECISIONS[self.precision]
        autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
                    else nullcontext())
        if self.device.type == "cuda":  # page-locked, so the copy can overlap
            inputs = tuple(x.pin_memory() for x in inputs)
        with torch.inference_mode(), autocast:
            output = forward(*(x.to(self.device, non_blocking=True) for x in inputs))
            readout = self.readout(output)
        return {name: value.float().cpu() for name, value in readout.items()}

    def check_compiled(self, *inputs: torch.Tensor, atol: float = 1e-3, rtol: float = 1e-3
                       ) -> float:
        """Runs ``inputs`` through the compiled and the eager forward; returns the largest
        difference of the readouts, or raises ModelError when they differ by more than
        ``atol + rtol·|eager|`` (a compiled graph must read what the model reads)."""
        compiled, eager = self._run(self._forward, inputs), self._run(self.model, inputs)
        worst = 0.0
        for name, value in eager.items():
            diff = (compiled[name] - value).abs()
            worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
            if not torch.allclose(compiled[name], value, atol=atol, rtol=rtol):
                raise ModelError(f"the compiled model's {name} differs from eager inference "
                                 f"by up to {worst:.3g}")
        return worst

    def predict(self, clips: Mapping[str, Clip]) -> Predictions:
        """{driver: that driver's inputs without the batch dimension} -> :class:`Predictions`.

        Clips of the same shapes share a forward call. A clip is rejected, with the reason, when
        it holds NaN or infinity or when the network refuses its shape; the rest still run."""
        result = Predictions()
        groups: dict[tuple[tuple[int, ...], ...], list[tuple[str, tuple[torch.Tensor, ...]]]]
        groups = defaultdict(list)
        for driver, clip in clips.items():
            parts = tuple(torch.as_tensor(x, dtype=torch.float32)
                          for x in (clip if isinstance(clip, (list, tuple)) else (clip,)))
            if not all(torch.isfinite(x).all() for x in parts):
                result.rejected[driver] = "clip holds NaN or infinite values"
                continue
            groups[tuple(tuple(x.shape) for x in parts)].append((driver, parts))
        for shapes, members in groups.items():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start:start + self.max_batch]
                drivers = [driver for driver, _ in chunk]
                try:
                    batch = [torch.stack(column) for column in zip(*(p for _, p in chunk),
                                                                  strict=True)]
                    readout = self.run_batch(*batch)
                except (RuntimeError, ValueError, IndexError) as exc:
                    reason = f"the network refused inputs of shape {list(shapes)}: " \
                             f"{str(exc).strip().splitlines()[0]}"
                    log.warning("rejected clips of %s: %s", drivers, reason)
                    result.rejected.update(dict.fromkeys(drivers, reason))
                    continue
                for i, driver in enumerate(drivers):
                    result.outputs[driver] = {name: value[i] for name, value in readout.items()}
        return result
