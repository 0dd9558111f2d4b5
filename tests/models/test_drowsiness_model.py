"""The blink-window drowsiness network: loss, readout and cores."""

from __future__ import annotations

import math

import pytest
import torch

from models import ModelError, create_model
from models.drowsiness import BlinkStatistics, class_levels, drowsiness_loss, signed_log


def test_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]])  # p = 0.25, 0.25, 0.5
    label = torch.tensor([2])  # drowsy, level 1.0; E[level] = 0.25·0.5 + 0.5 = 0.625
    expected = -math.log(0.5) + (1.0 - 0.625) ** 2
    assert drowsiness_loss(logits, label).item() == pytest.approx(expected)
    weights = torch.tensor([1.0, 1.0, 2.0])  # one sample: the weight cancels in weighted CE
    assert drowsiness_loss(logits, label, weights).item() == pytest.approx(expected)
    assert class_levels().tolist() == [0.0, 0.5, 1.0]


def test_readout_scores_the_expected_level() -> None:
    model = create_model("drowsiness-blinks")
    out = model.readout(torch.tensor([[0.0, 0.0, math.log(2.0)], [10.0, -10.0, -10.0]]))
    assert out["score"].tolist() == pytest.approx([0.625, 0.0], abs=1e-4)
    assert out["probabilities"].sum(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_signed_log_tames_the_heavy_tail_and_keeps_the_sign() -> None:
    x = torch.tensor([-400.0, -1.0, 0.0, 1.0, 400.0])
    assert signed_log(x).tolist() == pytest.approx(
        [-math.log(401), -math.log(2), 0.0, math.log(2), math.log(401)])


def test_stats_core_is_a_logistic_regression_over_40_window_statistics() -> None:
    model = create_model("drowsiness-blinks", core="stats").eval()
    assert isinstance(model.core, BlinkStatistics)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 3)]
    # order-free: shuffling the blinks of a window changes nothing
    x = torch.randn(2, 30, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x[:, torch.randperm(30)]), atol=1e-5)
    hidden = create_model("drowsiness-blinks", core="stats", hidden=16)
    assert [m.out_features for m in hidden.modules() if isinstance(m, torch.nn.Linear)] == [16, 3]
    with pytest.raises(ModelError, match="unknown drowsiness core 'lstm'"):
        create_model("drowsiness-blinks", core="lstm")
