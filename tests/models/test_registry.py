"""The registry and self-rebuilding checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from models.checkpoint import load_checkpoint, save_checkpoint
from models.registry import (
    ModelError,
    create_model,
    list_models,
    register_model,
    unregister_model,
)


@pytest.fixture
def tiny() -> Iterator[str]:
    @register_model("test-tiny", example=lambda batch: (torch.zeros(batch, 5),))
    def build(width: int = 4, classes: int = 3) -> nn.Module:
        """A two-layer perceptron for the registry's tests."""
        return nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, classes))

    yield "test-tiny"
    unregister_model("test-tiny")


def test_create_with_defaults_and_overrides(tiny: str) -> None:
    model = create_model(tiny)
    assert model(torch.zeros(2, 5)).shape == (2, 3)
    assert create_model(tiny, classes=7)(torch.zeros(1, 5)).shape == (1, 7)
    entry = next(e for e in list_models() if e.name == tiny)
    assert entry.summary.startswith("A two-layer perceptron")
    assert entry.defaults() == {"width": 4, "classes": 3}


def test_unknown_name_and_argument_are_clear_errors(tiny: str) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*test-tiny"):
        create_model("nope")
    with pytest.raises(ModelError, match=r"no argument\(s\) \['depth'\]"):
        create_model(tiny, depth=3)
    with pytest.raises(ModelError, match="already registered"):
        register_model(tiny, example=lambda batch: ())(lambda: nn.Identity())


def test_checkpoint_rebuilds_the_exact_model(tiny: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(tiny, width=6)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, tiny, {"width": 6},
                    preprocessing={"labels": ["a", "b", "c"], "mean": [0.5]},
                    metrics={"accuracy": 0.9})
    loaded, meta = load_checkpoint(path)
    x = torch.randn(4, 5)
    assert torch.equal(loaded(x), model.eval()(x))
    assert not loaded.training
    assert meta["preprocessing"]["labels"] == ["a", "b", "c"]
    assert meta["metrics"] == {"accuracy": 0.9} and meta["args"] == {"width": 6}


def test_bad_checkpoints_fail_with_a_clear_message(tiny: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable checkpoint"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelError, match="not a Vigil checkpoint"):
        load_checkpoint(foreign)
    mismatched = tmp_path / "mismatched.pt"
    save_checkpoint(mismatched, create_model(tiny, width=6), tiny, {"width": 8})
    with pytest.raises(ModelError, match="do not fit model 'test-tiny'"):
        load_checkpoint(mismatched)
    unknown = tmp_path / "unknown.pt"
    save_checkpoint(unknown, create_model(tiny), "gone", {})
    with pytest.raises(ModelError, match="unknown model 'gone'"):
        load_checkpoint(unknown)


def test_checkpoints_cannot_carry_code(tiny: str, tmp_path: Path) -> None:
    """weights_only=True: a pickled object that is not plain data is refused."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "vigil.checkpoint.v1", "name": tiny, "args": {},
                "state_dict": {}, "payload": Path("/etc/passwd")}, path)
    with pytest.raises(ModelError, match="not a loadable checkpoint"):
        load_checkpoint(path)
