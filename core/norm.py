"""Normalisations, and the add + norm step of pre-norm residual blocks (mamba_ssm's `Block` / fused add-norm)."""

from __future__ import annotations

import torch
from torch import nn

from longseq.kernels import add_norm as fused_add_norm


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


class GatedRMSNorm(nn.Module):
    """RMSNorm with a silu gate (mamba_ssm's ``RMSNormGated``, used by Mamba-2), computed in float32.

    ``norm_before_gate=False`` (Mamba-2): y = rmsnorm(x * silu(z)) * weight; True: y = rmsnorm(x) * weight * silu(z).
    With ``group_size`` the mean square is taken over consecutive groups of that many channels.

    Args:
        hidden_size: d, the normalised (last) dimension.
        group_size: channels per normalisation group (None: all of d); must divide d.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        eps: float = 1e-5,
        group_size: int | None = None,
        norm_before_gate: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        group_size = hidden_size if group_size is None else group_size
        if hidden_size % group_size != 0:
            raise ValueError(f"group_size {group_size} does not divide hidden_size {hidden_size}")
        self.eps = eps
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """x, z: (..., d) -> (..., d) in x's dtype."""
        x32 = x.float()
        gate = None if z is None else torch.nn.functional.silu(z.float())
        if gate is not None and not self.norm_before_gate:
            x32 = x32 * gate
        groups = x32.unflatten(-1, (-1, self.group_size))
        y = (groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        y = y * self.weight.float()
        if gate is not None and self.norm_before_gate:
            y = y * gate
        return y.to(x.dtype)


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
    if x.is_cuda and type(norm) in (RMSNorm, LayerNorm):
        # one fused kernel on the GPU (kernels.add_norm: the float32 sum is normalised before any rounding)
        return fused_add_norm(
            x,
            residual,
            norm.weight,
            getattr(norm, "bias", None),
            eps=norm.eps,
            is_rms_norm=type(norm) is RMSNorm,
            residual_in_fp32=residual_in_fp32,
        )
    residual = x if residual is None else x + residual
    if residual_in_fp32:
        residual = residual.float()
    return norm(residual).to(x.dtype), residual
