"""Fused residual add + RMSNorm / LayerNorm: `add_norm`, the prenorm step of mamba_ssm's fused `Block`."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.norm.reference import add_norm_ref

__all__ = ["add_norm", "add_norm_ref"]


def add_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    eps: float = 1e-5,
    is_rms_norm: bool = True,
    residual_in_fp32: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """residual <- x + residual; returns (norm(residual) in x's dtype, residual), as `add_norm_ref` defines.
    The torch backend is the reference itself (a few vectorised ops); triton fuses it into one pass.

    Args:
        x: (..., d). residual: (..., d) or None. weight, bias: (d,). is_rms_norm: RMSNorm, else LayerNorm.
        residual_in_fp32: keep the returned residual stream in float32.
        backend: "reference", "torch", "triton" or None (automatic).
    """
    if x.dim() < 1 or weight.shape != x.shape[-1:]:
        raise ValueError(f"expected x (..., d) and weight (d,); got {tuple(x.shape)} and {tuple(weight.shape)}")
    d = x.shape[-1]
    if bias is not None and bias.shape != (d,):
        raise ValueError(f"bias must be (d={d},); got {tuple(bias.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual must have x's shape {tuple(x.shape)}; got {tuple(residual.shape)}")
    if _backend.choose(x, backend) == "triton":
        from longseq.kernels.norm.autograd import add_norm_triton

        return add_norm_triton(x, residual, weight, bias, eps, is_rms_norm, residual_in_fp32)
    return add_norm_ref(x, residual, weight, bias, eps, is_rms_norm, residual_in_fp32)
