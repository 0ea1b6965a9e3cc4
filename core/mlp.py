"""Feed-forward layers: the plain two-layer MLP and the gated (GLU) variant, with upstream parameter names."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["gelu", "gelu_tanh", "silu", "relu"]


def activate(x: torch.Tensor, activation: Activation) -> torch.Tensor:
    if activation == "gelu":
        return F.gelu(x)
    if activation == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if activation == "silu":
        return F.silu(x)
    if activation == "relu":
        return F.relu(x)
    raise ValueError(f"unknown activation {activation!r}")


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 (HyenaDNA, flash-attn `Mlp`). With ``gated``: fc1 makes value and gate,
    y = fc2(value * act(gate)) (mamba_ssm `GatedMLP`, SwiGLU with silu).

    Args:
        d_model: input and output width.
        hidden: inner width (for gated MLPs, the width after gating).
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        activation: Activation = "gelu_tanh",
        gated: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.activation = activation
        self.gated = gated
        self.fc1 = nn.Linear(d_model, 2 * hidden if gated else hidden, bias=bias, **dd)
        self.fc2 = nn.Linear(hidden, d_model, bias=bias, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        h = self.fc1(x)
        if self.gated:
            value, gate = h.chunk(2, dim=-1)
            h = value * activate(gate, self.activation)
        else:
            h = activate(h, self.activation)
        return self.fc2(h)
