"""The eye-state network's loss, input normalisation and serving copy."""

from __future__ import annotations

import torch
from torch import nn

from models.checkpoint import load_checkpoint
from models.eyestate import SHIPPED_CHECKPOINT, eyestate_loss, for_inference, normalise_crops


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


def test_the_serving_copy_reads_every_crop_as_the_trained_network_does() -> None:
    trained, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    served = for_inference(trained)  # type: ignore[arg-type]
    crops = normalise_crops(torch.rand(64, 1, 32, 48))
    with torch.inference_mode():
        expected = trained(crops)
        got = served(crops.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-4)
    # Folded, not merely copied; and the trained network is left as it was.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in served.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in trained.modules())
