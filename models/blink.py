"""Eyeblink detection by eyelid's intrinsic motion (``eyeblink-intrinsic-motion.md``, Zeng et
al.): a coarse eye region around each detected eye centre is re-weighted pixel-wise by an
attention map that an encoder–decoder draws over the whole face; a shallow CNN turns each
weighted region into an appearance feature A_t (global max-pool), the motion feature is
M_t = A_t − A_{t−1}, and an LSTM over I_t = [A_t, M_t] (t = 2..T) feeds a fully connected
no-blink/blink classifier. Training adds the eye-centre focus constraints (L_att, L_ec), the
motion constraints (L_ma, L_ni) and, for the student, self-knowledge distillation.

Inputs: aligned faces (B, T, 3, H, W) resized to the paper's 256×192, which is H×W (height
256, width 192: the authors' config has ``data_shape = (256, 192)`` and a 64×48 heatmap, the
CPN pose convention, portrait face crops), and eye centres (B, T, E, 2) as (x, y) pixel
coordinates in that face crop (x = column, y = row; pixel (row i, column j) sits at
(x, y) = (j, i)). The network is fully convolutional up to the crop, so any face size works;
the coarse region is ``region_size`` square (paper 100×100) and may stick out of the face
(zeros outside).

Readings of what the paper leaves open (the authors' code ``wenzhengzeng/blink_eyelid``
settles some of them):

- One attention map per eye. Eq. 1 normalises over the whole map Ω, so eq. 3 can pull the
  centroid to one eye centre only; the authors' CPN likewise outputs one channel per eye. The
  generator therefore outputs ``num_eyes`` maps; eye k's coarse region is weighted by map k.
- The attention generator is CPN in the paper; here it is a small CPN-GlobalNet-like
  encoder–decoder (``attention_widths`` at strides 2, 4, 8, 16, a top-down path of
  ``decoder_width`` channels with lateral 1×1 convolutions, a head at stride 4 and bilinear
  up-sampling to the face's resolution, as the authors up-sample their 64×48 map ×4).
- Shallow CNN: bias-free convolutions with paddings 0, 0, 1 (the authors' code); the 2×2
  max-pools use ``ceil_mode`` so regions smaller than the paper's work too (at 100×100 the
  last map is 1×1 either way: 100 → 32 → 16 → 7 → 4 → 2 → 1).
- I_t is L2-normalised before the LSTM (the authors' code; the text is silent), and L_ma/L_ni
  are computed on that normalised I_t, which fixes the scale the margin Δ = 0.1 refers to
  (``normalize_features=False`` turns it off).
- LSTM: 2 layers, 128 hidden, dropout 0.5 between layers (the authors' code); the FC reads the
  last step's hidden state (the authors concatenate the last two steps' outputs).
- ``eyes``: the paper classifies one eye per network (Table I reports left and right eyes;
  the authors ship a left and a right model). ``"per-eye"`` does that with one branch
  (CNN, LSTM, FC) shared by the eyes: logits (B, E, 2), labels (B, E) or (B,). ``"both"``
  concatenates the eyes' I_t (each normalised on its own) into one LSTM input for one clip
  label: logits (B, 2). To reproduce the paper exactly, build ``num_eyes=1`` and train one
  model per eye.
- L_att uses eq. 5 (the max of the sigmoid map), the paper's approximation of eq. 4 for
  β = 100. L_ec is in pixels of the face crop (which is why λ2 is as small as 0.0005).
- L_ma compares the batch means of D over blink and non-blink samples; a batch without both
  kinds has no margin to enforce, and L_ma = 0 (L_ni = 0 without non-blink samples).
- Distillation: p̃ = softmax(z / τ) ([18]); the paper gives no τ, the default is 1, and the KL
  term is scaled by τ² (Hinton), which is 1 at τ = 1.

Training recipe (paper §IV–V): Adam, batch 8, 100 epochs; the attention generator's learning
rate starts at 5e-5, rises to 3e-4 after 6 epochs, then decays ×0.8 every 8 epochs, and the
rest of the network learns 4× faster (:func:`parameter_groups`). Stage 1 trains a teacher on
L_T = L_ce + λ1·L_e (:func:`blink_loss` without teacher logits). Stage 2 builds a fresh student
of the same structure (:func:`student_from`) and trains it on L_S = L_kd + λ1·L_e with the
frozen teacher's logits (:func:`teacher_logits`, then ``blink_loss(..., teacher_logits=...)``);
the student is the model that is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.registry import ModelError, register_model

FACE_SIZE = (256, 192)  # (H, W) the paper resizes faces to
REGION_SIZE = 100  # the coarse eye region's side, in face pixels
APPEARANCE_DIM = 80  # channels of the shallow CNN's last convolution
LAMBDAS = (0.2, 0.0005, 0.5, 0.25)  # λ1..λ4 of eqs. 10-12
MARGIN = 0.1  # Δ of eq. 7
BETA = 100.0  # β of eq. 1
ALPHA = 0.1  # α of eq. 13
EYE_MODES = ("both", "per-eye")


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class AttentionGenerator(nn.Module):
    """Encoder–decoder over the whole face to one raw (pre-sigmoid) attention map per eye at
    the face's resolution: encoder stages of ``widths`` channels at strides 2, 4, 8, 16 (two
    3×3 convolutions each), a top-down path (lateral 1×1 convolutions to ``decoder_width``,
    bilinear up-sampling, addition) down to stride 4, a 3×3 + 1×1 head, and bilinear
    up-sampling to H×W."""

    def __init__(self, maps: int, widths: Sequence[int] = (16, 32, 64, 128),
                 decoder_width: int = 64) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ModelError(f"the attention generator needs at least 2 widths, got {widths}")
        stages = []
        cin = 3
        for width in widths:
            stages.append(nn.Sequential(_conv_bn_relu(cin, width, 2), _conv_bn_relu(width, width)))
            cin = width
        self.encoder = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(w, decoder_width, 1) for w in widths[1:])
        self.head = nn.Sequential(_conv_bn_relu(decoder_width, decoder_width),
                                  nn.Conv2d(decoder_width, maps, 1))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) faces -> (N, maps, H, W) raw attention maps H(p)."""
        x = faces
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        y = self.lateral[-1](features[-1])
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(features[1:-1]), strict=True):
            y = lateral(f) + F.interpolate(y, size=f.shape[-2:], mode="bilinear",
                                           align_corners=False)
        return F.interpolate(self.head(y), size=faces.shape[-2:], mode="bilinear",
                             align_corners=False)


