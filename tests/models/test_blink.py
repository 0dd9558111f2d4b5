"""The eyeblink network has the paper's structure, attention, losses and training regime."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models import ModelError, create_model
from models.blink import (
    BlinkEyelidNet,
    attention_loss,
    blink_loss,
    combine_losses,
    crop_regions,
    distillation_loss,
    eye_center_loss,
    inter_frame_divergence,
    motion_awareness_loss,
    motion_insensitivity_loss,
    parameter_groups,
    soft_argmax,
    student_from,
    teacher_logits,
)
from models.registry import model_entry

NAME = "blink-eyelid-motion"
H, W = 64, 48  # tiny faces, a quarter of the paper's 256×192 (H×W)


def tiny_model(**overrides: object) -> BlinkEyelidNet:
    model = create_model(NAME, region_size=24, **overrides)
    assert isinstance(model, BlinkEyelidNet)
    return model


def tiny_centers(b: int, t: int) -> torch.Tensor:
    """(B, T, 2, 2): left and right eye (x, y) inside a 64×48 face."""
    return torch.tensor([[14.0, 24.0], [34.0, 24.0]]).expand(b, t, 2, 2).clone()


def test_shallow_cnn_is_the_papers() -> None:
    layers = list(create_model(NAME).extractor.layers)
    assert len(layers) == 12
    for i, (kernel, stride, channels) in enumerate([(5, 3, 24), (3, 2, 48), (3, 2, 80)]):
        conv, bn, relu, pool = layers[4 * i: 4 * i + 4]
        assert isinstance(conv, nn.Conv2d)
        assert (conv.kernel_size, conv.stride, conv.out_channels) == (
            (kernel, kernel), (stride, stride), channels)
        assert conv.in_channels == (3, 24, 48)[i]
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == channels
        assert isinstance(relu, nn.ReLU)
        assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2 and pool.stride == 2


def test_defaults_are_the_papers() -> None:
    defaults = model_entry(NAME).defaults()
    assert defaults["region_size"] == 100 and defaults["eyes"] == "both"
    assert defaults["num_eyes"] == 2


def test_shapes_at_the_papers_sizes() -> None:
    torch.manual_seed(0)
    model = create_model(NAME).eval()
    last_maps = []
    model.extractor.layers[-1].register_forward_hook(
        lambda m, args, out: last_maps.append(out.shape))
    faces = torch.randn(1, 3, 3, 256, 192)  # (B, T, 3, H, W), the paper's 256×192 faces
    centers = torch.tensor([[70.0, 100.0], [122.0, 100.0]]).expand(1, 3, 2, 2)
    with torch.no_grad():
        d = model.forward_with_details(faces, centers)
    assert d.heatmaps.shape == (1, 3, 2, 256, 192)  # the attention map is at face resolution
    assert d.regions.shape == (1, 3, 2, 3, 100, 100)
    assert last_maps == [(6, 80, 1, 1)]  # 100×100 -> a 1×1×80 map
    assert d.appearance.shape == (1, 3, 2, 80)
    assert d.motion.shape == (1, 2, 2, 80) and d.features.shape == (1, 2, 2, 160)
    assert d.logits.shape == (1, 2)


def test_appearance_motion_and_the_lstm_input() -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    faces = torch.rand(2, 4, 3, H, W)
    with torch.no_grad():
        d = model.forward_with_details(faces, tiny_centers(2, 4))
    assert torch.allclose(d.motion, d.appearance[:, 1:] - d.appearance[:, :-1])  # eq. 6
    want = F.normalize(torch.cat([d.appearance[:, 1:], d.motion], -1), dim=-1)  # I_2..I_T
    assert torch.allclose(d.features, want)
    assert (d.appearance >= 0).all()  # global max-pool after ReLU


def test_crop_regions_pads_with_zeros_at_the_border() -> None:
    image = torch.arange(1.0, 1.0 + 5 * 6).view(1, 1, 5, 6).requires_grad_()
    corner = crop_regions(image, torch.tensor([[0.0, 0.0]]), 4)  # top-left pixel's centre
    assert corner.shape == (1, 1, 4, 4)
    assert (corner[0, 0, :2] == 0).all() and (corner[0, 0, :, :2] == 0).all()
    assert torch.equal(corner[0, 0, 2:, 2:], image[0, 0, :2, :2])
    inside = crop_regions(image, torch.tensor([[3.0, 2.0]]), 4)  # x=3 (column), y=2 (row)
    assert torch.equal(inside[0, 0], image[0, 0, 0:4, 1:5])
    assert inside[0, 0, 2, 2] == image[0, 0, 2, 3]  # the centre pixel at index size // 2
    outside = crop_regions(image, torch.tensor([[-50.0, 80.0]]), 4)
    assert (outside == 0).all()
    corner.sum().backward()  # differentiable: the covered pixels get gradient 1
    grad = torch.zeros(5, 6)
    grad[:2, :2] = 1
    assert torch.equal(image.grad[0, 0], grad)


def test_attention_multiplies_the_coarse_region() -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    faces = torch.rand(1, 2, 3, H, W)
    centers = tiny_centers(1, 2)
    handle = model.attention.register_forward_hook(  # Sigmoid(H) = 0.25 everywhere
        lambda m, args, out: torch.full_like(out, math.log(1 / 3)))
    with torch.no_grad():
        d = model.forward_with_details(faces, centers)
    handle.remove()
    raw = crop_regions(faces[0, 1].expand(2, 3, H, W), centers[0, 1], 24)  # (E, 3, 24, 24)
    assert torch.allclose(d.regions[0, 1], 0.25 * raw)
    model.attention.register_forward_hook(  # Sigmoid(H) = 0: nothing gets through
        lambda m, args, out: torch.full_like(out, -1e4))
    with torch.no_grad():
        d = model.forward_with_details(faces, centers)
        zero = model.extractor(torch.zeros(1, 3, 24, 24))
    assert (d.regions == 0).all()
    assert torch.allclose(d.appearance, zero.expand(1, 2, 2, 80))


def test_attention_generator_learns_from_the_classifier() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    logits = model(torch.rand(2, 3, 3, H, W), tiny_centers(2, 3))
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.attention.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0


@pytest.mark.parametrize(("eyes", "num_eyes", "shape"), [
    ("both", 2, (3, 2)), ("per-eye", 2, (3, 2, 2)), ("both", 1, (3, 2)),
    ("per-eye", 1, (3, 1, 2))])
def test_eye_modes_and_border_centres(eyes: str, num_eyes: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = tiny_model(eyes=eyes, num_eyes=num_eyes).eval()
    centers = tiny_centers(3, 3)[:, :, :num_eyes].clone()
    centers[0] = 0.0  # the top-left corner
    centers[1, :, :, 0], centers[1, :, :, 1] = W - 1, H - 1  # the bottom-right corner
    centers[2, :, 0] = torch.tensor([-5.0, 70.0])  # just outside the face
    with torch.no_grad():
        logits = model(torch.rand(3, 3, 3, H, W), centers)
    assert logits.shape == shape
    assert torch.isfinite(logits).all()


def test_per_eye_classifies_each_eye_on_its_own_and_both_fuses_them() -> None:
    torch.manual_seed(0)
    faces = torch.rand(1, 3, 3, H, W)
    centers = tiny_centers(1, 3)
    moved = centers.clone()
    moved[:, :, 1] += 3.0  # only the second eye's region moves
    for eyes in ("per-eye", "both"):
        model = tiny_model(eyes=eyes).eval()
        with torch.no_grad():
            before, after = model(faces, centers), model(faces, moved)
        if eyes == "per-eye":
            assert torch.allclose(before[:, 0], after[:, 0])
            assert not torch.allclose(before[:, 1], after[:, 1])
        else:
            assert not torch.allclose(before, after)


def test_bad_configurations_and_inputs() -> None:
    with pytest.raises(ModelError, match="unknown eyes mode"):
        create_model(NAME, eyes="left")
    model = tiny_model()
    with pytest.raises(ModelError, match="eye_centers"):
        model(torch.rand(1, 3, 3, H, W), tiny_centers(1, 3)[:, :, :1])
    with pytest.raises(ModelError, match="at least 2 frames"):
        model(torch.rand(1, 1, 3, H, W), tiny_centers(1, 1))


def test_soft_argmax_and_eye_centre_loss_by_hand() -> None:
    heat = torch.zeros(1, 2, 3)  # H=2, W=3; beta·H = 1 at (x=2, y=1), 0 elsewhere
    heat[0, 1, 2] = 0.01
    z = 5 + math.e
    x, y = (4 + 2 * math.e) / z, (2 + math.e) / z
    assert torch.allclose(soft_argmax(heat), torch.tensor([[x, y]]))  # beta = 100
    target = torch.tensor([[1.0, 3.0]])
    want = 0.5 * ((x - 1) ** 2 + (y - 3) ** 2)
    assert math.isclose(eye_center_loss(heat, target).item(), want, rel_tol=1e-6)
    sharp = torch.zeros(1, 2, 3)
    sharp[0, 0, 1] = 1.0  # beta·H = 100: the centroid is the argmax, (x=1, y=0)
    assert torch.allclose(soft_argmax(sharp), torch.tensor([[1.0, 0.0]]), atol=1e-6)
    assert eye_center_loss(sharp, torch.tensor([[1.0, 0.0]])).item() < 1e-10


def test_attention_loss_by_hand() -> None:
    heat = torch.full((2, 3, 3), -2.0)
    heat[0, 1, 1] = 0.0  # max Sigmoid = 0.5
    heat[1, 2, 0] = math.log(3.0)  # max Sigmoid = 0.75
    assert math.isclose(attention_loss(heat).item(), (0.5 + 0.25) / 2, rel_tol=1e-6)


def test_motion_constraints_by_hand() -> None:
    def seqs(a: float) -> torch.Tensor:  # (N=4, T'=3, D=1): blink, blink, other, other
        return torch.tensor([[0.0, a, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.2],
                             [0.0, 0.0, 0.0]]).unsqueeze(-1)

    labels = torch.tensor([1, 1, 0, 0])
    # eq. 8 over t = 3..T (2 differences for T' = 3): D = a², 0, 0.02, 0
    assert torch.allclose(inter_frame_divergence(seqs(1.0)),
                          torch.tensor([1.0, 0.0, 0.02, 0.0]))
    assert math.isclose(motion_insensitivity_loss(seqs(1.0), labels).item(), 0.01,
                        rel_tol=1e-5)
    # outside the margin: 0.1 + 0.01 - 0.5 < 0
    assert motion_awareness_loss(seqs(1.0), labels).item() == 0.0
    # inside: 0.1 + 0.01 - 0.09 / 2
    assert math.isclose(motion_awareness_loss(seqs(0.3), labels).item(), 0.065, rel_tol=1e-5)
    # a larger margin pushes further
    assert math.isclose(motion_awareness_loss(seqs(1.0), labels, margin=1.0).item(), 0.51,
                        rel_tol=1e-5)
    # one kind only: no margin to enforce; no non-blinks: nothing to keep still
    ones = torch.ones(4, dtype=torch.long)
    assert motion_awareness_loss(seqs(0.3), ones).item() == 0.0
    assert motion_insensitivity_loss(seqs(0.3), ones).item() == 0.0
    with pytest.raises(ModelError, match="T >= 3"):
        inter_frame_divergence(torch.zeros(2, 1, 4))


def test_distillation_loss_by_hand() -> None:
    student = torch.tensor([[0.0, 0.0]])  # p_s = (0.5, 0.5)
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p_t = (0.75, 0.25)
    label = torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    want = 0.9 * math.log(2.0) + 0.1 * kl  # alpha = 0.1
    assert math.isclose(distillation_loss(student, teacher, label).item(), want, rel_tol=1e-6)
    # temperature 2: p_t = softmax(ln3 / 2, 0) = (√3, 1) / (√3 + 1); the KL is scaled by 4
    q = math.sqrt(3) / (math.sqrt(3) + 1)
    kl2 = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    got = distillation_loss(student, teacher, label, alpha=0.5, temperature=2.0).item()
    assert math.isclose(got, 0.5 * math.log(2.0) + 0.5 * 4 * kl2, rel_tol=1e-6)


def test_total_loss_weighting() -> None:
    parts = [torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    # L_ce + λ1 (L_att + λ2 L_ec + λ3 L_ma + λ4 L_ni), λ = 0.2, 0.0005, 0.5, 0.25
    want = 1.0 + 0.2 * (2.0 + 0.0005 * 3.0 + 0.5 * 4.0 + 0.25 * 5.0)
    assert math.isclose(combine_losses(*parts).item(), want, rel_tol=1e-6)

    torch.manual_seed(0)
    model = tiny_model(eyes="per-eye").eval()
    faces, centers = torch.rand(2, 4, 3, H, W), tiny_centers(2, 4)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        d = model.forward_with_details(faces, centers)
        losses = blink_loss(d, labels, centers)
        per_eye = torch.tensor([0, 0, 1, 1])  # (B,) labels apply to every eye
        assert torch.allclose(losses.classification,
                              F.cross_entropy(d.logits.reshape(-1, 2), per_eye))
        assert torch.allclose(losses.ec, eye_center_loss(d.heatmaps, centers))
        eyes_as_samples = d.features.transpose(1, 2).flatten(0, 1)
        assert torch.allclose(losses.ma, motion_awareness_loss(eyes_as_samples, per_eye))
        assert torch.allclose(losses.total, combine_losses(*losses[1:]))
        teacher = torch.randn(2, 2, 2)
        student_losses = blink_loss(d, labels, centers, teacher_logits=teacher)
        assert torch.allclose(student_losses.classification, distillation_loss(
            d.logits.reshape(-1, 2), teacher.reshape(-1, 2), per_eye))
        assert torch.allclose(student_losses.total - student_losses.classification,
                              losses.total - losses.classification)


def test_teacher_then_student() -> None:
    torch.manual_seed(0)
    teacher = tiny_model(lstm_hidden=16).train()
    student = student_from(teacher)
    assert student.config == teacher.config and student.lstm.hidden_size == 16
    assert not torch.equal(student.classifier.weight, teacher.classifier.weight)  # fresh
    faces, centers = torch.rand(2, 3, 3, H, W), tiny_centers(2, 3)
    soft = teacher_logits(teacher, faces, centers)
    assert soft.shape == (2, 2) and not soft.requires_grad
    assert teacher.training  # its mode is restored
    groups = parameter_groups(student, 3e-4)
    assert [g["lr"] for g in groups] == [3e-4, 12e-4]  # the rest learns 4× faster
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in student.attention.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(student.parameters()))


def test_learns_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    faces = torch.rand(4, 4, 3, H, W)
    centers = tiny_centers(4, 4)
    labels = torch.tensor([0, 1, 0, 1])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        losses = blink_loss(model.forward_with_details(faces, centers), labels, centers)
        first = first if first is not None else losses.total.item()
        optimiser.zero_grad()
        losses.total.backward()
        optimiser.step()
    assert losses.total.item() < 0.1 * first
    assert losses.classification.item() < 0.05
