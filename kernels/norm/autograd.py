"""Autograd glue for the Triton fused add + norm (imports triton; loaded only when the triton backend runs)."""

from __future__ import annotations

import torch

from longseq.kernels.norm import triton_kernels as tk
from longseq.kernels.norm.reference import residual_dtype


class AddNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, is_rms_norm, res_dtype):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        res2 = None if residual is None else residual.reshape(-1, shape[-1]).contiguous()
        bias = None if bias is None else bias.contiguous()  # the kernels index w and b by column
        y, r, mean, rstd = tk.add_norm_fwd(x2, res2, weight.contiguous(), bias, eps, is_rms_norm, res_dtype)
        ctx.save_for_backward(r, weight, bias, mean, rstd)
        ctx.is_rms_norm, ctx.has_res = is_rms_norm, residual is not None
        ctx.dtypes = (x.dtype, None if residual is None else residual.dtype)
        return y.view(shape), r.view(shape)

    @staticmethod
    def backward(ctx, dy, dres_out):
        r, weight, bias, mean, rstd = ctx.saved_tensors
        shape = dy.shape
        dy2 = dy.reshape(-1, shape[-1]).contiguous()
        dres2 = None if dres_out is None else dres_out.reshape(-1, shape[-1]).contiguous()
        dr, dw, db = tk.add_norm_bwd(r, weight.contiguous(), bias, mean, rstd, ctx.is_rms_norm, dy2, dres2)
        x_dtype, res_dtype = ctx.dtypes
        dr = dr.view(shape)
        return (
            dr.to(x_dtype),
            dr.to(res_dtype) if ctx.has_res else None,
            dw.to(weight.dtype),
            None if bias is None else db.to(bias.dtype),
            None,
            None,
            None,
        )


def add_norm_triton(x, residual, weight, bias, eps, is_rms_norm, residual_in_fp32):
    """Same contract as `add_norm_ref`."""
    return AddNormFn.apply(x, residual, weight, bias, eps, is_rms_norm, residual_dtype(x, residual, residual_in_fp32))
