"""The model registry: ``create_model(name, **overrides)`` builds any registered network.

A network module registers a builder with :func:`register_model`; its keyword arguments and
their defaults are the model's configuration, which checkpoints store so the same model can
be rebuilt (:mod:`models.checkpoint`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from models.errors import VigilError

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])
# batch size -> the positional inputs of one forward call at the paper's deployment size
ExampleInputs = Callable[[int], tuple[torch.Tensor, ...]]


class ModelError(VigilError):
    """An unknown model, bad arguments, or an unusable checkpoint."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str
    example: ExampleInputs

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs of the size the model is deployed at (for benchmarks and exports)."""
        return self.example(batch)

    def defaults(self) -> dict[str, Any]:
        """The builder's keyword arguments and their defaults."""
        params = inspect.signature(self.builder).parameters.values()
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


_REGISTRY: dict[str, ModelEntry] = {}
# The networks that register themselves on import: loaded on the first look-up, so that
# importing anything from `models` (its root exception, say) does not import them all.
BUILTIN_MODULES = ("models.au", "models.blink", "models.drowsiness", "models.eyestate",
                   "models.fatigue", "models.gan")


def _load_builtin() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def register_model(name: str, example: ExampleInputs) -> Callable[[Builder], Builder]:
    """Decorator: registers ``builder`` as ``name`` (its docstring's first line summarises);
    ``example(batch)`` makes inputs of the size the model is deployed at."""

    def register(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is already registered")
        summary = (inspect.getdoc(builder) or "").split("\n", 1)[0]
        _REGISTRY[name] = ModelEntry(name, builder, summary, example)
        return builder

    return register


def unregister_model(name: str) -> None:
    _REGISTRY.pop(name, None)


def model_entry(name: str) -> ModelEntry:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise ModelError(f"unknown model {name!r}; choose one of: {known}") from None


def list_models() -> list[ModelEntry]:
    _load_builtin()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """The network ``name`` built with its defaults updated by ``overrides``."""
    entry = model_entry(name)
    unknown = sorted(set(overrides) - set(entry.defaults()))
    if unknown:
        raise ModelError(f"model {name!r} has no argument(s) {unknown}; it takes "
                         f"{sorted(entry.defaults())}")
    return entry.builder(**overrides)
