"""Readable reference for Hyena's long causal convolution (HyenaDNA / safari `fftconv_ref`)."""

from __future__ import annotations

import torch

from longseq.kernels._backend import up


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """y = causal_conv(u, k) + u * D, by FFT of size 2l (zero padding makes it linear, not circular).

    Args:
        u: (b, h, l). k: (h, lk) with lk <= l (a shorter filter is zero beyond lk). D: (h,).

    Returns:
        y (b, h, l) in u's dtype.
    """
    l = u.shape[-1]
    n = 2 * l
    k_f = torch.fft.rfft(up(k), n=n) / n
    u_f = torch.fft.rfft(up(u), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :l]
    return (y + up(u) * up(D)[:, None]).to(u.dtype)


def direct_conv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The same function as `fftconv_ref` by direct summation, O(l * lk): a second formulation for tests."""
    lk = k.shape[-1]
    padded = torch.nn.functional.pad(u.double(), (lk - 1, 0))
    y = torch.nn.functional.conv1d(padded, k.double().flip(-1).unsqueeze(1), groups=u.shape[1])
    return (y + u.double() * D.double()[:, None]).to(u.dtype)
