"""Hyena's convolution core: `hyena_conv`, the short conv, gating and long conv of an order-2 HyenaOperator
in one op (Triton fuses the short conv with the input gate, and the long conv's skip with the output gate)."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.hyena.reference import hyena_conv_ref

__all__ = ["hyena_conv", "hyena_conv_ref"]


def hyena_conv(
    u: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    k: torch.Tensor,
    D: torch.Tensor,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """x0, x1, v = split(causal_conv1d(u, weight, bias), d); returns fftconv(v * x1, k, D) * x0.

    Args:
        u: (b, 3d, l), the input projection of the three streams. weight: (3d, w) short filter. bias: (3d,).
        k: (d, lk) long filter, lk <= l. D: (d,) skip of the long conv.
        backend: "reference", "torch", "triton" or None (automatic).

    Returns:
        (b, d, l) in u's dtype.
    """
    if k.dim() != 2 or u.dim() != 3 or u.shape[1] != 3 * k.shape[0] or k.shape[1] > u.shape[2]:
        raise ValueError(f"expected u (b, 3d, l) and k (d, lk <= l); got {tuple(u.shape)} and {tuple(k.shape)}")
    d = k.shape[0]
    if weight.dim() != 2 or weight.shape[0] != 3 * d:
        raise ValueError(f"weight must be (3d={3 * d}, w); got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (3 * d,):
        raise ValueError(f"bias must be (3d={3 * d},); got {tuple(bias.shape)}")
    if D.shape != (d,):
        raise ValueError(f"D must be (d={d},); got {tuple(D.shape)}")
    choice = _backend.choose(u, backend)
    if choice == "triton":
        from longseq.kernels.hyena.autograd import hyena_conv_triton

        return hyena_conv_triton(u, weight, bias, k, D)
    if choice == "torch":
        from longseq.kernels.causal_conv1d.reference import causal_conv1d_ref
        from longseq.kernels.fftconv.torch_fftconv import fftconv_torch

        x0, x1, v = causal_conv1d_ref(u, weight, bias).split(d, dim=1)
        return fftconv_torch(v * x1, k, D) * x0
    return hyena_conv_ref(u, weight, bias, k, D)
