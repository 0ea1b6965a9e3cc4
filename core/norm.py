"""Normalisations, and the add + norm step of pre-norm residual blocks (mamba_ssm's `Block` / fused add-norm)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 and returned in x's dtype.

    Args:
        hidden_size: d, the normalised (last) dimension.
        eps: added to the mean square.
    """

    def __init__(self, hidden_size: int, *, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d) -> (..., d)."""
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """`torch.nn.LayerNorm` computed in float32 (so bf16 activations are normalised accurately)."""

    def __init__(self, hidden_size: int, *, eps: float = 1e-5, bias: bool = True, device=None, dtype=None):
        super().__init__(hidden_size, eps=eps, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d) -> (..., d)."""
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return nn.functional.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def make_norm(kind: str, hidden_size: int, *, eps: float = 1e-5, device=None, dtype=None) -> nn.Module:
    """``kind`` is "rms" or "layer"."""
    if kind == "rms":
        return RMSNorm(hidden_size, eps=eps, device=device, dtype=dtype)
    if kind == "layer":
        return LayerNorm(hidden_size, eps=eps, device=device, dtype=dtype)
    raise ValueError(f"unknown norm {kind!r}; expected 'rms' or 'layer'")


def add_norm(
    x: torch.Tensor, residual: torch.Tensor | None, norm: nn.Module, *, residual_in_fp32: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """residual <- x + residual; return (norm(residual) in x's dtype, residual).

    The semantics of mamba_ssm's fused add-norm (``prenorm=True``): the residual stream is kept apart from
    the normalised branch input, in float32 when ``residual_in_fp32``.
    """
    residual = x if residual is None else x + residual
    if residual_in_fp32:
        residual = residual.float()
    return norm(residual).to(x.dtype), residual
