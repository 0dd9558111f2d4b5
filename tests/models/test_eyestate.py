"""The eye-state network's loss and input normalisation."""

from __future__ import annotations

import torch

from models.eyestate import eyestate_loss, normalise_crops


def test_an_occluded_eye_teaches_visibility_but_no_closure() -> None:
    logits = torch.tensor([[3.0, 3.0], [-3.0, -3.0]], requires_grad=True)
    closure = torch.tensor([1.0, 0.0])
    visible = torch.tensor([1.0, 0.0])
    eyestate_loss(logits, closure, visible).backward()
    assert logits.grad is not None
    # The hidden eye's closure logit gets no gradient: its lids cannot be judged.
    assert logits.grad[1, 0] == 0 and logits.grad[1, 1] != 0
    assert logits.grad[0, 0] != 0


def test_crops_are_normalised_one_by_one_and_a_flat_crop_stays_flat() -> None:
    bright = torch.rand(1, 1, 8, 8) * 0.2 + 0.8
    dark = bright * 0.5
    out = normalise_crops(torch.cat([bright, dark, torch.zeros(1, 1, 8, 8)]))
    # A dark copy of a crop reads like the crop itself (gain does not matter) ...
    assert torch.allclose(out[0], out[1], atol=1e-4)
    assert out[0].mean().abs() < 1e-5 and (out[0].std() - 1).abs() < 1e-3
    # ... and a black crop is zeros, not amplified noise.
    assert out[2].abs().max() == 0
