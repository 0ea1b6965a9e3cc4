"""The torch backend of Hyena's long conv: the FFT at the smallest fast size that makes the conv linear, and
a direct depthwise conv for short filters (both chosen by measurement, benchmarks/RESULTS.md)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up

# Filters up to this length take the direct conv: faster than any FFT forward and backward on the CPU
# (at longer filters the depthwise conv's weight gradient dominates).
DIRECT_MAX = 16


@functools.cache
def fast_fft_size(minimum: int) -> int:
    """The smallest 2^a 3^b 5^c >= minimum: FFT libraries are fastest on such sizes (a prime factor such as
    the 4097 in 8194 makes the transform several times slower)."""
    best, p2 = 2 * minimum, 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            v = p3
            while v < minimum:
                v *= 5
            best = min(best, v)
            p3 *= 3
        p2 *= 2
    return best


def fftconv_torch(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Same contract as `fftconv_ref`: y = causal_conv(u, k) + u * D, for u (b, h, l), k (h, lk), D (h,)."""
    l, lk = u.shape[-1], k.shape[-1]
    u32 = up(u)
    if lk <= DIRECT_MAX:
        y = F.conv1d(F.pad(u32, (lk - 1, 0)), up(k).flip(-1).unsqueeze(1), groups=u.shape[1])
    else:
        # any size >= l + lk - 1 keeps the circular conv from wrapping into the first l outputs
        n = fast_fft_size(l + lk - 1)
        y = torch.fft.irfft(torch.fft.rfft(u32, n=n) * torch.fft.rfft(up(k), n=n), n=n)[..., :l]
    return torch.addcmul(y, u32, up(D)[:, None]).to(u.dtype)
