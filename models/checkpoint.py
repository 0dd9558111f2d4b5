"""Checkpoints that rebuild themselves: the registry name, the builder's arguments, the
preprocessing the model expects (clip length, input size, mean/std, labels, fps) and its
metrics travel with the weights. Loading uses ``torch.load(weights_only=True)``, so a
checkpoint can hold tensors and plain data only, never code."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from models.registry import ModelError, create_model

FORMAT = "vigil.checkpoint.v1"


def save_checkpoint(path: Path | IO[bytes], model: nn.Module, name: str, args: dict[str, Any],
                    preprocessing: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None) -> None:
    """Writes ``model``'s weights with what rebuilds it (``create_model(name, **args)``) to a
    file, or to a binary stream (the model-version registry keeps them in the database)."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "name": name, "args": dict(args),
                "preprocessing": dict(preprocessing or {}), "metrics": dict(metrics or {}),
                "state_dict": model.state_dict()}, path)


def load_checkpoint(path: Path | IO[bytes], map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """(the rebuilt model in eval mode, the checkpoint's metadata without the weights).

    Raises ModelError, saying what is wrong, for a file that is missing, is not a Vigil
    checkpoint, names an unknown model, or whose weights do not fit the rebuilt model."""
    where = path if isinstance(path, Path) else "checkpoint bytes"
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # pickle errors, truncated zip, refused globals
        raise ModelError(f"{where} is not a loadable checkpoint: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{where} is not a Vigil checkpoint (expected format {FORMAT})")
    model = create_model(data["name"], **data["args"])
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:3]
        raise ModelError(f"{where}: weights do not fit model {data['name']!r} built with "
                         f"{data['args']}: {' '.join(first)}") from None
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return model.eval(), meta
