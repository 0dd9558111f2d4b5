"""SAT-Net has the paper's structure, variants and loss."""

from __future__ import annotations

import math

import pytest
import torch

from models import ModelError, create_model
from models.au import AUSelfAttention, occurrence_weights, weighted_bce


def test_conv_lstm_on_stage_2_has_the_papers_size() -> None:
    model = create_model("satnet")
    assert model.temporal.gates.weight.numel() == 4 * 9 * (128 + 128) * 128  # ~1.18 M
    assert isinstance(model.head, AUSelfAttention) and model.head.features.out_channels == 12


@pytest.mark.parametrize(("variant", "temporal", "attention"), [
    ("resnet", False, False), ("t-net", True, False), ("sa-net", False, True),
    ("sat-net", True, True)])
def test_variants_of_the_ablation(variant: str, temporal: bool, attention: bool) -> None:
    torch.manual_seed(0)
    model = create_model("satnet", variant=variant).eval()
    assert (model.temporal is not None) == temporal
    assert isinstance(model.head, AUSelfAttention) == attention
    frames = torch.randn(2, 3, 3, 64, 64)  # (B, T, 3, H, W)
    with torch.no_grad():
        out = model(frames)
        changed_first = frames.clone()
        changed_first[:, 0] += 1.0
        out2 = model(changed_first)
    assert out.shape == (2, 3, 12)
    # A frame's prediction depends on earlier frames only through the ConvLSTM.
    assert (not torch.allclose(out[:, 2], out2[:, 2])) == temporal


def test_unknown_variant() -> None:
    with pytest.raises(ModelError, match="unknown SAT-Net variant"):
        create_model("satnet", variant="lstm")


def test_weighted_bce_and_occurrence_weights_by_hand() -> None:
    labels = torch.tensor([[1, 0], [0, 0], [1, 0], [1, 1]])  # rates 0.75, 0.25
    w = occurrence_weights(labels)
    assert torch.allclose(w, torch.tensor([0.5, 1.5]), atol=1e-5)  # 1/r scaled to mean 1
    logits = torch.tensor([[0.0, math.log(3.0)]])  # sigma = 0.5, 0.75
    y = torch.tensor([[1, 0]])
    expected = 0.5 * -math.log(0.5) + 1.5 * -math.log(0.25)
    assert math.isclose(weighted_bce(logits, y, w).item(), expected, rel_tol=1e-5)


def test_learns_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = create_model("satnet", aus=4)
    frames = torch.randn(2, 3, 3, 32, 32)
    labels = torch.randint(0, 2, (2, 3, 4))
    weights = torch.ones(4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        loss = weighted_bce(model(frames), labels, weights)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.1 * first
