"""The fatigue network has the paper's structure, losses and inflation property."""

from __future__ import annotations

import math

import torch

from models import create_model
from models.fatigue import bin_midpoints, expectation, fatigue_loss, score_bins
from models.resnet import ResNet18, inflate_state_dict


def test_non_local_block_sees_the_papers_shape_for_a_32x224x224_clip() -> None:
    model = create_model("fatigue-nonlocal-r3d18").eval()
    seen = []
    model.nonlocal_block.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 224, 224))
    assert seen == [(1, 256, 4, 14, 14)]
    assert logits.shape == (1, 10)


def test_expectation_transform_and_loss_by_hand() -> None:
    assert torch.allclose(bin_midpoints(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    logits = torch.tensor([[0.0, math.log(3.0)]])  # q = (0.25, 0.75), midpoints .25, .75
    assert torch.allclose(expectation(logits), torch.tensor([0.625]))
    assert score_bins(torch.tensor([0.0, 0.49, 0.5, 1.0]), 2).tolist() == [0, 0, 1, 1]
    # label 0.9 -> bin 1: CE = -log 0.75; MSE = (0.9 - 0.625)^2; alpha 0.1
    expected = 0.1 * -math.log(0.75) + (0.9 - 0.625) ** 2
    assert math.isclose(fatigue_loss(logits, torch.tensor([0.9])).item(), expected,
                        rel_tol=1e-6)


def test_identical_frames_reproduce_the_2d_networks_features() -> None:
    torch.manual_seed(0)
    net2d = ResNet18(dims=2)
    for m in net2d.modules():  # non-trivial norms, as a trained network has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    net2d.eval()
    model = create_model("fatigue-nonlocal-r3d18").eval()
    state = {**net2d.state_dict(), "fc.weight": torch.zeros(1000, 512)}  # a classifier too
    missing = model.backbone.load_state_dict(inflate_state_dict(state, model.backbone))
    assert not missing.missing_keys and not missing.unexpected_keys
    frame = torch.randn(1, 3, 64, 64)
    clip = frame.unsqueeze(2).repeat(1, 1, 16, 1, 1)  # (B, C, T, H, W), 16 identical frames
    with torch.no_grad():
        want = net2d.forward_to(frame, 3)
        got = model.nonlocal_block(model.backbone.forward_to(clip, 3))  # gamma = 0: identity
    assert got.shape[2] == 2
    for t in range(got.shape[2]):
        assert torch.allclose(got[:, :, t], want, atol=1e-4), t


def test_learns_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = create_model("fatigue-nonlocal-r3d18", bins=4, dropout=0.0)
    clips = torch.randn(4, 3, 8, 32, 32)
    scores = torch.tensor([0.1, 0.4, 0.6, 0.9])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        loss = fatigue_loss(model(clips), scores)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.1 * first
