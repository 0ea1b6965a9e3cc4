"""The torch backend of Hyena's long conv: real FFTs at the smallest 5-smooth size that makes the conv linear.

Chosen by measurement (benchmarks/RESULTS.md, `python -m benchmarks.kernels_cpu tune`, forward + backward): real
transforms beat complex ones, the 5-smooth size beats 2l and the next power of two, and it beats the direct
depthwise conv even for short filters (8 to 64 taps at l = 4096; the direct conv's weight gradient is the slow
part), so there is no direct path.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


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
    n = fft_size(l, lk)
    return fftconv_spectrum(F.pad(u, (0, n - l)), l, filter_spectrum(k, n), D)


def fft_size(l: int, lk: int) -> int:
    """The FFT size for a length-``l`` input and ``lk`` taps: any size >= l + lk - 1 keeps the circular conv
    from wrapping into the first l outputs; the smallest fast one."""
    return fast_fft_size(l + lk - 1)


def filter_spectrum(k: torch.Tensor, n: int) -> torch.Tensor:
    """k (h, lk) -> its size-n real FFT (h, n // 2 + 1), in the accumulation dtype. Callers whose filter does
    not change between calls (Hyena in eval mode) compute it once."""
    return torch.fft.rfft(up(k), n=n)


def fftconv_spectrum(padded: torch.Tensor, l: int, k_f: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """`fftconv_torch` from the input already zero-padded to the FFT size and the filter's spectrum.

    Args:
        padded: (b, h, n), the input u in its first ``l`` columns and zeros after, n = `fft_size` (l, lk).
        k_f: (h, n // 2 + 1) = `filter_spectrum` (k, n). D: (h,).

    Returns:
        y (b, h, l) in the input's dtype.
    """
    n = padded.shape[-1]
    u32 = up(padded)
    y = torch.fft.irfft(torch.fft.rfft(u32) * k_f, n=n)[..., :l]
    return y.addcmul_(u32[..., :l], up(D)[:, None]).to(padded.dtype)
