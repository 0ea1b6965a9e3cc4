"""Readable reference for the Hyena operator's convolution core (order 2, as HyenaDNA / safari's HyenaOperator):
the short conv over the three projected streams, the gate into the long conv, and the gate out of it."""

from __future__ import annotations

import torch

from longseq.kernels.causal_conv1d.reference import causal_conv1d_ref
from longseq.kernels.fftconv.reference import fftconv_ref


def hyena_conv_ref(
    u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """x0, x1, v = split(causal_conv1d(u, weight, bias), d); returns fftconv(v * x1, k, D) * x0.

    Args:
        u: (b, 3d, l), the input projection of the three streams. weight: (3d, w) short filter. bias: (3d,).
        k: (d, lk) long filter, lk <= l. D: (d,) skip of the long conv.

    Returns:
        (b, d, l) in u's dtype.
    """
    d = k.shape[0]
    x0, x1, v = causal_conv1d_ref(u, weight, bias).split(d, dim=1)
    return fftconv_ref(v * x1, k, D) * x0
