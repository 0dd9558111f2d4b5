"""Exporting a network with ``torch.export``: one graph, batch size left dynamic, saved as a
``.pt2`` that runs without the model's Python code, and checked against the eager model.

The stated tolerance (:data:`TOLERANCE`): every output of the exported program is within
``atol + rtol·|eager|`` of the eager model's, on the same inputs, in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from models.registry import ModelError

TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


def _tensors(output: Any) -> Iterable[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def export_model(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> ExportedProgram:
    """The eval-mode ``model`` traced on ``example_inputs`` (each (B, ...), B >= 2 so the batch
    dimension can stay dynamic) into an :class:`ExportedProgram`."""
    if any(x.shape[0] < 2 for x in example_inputs):
        raise ModelError("export needs example inputs with a batch of at least 2, so that the "
                         "batch dimension stays dynamic")
    batch = Dim("batch", min=1, max=4096)
    try:
        with warnings.catch_warnings():
            # nn.LSTM re-flattens its weights while traced; the exported graph is checked anyway.
            warnings.filterwarnings("ignore", "The tensor attributes .*_flat_weights")
            return torch.export.export(model.eval(), example_inputs,
                                       dynamic_shapes=tuple({0: batch} for _ in example_inputs))
    except Exception as exc:  # torch.export raises many kinds; the first lines say why
        first = " ".join(str(exc).strip().splitlines()[:2])
        raise ModelError(f"torch.export could not trace {type(model).__name__}: "
                         f"{first}") from exc


def save_export(program: ExportedProgram, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)


def load_export(path: Path) -> ExportedProgram:
    try:
        return torch.export.load(path)
    except FileNotFoundError:
        raise ModelError(f"exported program not found: {path}") from None
    except Exception as exc:
        raise ModelError(f"{path} is not a loadable exported program: {exc}") from None


@dataclass(frozen=True)
class ExportCheck:
    max_abs_difference: float  # the largest |exported - eager| over every output element
    within_tolerance: bool  # every element within atol + rtol·|eager| (:data:`TOLERANCE`)


def compare_export(model: nn.Module, program: ExportedProgram,
                   inputs: tuple[torch.Tensor, ...]) -> ExportCheck:
    """The exported program's outputs on ``inputs`` against the eval-mode eager model's."""
    with torch.no_grad():
        eager = list(_tensors(model.eval()(*inputs)))
        exported = list(_tensors(program.module()(*inputs)))
    if len(eager) != len(exported):
        raise ModelError(f"the export returns {len(exported)} tensors, eager {len(eager)}")
    worst, within = 0.0, True
    for e, x in zip(eager, exported, strict=True):
        if e.shape != x.shape:
            raise ModelError(f"exported output shape {tuple(x.shape)} != eager {tuple(e.shape)}")
        worst = max(worst, float((x.float() - e.float()).abs().max()))
        within &= torch.allclose(x.float(), e.float(), rtol=TOLERANCE["rtol"],
                                 atol=TOLERANCE["atol"])
    return ExportCheck(worst, within)
