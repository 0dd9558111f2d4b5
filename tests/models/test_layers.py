"""The shared blocks behave as the papers describe."""

from __future__ import annotations

import torch

from models.layers import ConvLSTMCell, NonLocalBlock3d


def test_non_local_block_is_an_identity_at_initialisation() -> None:
    torch.manual_seed(0)
    block = NonLocalBlock3d(16).eval()
    x = torch.randn(2, 16, 4, 7, 7)
    assert torch.equal(block(x), x)  # gamma starts at zero
    block.gamma.data.fill_(0.5)
    assert not torch.allclose(block(x), x)


def test_non_local_block_attends_over_time_and_space() -> None:
    """Changing one position changes the output everywhere (global receptive field), which
    a 1×1×1 convolution alone could not do."""
    torch.manual_seed(0)
    block = NonLocalBlock3d(8).eval()
    block.gamma.data.fill_(1.0)
    x = torch.randn(1, 8, 4, 5, 5)
    x2 = x.clone()
    x2[0, :, 0, 0, 0] += 5.0
    changed = (block(x2) - block(x)).abs().sum(dim=1)[0]  # (T, H, W)
    assert changed[3, 4, 4] > 0  # the far corner in the last frame


def test_non_local_block_learns() -> None:
    torch.manual_seed(0)
    block = NonLocalBlock3d(8)
    x, target = torch.randn(2, 8, 2, 3, 3), torch.randn(2, 8, 2, 3, 3)
    loss = ((block(x) - target) ** 2).mean()
    loss.backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs() > 0


def test_conv_lstm_weight_count_matches_sat_net() -> None:
    cell = ConvLSTMCell(128, 128, 3)
    weights = cell.gates.weight.numel()
    assert weights == 4 * 3 * 3 * (128 + 128) * 128 == 1_179_648
    assert cell.gates.bias is not None and cell.gates.bias.numel() == 4 * 128


def test_conv_lstm_carries_state_over_time() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 6)
    frames = torch.randn(5, 2, 3, 8, 8)  # (T, B, I, H, W)
    state = None
    for frame in frames:
        state = cell(frame, state)
    h, c = state
    assert h.shape == c.shape == (2, 6, 8, 8)
    # The last hidden state depends on the first frame.
    fresh = None
    for frame in frames[1:]:
        fresh = cell(frame, fresh)
    assert not torch.allclose(h, fresh[0])