class ShallowCNN(nn.Module):
    """The paper's "Conv2D(5,3,24) - Conv2D(3,2,48) - Conv2D(3,2,80)", each convolution
    followed by BatchNorm, ReLU and a 2×2 max-pool; the appearance feature is the global max
    over the last map."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for kernel, stride, cout, padding in ((5, 3, 24, 0), (3, 2, 48, 0),
                                              (3, 2, APPEARANCE_DIM, 1)):
            layers += [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            cin = cout
        self.layers = nn.Sequential(*layers)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) weighted eye regions (h, w >= 5) -> (N, 80) appearance features A_t."""
        return self.layers(regions).amax(dim=(2, 3))


def crop_regions(images: torch.Tensor, centers: torch.Tensor, size: int) -> torch.Tensor:
    """Square regions of side ``size`` around ``centers``, zeros where they leave the image.

    images (N, C, H, W), centers (N, 2) as (x, y) pixels -> (N, C, size, size). The region's
    top-left pixel is (floor(x − size/2), floor(y − size/2)), so the centre pixel lands at
    index size // 2. Pad-and-index: differentiable with respect to ``images``."""
    n, _, h, w = images.shape
    padded = F.pad(images, (size, size, size, size))
    corner = torch.floor(centers.detach().float() - size / 2).long()
    left = corner[:, 0].clamp(-size, w) + size
    top = corner[:, 1].clamp(-size, h) + size
    offsets = torch.arange(size, device=images.device)
    rows = (top[:, None] + offsets)[:, :, None]  # (N, size, 1)
    cols = (left[:, None] + offsets)[:, None, :]  # (N, 1, size)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (N, size, size, C) -> NCHW


class BlinkDetails(NamedTuple):
    """What :meth:`BlinkEyelidNet.forward_with_details` returns (T' = T − 1)."""

    logits: torch.Tensor  # (B, 2) in "both" mode, (B, E, 2) in "per-eye" mode
    heatmaps: torch.Tensor  # (B, T, E, H, W) raw attention maps H(p), before the sigmoid
    regions: torch.Tensor  # (B, T, E, 3, s, s) attention-weighted coarse eye regions
    appearance: torch.Tensor  # (B, T, E, 80) A_t
    motion: torch.Tensor  # (B, T', E, 80) M_t = A_t − A_{t−1}, t = 2..T
    features: torch.Tensor  # (B, T', E, 160) I_t = [A_t, M_t] as the LSTM sees it


