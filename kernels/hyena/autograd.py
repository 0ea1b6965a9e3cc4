"""Autograd glue for the Triton Hyena core (imports triton; loaded only when the triton backend runs)."""

from __future__ import annotations

import torch

from longseq.kernels.causal_conv1d.triton_kernels import conv_bwd_from_dpre
from longseq.kernels.fftconv.torch_fftconv import fast_fft_size
from longseq.kernels.hyena import triton_kernels as tk


class HyenaPreFn(torch.autograd.Function):
    """u (b, 3d, l) -> x0, v * x1 (b, d, l), through the short conv."""

    @staticmethod
    def forward(ctx, u, weight, bias):
        weight = weight.contiguous()  # indexed by channel in the kernels, as bias
        bias = None if bias is None else bias.contiguous()
        ctx.save_for_backward(u, weight, bias)
        return tk.pre_fwd(u, weight, bias)

    @staticmethod
    def backward(ctx, dx0, dvg):
        u, weight, bias = ctx.saved_tensors
        dpre = tk.pre_grad(u, weight, bias, dx0.contiguous(), dvg.contiguous())
        du, dw, _ = conv_bwd_from_dpre(u, weight, None, dpre)
        dbias = None if bias is None else dpre.sum((0, 2)).to(bias.dtype)
        return du.to(u.dtype), dw.to(weight.dtype), dbias


class HyenaPostFn(torch.autograd.Function):
    """(y + D vg) x0, with y the long conv of vg."""

    @staticmethod
    def forward(ctx, y, vg, x0, D):
        D = D.contiguous()  # indexed by channel in the kernel
        ctx.save_for_backward(y, vg, x0, D)
        return tk.post_fwd(y, vg, x0, D)

    @staticmethod
    def backward(ctx, dout):
        y, vg, x0, D = ctx.saved_tensors
        dy, dx0, dD = tk.post_bwd(y, vg, x0, D, dout.contiguous())
        return dy, (dy * D.float()[:, None]).to(vg.dtype), dx0.to(x0.dtype), dD.to(D.dtype)


def hyena_conv_triton(u, weight, bias, k, D):
    """Same contract as `hyena_conv_ref`."""
    x0, vg = HyenaPreFn.apply(u, weight, bias)
    l, lk = u.shape[-1], k.shape[-1]
    n = fast_fft_size(l + lk - 1)
    y = torch.fft.irfft(torch.fft.rfft(vg.float(), n=n) * torch.fft.rfft(k.float(), n=n), n=n)[..., :l]
    return HyenaPostFn.apply(y, vg, x0, D)
