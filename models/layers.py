"""Blocks shared by the papers' networks: the embedded-Gaussian non-local block (fatigue
network) and the convolutional LSTM cell (SAT-Net). Conv3d layouts are (B, C, T, H, W)."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock3d(nn.Module):
    """Embedded-Gaussian non-local attention (Wang et al. 2018, as in the fatigue paper §2.3).

    u(x) = W_u x, v(x) = W_v x, g(x) = W_g x (1×1×1 convolutions to ``inner`` channels);
    alpha_ij = softmax_j(u(x_i)^T v(x_j)); y_i = A(W_z sum_j alpha_ij g(x_j)) with A a batch
    norm; z_i = gamma * y_i + x_i. gamma starts at zero, so at initialisation the block is an
    identity and the network leans on its local (convolutional) features first.
    """

    def __init__(self, channels: int, inner: int | None = None) -> None:
        super().__init__()
        inner = inner or max(1, channels // 2)
        self.u = nn.Conv3d(channels, inner, 1)
        self.v = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.z = nn.Conv3d(inner, channels, 1)
        self.norm = nn.BatchNorm3d(channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H, W)."""
        b, _, t, h, w = x.shape
        u = self.u(x).flatten(2).transpose(1, 2)  # (B, N, inner), N = T*H*W
        v = self.v(x).flatten(2)  # (B, inner, N)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, inner)
        attention = torch.softmax(u @ v, dim=-1)  # (B, N, N): row i attends over j
        y = (attention @ g).transpose(1, 2).reshape(b, -1, t, h, w)
        return self.gamma * self.norm(self.z(y)) + x


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al. 2015; SAT-Net's temporal fusion): every gate is a
    convolution over the input and the previous hidden state, so one cell holds
    4·K²·(I+O)·O weights and 4·O biases (about 1.18 M weights at 128 channels, 3×3)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels,
                               kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, I, H, W), state (h, c) each (B, O, H, W) or None (zeros) -> new (h, c)."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c