class BlinkEyelidNet(nn.Module):
    """Attention generator + coarse eye regions + shallow CNN + LSTM + FC (see the module)."""

    def __init__(self, eyes: str = "both", num_eyes: int = 2, region_size: int = REGION_SIZE,
                 attention_widths: Sequence[int] = (16, 32, 64, 128), decoder_width: int = 64,
                 lstm_hidden: int = 128, lstm_layers: int = 2, lstm_dropout: float = 0.5,
                 normalize_features: bool = True) -> None:
        super().__init__()
        if eyes not in EYE_MODES:
            raise ModelError(f"unknown eyes mode {eyes!r}; choose one of {EYE_MODES}")
        if num_eyes < 1:
            raise ModelError(f"num_eyes must be at least 1, got {num_eyes}")
        if region_size < 5:
            raise ModelError(f"region_size must be at least 5 (the first kernel), got "
                             f"{region_size}")
        self.config: dict[str, Any] = dict(
            eyes=eyes, num_eyes=num_eyes, region_size=region_size,
            attention_widths=tuple(attention_widths), decoder_width=decoder_width,
            lstm_hidden=lstm_hidden, lstm_layers=lstm_layers, lstm_dropout=lstm_dropout,
            normalize_features=normalize_features)
        self.eyes = eyes
        self.num_eyes = num_eyes
        self.region_size = region_size
        self.normalize_features = normalize_features
        self.attention = AttentionGenerator(num_eyes, attention_widths, decoder_width)
        self.extractor = ShallowCNN()
        per_step = 2 * APPEARANCE_DIM * (num_eyes if eyes == "both" else 1)
        self.lstm = nn.LSTM(per_step, lstm_hidden, lstm_layers, batch_first=True,
                            dropout=lstm_dropout if lstm_layers > 1 else 0.0)
        self.classifier = nn.Linear(lstm_hidden, 2)

    def forward(self, faces: torch.Tensor, eye_centers: torch.Tensor) -> torch.Tensor:
        """faces (B, T, 3, H, W), eye_centers (B, T, E, 2) (x, y) pixels, T >= 2 ->
        logits (B, 2) ("both") or (B, E, 2) ("per-eye"); class 0 no blink, 1 blink."""
        return self.forward_with_details(faces, eye_centers).logits

    @staticmethod
    def readout(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 2) or (B, E, 2) logits -> ``blink_probability`` (B,) or (B, E)."""
        return {"blink_probability": torch.softmax(logits, dim=-1)[..., 1]}

    def forward_with_details(self, faces: torch.Tensor, eye_centers: torch.Tensor
                             ) -> BlinkDetails:
        """faces (B, T, 3, H, W), eye_centers (B, T, E, 2) -> :class:`BlinkDetails` (logits,
        raw attention maps, weighted regions, A_t, M_t, I_t) for the losses."""
        if faces.dim() != 5 or faces.shape[2] != 3:
            raise ModelError(f"faces must be (B, T, 3, H, W), got {tuple(faces.shape)}")
        b, t, _, h, w = faces.shape
        if tuple(eye_centers.shape) != (b, t, self.num_eyes, 2):
            raise ModelError(f"eye_centers must be (B, T, E, 2) = {(b, t, self.num_eyes, 2)}, "
                             f"got {tuple(eye_centers.shape)}")
        if t < 2:
            raise ModelError(f"a clip needs at least 2 frames for motion, got {t}")
        e, s = self.num_eyes, self.region_size
        frames = faces.flatten(0, 1)  # (BT, 3, H, W)
        centers = eye_centers.flatten(0, 1)  # (BT, E, 2)
        heatmaps = self.attention(frames)  # (BT, E, H, W)
        weights = torch.sigmoid(heatmaps)
        regions = torch.stack([crop_regions(frames, centers[:, k], s)
                               * crop_regions(weights[:, k:k + 1], centers[:, k], s)
                               for k in range(e)], dim=1)  # (BT, E, 3, s, s)
        appearance = self.extractor(regions.flatten(0, 1)).view(b, t, e, APPEARANCE_DIM)
        motion = appearance[:, 1:] - appearance[:, :-1]  # (B, T-1, E, 80)
        features = torch.cat([appearance[:, 1:], motion], dim=-1)  # (B, T-1, E, 160)
        if self.normalize_features:
            features = F.normalize(features, dim=-1)
        if self.eyes == "both":
            hidden, _ = self.lstm(features.flatten(2))  # (B, T-1, hidden)
            logits = self.classifier(hidden[:, -1])  # (B, 2)
        else:
            hidden, _ = self.lstm(features.transpose(1, 2).flatten(0, 1))  # (BE, T-1, hidden)
            logits = self.classifier(hidden[:, -1]).view(b, e, 2)
        return BlinkDetails(logits, heatmaps.view(b, t, e, h, w),
                            regions.view(b, t, e, 3, s, s), appearance, motion, features)


# ---------------------------------------------------------------- losses (pure functions)


def soft_argmax(heatmaps: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """Centroid p_c = Σ_p softmax(β·H)(p) · p of raw maps (eqs. 1-2).

    heatmaps (..., H, W) -> (..., 2) as (x, y) pixels (x = column, y = row)."""
    *lead, h, w = heatmaps.shape
    p = torch.softmax(beta * heatmaps.flatten(-2), dim=-1).view(*lead, h, w)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    return torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], dim=-1)


def eye_center_loss(heatmaps: torch.Tensor, eye_centers: torch.Tensor, beta: float = BETA
                    ) -> torch.Tensor:
    """L_ec = ½‖p_c − p*_ec‖² (eq. 3), averaged over the maps.

    heatmaps (..., H, W) raw maps, eye_centers (..., 2) true (x, y) pixels -> scalar."""
    centroid = soft_argmax(heatmaps, beta)
    return 0.5 * (centroid - eye_centers.to(centroid)).pow(2).sum(-1).mean()


def attention_loss(heatmaps: torch.Tensor) -> torch.Tensor:
    """L_att = 1 − max_p Sigmoid(H(p)) (eq. 5, the paper's form of eq. 4 for large β),
    averaged over the maps. heatmaps (..., H, W) raw maps -> scalar."""
    return (1 - torch.sigmoid(heatmaps.flatten(-2).amax(dim=-1))).mean()


def inter_frame_divergence(features: torch.Tensor) -> torch.Tensor:
    """D = 1/(T−2) Σ_{t=3..T} ‖I_t − I_{t−1}‖² (eq. 8).

    features (N, T', D) holding I_2..I_T (T' = T − 1 >= 2) -> (N,)."""
    if features.shape[1] < 2:
        raise ModelError(f"the divergence needs I_t for at least 2 steps (T >= 3 frames), "
                         f"got {features.shape[1]}")
    return (features[:, 1:] - features[:, :-1]).pow(2).sum(-1).mean(-1)


def motion_awareness_loss(features: torch.Tensor, labels: torch.Tensor,
                          margin: float = MARGIN) -> torch.Tensor:
    """L_ma = max(0, Δ + mean_{non-blink} D^O − mean_{blink} D^B) (eq. 7): blinks should change
    their features between frames by a margin more than non-blinks do.

    features (N, T', D), labels (N,) 0/1 (1 = blink) -> scalar; 0 unless both kinds occur."""
    d = inter_frame_divergence(features)
    blink = labels.reshape(-1) == 1
    if blink.all() or not blink.any():
        return d.sum() * 0
    return F.relu(margin + d[~blink].mean() - d[blink].mean())


def motion_insensitivity_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_ni = mean over non-blink samples of D^O (eq. 9).

    features (N, T', D), labels (N,) 0/1 (1 = blink) -> scalar; 0 without non-blinks."""
    d = inter_frame_divergence(features)
    other = labels.reshape(-1) != 1
    return d[other].mean() if other.any() else d.sum() * 0


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, alpha: float = ALPHA, temperature: float = 1.0
                      ) -> torch.Tensor:
    """L_kd = (1 − α)·CE(h_gt, p_s) + α·D_KL(p̃_t ‖ p̃_s) (eq. 13), p̃ = softmax(z / τ); the KL
    term is scaled by τ² and averaged over samples.

    student_logits, teacher_logits (N, 2), labels (N,) class indices -> scalar."""
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.softmax(teacher_logits.detach() / temperature, dim=-1),
                  reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


def combine_losses(classification: torch.Tensor, att: torch.Tensor, ec: torch.Tensor,
                   ma: torch.Tensor, ni: torch.Tensor, lambdas: Sequence[float] = LAMBDAS
                   ) -> torch.Tensor:
    """classification + λ1·L_e with L_e = L_att + λ2·L_ec + λ3·L_ma + λ4·L_ni (eqs. 10-12):
    L_T with classification = L_ce (teacher), L_S with classification = L_kd (student)."""
    l1, l2, l3, l4 = lambdas
    return classification + l1 * (att + l2 * ec + l3 * ma + l4 * ni)


class BlinkLosses(NamedTuple):
    total: torch.Tensor  # L_T (teacher) or L_S (student)
    classification: torch.Tensor  # L_ce, or L_kd with teacher logits
    att: torch.Tensor
    ec: torch.Tensor
    ma: torch.Tensor
    ni: torch.Tensor


def blink_loss(details: BlinkDetails, labels: torch.Tensor, eye_centers: torch.Tensor,
               teacher_logits: torch.Tensor | None = None, *,
               lambdas: Sequence[float] = LAMBDAS, margin: float = MARGIN, beta: float = BETA,
               alpha: float = ALPHA, temperature: float = 1.0) -> BlinkLosses:
    """The paper's training loss from a forward pass: L_T (eq. 10) without ``teacher_logits``,
    L_S (eq. 12) with them.

    details from ``forward_with_details``; labels (B,) 0/1 in "both" mode, (B, E) or (B,) in
    "per-eye" mode (one label for all eyes); eye_centers (B, T, E, 2) as given to the model;
    teacher_logits shaped like ``details.logits``. In "per-eye" mode every eye is one sample;
    in "both" mode L_ma/L_ni see the eyes' concatenated I_t."""
    logits = details.logits
    if logits.dim() == 3:  # per-eye: (B, E, 2); every eye is a sample
        b, e = logits.shape[:2]
        targets = (labels[:, None].expand(b, e) if labels.dim() == 1 else labels).reshape(-1)
        flat_logits = logits.reshape(-1, 2)
        features = details.features.transpose(1, 2).flatten(0, 1)  # (BE, T', 160)
    else:
        targets = labels.reshape(-1)
        flat_logits = logits
        features = details.features.flatten(2)  # (B, T', E*160)
    targets = targets.long()
    if teacher_logits is None:
        classification = F.cross_entropy(flat_logits, targets)
    else:
        classification = distillation_loss(flat_logits, teacher_logits.reshape(-1, 2), targets,
                                           alpha, temperature)
    att = attention_loss(details.heatmaps)
    ec = eye_center_loss(details.heatmaps, eye_centers, beta)
    ma = motion_awareness_loss(features, targets, margin)
    ni = motion_insensitivity_loss(features, targets)
    total = combine_losses(classification, att, ec, ma, ni, lambdas)
    return BlinkLosses(total, classification, att, ec, ma, ni)


# ---------------------------------------------------------------- training helpers


def parameter_groups(model: BlinkEyelidNet, lr: float) -> list[dict[str, Any]]:
    """Adam parameter groups: the attention generator at ``lr``, the rest at 4·lr (§V)."""
    attention = {id(p) for p in model.attention.parameters()}
    rest: Iterable[nn.Parameter] = (p for p in model.parameters() if id(p) not in attention)
    return [{"params": list(model.attention.parameters()), "lr": lr},
            {"params": list(rest), "lr": 4 * lr}]


def student_from(teacher: BlinkEyelidNet) -> BlinkEyelidNet:
    """A freshly initialised student of the teacher's structure (§IV, second phase)."""
    return BlinkEyelidNet(**teacher.config)


def teacher_logits(teacher: nn.Module, faces: torch.Tensor, eye_centers: torch.Tensor
                   ) -> torch.Tensor:
    """The frozen teacher's logits (the soft labels' source) for a batch: eval mode, no
    gradient; the teacher's train/eval mode is restored. Shapes as ``teacher.forward``."""
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            return teacher(faces, eye_centers)
    finally:
        teacher.train(was_training)


def _deployment_inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A second of video at the cameras' 10 fps: faces (B, 10, 3, 256, 192) and both eyes'
    centres where an aligned face has them."""
    faces = torch.randn(batch, 10, 3, *FACE_SIZE)
    centers = torch.tensor([[0.32 * FACE_SIZE[1], 0.4 * FACE_SIZE[0]],
                            [0.68 * FACE_SIZE[1], 0.4 * FACE_SIZE[0]]])
    return faces, centers.expand(batch, 10, 2, 2).clone()


@register_model("blink-eyelid-motion", example=_deployment_inputs)
def blink_eyelid_motion(eyes: str = "both", num_eyes: int = 2, region_size: int = REGION_SIZE,
                        attention_widths: tuple[int, ...] = (16, 32, 64, 128),
                        decoder_width: int = 64, lstm_hidden: int = 128, lstm_layers: int = 2,
                        lstm_dropout: float = 0.5, normalize_features: bool = True
                        ) -> BlinkEyelidNet:
    """Blinks: face attention × coarse eye regions, shallow CNN, appearance+motion LSTM.

    Inputs: faces (B, T, 3, H, W) (paper 256×192 = H×W), eye centres (B, T, E, 2) (x, y)
    pixels with E = ``num_eyes``; output (B, 2) ("both") or (B, E, 2) ("per-eye") logits."""
    return BlinkEyelidNet(eyes, num_eyes, region_size, attention_widths, decoder_width,
                          lstm_hidden, lstm_layers, lstm_dropout, normalize_features)
