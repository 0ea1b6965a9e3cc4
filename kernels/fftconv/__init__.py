"""Hyena's long causal convolution: `fftconv`, a drop-in for HyenaDNA / safari `fftconv`."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.fftconv.reference import direct_conv_ref, fftconv_ref

__all__ = ["direct_conv_ref", "fftconv", "fftconv_ref"]


def fftconv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Causal long convolution with skip: y[:, c, t] = sum_{s <= t} k[c, s] u[:, c, t - s] + D[c] u[:, c, t].

    Args:
        u: (b, h, l). k: (h, lk), lk <= l. D: (h,).

    Returns:
        y (b, h, l) in u's dtype.
    """
    if u.dim() != 3 or k.dim() != 2 or k.shape[0] != u.shape[1] or k.shape[1] > u.shape[2]:
        raise ValueError(f"expected u (b, h, l) and k (h, lk <= l); got {tuple(u.shape)} and {tuple(k.shape)}")
    if D.shape != (u.shape[1],):
        raise ValueError(f"D must be (h={u.shape[1]},); got {tuple(D.shape)}")
    if _backend.choose(u, backend, has_triton=False) == "torch":
        from longseq.kernels.fftconv.torch_fftconv import fftconv_torch

        return fftconv_torch(u, k, D)
    return fftconv_ref(u, k, D)
