"""The papers' networks in plain PyTorch, behind one registry:
``models.create_model(name, **overrides)``; checkpoints in :mod:`models.checkpoint`.

Nothing is imported up front: ``models.errors`` (the root exception every package derives
from) must not cost torch. The registry loads the networks on its first look-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.registry import ModelError, create_model, list_models

__all__ = ["ModelError", "create_model", "list_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
