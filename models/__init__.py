"""The papers' networks in plain PyTorch, behind one registry:
``models.create_model(name, **overrides)``; checkpoints in :mod:`models.checkpoint`."""

from models import au, blink, drowsiness, eyestate, fatigue, gan  # noqa: F401  (they register their networks)
from models.registry import ModelError, create_model, list_models

__all__ = ["ModelError", "create_model", "list_models"]
