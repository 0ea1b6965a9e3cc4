"""Readable reference for the fused add + norm of pre-norm residual blocks (mamba_ssm's `layer_norm_fn` /
`rms_norm_fn` with ``prenorm=True``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


def residual_dtype(x: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool) -> torch.dtype:
    """The dtype of the returned residual stream: float32 when asked, else that of x + residual."""
    if residual_in_fp32:
        return torch.float32
    return x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)


def add_norm_ref(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    is_rms_norm: bool = True,
    residual_in_fp32: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """r = x + residual (x alone when residual is None); returns (norm(r) in x's dtype, r).

    The sum is taken in float32 (float64 stays float64) and normalised before any rounding, as mamba_ssm's fused
    kernel does. norm is RMSNorm (r / sqrt(mean(r^2) + eps) * weight [+ bias]) or LayerNorm over the last
    dimension. r is returned in float32 when ``residual_in_fp32``, else in the dtype of x + residual.

    Args:
        x, residual: (..., d). weight, bias: (d,).
    """
    r = up(x) if residual is None else up(x) + up(residual)
    w = up(weight)
    b = None if bias is None else up(bias)
    if is_rms_norm:
        y = r * torch.rsqrt(r.square().mean(-1, keepdim=True) + eps) * w
        y = y if b is None else y + b
    else:
        y = F.layer_norm(r, r.shape[-1:], w, b, eps)
    return y.to(x.dtype), r.to(residual_dtype(x, residual, residual_in_fp32))
