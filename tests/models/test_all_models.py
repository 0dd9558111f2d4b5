"""Every registered network: forward, backward, no NaN, on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from models import create_model, list_models

# A tiny input per registered model; a model registered without one fails here.
TINY_INPUTS = {
    "fatigue-nonlocal-r3d18": (2, 3, 16, 32, 32),
    "satnet": (1, 2, 3, 32, 32),
}


@pytest.mark.parametrize("name", [e.name for e in list_models()])
def test_forward_backward_no_nan(name: str) -> None:
    assert name in TINY_INPUTS, f"add a tiny input for {name}"
    torch.manual_seed(0)
    model = create_model(name)
    out = model(torch.randn(*TINY_INPUTS[name]))
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
